"""Human review of generated data, for when there is no oracle (real images).

The measurement: draw a small random sample per task, have a person mark each row correct or
not, and estimate from those verdicts (a) the share of correct rows before and after the filter
and (b) the filter's precision and recall -- the judge's for general tasks, the REC filter's
(CLIP) for grounding tasks. Steps:

    sample = review_sample(scored, n_per_task=50, seed=0, kept=...)   # stratified draw
    csv, html = write_review(sample, "review/")                        # fill csv's `verdict`, look at html
    done = read_verdicts(csv, sample)                                  # validated verdicts
    tables = review_report(done)                                       # estimates with 95% intervals

Statistics:
- **Stratified by score.** Within a task, rows with a score are cut into equal-size bins by the
  rank of their score (so low and high scores are both reviewed, whatever their share); rows with
  no score (quarantined, or dropped before the CLIP step) are one more stratum. The N rows of a
  task are spread over the strata round-robin (equal allocation, capped by stratum size).
- **Weights.** A row of stratum h stands for N_h / n_h rows of the population (the inverse of its
  inclusion probability), so the weights of a task sum to its size and every estimate below is a
  weighted share, an estimate for the whole scored table rather than for the sample.
- **Intervals.** Wilson 95%. With equal weights it is scipy's exact-count Wilson interval; with
  unequal weights the Wilson formula is evaluated at Kish's effective sample size
  n_eff = (sum w)^2 / sum w^2 (a design-effect approximation: it ignores the precision gained by
  stratifying, so it errs on the wide side).
- **Verdicts.** `unsure` and blank (not reviewed) rows are left out of every share and counted.
"""

from __future__ import annotations

import base64
import html
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import stats

from genixer.images import ImageError, open_rgb
from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS

DEFAULT_SCORES = {**{t: "judge_p_yes" for t in GENERAL_TASKS}, **{t: "clip_score" for t in GROUNDING_TASKS}}
FILTER_NAMES = {"judge_p_yes": "judge", "clip_score": "clip"}
# What a reviewer may write in the `verdict` column (case-insensitive; blank = not reviewed).
VERDICTS = {**dict.fromkeys(["correct", "1", "1.0", "y", "yes"], "correct"),
            **dict.fromkeys(["incorrect", "0", "0.0", "n", "no"], "incorrect"),
            **dict.fromkeys(["unsure", "?"], "unsure")}
NO_SCORE = "no score"
CONFIDENCE = 0.95


# ----------------------------------------------------------------------------- drawing the sample

def _flatten(turns) -> tuple[str, str]:
    """Turns -> (question, answer) text; several turns are numbered so the two columns pair up."""
    turns = list(turns) if turns is not None else []
    if len(turns) == 1:
        return turns[0]["question"], turns[0]["answer"]
    return ("\n".join(f"[{i}] {t['question']}" for i, t in enumerate(turns, 1)),
            "\n".join(f"[{i}] {t['answer']}" for i, t in enumerate(turns, 1)))


def _kept(df: pd.DataFrame, kept) -> pd.Series:
    if kept is not None:
        s = kept.reindex(df.index) if isinstance(kept, pd.Series) else pd.Series(np.asarray(kept), index=df.index)
        if s.isna().any():
            raise ValueError("`kept` does not cover every row of df (align it with df.index)")
        return s.astype(bool)
    if "kept" in df.columns:
        return df["kept"].astype(bool)
    general = sorted(set(df.task) & set(GENERAL_TASKS))
    if general:
        raise ValueError(f"tasks {general}: the judge's decision is not in filter_reason; pass kept= "
                         "(e.g. judge_p_yes >= lambda, or sample_id in genixer_vqa)")
    if "filter_reason" not in df.columns:
        raise ValueError("pass kept= or give df a `kept` or `filter_reason` column")
    return df.filter_reason.isna()


def _allocate(sizes: list[int], n: int) -> list[int]:
    """n draws over strata of these sizes: one per stratum per round, largest strata first."""
    alloc, order = [0] * len(sizes), sorted(range(len(sizes)), key=lambda i: -sizes[i])
    n = min(n, sum(sizes))
    while sum(alloc) < n:
        for i in order:
            if sum(alloc) < n and alloc[i] < sizes[i]:
                alloc[i] += 1
    return alloc


def review_sample(df: pd.DataFrame, n_per_task: int, seed: int, score_col_by_task: dict | None = None,
                  kept=None, n_bins: int = 4) -> pd.DataFrame:
    """n_per_task rows per task (all rows of a smaller task), stratified by score (see the module
    docstring), the same rows for the same table and seed whatever its row order.

    The score is `score_col_by_task[task]` (default: judge_p_yes for general tasks, clip_score for
    grounding tasks). `kept` says whether the filter kept each row: a boolean Series aligned with
    df (or an array); without it, a `kept` column, else filter_reason is null (grounding only: for
    general tasks "kept" is judge_p_yes >= lambda, which filter_reason does not record).
    Returns one row per drawn sample with its stratum, score, kept, weight (N_h / n_h) and
    task_size, and the text (`question`, `answer`), image_path, boxes and points to review."""
    scores = {**DEFAULT_SCORES, **(score_col_by_task or {})}
    df = df.assign(kept=_kept(df, kept)).reset_index(drop=True)
    parts = []
    for task, g in df.groupby("task", sort=True):
        g = g.sort_values("sample_id", kind="stable")
        col = scores.get(task)
        score = g[col].astype(float) if col in g.columns else pd.Series(np.nan, index=g.index)
        has = score.notna()
        k = max(1, min(n_bins, n_per_task - int((~has).any()), int(has.sum())))
        bins = pd.Series(-1, index=g.index)  # -1: no score
        if has.any():
            bins[has] = pd.qcut(score[has].rank(method="first"), k, labels=False)
        labels = {-1: NO_SCORE}
        for b in sorted(set(bins) - {-1}):
            s = score[bins == b]
            labels[b] = f"{col} bin {b + 1}/{k} [{s.min():.3f}, {s.max():.3f}]"
        strata = sorted(set(bins), key=lambda b: (b == -1, b))
        if n_per_task < len(strata) and n_per_task < len(g):
            raise ValueError(f"task {task}: n_per_task={n_per_task} cannot cover its {len(strata)} strata "
                             "(scored and unscored rows); draw at least that many")
        sizes = [int((bins == b).sum()) for b in strata]
        rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
        drawn = []
        for b, size, n in zip(strata, sizes, _allocate(sizes, n_per_task)):
            rows = g[bins == b]
            pick = rows.iloc[np.sort(rng.choice(size, n, replace=False))]
            drawn.append(pick.assign(stratum=labels[b], weight=size / n, stratum_size=size))
        out = pd.concat(drawn)
        out = out.iloc[rng.permutation(len(out))]  # no score order for the reviewer to anchor on
        parts.append(out.assign(score_name=col, score=score.loc[out.index], task_size=len(g)))
    s = pd.concat(parts, ignore_index=True)
    qa = [_flatten(t) for t in s.turns]
    s = s.assign(question=[q for q, _ in qa], answer=[a for _, a in qa])
    cols = ["sample_id", "task", "stratum", "stratum_size", "weight", "task_size", "score_name", "score", "kept",
            "image_path", "question", "answer", "boxes", "points"]
    return s[cols + (["quarantine_reason"] if "quarantine_reason" in s.columns else [])]


# ----------------------------------------------------------------------------- the review files

def _listify(v) -> list:
    return [list(map(float, x)) for x in (v if v is not None else [])]


def thumbnail_png(row: dict, size: int = 256) -> bytes:
    """The row's image scaled to `size` on its long side, boxes (red, numbered in text order) and
    points (blue) drawn on it, as PNG bytes."""
    img = open_rgb(row["image_path"])
    s = size / max(img.size)
    img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for i, b in enumerate(_listify(row.get("boxes")), 1):
        draw.rectangle([v * s for v in b], outline=(255, 0, 0), width=2)
        draw.text((b[0] * s + 3, b[1] * s + 2), str(i), fill=(255, 0, 0))
    for x, y in _listify(row.get("points")):
        draw.ellipse((x * s - 4, y * s - 4, x * s + 4, y * s + 4), outline=(0, 0, 255), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


HOW_TO = ("Fill the <code>verdict</code> column of the CSV: <b>correct</b>, <b>incorrect</b> or <b>unsure</b> "
          "(case-insensitive; 1/0, y/n, yes/no also work). Leave it blank for rows you did not review. "
          "<code>note</code> is free text.")


def write_review(sample: pd.DataFrame, out_dir: str | Path, blind: bool = False, thumb: int = 256,
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Write review.csv (the rows with empty `verdict` and `note` columns) and review.html (a
    self-contained contact sheet: image thumbnails inlined as base64 PNG with boxes and points
    drawn, the text, score, kept flag and sample_id). `blind` leaves the score, kept flag and
    stratum out of both files, so the reviewer is not anchored by the filter. An existing CSV (it
    may hold verdicts) is only replaced with `overwrite`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out_dir / "review.csv", out_dir / "review.html"
    if csv_path.exists() and not overwrite:
        raise FileExistsError(f"{csv_path} exists and may hold verdicts; pass overwrite=True to replace it")
    shown = [] if blind else ["score_name", "score", "kept", "stratum", "weight"]
    csv = sample.assign(verdict="", note="", boxes=[json.dumps(_listify(b)) for b in sample.boxes],
                        points=[json.dumps(_listify(p)) for p in sample.points])
    csv[["sample_id", "task", "verdict", "note", "question", "answer", *shown, "image_path", "boxes", "points"]].to_csv(csv_path, index=False)

    e = html.escape
    cards = []
    for r in sample.to_dict("records"):
        try:
            img = f'<img src="data:image/png;base64,{base64.b64encode(thumbnail_png(r, thumb)).decode()}">'
        except ImageError as err:
            img = f'<div class="err">{e(str(err))}</div>'
        meta = f"<b>{e(str(r['sample_id']))}</b> · {e(str(r['task']))}"
        if not blind:
            score = "none" if pd.isna(r["score"]) else f"{r['score']:.3f}"
            meta += f" · {e(str(r['score_name']))} = {score} · kept: {'yes' if r['kept'] else 'no'}"
        text = f"<p class=q>Q: {e(str(r['question']))}</p><p class=a>A: {e(str(r['answer']))}</p>"
        if isinstance(r.get("quarantine_reason"), str):
            text += f"<p class=err>quarantined: {e(r['quarantine_reason'])}</p>"
        cards.append(f'<div class="card" id="{e(str(r["sample_id"]))}">{img}<div><p>{meta}</p>{text}</div></div>')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Genixer review</title><style>"
            "body{font-family:sans-serif;margin:1em} .card{display:flex;gap:1em;border-bottom:1px solid #ccc;padding:.5em 0}"
            " p{margin:.2em 0;white-space:pre-wrap} .a{color:#035} .err{color:#a00}</style></head><body>"
            f"<h1>Review sample: {len(sample)} rows</h1><p>{HOW_TO}</p>{''.join(cards)}</body></html>")
    html_path.write_text(page, encoding="utf-8")
    return csv_path, html_path


def read_verdicts(csv_path: str | Path, sample: pd.DataFrame) -> pd.DataFrame:
    """The sample with the reviewer's `verdict` (correct / incorrect / unsure; missing (NaN) where it
    was left blank or the row is missing from the CSV = not reviewed), `note`, and `correct`
    (True / False, NA when unsure or not reviewed). Weights, scores and kept come from `sample`,
    never from the edited CSV. Raises ValueError naming the CSV lines with an unknown verdict, a
    sample_id not in the sample, or a sample_id given twice."""
    v = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"sample_id", "verdict"} - set(v.columns)
    if missing:
        raise ValueError(f"{csv_path}: no column(s) {sorted(missing)}")
    v = v.assign(sample_id=v.sample_id.str.strip(), line=v.index + 2,  # line 1 is the header
                 note=v["note"] if "note" in v.columns else "")
    unknown = v[~v.sample_id.isin(set(sample.sample_id))]
    if len(unknown):
        raise ValueError(f"{csv_path}: sample_id not in the review sample: "
                         + ", ".join(f"line {r.line}: {r.sample_id!r}" for r in unknown.itertuples()))
    dup = v[v.sample_id.duplicated(keep=False)]
    if len(dup):
        raise ValueError(f"{csv_path}: sample_id given more than once: "
                         + ", ".join(f"line {r.line}: {r.sample_id!r}" for r in dup.itertuples()))
    raw = v.verdict.str.strip().str.lower()
    verdict = raw.map(VERDICTS)
    bad = v[(raw != "") & verdict.isna()]
    if len(bad):
        raise ValueError(f"{csv_path}: unknown verdict(s) "
                         + ", ".join(f"line {r.line} ({r.sample_id}): {r.verdict!r}" for r in bad.itertuples())
                         + f"; write one of correct / incorrect / unsure (also {', '.join(k for k in VERDICTS if len(k) < 4)}) or leave blank")
    v = v.assign(verdict=verdict.where(raw != "", None))[["sample_id", "verdict", "note"]]
    out = sample.drop(columns=["verdict", "note", "correct"], errors="ignore").merge(v, on="sample_id", how="left")
    correct = out.verdict.map({"correct": True, "incorrect": False})
    return out.assign(note=out.note.fillna(""), correct=pd.array(correct, dtype="boolean"))


# ----------------------------------------------------------------------------- the estimates

def wilson(p: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a share p observed over n (n may be an effective, non-integer size)."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z / d * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def weighted_share(x, w, prefix: str) -> dict:
    """Weighted share of True in x (sum w*x / sum w) with its Wilson interval (module docstring);
    also the counts behind it: rows n, rows true k, effective size n_eff."""
    x, w = np.asarray(x, dtype=bool), np.asarray(w, dtype=float)
    n, k = len(x), int(x.sum())
    if n == 0:
        return {f"{prefix}_n": 0, f"{prefix}_k": 0, prefix: np.nan, f"{prefix}_n_eff": 0.0,
                f"{prefix}_ci_low": np.nan, f"{prefix}_ci_high": np.nan}
    p = float((w * x).sum() / w.sum())
    if np.allclose(w, w[0]):
        n_eff, ci = float(n), stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        lo, hi = float(ci.low), float(ci.high)
    else:
        n_eff = float(w.sum() ** 2 / (w * w).sum())
        lo, hi = wilson(p, n_eff)
    return {f"{prefix}_n": n, f"{prefix}_k": k, prefix: p, f"{prefix}_n_eff": n_eff, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi}


def _groups(s: pd.DataFrame):
    """(task label, rows) per task, then all tasks together."""
    yield from s.groupby("task", sort=True)
    yield "all", s


def review_report(s: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Human-measured quality from a reviewed sample (read_verdicts' output). Only rows marked
    correct or incorrect count; unsure and not-reviewed rows are counted beside.

    - `correctness`: per task and over all tasks, the weighted share of correct rows among all
      rows (`raw_correct`) and among the rows the filter kept (`kept_correct`), each with its rows
      (`_n`), correct rows (`_k`), effective size and Wilson interval, and the verdict counts.
    - `filters`: per task and pooled per filter (judge for general tasks, clip for grounding), the
      filter's precision (weighted share correct among kept) and recall (weighted share kept among
      correct), with the confusion counts. `over="all rows"` is the whole filter; `over="scored
      rows"` only rows with a score, i.e. the decision the judge or the CLIP step itself made
      (for grounding, rows dropped for format or size before CLIP are left out)."""
    decided = s.correct.notna()
    rows = []
    for task, g in _groups(s):
        d = g[decided.loc[g.index]]
        k = d[d.kept]
        rows.append({"task": task, "population": int(g.groupby("task").task_size.first().sum()), "sampled": len(g),
                     "correct_n": int((g.verdict == "correct").sum()), "incorrect_n": int((g.verdict == "incorrect").sum()),
                     "unsure_n": int((g.verdict == "unsure").sum()), "not_reviewed_n": int(g.verdict.isna().sum()),
                     **weighted_share(d.correct, d.weight, "raw_correct"), **weighted_share(k.correct, k.weight, "kept_correct")})
    correctness = pd.DataFrame(rows)

    s = s.assign(filter=[FILTER_NAMES.get(c, c) if isinstance(c, str) else "filter" for c in s.score_name])
    rows = []
    groups = [(f, t, g) for f, fg in s.groupby("filter", sort=True) for t, g in _groups(fg)]
    for f, task, g in groups:
        for over, part in (("all rows", g), ("scored rows", g[g.score.notna()])):
            d = part[decided.loc[part.index]]
            keep, ok, w = d.kept.to_numpy(bool), d.correct.to_numpy(bool), d.weight.to_numpy(float)
            rows.append({"filter": f, "task": task, "over": over, "n": len(d),
                         "tp": int((keep & ok).sum()), "fp": int((keep & ~ok).sum()),
                         "fn": int((~keep & ok).sum()), "tn": int((~keep & ~ok).sum()),
                         **weighted_share(ok[keep], w[keep], "precision"),
                         **weighted_share(keep[ok], w[ok], "recall")})
    return {"correctness": correctness, "filters": pd.DataFrame(rows)}


# ----------------------------------------------------------------------------- the filter's gate

GATE_WORSE, GATE_NOT_WORSE, GATE_NOT_MEASURED = "worse", "not worse", "not measured"


def filter_gate(done: pd.DataFrame, tasks) -> dict:
    """The filter's quality gate from a reviewed sample (read_verdicts' output) of `tasks`: the weighted share of
    correct rows among the reviewed kept rows (`kept_correct`, the filter's precision) against that among all reviewed
    rows (`raw_correct`), each with its Wilson 95% interval (weighted_share). `verdict` is "worse" when the kept rows'
    interval lies wholly below the raw rows' (kept rows are a subset of the raw rows, so two intervals apart is a
    conservative test: the gate fails only on clear evidence), "not worse" otherwise, "not measured" when no reviewed
    row of these tasks is marked correct or incorrect, or none of those is kept. Unsure and blank rows are left out."""
    part = done[done.task.isin(set(tasks)) & done.correct.notna()]
    kept = part[part.kept.astype(bool)]
    out = {**weighted_share(part.correct.astype(bool), part.weight, "raw_correct"),
           **weighted_share(kept.correct.astype(bool), kept.weight, "kept_correct")}
    if out["raw_correct_n"] == 0 or out["kept_correct_n"] == 0:
        verdict = GATE_NOT_MEASURED
    elif out["kept_correct_ci_high"] < out["raw_correct_ci_low"]:
        verdict = GATE_WORSE
    else:
        verdict = GATE_NOT_WORSE
    return {"verdict": verdict, **out}
