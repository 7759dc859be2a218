"""The world's oracle as a measurement, in one module: generated data, solvers and generators checked against
the scene graphs (the paper's Tab. 2 and 4). Evaluation only: nothing here feeds a filter or a training set.

- :class:`Oracle`: the handle a world data source gives (``DataSource.oracle``; None without the world),
  bound to the world's scenes: :meth:`Oracle.column`, :meth:`Oracle.check`.
- :func:`oracle_column`, :func:`correctness_table`: correctness of generated rows, raw against kept.
- :func:`evaluate_solver`, :func:`prior_baseline`: a solver's held-out answers and the blind prior, judged.
- :func:`judge_generation`, :func:`evaluate_generator`: a generator's held-out generations, judged.

Without the world the same measurements are the collected data's (:mod:`genixer.sources.collected`), or
there is none (generated data is then reviewed, not measured).
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property

import numpy as np
import pandas as pd

from genixer.evaluation import UNCHECKED, evaluate_generator as _evaluate_generator
from genixer.decoding import Sampling, generate
from genixer.quality import filter_test
from genixer.templates import ParseError, parse_generation
from genixer.world import Scene, check
from genixer.world.oracle import Verdict, check_turn, task_of

NO_SCENE = "no scene"  # an image the world did not draw (e.g. one put in the corpus inbox): the oracle cannot judge it


# ---- generated rows ------------------------------------------------------------------------------

def oracle_column(df: pd.DataFrame, scenes: dict[str, Scene]) -> pd.Series:
    """correct / incorrect / unparseable for every row (quarantined rows are unparseable); NO_SCENE for a
    parsed row whose image has no scene graph."""
    out = []
    for r in df.to_dict("records"):
        turns = r.get("turns")
        if isinstance(r.get("quarantine_reason"), str) or turns is None or len(turns) == 0:
            out.append("unparseable")
        elif r["image_id"] not in scenes:
            out.append(NO_SCENE)
        else:
            out.append(check({"task": r["task"], "turns": list(turns)}, scenes[r["image_id"]]).status)
    return pd.Series(out, index=df.index)


def _counts(df: pd.DataFrame) -> dict:
    parsed = df[df.quarantine_reason.isna()] if "quarantine_reason" in df.columns else df  # rows that reached the filter
    return {"n": len(df), "correct": int((df.oracle == "correct").sum()), "parsed": len(parsed),
            "parsed_correct": int((parsed.oracle == "correct").sum())}


def correctness_table(raw: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """Per task and overall: oracle correctness of all raw rows, of the parsed raw rows (the ones a
    filter chooses from; quarantined rows count as wrong only in the first), and of the kept rows;
    the lift is kept minus parsed, with the exact test of `filter_test`. Rows the oracle cannot judge
    (NO_SCENE) are left out of both."""
    raw, kept = raw[raw.oracle != NO_SCENE], kept[kept.oracle != NO_SCENE]
    rows = []
    for task in sorted(set(raw.task)) + ["all"]:
        r, k = (raw, kept) if task == "all" else (raw[raw.task == task], kept[kept.task == task])
        c = _counts(r)
        kc = int((k.oracle == "correct").sum())
        test = filter_test(c["parsed"], c["parsed_correct"], len(k), kc)
        rows.append({"task": task, "raw": c["n"], "raw_correct": c["correct"] / c["n"] if c["n"] else np.nan,
                     "raw_parsed": c["parsed"], "raw_parsed_correct": c["parsed_correct"] / c["parsed"] if c["parsed"] else np.nan,
                     "raw_parsed_correct_n": c["parsed_correct"], "kept": len(k), "kept_correct_n": kc,
                     "kept_correct": kc / len(k) if len(k) else np.nan, **test})
    out = pd.DataFrame(rows)
    return out.assign(lift=out.kept_correct - out.raw_parsed_correct)


# ---- solvers ---------------------------------------------------------------------------------------

def evaluate_solver(model, processor, samples: list[dict], scenes: dict[str, Scene], batch_size: int = 32) -> pd.DataFrame:
    """Answer each sample's first question greedily; the oracle judges the answer."""
    qs = [s["turns"][0]["question"] for s in samples]
    outs = generate(model, processor, [s["image_path"] for s in samples], qs, Sampling(max_new_tokens=48), batch_size=batch_size)
    rows = []
    for s, q, o in zip(samples, qs, outs):
        v = check_turn(q, o[0], scenes[s["image_id"]])
        rows.append({"sample_id": s["sample_id"], "task": s["task"], "question": q, "truth": s["turns"][0]["answer"],
                     "answer": o[0], "correct": v.ok, "reason": v.reason})
    return pd.DataFrame(rows)


def prior_baseline(train_samples: list[dict], val_samples: list[dict], scenes: dict[str, Scene]) -> pd.DataFrame:
    """A blind answerer: for each question kind, the answer most common in training.
    Its accuracy is the chance level a solver must beat."""
    from genixer.world.oracle import classify

    common: dict[str, Counter] = {}
    for s in train_samples:
        t = s["turns"][0]
        kind = classify(t["question"])[0]
        common.setdefault(kind, Counter())[t["answer"]] += 1
    rows = []
    for s in val_samples:
        q = s["turns"][0]["question"]
        kind = classify(q)[0]
        guess = common[kind].most_common(1)[0][0] if kind in common else ""
        rows.append({"task": s["task"], "correct": check_turn(q, guess, scenes[s["image_id"]]).ok})
    return pd.DataFrame(rows)


# ---- generators ------------------------------------------------------------------------------------

def judge_generation(text: str, scene: Scene | None) -> dict:
    """Parse generated text and let the oracle judge it: the row every quality figure uses.
    `task_of` is the world grammar's task where every question is in the grammar, else the task the
    turns' form makes (genixer.task_form.task_by_form), so a generator trained on published data is
    typed too. Without a scene (no world) a parsed row is `unchecked`."""
    try:
        turns = parse_generation(text)
    except ParseError as e:
        return {"parsed": False, "parse_error": str(e), "turns": None, "task_of": None, "oracle": "unparseable", "oracle_reason": str(e)}
    task = task_of(turns)
    if scene is None:
        return {"parsed": True, "parse_error": "", "turns": turns, "task_of": task, "oracle": UNCHECKED, "oracle_reason": "no world"}
    v = check({"task": task, "turns": turns}, scene)
    return {"parsed": True, "parse_error": "", "turns": turns, "task_of": task, "oracle": v.status, "oracle_reason": v.reason}


def judge_image_generation(text: str, image: dict) -> dict:
    """:func:`judge_generation` against an image row's scene (rows without a `scene` are not checked: `unchecked`)."""
    return judge_generation(text, Scene.from_json(image["scene"]) if image.get("scene") is not None else None)


def evaluate_generator(model, processor, images: list[dict], tasks: list[str], general: list[str], type_specific: bool,
                       sampling: Sampling, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
    """One generation per (image, task); parse rate, type accuracy and oracle correctness rows (images
    without a `scene`, i.e. without the world, are not checked: oracle `unchecked`)."""
    return _evaluate_generator(model, processor, images, tasks, general, type_specific, sampling, seed=seed,
                               batch_size=batch_size, judge=judge_image_generation)


# ---- the handle ------------------------------------------------------------------------------------

class Oracle:
    """The world's oracle bound to its scenes (``world_scenes`` rows of every split, with their ``scene`` JSON);
    scene graphs are parsed once, on first use."""

    def __init__(self, world_scenes: pd.DataFrame):
        self.world_scenes = world_scenes

    @cached_property
    def scenes(self) -> dict[str, Scene]:
        return {r.image_id: Scene.from_json(r.scene) for r in self.world_scenes.itertuples()}

    def column(self, df: pd.DataFrame) -> pd.Series:
        """:func:`oracle_column` of generated rows against the world's scenes."""
        return oracle_column(df, self.scenes)

    def check(self, sample: dict) -> Verdict:
        """The oracle's verdict on one sample (its image must be one of the world's)."""
        return check(sample, self.scenes[sample["image_id"]])

    correctness_table = staticmethod(correctness_table)
    NO_SCENE = NO_SCENE
