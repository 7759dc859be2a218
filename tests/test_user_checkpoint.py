"""A user's LLaVA-1.5 checkpoint as the judge, with a tokenizer that merges across the prompt/answer boundary
(merges such as ':▁' and 'ASSISTANT:▁Yes', genixer.models.tiny's ``merge_across_spaces``), run through the world-free
example graph (examples/tiny_world_free.py) with the default judge gate.

The judge (random weights) scores every held-out pair, then its blocking separation check stops the run, with the AUC
in the message. (The same tokenizer as the base the generators are fine-tuned from: tests/test_worldfree_graph.py.)"""

import dagster as dg
import pytest
import yaml

from genixer.models.tiny import save_tiny_llava
from genixer_assets.definitions import defs


def _metadata(instance, asset):
    ev = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return None if ev is None else {k: getattr(v, "value", v) for k, v in ev.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from examples.tiny_world_free import build
    from genixer_assets.demo import from_config, materialize_all

    root = tmp_path_factory.mktemp("user_judge")
    build(root)
    merging = save_tiny_llava(root / "checkpoints" / "llava_merging", hub_layout=True, merge_across_spaces=True)
    cfg = yaml.safe_load((root / "run.yaml").read_text())
    cfg["resources"]["backend"]["config"]["judge"] = {"checkpoint": str(merging), "batch_size": 8}
    cfg["ops"].pop("judge_mllm")  # the example turns the gate off for its random Fuyu; here the default floor applies,
    cfg["resources"]["settings"]["config"]["preset"] = "demo"  # as on the demo preset (smoke turns the gate off)
    (root / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    resources, run_config, exclude = from_config(root / "run.yaml")
    graph = defs.resolve_asset_graph()
    wanted = {k.to_user_string() for k in dg.AssetSelection.assets("judge_mllm").upstream().resolve(graph)}
    instance = dg.DagsterInstance.ephemeral()
    log: list[str] = []
    with pytest.raises(dg.DagsterError) as stopped:
        materialize_all(instance, resources=resources, run_config=run_config, log=log.append,
                        exclude=tuple(sorted(({a.key.to_user_string() for a in defs.assets} - wanted) | set(exclude))))
    return resources["settings"], instance, stopped.value, merging, log


def test_the_merging_tokenizer_judge_scores_every_pair(run):
    settings, instance, _, merging, _ = run
    md = _metadata(instance, "judge_mllm")
    assert md["source"] == str(merging)
    ev = settings.read_table("judge_mllm_eval")
    assert len(ev) == md["heldout_records"] > 0 and ev.p_yes.notna().all() and ev.p_yes.between(0, 1).all()
    assert ev.label.any() and (~ev.label.astype(bool)).any()


def test_a_random_judge_stops_the_run_at_its_gate_with_the_auc(run):
    settings, instance, stopped, _, log = run
    md = _metadata(instance, "judge_mllm")
    check = dg.AssetCheckKey(dg.AssetKey("judge_mllm"), "judge_mllm_beats_chance")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.blocking and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert f"held-out AUC {md['heldout_auc']:.3f} <" in evaluation.description
    assert evaluation.metadata["floor_source"].value.startswith("default")
    assert "judge_mllm_beats_chance" in str(stopped) and not any("scored_generations" in line for line in log)
