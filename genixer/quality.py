"""Quality of generated data, measured with the world's oracle (the paper's Tab. 2 and 4,
Fig. 7 and 8). Evaluation only: nothing here feeds a filter."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from genixer.world import Scene, check


def oracle_column(df: pd.DataFrame, scenes: dict[str, Scene]) -> pd.Series:
    """correct / incorrect / unparseable for every row (quarantined rows are unparseable)."""
    out = []
    for r in df.to_dict("records"):
        turns = r.get("turns")
        if isinstance(r.get("quarantine_reason"), str) or turns is None or len(turns) == 0:
            out.append("unparseable")
        else:
            out.append(check({"task": r["task"], "turns": list(turns)}, scenes[r["image_id"]]).status)
    return pd.Series(out, index=df.index)


def correctness_table(raw: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """Per task: oracle correctness of raw and of filtered rows, and the lift."""
    rows = []
    for task in sorted(set(raw.task)):
        r, k = raw[raw.task == task], kept[kept.task == task]
        rc = float((r.oracle == "correct").mean()) if len(r) else np.nan
        kc = float((k.oracle == "correct").mean()) if len(k) else np.nan
        rows.append({"task": task, "raw": len(r), "raw_correct": rc, "kept": len(k), "kept_correct": kc, "lift": kc - rc})
    rows.append({"task": "all", "raw": len(raw), "raw_correct": float((raw.oracle == "correct").mean()) if len(raw) else np.nan,
                 "kept": len(kept), "kept_correct": float((kept.oracle == "correct").mean()) if len(kept) else np.nan})
    rows[-1]["lift"] = rows[-1]["kept_correct"] - rows[-1]["raw_correct"]
    return pd.DataFrame(rows)


def filter_noise(raw_correct: float, n_kept: int) -> float:
    """Two binomial standard errors of a kept share drawn at the raw rate: a filter's lift must exceed
    this to count as a rise, and a drop beyond it is a real drop."""
    return 2 * (raw_correct * (1 - raw_correct) / max(n_kept, 1)) ** 0.5


def precision_recall(keep: pd.Series, correct: pd.Series) -> dict:
    """A filter's decisions against the oracle: precision of what it keeps, recall of what is correct."""
    keep, correct = keep.astype(bool), correct.astype(bool)
    tp = int((keep & correct).sum())
    return {"n": int(len(keep)), "kept": int(keep.sum()), "correct": int(correct.sum()),
            "precision": tp / keep.sum() if keep.sum() else np.nan, "recall": tp / correct.sum() if correct.sum() else np.nan}


def text_stats(df: pd.DataFrame, label: str) -> dict:
    """Question length (words) and vocabulary of the questions and answers (Fig. 7)."""
    qs = [t["question"] for turns in df.turns if turns is not None for t in turns]
    ans = [t["answer"] for turns in df.turns if turns is not None for t in turns]
    words = Counter(w.lower().strip("?.,") for q in qs + ans for w in q.split())
    lens = [len(q.split()) for q in qs]
    return {"data": label, "questions": len(qs), "mean_question_words": float(np.mean(lens)) if lens else np.nan,
            "p90_question_words": float(np.percentile(lens, 90)) if lens else np.nan, "vocabulary": len(words)}


def box_stats(df: pd.DataFrame, label: str) -> dict:
    """Box width/height relative to the image, and expression length (Fig. 8)."""
    w, h, e = [], [], []
    for r in df.itertuples():
        for b in (r.boxes if r.boxes is not None else []):
            w.append((b[2] - b[0]) / r.width)
            h.append((b[3] - b[1]) / r.height)
        expr = getattr(r, "expression", None)
        if isinstance(expr, str):
            e.append(len(expr.split()))
    return {"data": label, "boxes": len(w), "mean_width": float(np.mean(w)) if w else np.nan,
            "mean_height": float(np.mean(h)) if h else np.nan, "mean_expression_words": float(np.mean(e)) if e else np.nan}
