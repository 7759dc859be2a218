"""Retraining recipes: what each adds, the batch shares, and the failure on empty data."""

import numpy as np
import pandas as pd
import pytest

from genixer.filters import select_vqa
from genixer.retraining import RECIPES, EmptyRecipeError, added_rows, arm_plan


def _scored(p_values):
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(p_values))], "judge_p_yes": p_values,
                         "quarantine_reason": [None] * len(p_values)})


SCORED = _scored([0.95, 0.9, 0.8, 0.75, 0.65, 0.6, 0.55, 0.45, 0.2, np.nan])


def _vqa(scored=SCORED, lam=0.7, share=0.34, seed=0):
    """genixer_vqa as the filtering asset makes it: the lambda rows and a fixed hard-band sample."""
    return select_vqa(scored, lam, share, seed)


def test_genixer_vqa_keeps_lambda_rows_and_a_small_fixed_hard_band_sample():
    vqa = _vqa()  # 4 rows >= 0.7; a third of that, rounded: 1 of the 3 band rows (0.5 <= p < 0.7)
    assert vqa.hard_band.sum() == 1 and vqa[vqa.hard_band].judge_p_yes.between(0.5, 0.7).all()
    assert list(_vqa(share=0.01)[lambda d: d.hard_band].index) != [] and _vqa(share=0.0).hard_band.sum() == 0
    s1, s2, up = added_rows(RECIPES["genixer_vqa"], SCORED, vqa, None, 0.7, seed=0)
    assert list(s1.judge_p_yes) == [0.95, 0.9, 0.8, 0.75] and list(s2.sample_id) == list(vqa[vqa.hard_band].sample_id)
    assert up == "genixer_vqa"


def test_lambda_arms_differ_in_their_rows_and_share_the_hard_band():
    scored = _scored([0.95, 0.9, 0.8, 0.75, 0.65, 0.6, 0.58, 0.55, 0.52, 0.45, 0.2, np.nan])
    vqa = _vqa(scored)
    arms = {n: added_rows(RECIPES[n], scored, vqa, None, 0.7, seed=0) for n in ("genixer_vqa", "vqa_lambda_minus_0.1", "vqa_lambda_minus_0.2")}
    rows = {n: set(a[0].sample_id) for n, a in arms.items()}
    # lambda 0.7 < 0.6 < 0.5: each arm holds rows the stricter one does not (before: all three trained on the same rows)
    assert rows["genixer_vqa"] < rows["vqa_lambda_minus_0.1"] < rows["vqa_lambda_minus_0.2"]
    assert len(rows["genixer_vqa"]) == 4 and len(rows["vqa_lambda_minus_0.2"]) == 4 + 5 - 1  # band rows but the one sampled
    hard = {tuple(a[1].sample_id) for a in arms.values()}
    assert len(hard) == 1 and not set(next(iter(hard))) & set().union(*rows.values())  # the same band sample, never in stage 1
    assert "lambda = 0.6" in arms["vqa_lambda_minus_0.1"][2]


def test_scale_ablation_and_raw_keep_counts():
    vqa = _vqa()
    s1, s2, _ = added_rows(RECIPES["vqa_scale_33"], SCORED, vqa, None, 0.7, seed=0)
    assert len(s1) == 1 and len(s2) == 1  # a third of 4 lambda rows, rounded; the band sample untouched
    r1, r2, up = added_rows(RECIPES["raw_vqa"], SCORED, vqa, None, 0.7, seed=0)
    assert (len(r1), len(r2)) == (4, 1) and up == "scored_generations_l"
    assert r1.judge_p_yes.notna().all() and not set(r1.sample_id) & set(r2.sample_id)
    # drawn from every scored row, not the judge's picks
    assert any(set(added_rows(RECIPES["raw_vqa"], SCORED, vqa, None, 0.7, seed=k)[0].sample_id) != {"s0", "s1", "s2", "s3"} for k in range(5))


def test_empty_generated_data_names_the_upstream_asset():
    with pytest.raises(EmptyRecipeError, match="`genixer_rec`"):
        added_rows(RECIPES["genixer_rec"], None, None, pd.DataFrame(), 0.7, seed=0)
    low = _scored([0.2, 0.3])
    with pytest.raises(EmptyRecipeError, match="`genixer_vqa`"):
        added_rows(RECIPES["genixer_vqa"], low, _vqa(low), None, 0.7, seed=0)
    # no row above lambda but a hard-band sample: the recipe trains on the band alone (stage1_rows 0 in its metadata)
    band = _scored([0.2, 0.6])
    s1, s2, _ = added_rows(RECIPES["vqa_scale_33"], band, _vqa(band), None, 0.7, seed=0)
    assert (len(s1), len(s2)) == (0, 1)
    assert added_rows(RECIPES["baseline"], None, None, None, 0.7, seed=0)[2] == ""


def _recs(n, tag):
    return [{"record_id": f"{tag}{i}"} for i in range(n)]


def _share(records, weights, tag):
    w = np.array(weights) / np.sum(weights)
    return float(sum(wi for r, wi in zip(records, w) if r["record_id"].startswith(tag)))


def test_an_arm_reads_the_baselines_batches_and_its_rows_on_top():
    caps, col = _recs(10, "cap"), _recs(90, "col")
    recs, plan, shares = arm_plan(caps, col, [], caption_share=0.5, base_steps=30, batch_size=8, epochs=1.0, seed=3)
    assert plan.batches == 30 and shares == {"captions": 0.5, "collected": 0.5, "added": 0.0}
    base = [[recs[i]["record_id"] for i in plan.batch(m, 8)] for m in range(plan.batches)]
    caps_drawn = sum(r.startswith("cap") for b in base for r in b)
    assert 0.4 < caps_drawn / 240 < 0.6  # half of the base draws are captions
    # 80 + 16 added rows, one pass: ceil(96 / 8) = 12 more steps, and the 30 base batches unchanged, in order
    added = _recs(80, "g1") + _recs(16, "g2")
    recs2, plan2, shares2 = arm_plan(caps, col, added, caption_share=0.5, base_steps=30, batch_size=8, epochs=1.0, seed=3)
    assert plan2.batches == 42 and shares2["added"] == pytest.approx(12 / 42, abs=1e-4)
    batches = [[recs2[i]["record_id"] for i in plan2.batch(m, 8)] for m in range(plan2.batches)]
    assert [b for m, b in enumerate(batches) if not plan2.is_added(m)] == base
    got = sorted(r for m, b in enumerate(batches) if plan2.is_added(m) for r in b)
    assert got == sorted(r["record_id"] for r in added)  # exactly the arm's rows, each once
    # a third of the rows: a third of the added steps (the data-scale arms differ in training on it, as in the paper)
    assert arm_plan(caps, col, _recs(32, "g1"), 0.5, 30, 8, 1.0, 3)[1].batches == 34
    assert arm_plan(caps, col, _recs(32, "g1"), 0.5, 30, 8, 2.0, 3)[1].batches == 38
    assert arm_plan(caps, col, _recs(32, "g1"), 0.5, 30, 8, 1.0, 3, grad_accum=3)[1].added_steps == 6  # whole optimizer steps


def test_the_ceiling_arm_adds_held_back_annotations_of_the_general_tasks():
    held = pd.DataFrame({"sample_id": [f"h{i}" for i in range(8)], "task": ["common_vqa", "rec", "md", "mc_vqa", "adv_vqa", "qca", "md", "rd"],
                         "image_path": ["x.png"] * 7 + [None]})
    s1, s2, up = added_rows(RECIPES["annotated_vqa"], None, None, None, 0.7, seed=0, held_back=held, n_annotated=3)
    assert len(s1) == 3 and set(s1.task) <= {"common_vqa", "md", "mc_vqa", "adv_vqa"} and len(s2) == 0 and up == "held_back_datasets"
    assert len(added_rows(RECIPES["annotated_vqa"], None, None, None, 0.7, seed=0, held_back=held, n_annotated=50)[0]) == 5  # all it has
    with pytest.raises(EmptyRecipeError, match="held_back_datasets"):
        added_rows(RECIPES["annotated_vqa"], None, None, None, 0.7, seed=0, held_back=held.iloc[:0], n_annotated=3)


def test_oracle_diagnostic_keeps_only_oracle_correct_rows():
    scored = SCORED.assign(oracle_correct=[True, False, False, False, True, False, False, True, False, True])
    s1, s2, up = added_rows(RECIPES["oracle_vqa"], scored, None, None, 0.7, seed=0)
    assert list(s1.sample_id) == ["s0", "s4", "s7"] and len(s2) == 0  # s9 has no judge score: quarantined upstream
    assert "oracle" in up
    with pytest.raises(EmptyRecipeError, match="oracle marks correct"):
        added_rows(RECIPES["oracle_vqa"], scored.assign(oracle_correct=False), None, None, 0.7, seed=0)


def test_weighted_pools_rejects_shares_that_do_not_sum_to_one():
    from genixer.training import weighted_pools

    recs, w, shares = weighted_pools([("a", _recs(3, "a"), 0.25), ("b", _recs(1, "b"), 0.75), ("c", [], 0.0)])
    assert _share(recs, w, "a") == pytest.approx(0.25) and _share(recs, w, "b") == pytest.approx(0.75) and shares["c"] == 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        weighted_pools([("a", _recs(3, "a"), 0.5), ("b", [], 0.5)])  # an empty pool's share would be lost silently


def test_generator_mixture_replays_solver_data_at_its_shares():
    from genixer.finetune import generator_mixture

    inst, sol, caps = ([{**r, "task": "t"} for r in _recs(n, tag)] for n, tag in ((40, "inst"), (100, "sol"), (10, "cap")))
    recs, w, shares = generator_mixture(inst, sol, caps, solver_share=0.2, caption_share=0.1)
    assert _share(recs, w, "inst") == pytest.approx(0.7) and _share(recs, w, "sol") == pytest.approx(0.2)
    assert _share(recs, w, "cap") == pytest.approx(0.1) and shares == {"instructions": 0.7, "replay_solver": 0.2, "replay_captions": 0.1}
    assert {r["task"] for r in recs if r["record_id"].startswith("sol")} == {"replay:t"}  # their own learning curve
    recs, w, shares = generator_mixture(inst, [], [], solver_share=0.2, caption_share=0.1)  # nothing to replay: instructions only
    assert len(recs) == 40 and w is None and shares["instructions"] == 1.0  # one pool: uniform draws
