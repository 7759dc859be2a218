"""Materialise the foundation assets on the smoke preset into a temporary data root and
read what they wrote back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from genixer.schema import read_samples
from genixer.tasks import TASKS
from genixer.world import Scene, check
from genixer_assets.definitions import defs
from resources import GenixerSettings, MLLMBackend
from tests.conftest import metadata_of

ROOT = Path(__file__).resolve().parents[1]


FOUNDATION = {"world_scenes", "collected_datasets", "benchmark_sets", "image_corpus", "instruction_templates", "templated_instructions"}


def test_every_asset_materialises_and_foundation_checks_pass(built, looped):
    settings, results = built
    assert all(r.success for r in results)
    keys = {e.asset_key.to_user_string() for r in results + looped[1] for e in r.get_asset_materialization_events()}
    assert keys == {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}  # the graph, then make loop
    evals = [c for r in results for c in r.get_asset_check_evaluations() if c.asset_key.to_user_string() in FOUNDATION]
    assert len(evals) >= 8 and all(c.passed for c in evals), [(c.check_name, c.metadata) for c in evals if not c.passed]


def test_world_scenes_table_matches_files(built):
    settings, _ = built
    df = settings.read_table("world_scenes")
    p = settings.get_preset()
    assert df.split.value_counts().to_dict() == {"collect": p.n_collect, "bench": p.n_bench, "heldout": p.n_heldout, "corpus": p.n_corpus,
                                                     "held_back": p.n_held_back}
    import hashlib
    for r in df.sample(10, random_state=0).itertuples():
        assert hashlib.sha256(Path(r.image_path).read_bytes()).hexdigest() == r.sha256
        assert Scene.from_json(json.loads(Path(r.image_path).with_suffix(".json").read_text())).to_json() == r.scene


def test_collected_datasets_has_every_task_and_passes_the_oracle(built):
    settings, _ = built
    df = read_samples(settings.table_path("collected_datasets"))
    assert set(df.task) == set(TASKS)
    assert (df.split == "collect").all()
    scenes = {r.image_id: Scene.from_json(r.scene) for r in settings.read_table("world_scenes").itertuples()}
    assert all(check(s, scenes[s["image_id"]]).ok for s in df.to_dict("records"))


def test_benchmark_sets_are_disjoint_from_training_images(built):
    settings, _ = built
    bench = read_samples(settings.table_path("benchmark_sets"))
    assert set(bench.split) == {"bench", "heldout"}
    collected = read_samples(settings.table_path("collected_datasets"))
    assert not set(bench.image_id) & set(collected.image_id)


def test_image_corpus_shards_cover_the_corpus_once(built):
    settings, _ = built
    corpus = settings.read_table("image_corpus")
    scenes = settings.read_table("world_scenes")
    assert sorted(corpus.image_id) == sorted(scenes[scenes.split == "corpus"].image_id)
    assert corpus.shard.nunique() == settings.get_preset().n_shards
    assert "scene" not in corpus.columns  # the ground truth stays with the oracle


def test_templated_instructions_follow_the_recipe(built):
    settings, results = built
    df = settings.read_table("templated_instructions")
    assert set(df[df.generator == "genixer_l"].task) == {"common_vqa", "adv_vqa", "mc_vqa", "md"}
    assert set(df[(df.generator == "genixer_s") & (df.phase == 1)].task) == {"rec", "reg"}
    assert df.target.str.startswith("Question: ").all()
    assert metadata_of(results, "templated_instructions")["realised_general_only_share"] == pytest.approx(df.general_only.mean())
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    assert len(set(templates["general"])) >= 40


def test_run_config_overrides_the_preset(tmp_path):
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path))
    assets = list(defs.assets)
    res = dg.materialize(assets, selection=["world_scenes"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                         run_config={"ops": {"world_scenes": {"config": {"n_collect": 7, "n_corpus": 3, "n_bench": 2, "n_heldout": 2}}}})
    assert res.success
    assert settings.read_table("world_scenes").split.value_counts()["collect"] == 7


def test_world_difficulty_is_run_config(tmp_path):
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path))
    world = {"min_objects": 2, "max_objects": 3, "small_frac": 0.28, "large_frac": 0.4}
    res = dg.materialize(list(defs.assets), selection=["world_scenes"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                         run_config={"ops": {"world_scenes": {"config": {"n_collect": 12, "n_corpus": 3, "n_bench": 2, "n_heldout": 2, **world}}}})
    assert res.success
    scenes = settings.read_table("world_scenes")
    assert set(scenes.n_objects) <= {2, 3}
    for _, row in scenes.iterrows():  # every object's side is one of the two fractions of the short side
        short = min(row.width, row.height)
        sides = {o["box"][2] - o["box"][0] for o in json.loads(row.scene)["objects"]}
        assert sides <= {round(0.28 * short), round(0.4 * short)}, sides
    assert {k: metadata_of([res], "world_scenes")["world"][k] for k in world} == world


def test_unsatisfiable_world_setting_is_a_clear_error(tmp_path):
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path))
    with pytest.raises(Exception, match="max_objects"):
        dg.materialize(list(defs.assets), selection=["world_scenes"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                       run_config={"ops": {"world_scenes": {"config": {"max_objects": 12}}}})


def test_templates_file_with_missing_placeholder_is_rejected(tmp_path):
    bad = tmp_path / "templates.json"
    bad.write_text(json.dumps({"phrasings": {"locate": ["Where is it?"]}}))
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path))
    with pytest.raises(Exception, match="missing slot"):
        dg.materialize(list(defs.assets), selection=["instruction_templates"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                       run_config={"ops": {"instruction_templates": {"config": {"templates_file": str(bad)}}}})


def test_cli_materialize_from_the_repo_root(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "GENIXER_DATA_DIR": str(tmp_path / "data"), "GENIXER_PRESET": "smoke"}
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "genixer_assets.definitions", "--select", "world_scenes"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    df = pd.read_parquet(tmp_path / "data" / "smoke" / "tables" / "world_scenes.parquet")
    assert len(df) == sum(GenixerSettings(preset="smoke", data_dir=str(tmp_path)).get_preset().__dict__[k] for k in ("n_collect", "n_corpus", "n_bench", "n_heldout", "n_held_back"))
