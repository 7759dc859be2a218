"""THE choice point of the data source: what the graph needs from its data beyond the samples is asked of one
object, chosen once from what was collected (:func:`choose`).

Two implementations of :class:`DataSource`:
- the shapes world's (``WorldSource``, in the world package): captions written from its scene graphs, the
  judge's grammar corruptions confirmed by its oracle, per-patch labels, solvers and generators judged by the
  oracle (:mod:`genixer.oracle_eval`);
- the collected data's (:class:`genixer.sources.collected.CollectedSource`), for samples read from published
  files: captions from their region descriptions, corruptions wrong by construction, solvers checked against
  the collected answers, no patch labels and no oracle.

This module, collection and the oracle's measurement (:mod:`genixer.oracle_eval`) are the only library modules
outside the world package that import it.
"""

from __future__ import annotations

from typing import Callable, Protocol

import pandas as pd

WORLD_SOURCE = "shapes_world"  # the `source` of every sample the world annotates ("shapes_world", "shapes_world:gqa" ...)


class DataSource(Protocol):
    name: str  # "shapes_world" | "collected"
    checked_against: str  # what a solver's answers are checked against, for the metadata
    judge_records_from: str  # where the judge's "No" records come from, for the metadata
    oracle: object | None  # the world's oracle measurement (genixer.oracle_eval.Oracle); None without the world
    collect_images: pd.DataFrame  # image rows the generators train and are evaluated on (the world's: with `scene`)
    heldout: set[str]  # held-out image ids, out of every training set
    patch_labels: object | None  # the vision pre-stage's labeller (genixer.patch_labels.PatchLabels); None: no patch labels
    task_of: Callable[..., str | None]  # a (generated) sample's task from its turns (turns, width=None, height=None)
    rec_reading: object  # how REC/REG questions are read (genixer.region_clip.RecReading): region pairs, the REC filter

    def captions(self, samples: list[dict], images: set[str]) -> tuple[list[dict], str]:
        """Dense caption records of ``images`` (those of ``samples`` without the world), and where they came from."""

    def judge_records(self, samples: list[dict], seed: int) -> list[dict]:
        """The judge's verification records of ``samples``: a "Yes" per true pair, one corrupted "No" beside it."""

    def region_candidates(self, held_samples: list[dict]) -> dict[str, list[tuple[list[float], str]]]:
        """image_path -> [(box, expression)]: the other objects the region CLIP's swap negatives take
        (``region_clip.negative_pairs``)."""

    def evaluate_solver(self, model, processor, samples: list[dict], batch_size: int = 32) -> pd.DataFrame:
        """Each sample's first question answered greedily and checked (sample_id, task, question, truth, answer,
        correct, reason)."""

    def prior_baseline(self, train_samples: list[dict], val_samples: list[dict]) -> pd.DataFrame:
        """The blind prior's answer to each of ``val_samples``, checked (task, correct)."""

    def question_type(self, task: str, question: str, extra=None) -> str:
        """A question's type for the closed loop's per-type scores (genixer.loop): the world's grammar kind
        ('colour', 'relation', ...), or the type a published record carries, else one read off its text."""

    def type_classifier_accuracy(self) -> dict | None:
        """The accuracy of the classifier that types questions carrying no type, measured on records that carry one
        (genixer.loop.classifier_accuracy); None when there is none."""

    def type_phrase(self, question_type: str) -> str:
        """A question type in words, for the third instruction level (genixer.loop.type_instruction)."""

    def judge_generation(self, text: str, image: dict) -> dict:
        """A generated text parsed, typed and checked: parsed, parse_error, turns, task_of, oracle, oracle_reason."""

    def evaluate_generator(self, model, processor, images: list[dict], tasks: list[str], general: list[str],
                           type_specific: bool, sampling, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
        """One generation per (image, task), each judged by :meth:`judge_generation`."""


def holdout_images(image_ids, n: int) -> set[str]:
    """The last `n` collect images (sorted) are held out of every training set, for evaluation."""
    return set(sorted(set(image_ids))[-n:]) if n > 0 else set()


def from_world(collected: pd.DataFrame) -> bool:
    """Whether collected samples came from the shapes world: any row's `source` starts with ``shapes_world`` (the
    world annotates a whole table or none of it; the published readers write ``<format>:<file>``)."""
    return bool(len(collected)) and bool(collected["source"].fillna("").astype(str).str.startswith(WORLD_SOURCE).any())


def choose(collected: pd.DataFrame, world_scenes: pd.DataFrame | None, phrasings: dict[str, list[str]] | None,
           val_images: int) -> DataSource:
    """The data source of a run: the world's when ``collected`` (the collected samples) came from it, then
    ``world_scenes`` (its image rows of every split, with their scene graphs) must be given; else the collected
    data's (``phrasings``: the REC phrasings in use, to read region descriptions for captions). ``val_images``: the
    preset's held-out collect images (without the world at most a fifth of the images).

    Both read REC/REG questions the world's way (``rec_reading``: its locate phrasings, describe patterns and
    descriptions), as every run did before the sources were split: the instruction templates' phrasings are the
    world grammar's in every run (:func:`default_phrasings`)."""
    if from_world(collected):
        if world_scenes is None or not len(world_scenes):
            raise ValueError("the collected samples came from the shapes world, but no world_scenes rows were given: "
                             "materialise world_scenes first")
        from genixer.world.source import WorldSource

        return WorldSource(collected, world_scenes, val_images)
    from genixer.sources.collected import CollectedSource
    from genixer.world.regions import WORLD_REC_READING

    return CollectedSource(collected, phrasings, val_images, WORLD_REC_READING)


def default_phrasings() -> dict[str, tuple[str, ...]]:
    """The instruction templates' default phrasings of every question kind (the world grammar's ``PHRASINGS``)."""
    from genixer.world.grammar import PHRASINGS

    return PHRASINGS


def validate_phrasings(phrasings: dict) -> dict:
    """Each phrasing compiled, or a ValueError naming the one missing its placeholder (the world grammar's check)."""
    from genixer.world.grammar import validate_phrasings as validate

    return validate(phrasings)
