"""The collected data's own source: what the graph asks of its data beyond the samples, when they were read
from published files (no world, no scene graph, no oracle). :class:`CollectedSource` implements
:class:`genixer.datasource.DataSource`; :func:`genixer.datasource.choose` picks it.

- Captions: per image, the region descriptions the collected data gives it (:func:`caption_records`).
- The judge's "No" examples: corruptions wrong by construction (:mod:`genixer.sources.negatives`).
- A solver's answers: checked against the collected answers (:func:`answer_correct`), and the blind prior
  answers per question kind (:func:`prior_baseline`).
- No patch labels (the vision pre-stage is the contrastive one, on the captions) and no oracle.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import cached_property

import pandas as pd

from genixer.decoding import Sampling, generate
from genixer.task_form import task_by_form
from genixer.templates import CAPTION_PROMPT


def collected_images(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per image of collected samples (image_id, image_path, width, height), sorted by
    image_id; text-only rows (no image) are left out. The world-free counterpart of the world's
    `collect` split."""
    pictured = samples[samples.image_path.notna()]
    cols = ["image_id", "image_path", "width", "height"]
    return pictured[cols].drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)


def heldout_count(n_images: int, val_images: int) -> int:
    """Images held out of training without the world: the preset's `val_images`, but never more than
    a fifth of the images (a small published set keeps most of its images for training)."""
    return min(val_images, n_images // 5)


def caption_records(samples: list[dict], phrasings=None, reading=None) -> list[dict]:
    """Dense captions without the world (no scene graph to write them from): per image, the region
    descriptions the collected data gives it (the (expression, box) pairs of
    :func:`genixer.region_clip.region_pairs`: REC expressions read with ``phrasings`` and ``reading``, the
    data source's ``RecReading``, and REG answers to a describe phrasing), each object (box) once with its first description,
    top to bottom, left to right, joined with "; " as the world's captions are. Images with no region
    description get no caption; [] when the data has no REC/REG sample."""
    from genixer.region_clip import region_pairs

    by_image: dict[str, dict] = {}
    for p in region_pairs(samples, phrasings, reading):
        d = by_image.setdefault(p["image_id"], {"image_path": p["image_path"], "height": p.get("height"), "objects": {}})
        d["objects"].setdefault(tuple(round(v, 1) for v in p["box"]), p["expression"])
    out = []
    for image_id, d in sorted(by_image.items()):
        band = (d["height"] or 1) / 8  # rows of an eighth of the image, as the world's 16 px rows of its small images
        objs = sorted(d["objects"].items(), key=lambda kv: (kv[0][1] // band, kv[0][0]))
        out.append({"record_id": f"{image_id}:caption", "task": "caption", "image_id": image_id, "image_path": d["image_path"],
                    "prompt": CAPTION_PROMPT, "target": "; ".join(e for _, e in objs) + "."})
    return out


def answer_correct(answer: str, sample: dict) -> bool:
    """A solver's answer to a collected sample's first question, against the data set's own answer
    (there is no oracle): a multiple-choice letter must pick the right option (metrics.choice_letter);
    a box answer must hit the answer's box at IoU >= 0.5 (boxes.answer_box); any other answer must
    equal, after VQA normalisation, the recorded answer or one the data set also accepts (VQAv2's ten
    annotator answers, A-OKVQA's direct answers: negatives.accepted_answers)."""
    from genixer.boxes import BoxFormatError, answer_box
    from genixer.metrics import choice_letter, iou_hit, normalize_answer, parse_options
    from genixer.sources.negatives import accepted_answers, answer_type

    t = sample["turns"][0]
    q, truth, answer = str(t["question"]), str(t["answer"]), str(answer)
    kind = answer_type(q, truth)
    if kind == "mc":
        return choice_letter(answer, parse_options(q)) == truth.strip().strip("().").upper()
    if kind == "box":
        try:
            want = answer_box(truth, sample["width"], sample["height"])
            got = answer_box(answer, sample["width"], sample["height"])
        except BoxFormatError:
            return False
        return want is not None and iou_hit(got, want)
    accepted = {normalize_answer(truth)} | {normalize_answer(a) for a in accepted_answers(sample)}
    return normalize_answer(answer) in accepted


def evaluate_solver(model, processor, samples: list[dict], batch_size: int = 32) -> pd.DataFrame:
    """A solver without the world: each sample's first question answered greedily and
    checked against the collected answer (:func:`answer_correct`)."""
    qs = [s["turns"][0]["question"] for s in samples]
    outs = generate(model, processor, [s["image_path"] for s in samples], qs, Sampling(max_new_tokens=48), batch_size=batch_size) if samples else []
    rows = []
    for s, q, o in zip(samples, qs, outs):
        ok = answer_correct(o[0], s)
        rows.append({"sample_id": s["sample_id"], "task": s["task"], "question": q, "truth": s["turns"][0]["answer"],
                     "answer": o[0], "correct": ok, "reason": "" if ok else "differs from the collected answer"})
    return pd.DataFrame(rows, columns=["sample_id", "task", "question", "truth", "answer", "correct", "reason"])


def prior_baseline(train_samples: list[dict], val_samples: list[dict]) -> pd.DataFrame:
    """The blind prior without the world: per question kind (the task and the question's first
    two words, benchmarks.question_kind) the most common training answer, checked by :func:`answer_correct`."""
    from genixer.world_benchmarks import question_kind

    common: dict[str, Counter] = {}
    for s in train_samples:
        t = s["turns"][0]
        common.setdefault(question_kind(s["task"], t["question"]), Counter())[t["answer"]] += 1
    rows = []
    for s in val_samples:
        kind = question_kind(s["task"], s["turns"][0]["question"])
        guess = common[kind].most_common(1)[0][0] if kind in common else ""
        rows.append({"task": s["task"], "correct": answer_correct(guess, s)})
    return pd.DataFrame(rows, columns=["task", "correct"])


class CollectedSource:
    """The data source of a graph whose samples were read from published files (:class:`genixer.datasource.DataSource`)."""

    name = "collected"
    checked_against = "the collected answers (no world, no oracle)"
    judge_records_from = "collected data, wrong by construction (no world)"
    oracle = None  # no world, no oracle: generated data is measured by review, not here
    patch_labels = None  # patch labels need scene graphs: the vision pre-stage is the contrastive one
    task_of = staticmethod(task_by_form)  # a generated sample's task, from the form of its turns

    def __init__(self, collected: pd.DataFrame, phrasings: dict[str, list[str]] | None, val_images: int, rec_reading):
        """``rec_reading``: how REC/REG questions are read (a ``genixer.region_clip.RecReading``, given by
        :func:`genixer.datasource.choose`)."""
        from genixer.datasource import holdout_images

        self.collected, self.phrasings, self.rec_reading = collected, phrasings, rec_reading
        self.collect_images = collected_images(collected)
        self.heldout = holdout_images(self.collect_images.image_id, heldout_count(len(self.collect_images), val_images))

    @cached_property
    def _typed(self) -> tuple[list[str], list[str]]:
        """(first questions, carried types) of the collected records that carry a type."""
        from genixer.loop import carried_type

        extra = self.collected["extra"] if "extra" in self.collected else [None] * len(self.collected)
        pairs = [(turns[0]["question"], t) for turns, e in zip(self.collected.turns, extra) if len(turns) and (t := carried_type(e))]
        return [q for q, _ in pairs], [t for _, t in pairs]

    @cached_property
    def type_classifier(self):
        """genixer.loop.TypeClassifier learnt from every record that carries a type (None when none does)."""
        from genixer.loop import TypeClassifier

        questions, types = self._typed
        return TypeClassifier().fit(questions, types) if questions else None

    def type_classifier_accuracy(self) -> dict | None:
        """The classifier's accuracy on typed records held out of its fit (genixer.loop.classifier_accuracy)."""
        from genixer.loop import classifier_accuracy

        questions, types = self._typed
        return classifier_accuracy(questions, types) if len(questions) > 1 else None

    def question_type(self, task: str, question: str, extra=None) -> str:
        """The type the record carries (VQAv2's question_type, GQA's detailed type); else the type classifier's reading of
        the question (learnt from the records that carry one); else one read off its text (task and first words)."""
        from genixer.loop import carried_type, text_type

        found = carried_type(extra) or (self.type_classifier.predict(question) if self.type_classifier else None)
        return found or text_type(task, question)

    def type_phrase(self, question_type: str) -> str:
        """A question type in words: the type itself (VQAv2's are question openings, 'what color is the')."""
        return question_type.replace("_", " ")

    @cached_property
    def pictured_samples(self) -> list[dict]:
        """The collected samples with an image (text-only rows have nothing for an image model to read)."""
        return self.collected[self.collected.image_path.notna()].to_dict("records")

    @cached_property
    def pool(self):
        """The corruptions' distractors (:func:`genixer.sources.negatives.build_pool`), from every collected sample with an image."""
        from genixer.sources.negatives import build_pool

        return build_pool(self.pictured_samples)

    def captions(self, samples: list[dict], images: set[str]) -> tuple[list[dict], str]:
        """Dense captions of ``images`` (the collected region descriptions of each, :func:`caption_records`) and where
        they came from."""
        captions = caption_records([s for s in samples if s["image_id"] in images], self.phrasings, self.rec_reading)
        if not captions:
            return [], "none: no world and no REC/REG sample to describe an image (caption share 0)"
        return captions, "collected region descriptions (REC expressions and REG answers of each image; no world)"

    def judge_records(self, samples: list[dict], seed: int) -> list[dict]:
        """The judge's verification records: each pair -> "Yes", one corruption wrong by construction -> "No"."""
        from genixer.sources.negatives import verification_records

        return verification_records(samples, random.Random(seed), self.pool)

    def region_candidates(self, held_samples: list[dict]) -> dict[str, list[tuple[list[float], str]]]:
        """image_path -> [(box, expression)]: the other objects the region CLIP's swap negatives take, the held-out
        REC/REG samples' own (expression, box) pairs."""
        from genixer.region_clip import sample_candidates

        return sample_candidates([s for s in held_samples if s["task"] in ("rec", "reg")], reading=self.rec_reading)

    def evaluate_solver(self, model, processor, samples: list[dict], batch_size: int = 32) -> pd.DataFrame:
        return evaluate_solver(model, processor, samples, batch_size=batch_size)

    def prior_baseline(self, train_samples: list[dict], val_samples: list[dict]) -> pd.DataFrame:
        return prior_baseline(train_samples, val_samples)

    def judge_generation(self, text: str, image: dict) -> dict:
        """A generated text parsed and typed by its form; nothing can say whether it is true (``unchecked``)."""
        from genixer.evaluation import unchecked_generation

        return unchecked_generation(text, task_by_form)

    def evaluate_generator(self, model, processor, images: list[dict], tasks: list[str], general: list[str], type_specific: bool,
                           sampling: Sampling, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
        from genixer.evaluation import evaluate_generator

        return evaluate_generator(model, processor, images, tasks, general, type_specific, sampling, seed=seed,
                                  batch_size=batch_size, judge=self.judge_generation)
