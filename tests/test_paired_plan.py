"""The paired design of the retraining arms (issue 31): arms of one seed read the same base-mix batches in the same
order, whatever they add; the added rows are read the plan's number of passes; the real loop draws what the plan says."""

from collections import Counter

import pytest
import torch

from genixer.training import PairedPlan, TrainConfig, sft, train
from genixer.training.sft import collate

from tests.test_training import fresh, records, tok  # noqa: F401  (fixtures)


def _batches(plan: PairedPlan, size: int) -> list[list[int]]:
    return [plan.batch(m, size) for m in range(plan.batches)]


def test_arms_of_a_seed_share_their_base_batches_in_order():
    weights = [3.0] * 10 + [1.0] * 30  # a base mix of two pools
    base = PairedPlan.build(weights, 40, 0, 12, 8, 1.0, seed=5)
    arm = PairedPlan.build(weights, 40, 50, 12, 8, 2.0, seed=5)
    other_seed = PairedPlan.build(weights, 40, 0, 12, 8, 1.0, seed=6)
    assert base.added_steps == 0 and arm.added_steps == 13  # ceil(2 x 50 / 8)
    plain = _batches(base, 8)
    mixed = _batches(arm, 8)
    base_of_arm = [b for m, b in enumerate(mixed) if not arm.is_added(m)]
    assert base_of_arm == plain  # the same base batches, the same order
    assert _batches(other_seed, 8) != plain
    added = [i for m, b in enumerate(mixed) if arm.is_added(m) for i in b]
    assert all(40 <= i < 90 for i in added) and all(i < 40 for b in plain for i in b)
    counts = Counter(added)
    assert set(counts) == set(range(40, 90)) and min(counts.values()) >= 2 and len(added) == 13 * 8  # two passes, then a partial one
    positions = [m for m in range(arm.batches) if arm.is_added(m)]
    assert positions[0] < arm.batches // 4 and positions[-1] > 3 * arm.batches // 4  # spread over the run, not at its end


def test_the_plan_draws_the_base_mix_at_its_weights():
    plan = PairedPlan.build([0, 3, 0, 1], 4, 0, 50, 40, 1.0, seed=0)
    counts = Counter(i for b in _batches(plan, 40) for i in b)
    assert set(counts) == {1, 3} and 0.7 < counts[1] / 2000 < 0.8


def test_the_loop_trains_on_the_plans_batches(tok, records, tmp_path, monkeypatch):  # noqa: F811
    model, processor = fresh("llava", tok)
    plan = PairedPlan.build([1, 1], 2, 2, 3, 4, 1.0, seed=1)  # records 0-1 the base mix, 2-3 added: 3 + 1 batches
    drawn = []

    def spy(processor, recs, enc, idx):
        drawn.append(list(idx))
        return collate(processor, recs, enc, idx)

    monkeypatch.setattr(sft, "collate", spy)
    with pytest.raises(ValueError, match="plan's 4 batches"):
        train(model, processor, records, TrainConfig(steps=3, batch_size=4), tmp_path / "a", plan=plan)
    with pytest.raises(ValueError, match="no sample_weights"):
        train(model, processor, records, TrainConfig(steps=4, batch_size=4), tmp_path / "a", sample_weights=[1, 1, 1, 1], plan=plan)
    res = train(model, processor, records, TrainConfig(steps=4, batch_size=4), tmp_path / "b", plan=plan)
    assert drawn == _batches(plan, 4) and res.steps == 4 and torch.isfinite(torch.tensor(res.final_loss))
