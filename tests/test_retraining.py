"""Retraining recipes: what each adds, the batch shares, and the failure on empty data."""

import numpy as np
import pandas as pd
import pytest

from genixer.retraining import RECIPES, EmptyRecipeError, added_rows, mixture


def _scored(p_values):
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(p_values))], "judge_p_yes": p_values,
                         "quarantine_reason": [None] * len(p_values)})


SCORED = _scored([0.95, 0.9, 0.8, 0.75, 0.65, 0.6, 0.55, 0.45, 0.2, np.nan])


def test_genixer_vqa_splits_lambda_rows_and_hard_band():
    s1, s2, up = added_rows(RECIPES["genixer_vqa"], SCORED, None, 0.7, seed=0)
    assert list(s1.judge_p_yes) == [0.95, 0.9, 0.8, 0.75] and list(s2.judge_p_yes) == [0.65, 0.6, 0.55]
    assert up == "genixer_vqa"


def test_lambda_ablation_moves_the_threshold_and_shrinks_the_band():
    s1, s2, up = added_rows(RECIPES["vqa_lambda_minus_0.1"], SCORED, None, 0.7, seed=0)
    assert list(s1.judge_p_yes) == [0.95, 0.9, 0.8, 0.75, 0.65, 0.6] and list(s2.judge_p_yes) == [0.55]
    assert "lambda = 0.6" in up


def test_scale_ablation_and_raw_keep_counts():
    s1, s2, _ = added_rows(RECIPES["vqa_scale_33"], SCORED, None, 0.7, seed=0)
    assert len(s1) == 1 and len(s2) == 3  # a third of 4 stage-1 rows, rounded; the band untouched
    r1, r2, up = added_rows(RECIPES["raw_vqa"], SCORED, None, 0.7, seed=0)
    assert (len(r1), len(r2)) == (4, 3) and up == "scored_generations_l"
    assert r1.judge_p_yes.notna().all() and not set(r1.sample_id) & set(r2.sample_id)
    # drawn from every scored row, not the judge's picks
    assert any(set(added_rows(RECIPES["raw_vqa"], SCORED, None, 0.7, seed=k)[0].sample_id) != {"s0", "s1", "s2", "s3"} for k in range(5))


def test_empty_generated_data_names_the_upstream_asset():
    with pytest.raises(EmptyRecipeError, match="`genixer_rec`"):
        added_rows(RECIPES["genixer_rec"], None, pd.DataFrame(), 0.7, seed=0)
    with pytest.raises(EmptyRecipeError, match="`genixer_vqa`"):
        added_rows(RECIPES["genixer_vqa"], _scored([0.2, 0.3]), None, 0.7, seed=0)
    # no row above lambda but a hard band: the recipe trains on the band alone (stage1_rows 0 in its metadata)
    s1, s2, _ = added_rows(RECIPES["vqa_scale_33"], _scored([0.2, 0.6]), None, 0.7, seed=0)
    assert (len(s1), len(s2)) == (0, 1)
    assert added_rows(RECIPES["baseline"], None, None, 0.7, seed=0)[2] == ""


def _recs(n, tag):
    return [{"record_id": f"{tag}{i}"} for i in range(n)]


def _share(records, weights, tag):
    w = np.array(weights) / np.sum(weights)
    return float(sum(wi for r, wi in zip(records, w) if r["record_id"].startswith(tag)))


def test_mixture_shares():
    caps, col = _recs(10, "cap"), _recs(90, "col")
    recs, w, shares = mixture(caps, col, [], [], caption_share=0.5, added_share=0.3)
    assert _share(recs, w, "cap") == pytest.approx(0.5) and shares["generated_stage1"] == 0.0
    # stage-1 rows take added_share of all batches, displacing captions; the band joins collected by concatenation
    recs, w, shares = mixture(caps, col, _recs(5, "g1"), _recs(10, "g2"), caption_share=0.5, added_share=0.3)
    assert _share(recs, w, "g1") == pytest.approx(0.3) and _share(recs, w, "cap") == pytest.approx(0.2)
    assert _share(recs, w, "g2") == pytest.approx(0.5 * 10 / 100) and _share(recs, w, "col") == pytest.approx(0.5 * 90 / 100)
    # a fixed share for the stage-2 rows (genixer_rec with rec_share)
    recs, w, _ = mixture(caps, col, [], _recs(10, "g2"), caption_share=0.5, added_share=0.3, rec_share=0.1)
    assert _share(recs, w, "g2") == pytest.approx(0.1) and _share(recs, w, "col") == pytest.approx(0.4)
    with pytest.raises(ValueError, match="do not fit"):
        mixture(caps, col, [], _recs(10, "g2"), caption_share=0.5, added_share=0.3, rec_share=0.7)


def test_oracle_diagnostic_keeps_only_oracle_correct_rows():
    scored = SCORED.assign(oracle_correct=[True, False, False, False, True, False, False, True, False, True])
    s1, s2, up = added_rows(RECIPES["oracle_vqa"], scored, None, 0.7, seed=0)
    assert list(s1.sample_id) == ["s0", "s4", "s7"] and len(s2) == 0  # s9 has no judge score: quarantined upstream
    assert "oracle" in up
    with pytest.raises(EmptyRecipeError, match="oracle marks correct"):
        added_rows(RECIPES["oracle_vqa"], scored.assign(oracle_correct=False), None, 0.7, seed=0)


def test_weighted_pools_rejects_shares_that_do_not_sum_to_one():
    from genixer.training import weighted_pools

    recs, w, shares = weighted_pools([("a", _recs(3, "a"), 0.25), ("b", _recs(1, "b"), 0.75), ("c", [], 0.0)])
    assert _share(recs, w, "a") == pytest.approx(0.25) and _share(recs, w, "b") == pytest.approx(0.75) and shares["c"] == 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        weighted_pools([("a", _recs(3, "a"), 0.5), ("b", [], 0.5)])  # an empty pool's share would be lost silently


def test_generator_mixture_replays_solver_data_at_its_shares():
    from genixer.generators import generator_mixture

    inst, sol, caps = ([{**r, "task": "t"} for r in _recs(n, tag)] for n, tag in ((40, "inst"), (100, "sol"), (10, "cap")))
    recs, w, shares = generator_mixture(inst, sol, caps, solver_share=0.2, caption_share=0.1)
    assert _share(recs, w, "inst") == pytest.approx(0.7) and _share(recs, w, "sol") == pytest.approx(0.2)
    assert _share(recs, w, "cap") == pytest.approx(0.1) and shares == {"instructions": 0.7, "replay_solver": 0.2, "replay_captions": 0.1}
    assert {r["task"] for r in recs if r["record_id"].startswith("sol")} == {"replay:t"}  # their own learning curve
    recs, w, shares = generator_mixture(inst, [], [], solver_share=0.2, caption_share=0.1)  # nothing to replay: instructions only
    assert len(recs) == 40 and w is None and shares["instructions"] == 1.0  # one pool: uniform draws
