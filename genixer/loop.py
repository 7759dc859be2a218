"""The closed loop of MLLM-DataEngine (seed 003), the parts that decide what to generate next: a round's
per-question-type scores on a development split, its bad-case pool, Adaptive Bad-case Sampling and the stopping rule.

- **Scores by type** (:func:`type_table`): each development question's type (the data source says it:
  ``DataSource.question_type``), the model's accuracy per type with its Wilson 95% interval.
- **The bad-case pool** (:func:`bad_cases`): the questions the model got wrong, development split only (a row of
  another split is an error: the report's test questions must never steer generation).
- **Adaptive Bad-case Sampling** (:func:`sampling_weights`, :func:`sample_queries`): a query's question type is
  drawn with probability inversely proportional to the type's score, as the paper does; the score is floored
  (``floor``, default 0.05) so that a type the model never gets right does not take every query, and a type needs
  two bad cases (the query's two in-context examples) to be drawn at all. Weights that cannot be used (none
  positive and finite) fall back to uniform over the eligible types, and the note says so. Query images: half drawn
  at random from the unlabeled corpus, half the corpus image most similar (cosine of image embeddings, e.g. the
  region CLIP's) to the query's bad-case images, each image used once.
- **The stopping rule** (:func:`stop_reason`): the maximum number of rounds, an empty bad-case pool (a perfect
  model ends the loop; that is a reason, not a failure), or no type better than the previous round's beyond noise.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from genixer.review import wilson
from genixer.world_benchmarks import question_kind

IN_CONTEXT = 2  # bad cases shown per query (the paper: two)
DEV_SPLIT = "dev"  # the split label of the development questions a round is evaluated on


def carried_type(extra) -> str | None:
    """The question type a published record carries in its ``extra`` (a dict or its JSON): VQAv2's
    ``question_type`` ('what color is the'), GQA's ``types.detailed`` ('relS'); None when it carries none."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if not isinstance(extra, dict):
        return None
    if extra.get("question_type"):
        return str(extra["question_type"])
    types = extra.get("types")
    return str(types["detailed"]) if isinstance(types, dict) and types.get("detailed") else None


def text_type(task: str, question: str) -> str:
    """The type read off the question's text when no type is carried: the blind prior's kind of question, the task and
    the question's first two words ('common_vqa:what colour')."""
    return question_kind(task, question)


def type_table(evals: pd.DataFrame) -> pd.DataFrame:
    """Per question type (``evals``: one row per development question, columns ``question_type`` and ``correct``):
    questions, correct answers, accuracy and its Wilson 95% interval, bad cases; sorted by accuracy, weakest first."""
    if not len(evals):
        return pd.DataFrame(columns=["question_type", "n", "correct", "accuracy", "lo", "hi", "bad_cases"])
    g = evals.assign(correct=evals.correct.astype(bool)).groupby("question_type").correct.agg(["size", "sum"])
    rows = []
    for t, (n, k) in g.iterrows():
        lo, hi = wilson(k / n, n)
        rows.append({"question_type": t, "n": int(n), "correct": int(k), "accuracy": k / n, "lo": lo, "hi": hi, "bad_cases": int(n - k)})
    return pd.DataFrame(rows).sort_values(["accuracy", "question_type"]).reset_index(drop=True)


def bad_cases(evals: pd.DataFrame) -> pd.DataFrame:
    """The bad-case pool: the development questions answered wrong (image, question, the model's answer, the truth,
    its type). Raises ValueError if a row is not of the development split."""
    if "split" in evals and (evals.split != DEV_SPLIT).any():
        other = sorted(evals.split[evals.split != DEV_SPLIT].astype(str).unique())
        raise ValueError(f"bad cases come from the development split only; got rows of split(s) {other}")
    return evals[~evals.correct.astype(bool)].reset_index(drop=True)


def sampling_weights(table: pd.DataFrame, floor: float = 0.05) -> tuple[pd.Series, str]:
    """(question type -> probability, a note): inversely proportional to the type's accuracy (floored at ``floor``),
    over the types with at least two bad cases. Unusable weights fall back to uniform, saying so; no eligible type:
    an empty series (the pool has nothing to show)."""
    eligible = table[table.bad_cases >= IN_CONTEXT]
    if not len(eligible):
        return pd.Series(dtype=float), f"no question type has {IN_CONTEXT} bad cases"
    w = 1.0 / np.maximum(eligible.accuracy.to_numpy(dtype=float), floor)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return (pd.Series(1.0 / len(eligible), index=eligible.question_type.to_numpy()),
                "weights inverse to the score were not usable (non-finite or zero): uniform over the eligible types")
    return pd.Series(w / w.sum(), index=eligible.question_type.to_numpy()), f"inverse to accuracy, floored at {floor}"


def uniform_weights(table: pd.DataFrame) -> pd.Series:
    """The control arm's weights: uniform over the same eligible types."""
    eligible = table[table.bad_cases >= IN_CONTEXT].question_type.to_numpy()
    return pd.Series(1.0 / len(eligible), index=eligible) if len(eligible) else pd.Series(dtype=float)


def sample_queries(weights: pd.Series, pool: pd.DataFrame, corpus: pd.DataFrame, n_queries: int, seed: int,
                   corpus_emb: np.ndarray | None = None, pool_emb: np.ndarray | None = None) -> pd.DataFrame:
    """``n_queries`` generation queries: a question type drawn from ``weights``, two bad cases of that type from
    ``pool`` (their sample ids, questions and truths, for an instruction-following generator's prompt), and a
    query image from ``corpus`` (rows with ``image_id``), each image used once: even-numbered queries a random image,
    odd-numbered ones the unused corpus image nearest (cosine) to the mean embedding of its bad cases' images
    (``corpus_emb``: one row per corpus row; ``pool_emb``: one row per pool row); without embeddings, random too."""
    if not len(weights) or n_queries <= 0:
        return pd.DataFrame(columns=["query", "question_type", "in_context", "image_id", "image_from"])
    rng = np.random.default_rng(seed)
    n_queries = min(n_queries, len(corpus))
    types = rng.choice(weights.index.to_numpy(), size=n_queries, p=weights.to_numpy(dtype=float))
    by_type = {t: np.flatnonzero(pool.question_type.to_numpy() == t) for t in weights.index}
    free = np.ones(len(corpus), dtype=bool)
    unit = None
    if corpus_emb is not None and pool_emb is not None:
        unit = corpus_emb / np.maximum(np.linalg.norm(corpus_emb, axis=1, keepdims=True), 1e-12)
    rows = []
    for q, t in enumerate(types):
        shown = rng.choice(by_type[t], size=IN_CONTEXT, replace=False)
        if q % 2 == 1 and unit is not None:
            target = pool_emb[shown].mean(0)
            sim = unit @ (target / max(np.linalg.norm(target), 1e-12))
            i, how = int(np.argmax(np.where(free, sim, -np.inf))), "similar"
        else:
            i, how = int(rng.choice(np.flatnonzero(free))), "random"
        free[i] = False
        rows.append({"query": q, "question_type": t, "in_context": [str(pool.sample_id.iloc[j]) for j in shown],
                     "image_id": corpus.image_id.iloc[i], "image_from": how})
    return pd.DataFrame(rows)


def stop_reason(round_index: int, max_rounds: int, pool_size: int, verdicts: list[str] | None) -> str | None:
    """Why the loop stops after round ``round_index`` (1-based), or None to go on: the maximum number of rounds; an
    empty bad-case pool; or, from round 2 on, no question type better than the previous round's beyond noise
    (``verdicts``: per type, the noise test's 'better' / 'worse' / 'within noise' against the previous round)."""
    if pool_size == 0:
        return "the bad-case pool is empty: the model answers every development question right"
    if round_index >= max_rounds:
        return f"maximum rounds reached ({max_rounds})"
    if verdicts is not None and "better" not in verdicts:
        return "no question type improved beyond noise over the previous round"
    return None
