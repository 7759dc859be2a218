"""Quality of generated data, whatever the data source (the paper's Tab. 2 and 4, Fig. 7 and 8): the exact
test of a filter's choice, precision and recall against a correctness column, text and box statistics. The
oracle's correctness column and tables are in :mod:`genixer.oracle_eval`. Evaluation only: nothing here feeds
a filter."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from scipy import stats

FILTER_ALPHA = 0.05  # two-sided


def filter_test(n_parsed: int, parsed_correct: int, n_kept: int, kept_correct: int) -> dict:
    """Is a filter's choice better than chance? The kept rows are a subset of the parsed rows, so
    under 'the filter keeps a random subset' the number of correct kept rows is hypergeometric
    (scipy.stats.hypergeom): exact, and right when the raw correctness is 0 (then nothing kept can
    be correct and no lift can be claimed). Also the Wilson 95% interval of the kept share."""
    if n_kept == 0 or n_parsed == 0:
        return {"kept_ci_low": np.nan, "kept_ci_high": np.nan, "p_better": np.nan, "p_worse": np.nan, "filter_verdict": "not run"}
    ci = stats.binomtest(kept_correct, n_kept).proportion_ci(confidence_level=1 - FILTER_ALPHA, method="wilson")
    p_better = float(stats.hypergeom.sf(kept_correct - 1, n_parsed, parsed_correct, n_kept))
    p_worse = float(stats.hypergeom.cdf(kept_correct, n_parsed, parsed_correct, n_kept))
    verdict = "yes" if p_better < FILTER_ALPHA / 2 else "no" if p_worse < FILTER_ALPHA / 2 else "within noise"
    return {"kept_ci_low": float(ci.low), "kept_ci_high": float(ci.high), "p_better": p_better, "p_worse": p_worse,
            "filter_verdict": verdict}


def precision_recall(keep: pd.Series, correct: pd.Series) -> dict:
    """A filter's decisions against the oracle: precision of what it keeps, recall of what is correct."""
    keep, correct = keep.astype(bool), correct.astype(bool)
    tp = int((keep & correct).sum())
    return {"n": int(len(keep)), "kept": int(keep.sum()), "correct": int(correct.sum()),
            "precision": tp / keep.sum() if keep.sum() else np.nan, "recall": tp / correct.sum() if correct.sum() else np.nan}


def question_lengths(df: pd.DataFrame) -> list[int]:
    """Words per question, every turn of every parsed row (Fig. 7)."""
    return [len(t["question"].split()) for turns in df.turns if turns is not None for t in turns]


def text_stats(df: pd.DataFrame, label: str) -> dict:
    """Question length (words) and vocabulary of the questions and answers (Fig. 7)."""
    qs = [t["question"] for turns in df.turns if turns is not None for t in turns]
    ans = [t["answer"] for turns in df.turns if turns is not None for t in turns]
    words = Counter(w.lower().strip("?.,") for q in qs + ans for w in q.split())
    lens = question_lengths(df)
    return {"data": label, "questions": len(qs), "mean_question_words": float(np.mean(lens)) if lens else np.nan,
            "p90_question_words": float(np.percentile(lens, 90)) if lens else np.nan, "vocabulary": len(words)}


def box_stats(df: pd.DataFrame, label: str) -> dict:
    """Box width/height relative to the image, and expression length (Fig. 8)."""
    w, h, e = box_values(df)
    return {"data": label, "boxes": len(w), "mean_width": float(np.mean(w)) if w else np.nan,
            "mean_height": float(np.mean(h)) if h else np.nan, "mean_expression_words": float(np.mean(e)) if e else np.nan}


def box_values(df: pd.DataFrame) -> tuple[list[float], list[float], list[int]]:
    """Per box its width and height relative to the image; per row with an `expression`, its words (Fig. 8)."""
    w, h, e = [], [], []
    for r in df.itertuples():
        for b in (r.boxes if r.boxes is not None else []):
            w.append((b[2] - b[0]) / r.width)
            h.append((b[3] - b[1]) / r.height)
        expr = getattr(r, "expression", None)
        if isinstance(expr, str):
            e.append(len(expr.split()))
    return w, h, e

