"""The generators stage's checks: base_mllm's and the generators' weights, base_mllm against the blind prior, the
generators' parse rate, type accuracy and (with the world) oracle correctness."""

import dagster as dg

from genixer.schema import read_samples
from genixer_assets.common import AIM, aim_result, data_source, not_measured, weights_check
from resources import GenixerSettings


base_mllm_weights_finite = weights_check("base_mllm")
genixer_l_weights_finite = weights_check("genixer_l")
genixer_s_weights_finite = weights_check("genixer_s")


@dg.asset_check(asset="base_mllm", description="Aim: held-out accuracy at least 10 points above a blind answerer that gives each question kind's most common training answer.")
def base_mllm_above_chance(settings: GenixerSettings) -> dg.AssetCheckResult:
    ev = settings.read_table("base_mllm_eval")
    acc, blind = ev.groupby("task").correct.mean(), _blind(settings)
    return aim_result(ev.correct.mean() >= 0.1 + blind, {"accuracy": float(ev.correct.mean()), "blind_prior": blind,
                                                         "margin": float(ev.correct.mean() - blind), "required_margin": 0.1,
                                                         **{f"acc_{t}": float(v) for t, v in acc.items()}})


def _blind(settings: GenixerSettings) -> float:
    """The blind prior's accuracy on the held-out images base_mllm used, its answers checked as the data source checks
    base_mllm's (the oracle; without the world, the collected answers)."""
    src = data_source(settings)
    s = read_samples(settings.table_path("collected_datasets"))
    s = s[s.image_path.notna()].to_dict("records")  # as base_mllm: text-only rows left out (the world's all have an image)
    val = src.heldout
    return float(src.prior_baseline([x for x in s if x["image_id"] not in val], [x for x in s if x["image_id"] in val]).correct.mean())


def _generator_checks(name: str, correctness_aim: float | None):
    @dg.asset_check(asset=name, name=f"{name}_parse_rate", blocking=True,
                    description="Guard: of the generator's held-out generations (its _eval table), at least the preset's min_parse_rate "
                                "parse as 'Question: .. Answer: ..' (0.95 on demo, 0.5 on smoke).")
    def parse_rate(settings: GenixerSettings) -> dg.AssetCheckResult:
        ev = settings.read_table(f"{name}_eval")
        need = settings.get_preset().min_parse_rate
        rate = float(ev.parsed.mean())
        return dg.AssetCheckResult(passed=bool(rate >= need), metadata={"parse_rate": rate, "required": need},
                                   description=None if rate >= need else f"{rate:.1%} of generations parse, < {need:.0%}")

    @dg.asset_check(asset=name, name=f"{name}_type_accuracy",
                    description="Aim: with a specific instruction, at least 90% of outputs are of the requested task.")
    def type_accuracy(settings: GenixerSettings) -> dg.AssetCheckResult:
        ev = settings.read_table(f"{name}_eval")
        spec = ev[ev["mode"] == "type_specific"]
        acc = (spec.task_of == spec.requested_task).groupby(spec.requested_task).mean()
        total = float((spec.task_of == spec.requested_task).mean())
        return aim_result(total >= 0.9, {"type_accuracy": total, "required": 0.9, **{f"right_type_{t}": float(v) for t, v in acc.items()}})

    checks = [parse_rate, type_accuracy]
    if correctness_aim is not None:
        @dg.asset_check(asset=name, name=f"{name}_oracle_correctness",
                        description=f"Aim: over {correctness_aim:.0%} of type-specific generations are correct for every task (the paper's Tab. 2).")
        def correctness(settings: GenixerSettings) -> dg.AssetCheckResult:
            if data_source(settings).oracle is None:
                return not_measured()
            from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS

            ev = settings.read_table(f"{name}_eval")
            spec = ev[ev["mode"] == "type_specific"]
            per = (spec.oracle == "correct").groupby(spec.requested_task).mean()
            # every task the generator is evaluated on (generators._generator_eval): one without a generation misses the aim
            unmeasured = [t for t in {"genixer_l": GENERAL_TASKS, "genixer_s": GROUNDING_TASKS}[name] if t not in per.index]
            return dg.AssetCheckResult(
                passed=bool(not unmeasured and (per > correctness_aim).all()), severity=AIM,
                description=f"not measured: no type-specific generation for {', '.join(unmeasured)}" if unmeasured else None,
                metadata={"required_per_task": correctness_aim, "unmeasured_tasks": ", ".join(unmeasured) or "none",
                          **{f"correct_{t}": float(v) for t, v in per.items()}})

        checks.append(correctness)
    return checks


genixer_l_parse_rate, genixer_l_type_accuracy, genixer_l_oracle_correctness = _generator_checks("genixer_l", 0.8)
genixer_s_parse_rate, genixer_s_type_accuracy = _generator_checks("genixer_s", None)
