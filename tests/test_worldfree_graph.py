"""The whole graph without the shapes world, on tiny random checkpoints of the real architectures.

Published-format fixture releases (VQAv2, A-OKVQA, RefCOCO; benchmarks VQAv2 val, POPE, A-OKVQA val,
RefCOCO testA) and a folder of images are the only data; every role but base_mllm's solver training takes
a checkpoint saved to disk in its standard layout (genixer.models.tiny):

- base: a tiny LLaVA-1.5 (Llama BPE tokenizer, LLaVA chat template), loaded and evaluated, not trained;
  genixer_l and genixer_s are fine-tuned from it. Its tokenizer is the example's but trained without splitting at
  spaces, so its merges (':▁', 'ASSISTANT:▁Yes') join every answer to the end of its prompt: the hardest case for the
  prompt/answer boundary (a user's checkpoint of that kind stopped every LLaVA role before);
- judge: a tiny Fuyu, loaded (its P(Yes) is random: the filter runs, nothing about its quality is claimed);
- region_clip: open_clip's ViT-L-14 config scaled down, as an architecture *name* plus a safetensors file;
- retraining: a tiny Qwen2-VL (byte-level BPE, M-RoPE), fine-tuned per recipe with LoRA, gradient
  checkpointing, accumulation and bf16 autocast.

The graph is materialised once, world_scenes excluded, with `materialize_all` (the demo's driver); the
tests read what it wrote.
"""

import json
import shutil

import dagster as dg
import pandas as pd
import pytest

from genixer.corpus_generation import checkpoint_id
from genixer.retraining import MAIN_RECIPES, RECIPES
from genixer.schema import read_applied, read_samples
from tests.conftest import metadata_of

CLIP_NAME = "TinyViT-L-14"  # open_clip's ViT-L-14 config scaled down, registered under its own name
LOOP: dict = {}  # the run's resources and instance, for the closed loop's round after the graph


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """examples/tiny_world_free.py's data, checkpoints and run.yaml, read by the demo driver's --config reader; the
    region CLIP given as an open_clip architecture name + safetensors file instead of the example's directory."""
    import open_clip
    import yaml

    from examples.tiny_world_free import build
    from genixer.models.tiny import save_tiny_llava, tiny_open_clip_config
    from genixer_assets.demo import from_config, materialize_all
    from resources import MLLMBackend, ModelRole

    root = tmp_path_factory.mktemp("worldfree")
    build(root)
    shutil.rmtree(root / "checkpoints" / "llava")  # the example's LLaVA, with a tokenizer merging across spaces
    save_tiny_llava(root / "checkpoints" / "llava", hub_layout=True, merge_across_spaces=True)
    resources, run_config, exclude = from_config(root / "run.yaml")
    assert exclude == ("world_scenes",)
    ck = root / "checkpoints"
    (ck / f"{CLIP_NAME}.json").write_text(json.dumps(tiny_open_clip_config()["model_cfg"]))
    open_clip.add_model_config(ck / f"{CLIP_NAME}.json")
    backend_cfg = yaml.safe_load((root / "run.yaml").read_text())["resources"]["backend"]["config"]
    assert resources["backend"] == MLLMBackend(**backend_cfg) and resources["backend"].retraining.lora_rank == 8
    backend = MLLMBackend(**{**backend_cfg, "region_clip": ModelRole(checkpoint=CLIP_NAME,
                                                                     weights=str(ck / "clip" / "open_clip_model.safetensors"))})
    settings = resources["settings"]
    instance = dg.DagsterInstance.ephemeral()
    log = []
    results = materialize_all(instance, resources={"settings": settings, "backend": backend}, run_config=run_config,
                              exclude=exclude, log=log.append)
    LOOP.update(resources={"settings": settings, "backend": backend}, instance=instance)  # the loop's round reuses them
    return settings, results, ck, log


def test_no_world_asset_is_materialised_and_every_check_ran(run):
    settings, results, _, log = run
    assert not settings.table_path("world_scenes").exists() and not settings.path("world").exists()
    made = {e.asset_key.to_user_string() for r in results for e in r.get_asset_materialization_events()}
    assert "world_scenes" not in made
    for asset in ("collected_datasets", "benchmark_sets", "corpus_shards", "image_corpus", "base_mllm", "genixer_l", "genixer_s",
                  "judge_mllm", "region_clip_model", "raw_generations_l", "raw_generations_s", "scored_generations_l",
                  "scored_generations_s", "genixer_vqa", "genixer_rec", "dataset_exports", "generation_quality", "retrained_models",
                  "benchmark_predictions", "benchmark_scores", "paper_report"):
        assert asset in made, asset
    checks = [c for r in results for c in r.get_asset_check_evaluations()]
    blocking_failed = [c.check_name for c in checks if c.blocking and not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    assert checks and not blocking_failed
    not_measured = {c.check_name for c in checks if c.blocking and not c.passed}  # no oracle, no review sheet: a warning
    assert not_measured <= {"genixer_vqa_not_worse_than_raw", "genixer_rec_not_worse_than_raw"}, not_measured
    assert any("[oracle_vqa]: left out" in line for line in log)
    assert any("[annotated_vqa]: left out (the ceiling arm needs held-back annotations" in line for line in log)


def test_roles_loaded_or_fine_tuned_from_their_checkpoints(run):
    settings, results, ck, _ = run
    base = metadata_of(results, "base_mllm")
    assert base["source"] == str(ck / "llava") and "steps" not in base  # loaded, evaluated, not trained
    assert not any(settings.model_dir("base_mllm").iterdir())
    for name in ("genixer_l", "genixer_s"):  # fine-tuned from the LLaVA checkpoint: the saved model is a LLaVA
        cfg = json.loads((settings.model_dir(name) / "config.json").read_text())
        md = metadata_of(results, name)
        assert cfg["model_type"] == "llava" and md["steps"] > 0 and md["records_truncated_by_task"] == "none"
        assert md["answers_tokenized_apart_from_prompt"] > 0  # the merging tokenizer trained without an error
        assert (settings.model_dir(name) / "chat_template.jinja").exists() or "chat_template" in json.loads(
            (settings.model_dir(name) / "processor_config.json").read_text())
    judge = metadata_of(results, "judge_mllm")
    assert judge["source"] == str(ck / "fuyu") and "steps" not in judge and not any(settings.model_dir("judge_mllm").iterdir())
    clip = metadata_of(results, "region_clip_model")
    assert clip["source"] == f"{CLIP_NAME} + {ck / 'clip' / 'open_clip_model.safetensors'}"
    cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
    assert cal["model"] == CLIP_NAME and cal["weights"].endswith("open_clip_model.safetensors") and cal["mode"] == "calibrate"


def test_generation_scoring_and_filters_read_back(run):
    settings, _, ck, _ = run
    raw_l, raw_s = settings.read_table("raw_generations_l"), settings.read_table("raw_generations_s")
    assert len(raw_l) and len(raw_s) and set(raw_l.generator) == {checkpoint_id(settings.model_dir("genixer_l"))}
    scored_l = settings.read_table("scored_generations_l")
    ok = scored_l.quarantine_reason.isna()
    assert ok.any() and scored_l[ok].judge_p_yes.between(0, 1).all()
    for f in settings.path("tables", "scored_generations_l").glob("*.parquet"):
        assert read_applied(f)["judge_checkpoint"] == checkpoint_id(ck / "fuyu")
    for f in settings.path("tables", "scored_generations_s").glob("*.parquet"):
        applied = read_applied(f)
        assert applied["region_clip_checkpoint"] == checkpoint_id(ck / "clip" / "open_clip_model.safetensors")
        assert applied["clip_threshold_mode"] == "calibrate"
    scored_s = settings.read_table("scored_generations_s")
    kept_s = scored_s[scored_s.filter_reason.isna()]
    assert scored_s.clip_score.notna().any() and len(kept_s)
    vqa, rec = read_samples(settings.table_path("genixer_vqa")), read_samples(settings.table_path("genixer_rec"))
    assert len(vqa) and set(vqa.sample_id) <= set(scored_l[ok].sample_id)
    assert set(rec.sample_id) == set(kept_s.sample_id)


def test_exports_and_review_sample(run):
    settings, results, _, _ = run
    vqa = read_samples(settings.table_path("genixer_vqa"))
    llava = json.loads((settings.root / "exports" / "genixer_vqa" / "llava" / "llava.json").read_text())
    assert len(llava) == len(vqa) and {c["from"] for x in llava for c in x["conversations"]} == {"human", "gpt"}
    review = pd.read_csv(settings.root / "review" / "review.csv", dtype=str, keep_default_na=False)
    assert len(review) and (review.verdict == "").all()
    assert metadata_of(results, "generation_quality")["measured_with"].startswith("no oracle")


def test_retraining_from_qwen2_vl_and_published_benchmarks(run):
    settings, results, ck, _ = run
    seeds = settings.get_preset().retrain_seeds
    for recipe in [r for r in MAIN_RECIPES if not RECIPES[r].needs_world and not RECIPES[r].needs_held_back]:
        dirs = sorted(settings.path("models", "retrained", recipe).glob("seed_*"))
        assert len(dirs) == seeds and json.loads((dirs[0] / "config.json").read_text())["model_type"] == "qwen2_vl"
    assert not settings.table_path("retrained_models", "oracle_vqa").exists()
    assert not settings.table_path("retrained_models", "annotated_vqa").exists()  # no held-back annotations in this run
    md = [e.materialization.metadata for r in results for e in r.get_asset_materialization_events()
          if e.asset_key.to_user_string() == "retrained_models"]
    assert {m["initialised_from"].value for m in md} == {str(ck / "qwen")}
    scores = pd.read_parquet(settings.table_path("benchmark_scores"))
    main = scores[scores.recipe.isin(MAIN_RECIPES)]
    assert {"VQAv2", "A-OKVQA-MC", "RefCOCO-testA"} <= set(main.benchmark) and main.benchmark.str.startswith("POPE-").any()
    assert main["mean"].notna().all() and (main.seeds == seeds).all()
    report = (settings.root / "reports" / "paper_report.md").read_text()
    assert "VQAv2" in report


def test_a_loop_round_on_published_data_types_by_vqav2s_question_type_and_the_configured_clip(run):
    """Round 1 of the closed loop after the world-free graph: the typed generator from genixer_l, the evaluation (its
    questions typed by the classifier learnt from VQAv2's carried question_type, its accuracy measured on the records
    that carry one), queries with similar images by the configured CLIP, generation, training and the test split."""
    from genixer.loop import TypeClassifier
    from genixer_assets.definitions import defs
    from genixer_assets.loop_run import ROUND_REST

    settings, _, ck, _ = run
    assets = list(defs.assets) + list(defs.asset_checks or [])

    def materialize(names, partition=None):
        sel = dg.AssetSelection.assets(*names)
        res = dg.materialize(assets, selection=sel | sel.checks(), instance=LOOP["instance"], partition_key=partition,
                             resources=LOOP["resources"], raise_on_error=False)
        assert res.success, [e.event_specific_data.error.message for e in res.all_events if e.is_step_failure]
        return res

    materialize(["loop_generator"])
    ev_res = materialize(["loop_evaluation"], "round_1")
    collected = read_samples(settings.table_path("collected_datasets"))
    carried = [(t[0]["question"], json.loads(e)["question_type"]) for t, e in zip(collected.turns, collected.extra)
               if isinstance(e, str) and "question_type" in e and json.loads(e).get("question_type")]
    assert carried  # the VQAv2 release carries its question_type
    clf = TypeClassifier().fit(*zip(*carried))
    ev = pd.read_parquet(settings.table_path("loop_evaluation", "round_1"))
    assert len(ev) and all(t == (clf.predict(q) or t) for q, t in zip(ev.question, ev.question_type))
    assert set(ev.question_type) & {t for _, t in carried}  # the dev questions carry no type: VQAv2's, as the classifier reads them
    md = {k: getattr(v, "value", v) for k, v in ev_res.asset_materializations_for_node("loop_evaluation")[0].metadata.items()}
    measured = json.loads(md["type_classifier"])
    assert measured["typed_records"] == len(carried) and 0.0 <= measured["accuracy"] <= 1.0
    materialize(ROUND_REST, "round_1")
    q = pd.read_parquet(settings.table_path("loop_queries", "round_1"))
    assert "similar" in set(q.image_from)  # the configured CLIP's image embeddings chose half the images
    cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
    assert cal["model"] == CLIP_NAME
    m = pd.read_parquet(settings.table_path("loop_models", "round_1"))
    assert "oracle" not in set(m.arm) and {"replay", "targeted"} <= set(m.arm)  # no world: no oracle arm
    scores = pd.read_parquet(settings.table_path("loop_scores", "round_1"))
    assert len(scores) and set(scores.recipe) >= {"start", "targeted"}
