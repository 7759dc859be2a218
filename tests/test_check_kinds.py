"""Aims and guards (genixer_assets/checks.py): over every check of the definitions, a blocking check is a guard whose
failure is an ERROR, a non-blocking check is an aim whose miss is a WARN, and each description says which it is; in
the smoke graph `built` ran, the aims the tiny models miss are warnings and no check is an error. The judge's gate in
a real run of judge_mllm on the smoke graph's collected data."""

import shutil

import dagster as dg
import pandas as pd
import pytest

from genixer_assets.definitions import defs
from resources import GenixerSettings, MLLMBackend

ISSUE_ASSETS = {"base_mllm", "genixer_l", "judge_mllm", "genixer_vqa", "genixer_rec", "benchmark_scores"}  # issue 28, item 8


def _specs() -> dict[dg.AssetCheckKey, dg.AssetCheckSpec]:
    return {spec.key: spec for c in defs.asset_checks for spec in c.check_specs}


def test_every_description_says_whether_it_is_an_aim_or_a_guard():
    specs = _specs()
    assert len(specs) > 30
    for key, spec in specs.items():
        want = "Guard: " if spec.blocking else "Aim: "
        assert (spec.description or "").startswith(want), (key.to_user_string(), spec.description)


def test_in_the_smoke_graph_missed_aims_are_warnings_and_no_check_is_an_error(built, looped, instance):
    specs = _specs()
    _, results = built
    evaluations = [e for r in results + looped[1] for e in r.get_asset_check_evaluations()]  # the graph, then make loop
    assert {e.asset_check_key for e in evaluations} == set(specs)  # every check of the definitions ran
    for e in evaluations:  # an aim reports WARN, a guard ERROR, passed or not
        want = dg.AssetCheckSeverity.ERROR if specs[e.asset_check_key].blocking else dg.AssetCheckSeverity.WARN
        assert e.severity == want, (e.asset_check_key.to_user_string(), e.severity)
    missed = {e.asset_check_key for e in evaluations if not e.passed}
    assert missed, "the tiny smoke models reach every aim: nothing here shows a missed aim"
    assert not [k for k in missed if specs[k].blocking]  # the graph completed: only aims missed

    # What the catalog shows: each check's latest execution, as the instance (and the UI) reads it.
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(specs))
    assert set(records) == set(specs)
    failed = {key: rec.event.dagster_event.event_specific_data.severity for key, rec in records.items()
              if rec.status.value == "FAILED"}
    errors = [k.to_user_string() for k, severity in failed.items() if severity == dg.AssetCheckSeverity.ERROR]
    warned = {k.asset_key.to_user_string() for k, severity in failed.items() if severity == dg.AssetCheckSeverity.WARN}
    assert not errors, f"checks failed with ERROR severity after a successful run: {errors}"
    assert warned & ISSUE_ASSETS, warned  # some of the issue's six assets missed an aim, as a warning


def test_the_smoke_graph_records_which_judge_floor_applied(built):
    import json

    settings, _ = built
    gate = json.loads(settings.path("tables", "judge_mllm_gate.json").read_text())
    assert gate["min_auc"] == 0.0 and gate["source"] == "preset smoke: judge_min_auc"  # the smoke preset turns it off
    report = (settings.root / "reports" / "paper_report.md").read_text()
    assert "judge gate before filtering" in report and "off (preset smoke: judge_min_auc)" in report


def test_a_real_judge_below_the_run_configs_floor_stops_what_is_downstream(built, tmp_path):
    """judge_mllm trained for real on the smoke graph's collected data, with run config `min_heldout_auc: 0.9`: the
    tiny judge does not reach it, the blocking check fails naming the AUC, the asset downstream does not run."""
    from genixer.judge import auc
    from genixer_assets.filtering_checks import judge_mllm_beats_chance
    from genixer_assets.filtering import judge_mllm

    settings, _ = built
    mine = GenixerSettings(preset="smoke", data_dir=str(tmp_path))
    for name in ("collected_datasets.parquet", "world_scenes.parquet", "instruction_templates.json"):
        shutil.copyfile(settings.path("tables", name), mine.path("tables", name))

    @dg.asset(deps=[judge_mllm])
    def uses_the_judge() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    res = dg.materialize([judge_mllm, judge_mllm_beats_chance, uses_the_judge], raise_on_error=False,
                         resources={"settings": mine, "backend": MLLMBackend(device="cpu")},
                         run_config={"ops": {"judge_mllm": {"config": {"min_heldout_auc": 0.9}}}})
    ev = pd.read_parquet(mine.table_path("judge_mllm_eval"))
    a = auc(ev.p_yes, ev.label)
    assert len(ev) > 0 and a < 0.9
    (check,) = res.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert f"held-out AUC {a:.3f} < 0.900 (run config: judge_mllm min_heldout_auc)" in check.description
    assert {e.asset_key.to_user_string() for e in res.get_asset_materialization_events()} == {"judge_mllm"}
    (md,) = res.asset_materializations_for_node("judge_mllm")
    assert md.metadata["heldout_auc_floor"].value == pytest.approx(0.9)
    assert md.metadata["heldout_auc_floor_source"].value == "run config: judge_mllm min_heldout_auc"
