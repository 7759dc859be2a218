"""The shapes world as the graph's data source (:class:`genixer.datasource.DataSource`): captions written from
its scene graphs, the judge's grammar corruptions confirmed by its oracle, per-patch labels for the vision
pre-stage, and solvers and generators judged by the oracle (:mod:`genixer.oracle_eval`).
:func:`genixer.datasource.choose` picks it when the collected samples came from the world."""

from __future__ import annotations

import random
from functools import cached_property

import pandas as pd

from genixer import oracle_eval
from genixer.datasource import holdout_images
from genixer.decoding import Sampling
from genixer.world.captions import caption_records
from genixer.world.negatives import verification_records
from genixer.world.oracle import KIND_PHRASES, classify, task_of
from genixer.world.patch_labels import PATCH_LABELS
from genixer.world.regions import WORLD_REC_READING, scene_candidates
from genixer.world.scene import Scene


class WorldSource:
    """The data source of a graph whose samples the shapes world annotated. ``world_scenes``: the world's image
    rows of every split (with their ``scene`` JSON); the collected images are its ``collect`` split."""

    name = "shapes_world"
    checked_against = "the world's oracle"
    judge_records_from = "world grammar, oracle-checked"
    patch_labels = PATCH_LABELS  # per patch: colour, shape, size and box of the covering object
    task_of = staticmethod(task_of)  # a generated sample's task: the world grammar's, else its form's
    rec_reading = WORLD_REC_READING  # how REC/REG questions are read (region pairs, the REC filter)

    def __init__(self, collected: pd.DataFrame, world_scenes: pd.DataFrame, val_images: int):
        self.collected, self.world_scenes = collected, world_scenes
        self.collect_images = world_scenes[world_scenes.split == "collect"]
        self.heldout = holdout_images(self.collect_images.image_id, val_images)
        self.oracle = oracle_eval.Oracle(world_scenes)

    @cached_property
    def collect_scenes(self) -> dict[str, Scene]:
        """Scene graph of every collected image, by image id."""
        return {r.image_id: Scene.from_json(r.scene) for r in self.collect_images.itertuples()}

    def question_type(self, task: str, question: str, extra=None) -> str:
        """The grammar kind the question's phrasing matches ('colour', 'count', 'relation', 'exist', 'mc_shape' ...);
        'unmatched' for a question the grammar cannot read."""
        found = classify(question)
        return found[0] if found else "unmatched"

    def type_classifier_accuracy(self) -> dict | None:
        """None: the world's types are its grammar's, read exactly (no classifier)."""
        return None

    def type_phrase(self, question_type: str) -> str:
        """A question type in the world's words (the closed loop's third instruction level)."""
        return KIND_PHRASES.get(question_type, question_type.replace("_", " "))

    def captions(self, samples: list[dict], images: set[str]) -> tuple[list[dict], str]:
        """Dense captions of ``images`` written from their scene graphs, and where they came from."""
        collect = self.collect_images
        return caption_records(collect[collect.image_id.isin(images)].to_dict("records")), "world scene graphs"

    def judge_records(self, samples: list[dict], seed: int) -> list[dict]:
        """The judge's verification records: each pair the oracle confirms -> "Yes", one grammar corruption the
        oracle confirms false -> "No"."""
        return verification_records(samples, random.Random(seed), self.collect_scenes)

    def region_candidates(self, held_samples: list[dict]) -> dict[str, list[tuple[list[float], str]]]:
        """image_path -> [(box, expression)]: the other objects the region CLIP's swap negatives take, every object of
        the held-out images with its shortest unique description (from the scene graphs)."""
        collect = self.collect_images
        return scene_candidates(collect[collect.image_id.isin(self.heldout)].to_dict("records"))

    def evaluate_solver(self, model, processor, samples: list[dict], batch_size: int = 32) -> pd.DataFrame:
        return oracle_eval.evaluate_solver(model, processor, samples, self.collect_scenes, batch_size=batch_size)

    def prior_baseline(self, train_samples: list[dict], val_samples: list[dict]) -> pd.DataFrame:
        return oracle_eval.prior_baseline(train_samples, val_samples, self.collect_scenes)

    def judge_generation(self, text: str, image: dict) -> dict:
        """A generated text parsed, typed and judged by the oracle against the image row's scene."""
        return oracle_eval.judge_image_generation(text, image)

    def evaluate_generator(self, model, processor, images: list[dict], tasks: list[str], general: list[str], type_specific: bool,
                           sampling: Sampling, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
        return oracle_eval.evaluate_generator(model, processor, images, tasks, general, type_specific, sampling, seed=seed,
                                              batch_size=batch_size)
