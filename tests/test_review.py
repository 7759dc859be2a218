"""The human review sample: stratified draw, the review files, verdict validation and the report."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from genixer.review import read_verdicts, review_report, review_sample, wilson, write_review


def _image(tmp_path, name, colour):
    path = tmp_path / f"{name}.png"
    Image.new("RGB", (64, 48), colour).save(path)
    return str(path)


@pytest.fixture
def scored(tmp_path):
    """40 common_vqa rows (36 judged, 4 quarantined), 6 two-turn md rows, 30 rec rows (24 reached
    CLIP, 6 dropped for size). kept: P(Yes) >= 0.5 for general rows, filter_reason null for rec."""
    imgs = [_image(tmp_path, f"im{i}", c) for i, c in enumerate([(0, 160, 0), (0, 120, 0), (0, 80, 0)])]
    rows = []
    base = {"width": 64, "height": 48, "points": None, "source": "gen", "split": "train", "quarantine_reason": None,
            "judge_p_yes": np.nan, "clip_score": np.nan, "filter_reason": None}
    for i, p in enumerate(np.linspace(0.025, 0.975, 36)):
        rows.append({**base, "sample_id": f"cv-{i:03d}", "task": "common_vqa", "judge_p_yes": p, "boxes": None,
                     "turns": [{"question": f"What colour is it? ({i})", "answer": "green"}]})
    for i in range(4):
        rows.append({**base, "sample_id": f"cv-q{i}", "task": "common_vqa", "turns": None, "boxes": None,
                     "quarantine_reason": "parse: no answer"})
    for i in range(6):
        rows.append({**base, "sample_id": f"md-{i}", "task": "md", "judge_p_yes": 0.1 + 0.15 * i, "boxes": None,
                     "turns": [{"question": "Is this <script>alert(1)</script> safe?", "answer": "yes"},
                               {"question": "Why?", "answer": "It is plain text & escaped."}]})
    for i, c in enumerate(np.linspace(0.1, 0.9, 24)):
        rows.append({**base, "sample_id": f"rec-{i:03d}", "task": "rec", "clip_score": c, "boxes": [[8.0, 8.0, 40.0, 30.0]],
                     "filter_reason": None if c >= 0.5 else f"3-clip: {c:.3f} < 0.500",
                     "turns": [{"question": "Where is the square?", "answer": "[0.125,0.167,0.625,0.625]"}]})
    for i in range(6):
        rows.append({**base, "sample_id": f"rec-s{i}", "task": "rec", "boxes": [[1.0, 1.0, 5.0, 5.0]],
                     "filter_reason": "2-small: box 4x4 px under 5.0 px",
                     "turns": [{"question": "Where is the dot?", "answer": "[0.0,0.0,0.1,0.1]"}]})
    df = pd.DataFrame(rows)
    df["image_id"] = [f"im{i % 3}" for i in range(len(df))]
    df["image_path"] = [imgs[i % 3] for i in range(len(df))]
    general = df.task.isin(["common_vqa", "md"])
    kept = (general & (df.judge_p_yes >= 0.5)) | (~general & df.filter_reason.isna())
    return df, kept


def test_sample_is_stratified_weighted_and_deterministic(scored):
    df, kept = scored
    s = review_sample(df, n_per_task=12, seed=3, kept=kept)
    assert s.groupby("task").size().to_dict() == {"common_vqa": 12, "md": 6, "rec": 12}
    # every stratum of every task is reviewed, and the weights of a task add up to its size
    assert s.groupby("task").weight.sum().round(9).to_dict() == {"common_vqa": 40, "md": 6, "rec": 30}
    assert (s.groupby("task").task_size.first() == df.groupby("task").size()).all()
    cv = s[s.task == "common_vqa"]
    assert {l.split(" [")[0] for l in cv.stratum} == {"no score"} | {f"judge_p_yes bin {b}/4" for b in range(1, 5)}
    assert (cv.stratum == "no score").sum() == 2
    assert cv.score.min() < 0.25 and cv.score.max() > 0.75  # low and high scores are both there
    # equal allocation, round-robin: bins of 9, 9, 9, 9 and 4 rows get 3, 3, 2, 2, 2
    per = cv.groupby("stratum").agg(n=("weight", "size"), w=("weight", "first"), N=("stratum_size", "first"))
    assert sorted(per.n) == [2, 2, 2, 3, 3] and (per.w == per.N / per.n).all()
    assert cv[cv.stratum == "no score"].weight.eq(2).all() and cv[cv.stratum == "no score"].score.isna().all()
    rec = s[s.task == "rec"]
    assert rec.score_name.eq("clip_score").all() and (rec.kept == rec.score.ge(0.5)).all()
    assert (rec.stratum == "no score").sum() >= 2 and not rec[rec.stratum == "no score"].kept.any()
    md = s[s.task == "md"]
    assert md.weight.eq(1).all() and md.question.str.startswith("[1] ").all() and "\n[2] Why?" in md.question.iloc[0]
    # the same rows for the same seed, whatever the row order of the table; other rows for another seed
    shuffled = df.sample(frac=1, random_state=7)
    again = review_sample(shuffled, n_per_task=12, seed=3, kept=kept)
    assert again.sample_id.tolist() == s.sample_id.tolist()
    other = review_sample(df, n_per_task=12, seed=4, kept=kept)
    assert set(other.sample_id) != set(s.sample_id)


def test_sample_kept_sources_and_errors(scored):
    df, kept = scored
    rec = df[df.task == "rec"]
    s = review_sample(rec, n_per_task=8, seed=0)  # kept derived from filter_reason
    assert (s.kept == s.sample_id.map(rec.set_index("sample_id").filter_reason.isna())).all()
    with pytest.raises(ValueError, match="kept="):  # general tasks: filter_reason does not hold the judge's call
        review_sample(df, n_per_task=8, seed=0)
    with pytest.raises(ValueError, match="strata"):
        review_sample(df, n_per_task=1, seed=0, kept=kept)


def test_write_review_files(scored, tmp_path):
    df, kept = scored
    s = review_sample(df, n_per_task=6, seed=0, kept=kept)
    csv_path, html_path = write_review(s, tmp_path / "review")
    csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["sample_id", "task", "verdict", "note", "question", "answer", "score_name", "score",
                                 "kept", "stratum", "weight", "image_path", "boxes", "points"]
    assert csv.sample_id.tolist() == s.sample_id.tolist() and (csv.verdict == "").all() and (csv.note == "").all()
    page = html_path.read_text()
    assert all(f'id="{sid}"' in page for sid in s.sample_id)
    assert page.count('<img src="data:image/png;base64,') == len(s)
    assert "&lt;script&gt;" in page and "<script>" not in page and "&amp; escaped" in page
    # the rec thumbnails are the image scaled x4 with the box drawn in red
    b64 = re.search(r'id="rec-\d+"><img src="data:image/png;base64,([^"]+)"', page).group(1)
    thumb = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert thumb.size == (256, 192) and thumb.getpixel((32, 70)) == (255, 0, 0) and thumb.getpixel((100, 170)) != (255, 0, 0)
    with pytest.raises(FileExistsError):
        write_review(s, tmp_path / "review")
    blind_csv, blind_html = write_review(s, tmp_path / "blind", blind=True)
    assert "score" not in pd.read_csv(blind_csv).columns and "kept:" not in blind_html.read_text()


def _fill(csv_path, verdicts: dict):
    csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    csv["verdict"] = csv.sample_id.map(verdicts).fillna("")
    csv.to_csv(csv_path, index=False)


def test_report_unweighted_by_hand(tmp_path):
    """10 rows, all sampled (weight 1): P(Yes) 0.05 .. 0.95, kept iff >= 0.5, correct iff > 0.3;
    the 0.05 row is unsure and the 0.15 row is not reviewed."""
    img = _image(tmp_path, "a", (10, 10, 10))
    p = np.round(np.arange(0.05, 1.0, 0.1), 2)
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(10)], "task": "common_vqa", "image_path": img, "boxes": None,
                       "points": None, "judge_p_yes": p, "turns": [[{"question": "q", "answer": "a"}]] * 10})
    s = review_sample(df, n_per_task=10, seed=0, kept=df.judge_p_yes >= 0.5)
    csv_path, _ = write_review(s, tmp_path / "r")
    spell = {True: ["Correct", "Y", "1", "yes"], False: ["incorrect", "n", "0", "NO"]}
    verdicts = {f"s{i}": spell[p[i] > 0.3][i % 4] for i in range(2, 10)} | {"s0": "Unsure"}
    _fill(csv_path, verdicts)
    done = read_verdicts(csv_path, s)
    assert done.verdict.value_counts().to_dict() == {"correct": 7, "unsure": 1, "incorrect": 1}
    assert done.set_index("sample_id").verdict.isna().loc[["s1"]].all() and done.verdict.isna().sum() == 1
    rep = review_report(done)
    c = rep["correctness"].set_index("task").loc["common_vqa"]
    assert (c.unsure_n, c.not_reviewed_n, c.raw_correct_n, c.raw_correct_k, c.kept_correct_n, c.kept_correct_k) == (1, 1, 8, 7, 5, 5)
    assert c.raw_correct == pytest.approx(7 / 8) and c.kept_correct == 1.0 and c.raw_correct_n_eff == 8
    ci = stats.binomtest(7, 8).proportion_ci(method="wilson")
    assert (c.raw_correct_ci_low, c.raw_correct_ci_high) == pytest.approx((ci.low, ci.high))
    f = rep["filters"].set_index(["filter", "task", "over"]).loc[("judge", "common_vqa", "all rows")]
    assert (f.n, f.tp, f.fp, f.fn, f.tn) == (8, 5, 0, 2, 1)
    assert f.precision == 1.0 and f.recall == pytest.approx(5 / 7) and f.recall_n == 7


def test_report_weighted_by_hand(scored, tmp_path):
    """common_vqa, n = 12: bins 1-2 (P(Yes) < 0.5, 3 rows each, weight 3) incorrect; bins 3-4
    (kept, 2 rows each, weight 4.5) correct but one; the unscored rows (2, weight 2) correct."""
    df, kept = scored
    s = review_sample(df, n_per_task=12, seed=3, kept=kept)
    cv = s[s.task == "common_vqa"].sort_values("sample_id")
    wrong_kept = cv[cv.kept].sample_id.iloc[0]
    truth = {r.sample_id: "correct" if (np.isnan(r.score) or r.score > 0.5) and r.sample_id != wrong_kept else "incorrect"
             for r in cv.itertuples()}
    csv_path, _ = write_review(s, tmp_path / "r")
    _fill(csv_path, truth)  # md and rec rows left blank: not reviewed
    rep = review_report(read_verdicts(csv_path, s))
    c = rep["correctness"].set_index("task")
    assert c.loc["common_vqa", "raw_correct"] == pytest.approx(17.5 / 40)  # (3 * 4.5 + 2 * 2) / 40
    assert c.loc["common_vqa", "kept_correct"] == pytest.approx(13.5 / 18)
    n_eff = 40 ** 2 / (6 * 3 ** 2 + 4 * 4.5 ** 2 + 2 * 2 ** 2)
    assert c.loc["common_vqa", "raw_correct_n_eff"] == pytest.approx(n_eff)
    z, q = 1.959963984540054, 17.5 / 40
    centre, half = (q + z * z / (2 * n_eff)) / (1 + z * z / n_eff), z * np.sqrt(q * (1 - q) / n_eff + z * z / (4 * n_eff ** 2)) / (1 + z * z / n_eff)
    assert (c.loc["common_vqa", "raw_correct_ci_low"], c.loc["common_vqa", "raw_correct_ci_high"]) == pytest.approx((centre - half, centre + half))
    assert (c.loc["md", "not_reviewed_n"], c.loc["rec", "not_reviewed_n"], c.loc["all", "population"]) == (6, 12, 76)
    assert c.loc["all", "raw_correct"] == pytest.approx(17.5 / 40)  # only common_vqa was reviewed
    assert np.isnan(c.loc["rec", "raw_correct"]) and c.loc["rec", "raw_correct_n"] == 0
    f = rep["filters"].set_index(["filter", "task", "over"])
    a = f.loc[("judge", "common_vqa", "all rows")]
    assert (a.n, a.tp, a.fp, a.fn, a.tn) == (12, 3, 1, 2, 6)
    assert a.precision == pytest.approx(13.5 / 18) and a.recall == pytest.approx(13.5 / 17.5)
    sc = f.loc[("judge", "common_vqa", "scored rows")]  # the judge's own decision: unscored rows left out
    assert (sc.n, sc.fn) == (10, 0) and sc.recall == 1.0 and sc.precision == pytest.approx(13.5 / 18)
    assert f.loc[("clip", "rec", "all rows")].n == 0


def test_wilson_matches_scipy_on_counts():
    for k, n in [(0, 5), (3, 10), (17, 20), (40, 40)]:
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k / n, n) == pytest.approx((ci.low, ci.high))


def test_bad_verdicts_and_ids_raise(scored, tmp_path):
    df, kept = scored
    s = review_sample(df, n_per_task=4, seed=0, kept=kept)
    csv_path, _ = write_review(s, tmp_path / "r")
    ids = s.sample_id.tolist()
    _fill(csv_path, {ids[0]: "correct", ids[1]: "maybe", ids[2]: "wrong"})
    with pytest.raises(ValueError, match="unknown verdict") as e:
        read_verdicts(csv_path, s)
    assert f"line 3 ({ids[1]}): 'maybe'" in str(e.value) and f"line 4 ({ids[2]}): 'wrong'" in str(e.value)
    csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    csv.loc[1, ["sample_id", "verdict"]] = ["not-a-sample", "correct"]
    csv.loc[2, "verdict"] = ""
    csv.to_csv(csv_path, index=False)
    with pytest.raises(ValueError, match=r"not in the review sample: line 3: 'not-a-sample'"):
        read_verdicts(csv_path, s)
    csv.loc[1, "sample_id"] = ids[0]
    csv.to_csv(csv_path, index=False)
    with pytest.raises(ValueError, match="more than once"):
        read_verdicts(csv_path, s)
    # a row deleted from the CSV is not reviewed, like a blank verdict
    csv.drop(index=1).to_csv(csv_path, index=False)
    done = read_verdicts(csv_path, s)
    assert done.verdict.notna().sum() == 1 and done.verdict.isna().sum() == len(s) - 1


def test_fig7_fig8_values():
    import pandas as pd

    from genixer.quality import box_values, question_lengths

    df = pd.DataFrame({"turns": [[{"question": "What colour is it?", "answer": "red"}, {"question": "Why?", "answer": "x"}], None],
                       "boxes": [[[0.0, 0.0, 50.0, 20.0]], None], "width": [100, 100], "height": [40, 40],
                       "expression": ["the red car", None]})
    assert question_lengths(df) == [4, 1]
    w, h, e = box_values(df)
    assert w == [0.5] and h == [0.5] and e == [3]
