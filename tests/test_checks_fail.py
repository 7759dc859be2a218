"""The asset checks of the data and model assets can fail: each check passes on a small hand-made
output that is right, and fails on a copy of it broken one way. Nothing is trained: the outputs are
tiny parquet tables, image files and safetensors written into a temporary data root.

A check on a partitioned asset runs inside its asset's run (one partition): here a stand-in asset
with the same key and partitions "materialises" the partition (the table is already on disk) so
the check sees the run's partition key. Called directly (no partition), a check looks at every
partition of its asset."""

import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.numpy import save_file

from genixer.presets import get_preset
from genixer.region_clip import CONFIG_NAME, WEIGHTS_NAME
from genixer.schema import read_samples, write_samples
from genixer.world import Scene, WorldConfig
from genixer_assets import (benchmarks_checks, collection, collection_checks, exports_checks, filtering_checks, corpus_generation_checks, generators_checks,
                            instructions_checks, retraining_checks)
from genixer_assets.partitions import recipe_partitions, shard_partitions
from resources import GenixerSettings

SHARDS = ["shard_000", "shard_001"]  # the smoke preset's world corpus shards
RECIPE = "baseline"

# The break-and-fail tests of the blocking checks: check name -> the tests that break its asset's output in a run and
# see the check fail (test_every_blocking_check_has_a_break_and_fail_test reads it against the definitions).
BREAK_TESTS: dict[str, list[str]] = {}


def breaks(*check_names: str):
    """Registers the decorated test as a break-and-fail test of these checks."""
    def register(test):
        for name in check_names:
            BREAK_TESTS.setdefault(name, []).append(test.__name__)
        return test
    return register


def _instance() -> dg.DagsterInstance:
    """An instance that knows the corpus shards (dynamic partitions), as one after corpus_shards ran."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shard_partitions.name, SHARDS)
    return instance


@pytest.fixture
def settings(tmp_path):
    return GenixerSettings(preset="smoke", data_dir=str(tmp_path))


def test_the_smoke_preset_has_two_shards():
    assert get_preset("smoke").n_shards == len(SHARDS) and RECIPE in recipe_partitions.get_partition_keys()


# ---- running a check ---------------------------------------------------------------------------

def _asset_key(check) -> dg.AssetKey:
    (key,) = check.check_keys
    return key.asset_key


def direct(check, settings) -> dg.AssetCheckResult:
    """The check called as a function, outside any run: no partition key."""
    context = dg.build_asset_check_context(resources={"settings": settings}, instance=_instance())
    result = check(context)
    del context  # tears its resources down now, not at interpreter exit
    return result


def in_run(check, settings, partition_key: str, partitions_def=shard_partitions, downstream: bool = False):
    """The check in its asset's run for one partition; returns (evaluation, whether a downstream asset ran)."""

    @dg.asset(key=_asset_key(check), partitions_def=partitions_def)
    def stand_in() -> dg.MaterializeResult:  # the partition's output is already on disk
        return dg.MaterializeResult()

    @dg.asset(partitions_def=partitions_def, deps=[stand_in])
    def consumer() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    assets = [stand_in, check] + ([consumer] if downstream else [])
    res = dg.materialize(assets, partition_key=partition_key, resources={"settings": settings}, raise_on_error=False,
                         instance=_instance())
    (ev,) = res.get_asset_check_evaluations()
    ran = {e.asset_key for e in res.get_asset_materialization_events()}
    return ev, consumer.key in ran


def md(result, key: str):
    """A metadata value of a check result (a direct call's or a run's evaluation)."""
    v = result.metadata[key]
    return getattr(v, "value", v)


def problems_of(result) -> str:
    return md(result, "first_problems")


# ---- image_corpus ------------------------------------------------------------------------------

def _image(settings, name: str) -> str:
    p = settings.path("world", f"{name}.png")
    Image.new("RGB", (32, 32), (200, 0, 0)).save(p)
    return str(p)


def write_corpus(settings, per_shard: int = 2) -> dict[str, pd.DataFrame]:
    out = {}
    for s, shard in enumerate(SHARDS):
        ids = [f"corpus_{s}_{i}" for i in range(per_shard)]
        df = pd.DataFrame({"image_id": ids, "image_path": [_image(settings, i) for i in ids], "width": 32, "height": 32,
                           "sha256": [f"{i:064d}" for i in range(per_shard)], "background": "plain", "shard": shard})
        df.to_parquet(settings.table_path("image_corpus", shard), index=False)
        out[shard] = df
    return out


def test_image_corpus_check_passes_on_good_shards(settings):
    write_corpus(settings)
    assert direct(collection_checks.image_corpus_valid, settings).passed
    for shard in SHARDS:
        ev, _ = in_run(collection_checks.image_corpus_valid, settings, shard)
        assert ev.passed and md(ev, "shards") == shard


@breaks("image_corpus_valid")
def test_image_corpus_check_fails_on_an_empty_shard_of_its_own_run_only(settings):
    corpus = write_corpus(settings)
    corpus["shard_001"].iloc[:0].to_parquet(settings.table_path("image_corpus", "shard_001"), index=False)
    ev, downstream_ran = in_run(collection_checks.image_corpus_valid, settings, "shard_001", downstream=True)
    assert not ev.passed and "shard_001: the shard is empty" in problems_of(ev)
    assert not downstream_ran  # blocking: the shard's generation does not start
    ev, downstream_ran = in_run(collection_checks.image_corpus_valid, settings, "shard_000", downstream=True)
    assert ev.passed and md(ev, "images") == 2 and downstream_ran  # the other shard is not read
    res = direct(collection_checks.image_corpus_valid, settings)  # no partition: every shard, the empty one named
    assert not res.passed and "shard_001: the shard is empty" in problems_of(res)


def test_image_corpus_check_fails_on_a_missing_image_file(settings):
    corpus = write_corpus(settings)
    gone = corpus["shard_000"].image_path[1]
    (settings.root / "world" / gone.rsplit("/", 1)[-1]).unlink()
    ev, _ = in_run(collection_checks.image_corpus_valid, settings, "shard_000")
    assert not ev.passed and f"missing {gone}" in problems_of(ev)


def test_image_corpus_check_fails_on_a_shard_never_materialised(settings):
    write_corpus(settings)
    settings.table_path("image_corpus", "shard_001").unlink()
    res = direct(collection_checks.image_corpus_valid, settings)
    assert not res.passed and "image_corpus[shard_001] has not been materialised" in problems_of(res)
    ev, _ = in_run(collection_checks.image_corpus_valid, settings, "shard_001")
    assert not ev.passed


# ---- raw generations ---------------------------------------------------------------------------

TURN = [{"question": "What colour is the circle?", "answer": "red"}]


def raw_rows(corpus: pd.DataFrame, per_image: int, generator: str) -> pd.DataFrame:
    rows = []
    for img in corpus.itertuples():
        for k in range(per_image):
            quarantine = "parse: not 'Question: .. Answer: ..'" if k == 1 else None
            rows.append({
                "sample_id": f"{generator}:{img.image_id}:{k}", "image_id": img.image_id, "image_path": img.image_path,
                "width": 32, "height": 32, "task": "common_vqa", "source": generator, "split": "corpus",
                "turns": None if quarantine else TURN, "boxes": None if quarantine else [], "points": None if quarantine else [],
                "generator": "0123456789abcdef", "template_id": "general_00+common_vqa", "seed": k, "mode": "type_specific",
                "requested_task": "common_vqa", "sampling": "{}", "request_key": f"{img.image_id}/{k}", "prompt": "p",
                "raw_text": "garbage" if quarantine else "Question: What colour is the circle? Answer: red",
                "quarantine_reason": quarantine,
            })
    return pd.DataFrame(rows)


def write_raw(settings, name: str, generator: str) -> dict[str, pd.DataFrame]:
    per_image = settings.get_preset().gen_per_image
    out = {}
    for shard, corpus in write_corpus(settings).items():
        out[shard] = raw_rows(corpus, per_image, generator)
        write_samples(out[shard], settings.table_path(name, shard), lineage=True)
    return out


def _drop_a_row(df):
    return df.iloc[1:]


def _empty_reason(df):
    return df.assign(quarantine_reason=df.quarantine_reason.where(df.quarantine_reason.isna(), ""))


def _parsed_without_turns(df):
    df = df.copy()
    df.at[0, "turns"] = None
    return df


def _quarantined_with_boxes(df):
    df = df.copy()
    df.at[0, "quarantine_reason"] = "box: x1<=x0"
    return df


def _duplicated_request(df):
    return pd.concat([df.iloc[:-1], df.iloc[:1]], ignore_index=True)


RAW_BREAKS = {
    "a request without its row": (_drop_a_row, "rows for 2 images"),
    "a quarantined row without a reason": (_empty_reason, "quarantined without a reason"),
    "a parsed row without turns": (_parsed_without_turns, "not quarantined but has no turns"),
    "a quarantined row carrying boxes": (_quarantined_with_boxes, "yet carries parsed boxes"),
    "a request answered twice": (_duplicated_request, "duplicated request keys"),
}


@pytest.mark.parametrize("name,generator", [("raw_generations_l", "genixer_l"), ("raw_generations_s", "genixer_s")])
def test_raw_generations_check_passes_on_good_shards(settings, name, generator):
    write_raw(settings, name, generator)
    check = getattr(corpus_generation_checks, f"{name}_complete")
    assert direct(check, settings).passed
    ev, _ = in_run(check, settings, "shard_001")
    assert ev.passed and md(ev, "rows") == 2 * settings.get_preset().gen_per_image


@breaks("raw_generations_l_complete", "raw_generations_s_complete")
@pytest.mark.parametrize("name,generator", [("raw_generations_l", "genixer_l"), ("raw_generations_s", "genixer_s")])
@pytest.mark.parametrize("broken", list(RAW_BREAKS))
def test_raw_generations_check_fails_on_a_broken_shard(settings, name, generator, broken):
    assert settings.get_preset().gen_per_image == 2  # the breaks assume two requests per image
    rows = write_raw(settings, name, generator)
    breaker, message = RAW_BREAKS[broken]
    write_samples(breaker(rows["shard_001"]), settings.table_path(name, "shard_001"), lineage=True)
    check = getattr(corpus_generation_checks, f"{name}_complete")
    ev, downstream_ran = in_run(check, settings, "shard_001", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran  # blocking: the broken shard is not scored
    assert in_run(check, settings, "shard_000")[0].passed


def test_raw_generations_check_fails_when_the_shard_is_missing(settings):
    write_raw(settings, "raw_generations_l", "genixer_l")
    settings.table_path("raw_generations_l", "shard_000").unlink()
    res = direct(corpus_generation_checks.raw_generations_l_complete, settings)
    assert not res.passed and "raw_generations_l[shard_000] has not been materialised" in problems_of(res)


# ---- scored generations ------------------------------------------------------------------------

def write_scored_l(settings) -> dict[str, pd.DataFrame]:
    out = {}
    for shard, raw in write_raw(settings, "raw_generations_l", "genixer_l").items():
        ok = raw.quarantine_reason.isna()
        out[shard] = raw.assign(judge_p_yes=np.where(ok, 0.8, np.nan))
        write_samples(out[shard], settings.table_path("scored_generations_l", shard), lineage=True)
    return out


def _set(df, **cols):
    df = df.copy()
    for c, v in cols.items():
        df.at[0, c] = v
    return df


SCORED_L_BREAKS = {
    "a score above 1": (lambda df: _set(df, judge_p_yes=1.5), "not a probability"),
    "a NaN score not quarantined": (lambda df: _set(df, judge_p_yes=np.nan), "judge_p_yes nan"),
    "a raw row lost": (_drop_a_row, "raw rows missing"),
    "a quarantined row without a reason": (_empty_reason, "quarantined without a reason"),
}


def test_scored_generations_l_check_passes_on_good_shards(settings):
    write_scored_l(settings)
    assert direct(filtering_checks.scored_generations_l_valid, settings).passed
    assert in_run(filtering_checks.scored_generations_l_valid, settings, "shard_000")[0].passed


@breaks("scored_generations_l_valid")
@pytest.mark.parametrize("broken", list(SCORED_L_BREAKS))
def test_scored_generations_l_check_fails_on_a_broken_shard(settings, broken):
    rows = write_scored_l(settings)
    breaker, message = SCORED_L_BREAKS[broken]
    write_samples(breaker(rows["shard_000"]), settings.table_path("scored_generations_l", "shard_000"), lineage=True)
    ev, downstream_ran = in_run(filtering_checks.scored_generations_l_valid, settings, "shard_000", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran
    assert not direct(filtering_checks.scored_generations_l_valid, settings).passed


def write_scored_s(settings) -> dict[str, pd.DataFrame]:
    out = {}
    for shard, raw in write_raw(settings, "raw_generations_s", "genixer_s").items():
        ok = raw.quarantine_reason.isna().to_numpy()
        # per image: request 0 parsed (image 0 kept, image 1 too small), request 1 quarantined
        reason = [None if ok[i] and i == 0 else "2-small: box 3x3 px under 10.0 px" if ok[i] else
                  f"1-malformed: {raw.quarantine_reason[i]}" for i in range(len(raw))]
        out[shard] = raw.assign(filter_reason=reason, clip_score=[0.42 if r is None else np.nan for r in reason],
                                expression=["the red circle" if ok[i] else None for i in range(len(raw))])
        write_samples(out[shard], settings.table_path("scored_generations_s", shard), lineage=True)
    return out


SCORED_S_BREAKS = {
    "a kept row without a score": (lambda df: _set(df, clip_score=np.nan), "kept with clip_score nan"),
    "a kept row with an impossible cosine": (lambda df: _set(df, clip_score=3.0), "kept with clip_score 3.0"),
    "a reason without its step": (lambda df: df.assign(filter_reason=df.filter_reason.where(df.index != 2, "too small")),
                                  "is not a step 1-/2-/3-"),
    "a quarantined row kept": (lambda df: df.assign(filter_reason=df.filter_reason.where(df.quarantine_reason.isna(), None),
                                                    clip_score=0.5), "but not dropped at step 1"),
    "a raw row lost": (_drop_a_row, "raw rows missing"),
}


def test_scored_generations_s_check_passes_on_good_shards(settings):
    rows = write_scored_s(settings)
    assert rows["shard_000"].filter_reason.isna().sum() == 1  # the good output keeps a row, drops the others
    res = direct(filtering_checks.scored_generations_s_valid, settings)
    assert res.passed and md(res, "kept") == 2
    assert in_run(filtering_checks.scored_generations_s_valid, settings, "shard_001")[0].passed


@breaks("scored_generations_s_valid")
@pytest.mark.parametrize("broken", list(SCORED_S_BREAKS))
def test_scored_generations_s_check_fails_on_a_broken_shard(settings, broken):
    rows = write_scored_s(settings)
    breaker, message = SCORED_S_BREAKS[broken]
    write_samples(breaker(rows["shard_001"]), settings.table_path("scored_generations_s", "shard_001"), lineage=True)
    ev, downstream_ran = in_run(filtering_checks.scored_generations_s_valid, settings, "shard_001", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran
    assert in_run(filtering_checks.scored_generations_s_valid, settings, "shard_000")[0].passed


# ---- models ------------------------------------------------------------------------------------

def write_weights(path, bad: float | None = None) -> None:
    w = np.ones((4, 4), dtype=np.float32)
    if bad is not None:
        w[1, 2] = bad
    path.mkdir(parents=True, exist_ok=True)
    save_file({"layer.weight": w, "layer.bias": np.zeros(4, dtype=np.float32)}, str(path / WEIGHTS_NAME))


def write_region_clip(settings, threshold=0.25):
    model = settings.model_dir("region_clip")
    write_weights(model)
    (model / CONFIG_NAME).write_text(json.dumps({"model_cfg": {"embed_dim": 4}, "preprocess_cfg": {}}))
    settings.path("tables", "region_clip_calibration.json").write_text(json.dumps({"threshold": threshold, "f1": 0.8, "model": str(model)}))
    return model


def test_region_clip_check_passes_on_a_good_model(settings):
    write_region_clip(settings)
    res = filtering_checks.region_clip_model_valid(settings=settings)
    assert res.passed and md(res, "threshold") == 0.25


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, "0.3", None])
def test_region_clip_check_fails_on_a_bad_threshold(settings, threshold):
    write_region_clip(settings, threshold)
    res = filtering_checks.region_clip_model_valid(settings=settings)
    assert not res.passed and "is not a finite cosine in [-1, 1]" in problems_of(res)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_region_clip_check_fails_on_non_finite_weights(settings, bad):
    write_weights(write_region_clip(settings), bad)
    res = filtering_checks.region_clip_model_valid(settings=settings)
    assert not res.passed and f"{WEIGHTS_NAME}:layer.weight has non-finite values" in problems_of(res)


@breaks("region_clip_model_valid")
@pytest.mark.parametrize("broken", ["inf weights", "threshold 1.5"])
def test_region_clip_check_in_its_run_stops_what_is_downstream(settings, broken):
    model = write_region_clip(settings, 1.5 if broken == "threshold 1.5" else 0.25)
    if broken == "inf weights":
        write_weights(model, float("inf"))
    ev, downstream_ran = guard_run(filtering_checks.region_clip_model_valid, settings)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ("has non-finite values" if broken == "inf weights" else "1.5 is not a finite cosine") in problems_of(ev)
    assert not downstream_ran  # blocking: the REC filter does not run on it


def test_region_clip_check_fails_on_missing_files(settings):
    model = write_region_clip(settings)
    (model / WEIGHTS_NAME).unlink()
    res = filtering_checks.region_clip_model_valid(settings=settings)
    assert not res.passed and "no safetensors weights" in problems_of(res)
    (model / CONFIG_NAME).unlink()
    assert f"no {CONFIG_NAME}" in problems_of(filtering_checks.region_clip_model_valid(settings=settings))
    write_region_clip(settings)
    settings.path("tables", "region_clip_calibration.json").unlink()
    res = filtering_checks.region_clip_model_valid(settings=settings)
    assert not res.passed and "no calibration" in problems_of(res)


def write_retrained(settings, seeds: int = 2, recipe: str = RECIPE) -> pd.DataFrame:
    root = settings.path("models", "retrained", recipe)
    for k in range(seeds):
        write_weights(root / f"seed_{k}")
        (root / f"seed_{k}" / "config.json").write_text("{}")
    p = settings.get_preset()
    table = pd.DataFrame({"seed": [p.seed + k for k in range(seeds)], "final_loss": [1.2, 1.3][:seeds],
                          "path": [str(root / f"seed_{k}") for k in range(seeds)], "recipe": recipe})
    table.to_parquet(settings.table_path("retrained_models", recipe), index=False)
    return table


def _retrained_break(kind):
    def apply(settings, table):
        root = settings.path("models", "retrained", RECIPE)
        if kind == "nan loss":
            table.assign(final_loss=[1.2, float("nan")]).to_parquet(settings.table_path("retrained_models", RECIPE), index=False)
        elif kind == "inf weights":
            write_weights(root / "seed_1", float("inf"))
        elif kind == "no config":
            (root / "seed_1" / "config.json").unlink()
        elif kind == "stale seed":
            write_weights(root / "seed_2")
            (root / "seed_2" / "config.json").write_text("{}")
        elif kind == "empty table":
            table.iloc[:0].to_parquet(settings.table_path("retrained_models", RECIPE), index=False)
    return apply


RETRAINED_BREAKS = {"nan loss": "final_loss nan", "inf weights": "has non-finite values", "no config": "has no config.json",
                    "stale seed": "3 seed directories for 2 seeds", "empty table": "the seeds table is empty"}


def test_retrained_models_check_passes_on_good_seeds(settings):
    write_retrained(settings)
    ev, _ = in_run(retraining_checks.retrained_models_valid, settings, RECIPE, recipe_partitions)
    assert ev.passed and md(ev, "seeds") == 2
    res = direct(retraining_checks.retrained_models_valid, settings)  # no partition: every recipe, and only one is there
    assert not res.passed and md(res, "problems") == len(recipe_partitions.get_partition_keys()) - 1
    assert "retrained_models[genixer_vqa] has not been materialised" in problems_of(res)


@breaks("retrained_models_valid")
@pytest.mark.parametrize("broken", list(RETRAINED_BREAKS))
def test_retrained_models_check_fails_on_a_broken_recipe(settings, broken):
    _retrained_break(broken)(settings, write_retrained(settings))
    ev, downstream_ran = in_run(retraining_checks.retrained_models_valid, settings, RECIPE, recipe_partitions, downstream=True)
    assert not ev.passed and RETRAINED_BREAKS[broken] in problems_of(ev)
    assert not downstream_ran  # blocking: a broken model answers no benchmark


# ---- benchmark_predictions ---------------------------------------------------------------------

def write_predictions(settings, seeds: int = 2) -> pd.DataFrame:
    img = _image(settings, "bench_0")
    pd.DataFrame({"image_id": ["bench_0"], "n_objects": [2], "split": ["bench"]}).to_parquet(settings.table_path("world_scenes"), index=False)
    base = {"image_id": "bench_0", "image_path": img, "width": 32, "height": 32, "split": "bench", "boxes": [], "points": [],
            "source": "shapes_world"}  # the world's benchmark (its membership needs world_scenes' object counts)
    write_samples([{**base, "sample_id": "b_vqa", "task": "common_vqa", "turns": TURN},
                   {**base, "sample_id": "b_mc", "task": "mc_vqa", "turns": [{"question": "Which? (A) red (B) blue", "answer": "A"}]},
                   {**base, "sample_id": "b_md", "task": "md", "turns": TURN}],  # in no benchmark: not predicted
                  settings.table_path("benchmark_sets"))
    for k in range(seeds):
        settings.path("models", "retrained", RECIPE, f"seed_{k}", "config.json").write_text("{}")
    preds = pd.DataFrame([{"sample_id": s, "task": t, "prediction": "red", "seed": k, "recipe": RECIPE}
                          for k in range(seeds) for s, t in (("b_vqa", "common_vqa"), ("b_mc", "mc_vqa"))])
    preds.to_parquet(settings.table_path("benchmark_predictions", RECIPE), index=False)
    return preds


PREDICTION_BREAKS = {
    "a seed without predictions": (lambda p: p[p.seed == 0], "seed 1: no predictions"),
    "a prediction that is not a string": (lambda p: p.assign(prediction=["red", None, "A", "red"]), "1 predictions are not strings"),
    "a sample answered twice": (lambda p: p.assign(sample_id=["b_vqa", "b_vqa", "b_vqa", "b_mc"]), "1 answered twice"),
    "a sample left out": (lambda p: p.iloc[:-1], "3 rows for 2 seeds x 2 benchmark samples"),
}


def test_benchmark_predictions_check_passes_on_good_predictions(settings):
    write_predictions(settings)
    ev, _ = in_run(benchmarks_checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions)
    assert ev.passed and md(ev, "samples_per_seed") == 2 and md(ev, "rows") == 4


@breaks("benchmark_predictions_complete")
@pytest.mark.parametrize("broken", list(PREDICTION_BREAKS))
def test_benchmark_predictions_check_fails_on_broken_predictions(settings, broken):
    breaker, message = PREDICTION_BREAKS[broken]
    breaker(write_predictions(settings)).to_parquet(settings.table_path("benchmark_predictions", RECIPE), index=False)
    ev, downstream_ran = in_run(benchmarks_checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions, downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran  # blocking: nothing is scored from incomplete predictions


def test_benchmark_predictions_check_fails_when_a_seed_model_has_no_predictions(settings):
    write_predictions(settings)
    settings.path("models", "retrained", RECIPE, "seed_2", "config.json").write_text("{}")  # a third seed retrained since
    ev, _ = in_run(benchmarks_checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions)
    assert not ev.passed and "seed 2: no predictions" in problems_of(ev)


# ---- the judge's gate (judge_mllm_beats_chance) -------------------------------------------------

@pytest.fixture
def gate_settings(tmp_path):
    """The demo preset's settings: it sets no floor of its own, so the default applies (the smoke preset turns the gate
    off: its 30-step judge is at chance)."""
    return GenixerSettings(preset="demo", data_dir=str(tmp_path))


def write_judge_eval(settings, separation: float, n: int = 300, seed: int = 0) -> float:
    """judge_mllm_eval as judge_mllm writes it: n true and n corrupted held-out records, each P(Yes) uniform at random
    plus `separation` on the true ones (0: a judge blind to the labels); returns its AUC."""
    from genixer.judge import auc

    rng = np.random.default_rng(seed)
    label = np.repeat([True, False], n)
    p_yes = np.clip(rng.uniform(0, 1, 2 * n) + separation * label, 0, 1)
    pd.DataFrame({"image_path": "x.png", "prompt": "Question: q Answer: a", "target": np.where(label, "Yes", "No"),
                  "corruption": np.where(label, "none", "wrong_attribute"), "p_yes": p_yes, "label": label}).to_parquet(
        settings.table_path("judge_mllm_eval"), index=False)
    return auc(p_yes, label)


def judge_run(settings):
    """The gate in judge_mllm's run, with an asset downstream of the judge: (evaluation, whether the downstream asset
    ran, what the run's failures say as `make demo` prints them)."""
    from genixer_assets.backfill import RunOutcome

    @dg.asset(key="judge_mllm")
    def stand_in() -> dg.MaterializeResult:  # judge_mllm_eval is already on disk
        return dg.MaterializeResult()

    @dg.asset(deps=[stand_in])
    def uses_the_judge() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    instance = dg.DagsterInstance.ephemeral()
    res = dg.materialize([stand_in, filtering_checks.judge_mllm_beats_chance, uses_the_judge], resources={"settings": settings},
                         raise_on_error=False, instance=instance)
    (ev,) = res.get_asset_check_evaluations()
    ran = {e.asset_key for e in res.get_asset_materialization_events()}
    return ev, uses_the_judge.key in ran, RunOutcome(instance, res.run_id).failures()


@breaks("judge_mllm_beats_chance")
def test_a_judge_at_chance_stops_what_is_downstream_with_its_auc(gate_settings):
    settings = gate_settings
    from genixer.judge import chance_auc_bound

    a = write_judge_eval(settings, separation=0.0)
    floor = chance_auc_bound(300, 300)
    assert settings.get_preset().judge_min_auc is None and a < floor  # the default floor applies; this judge is at chance
    ev, downstream_ran, failures = judge_run(settings)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and ev.blocking
    assert f"held-out AUC {a:.3f} < {floor:.3f} (default:" in ev.description
    assert md(ev, "auc") == pytest.approx(a) and md(ev, "required_auc") == pytest.approx(floor)
    assert not downstream_ran
    assert any("judge_mllm_beats_chance" in f and f"{a:.3f}" in f for f in failures), failures  # what `make demo` prints


def test_scoring_refuses_a_judge_that_failed_its_gate_in_any_run(gate_settings):
    """An asset backfill scores the shards in runs of their own, where judge_mllm's blocking check does not reach:
    scored_generations_l reads the gate itself and fails before it scores a row."""
    settings = gate_settings
    from genixer_assets.filtering import scored_generations_l
    from resources import MLLMBackend

    a = write_judge_eval(settings, separation=0.0)
    res = dg.materialize([scored_generations_l], partition_key="shard_000", instance=_instance(), raise_on_error=False,
                         resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    (failure,) = [e for e in res.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.user_failure_data.description
    assert "judge_mllm did not pass judge_mllm_beats_chance" in message and f"held-out AUC {a:.3f}" in message
    assert not settings.table_path("scored_generations_l", "shard_000").exists()


def test_a_judge_that_separates_passes_its_gate(gate_settings):
    settings = gate_settings
    a = write_judge_eval(settings, separation=0.3)
    ev, downstream_ran, failures = judge_run(settings)
    assert ev.passed and downstream_ran and not failures
    assert a > 0.6 and f"held-out AUC {a:.3f} >=" in ev.description and "default:" in md(ev, "floor_source")


def test_the_gate_applies_the_run_config_then_the_settings_then_the_preset(gate_settings):
    """The floor judge_mllm recorded (its run config) comes first; without that file the settings resource's, then the
    preset's, then the default. 0 turns the AUC test off, not the check of the probabilities."""
    settings = gate_settings
    from dataclasses import replace

    from genixer_assets.common import GATE_FILE, judge_auc_floor

    a = write_judge_eval(settings, separation=0.3)
    gate = settings.path("tables", GATE_FILE)
    gate.write_text(json.dumps({"min_auc": 0.95, "source": "run config: judge_mllm min_heldout_auc"}))
    ev, downstream_ran, _ = judge_run(settings)
    assert not ev.passed and not downstream_ran and f"{a:.3f} < 0.950 (run config: judge_mllm min_heldout_auc)" in ev.description
    gate.write_text(json.dumps({"min_auc": 0.0, "source": "run config: judge_mllm min_heldout_auc"}))
    assert judge_run(settings)[0].passed
    gate.unlink()
    strict = GenixerSettings(preset="demo", data_dir=settings.data_dir, judge_min_auc=0.99)
    ev, _, _ = judge_run(strict)
    assert not ev.passed and "< 0.990 (run config: settings judge_min_auc)" in ev.description

    class Own:  # a preset with its own floor
        judge_min_auc = None

        @staticmethod
        def get_preset():
            return replace(get_preset("demo"), judge_min_auc=0.55)

    assert judge_auc_floor(None, Own, 10, 10) == (0.55, "preset demo: judge_min_auc")
    assert judge_auc_floor(0.7, Own, 10, 10) == (0.7, "run config: judge_mllm min_heldout_auc")
    Own.judge_min_auc = 0.6
    assert judge_auc_floor(None, Own, 10, 10) == (0.6, "run config: settings judge_min_auc")

    df = pd.read_parquet(settings.table_path("judge_mllm_eval"))
    df.assign(p_yes=df.p_yes.where(df.index != 3, 1.5)).to_parquet(settings.table_path("judge_mllm_eval"), index=False)
    gate.write_text(json.dumps({"min_auc": 0.0, "source": "run config: judge_mllm min_heldout_auc"}))
    ev, _, _ = judge_run(settings)
    assert not ev.passed and "1 held-out P(Yes) are not probabilities in [0, 1]" in ev.description


def test_the_default_floor_is_passed_by_a_blind_judge_about_once_in_20():
    """The default: a judge whose scores ignore the labels reaches it in about 5% of held-out sets; the demo's judge
    (AUC 0.587 on 583 true and 583 corrupted records, README) clears it."""
    from genixer.judge import auc, chance_auc_bound

    rng = np.random.default_rng(1)
    label = np.repeat([True, False], 40)
    floor = chance_auc_bound(40, 40)
    passed = [auc(rng.uniform(size=80), label) >= floor for _ in range(4000)]
    assert 0.035 < np.mean(passed) < 0.065
    assert chance_auc_bound(583, 583) == pytest.approx(0.528, abs=5e-4) and chance_auc_bound(583, 583) < 0.587


# ---- the smoke graph's own outputs, broken ------------------------------------------------------
# The outputs of the session's smoke graph (`built`), copied into a temporary data root and broken there one way;
# the check runs in its asset's run (a stand-in with the asset's key "materialises" what is on disk) with an asset
# downstream, which a failed guard stops. The graph's own files are never changed.

def guard_run(check, settings):
    """The check in its (unpartitioned) asset's run with an asset downstream: (evaluation, whether that asset ran)."""
    from resources import MLLMBackend

    @dg.asset(key=_asset_key(check))
    def stand_in() -> dg.MaterializeResult:  # the output is already on disk
        return dg.MaterializeResult()

    @dg.asset(deps=[stand_in])
    def downstream() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    res = dg.materialize([stand_in, check, downstream], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                         raise_on_error=False, instance=_instance())
    (ev,) = res.get_asset_check_evaluations()
    return ev, downstream.key in {e.asset_key for e in res.get_asset_materialization_events()}


@pytest.fixture
def graph(built, tmp_path):
    """(the smoke graph's settings, a temporary data root's) and copy(*relative paths) from the first to the second."""
    src, _ = built
    dst = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))

    def copy(*paths: str) -> None:
        for rel in paths:
            a, b = src.root / rel, dst.root / rel
            assert a.exists(), f"the smoke graph wrote no {rel}"
            b.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(a, b) if a.is_dir() else shutil.copyfile(a, b)

    return src, dst, copy


def rewrite(path, change) -> pd.DataFrame:
    """The parquet table at `path` changed by change(df), written back with its schema (and its metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    df = change(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), path)
    return df


def _row(df, where, **cols):
    """df with the first row where `where` holds changed: {column: value}."""
    df = df.copy()
    i = df.index[where(df)][0]
    for c, v in cols.items():
        df.at[i, c] = v
    return df


def assert_stopped(check, settings, message: str, where: str = "problems") -> dg.AssetCheckEvaluation:
    """The check fails in its asset's run with ERROR severity, `message` in its problems (or description), and stops
    the asset downstream."""
    ev, downstream_ran = guard_run(check, settings)
    seen = problems_of(ev) if where == "problems" else ev.description
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and message in (seen or ""), (ev.description, seen)
    assert not downstream_ran  # blocking: what is downstream does not run on the broken output
    return ev


# world_scenes ------------------------------------------------------------------------------------

def _scene_image_changed(dst, df):
    """row 0's image file: a copy with one pixel changed (the table still records the old file's sha256)."""
    copy = dst.path("world", "changed.png")
    img = Image.open(df.image_path[0]).convert("RGB")
    img.putpixel((0, 0), tuple(255 - v for v in img.getpixel((0, 0))))
    img.save(copy)
    return df.assign(image_path=[str(copy)] + list(df.image_path[1:]))


WORLD_BREAKS = {
    "an image file changed after its hash was recorded": (_scene_image_changed, "the table records"),
    "an image file missing": (lambda dst, df: _row(df, lambda d: d.index == 0, image_path=str(dst.root / "world" / "gone.png")),
                              "collect_000000: missing"),
    "an object outside its image": (lambda dst, df: _row(df, lambda d: d.index == 0, width=4), "object outside the image"),
    "the held-out background outside heldout": (
        lambda dst, df: _row(df, lambda d: d.split == "collect", background=WorldConfig().heldout_background),
        "1 images break the held-out background rule"),
}


def test_world_scenes_check_passes_on_the_smoke_graphs_scenes(graph):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet")
    ev, downstream_ran = guard_run(collection.world_scenes_valid, dst)
    assert ev.passed and downstream_ran and md(ev, "images") == len(dst.read_table("world_scenes"))


@breaks("world_scenes_valid")
@pytest.mark.parametrize("broken", list(WORLD_BREAKS))
def test_world_scenes_check_fails_on_broken_scenes(graph, broken):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet")
    breaker, message = WORLD_BREAKS[broken]
    rewrite(dst.table_path("world_scenes"), lambda df: breaker(dst, df))
    assert_stopped(collection.world_scenes_valid, dst, message)


# collected_datasets -------------------------------------------------------------------------------

def _wrong_answer(df):
    """A colour question answered with a colour that is not the object's (the oracle calls it incorrect)."""
    i = next(i for i, t in enumerate(df.turns) if df.task[i] == "common_vqa" and str(t[0]["question"]).startswith("What colour is"))
    right = df.turns[i][0]["answer"]
    return _row(df, lambda d: d.index == i, turns=[{"question": df.turns[i][0]["question"],
                                                    "answer": "green" if right != "green" else "red"}])


COLLECTED_BREAKS = {
    "a box outside its image": (lambda df: _row(df, lambda d: d.task == "rec", boxes=[[0.0, 0.0, 500.0, 10.0]]), "not inside the"),
    "an empty question": (lambda df: _row(df, lambda d: d.task == "common_vqa", turns=[{"question": " ", "answer": "red"}]),
                          "turn 0: empty question"),
    "an answer the world contradicts": (_wrong_answer, "oracle says incorrect"),
}


@breaks("collected_datasets_valid")
@pytest.mark.parametrize("broken", list(COLLECTED_BREAKS))
def test_collected_datasets_check_fails_on_a_broken_sample(graph, broken):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet")
    assert guard_run(collection_checks.collected_datasets_valid, dst)[0].passed
    breaker, message = COLLECTED_BREAKS[broken]
    rewrite(dst.table_path("collected_datasets"), breaker)
    assert_stopped(collection_checks.collected_datasets_valid, dst, message)


# held_back_datasets: the ceiling's annotations held out ------------------------------------------

def _held_back_leak(dst, df, source: str) -> pd.DataFrame:
    """Row 0's image replaced by a byte copy, at a path of its own, of `source`."""
    copy = dst.path("world", "held_back_copy.png")
    shutil.copyfile(source, copy)
    return _row(df, lambda d: d.index == 0, image_path=str(copy))


@breaks("held_back_datasets_valid")
@pytest.mark.parametrize("broken", ["a collected image", "a benchmark image", "a box outside its image"])
def test_a_held_back_annotation_that_is_not_held_out_stops_the_run(graph, broken):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet", "tables/benchmark_sets.parquet",
         "tables/held_back_datasets.parquet")
    ev, _ = guard_run(collection_checks.held_back_datasets_valid, dst)
    assert ev.passed and md(ev, "samples") == len(read_samples(dst.table_path("held_back_datasets"))) > 0 and md(ev, "leaked_images") == 0
    if broken == "a box outside its image":
        breaker, message = COLLECTED_BREAKS[broken]
        rewrite(dst.table_path("held_back_datasets"), breaker)
        assert_stopped(collection_checks.held_back_datasets_valid, dst, message)
        return
    name = "collected_datasets" if broken == "a collected image" else "benchmark_sets"
    source = read_samples(dst.table_path(name)).image_path.dropna().iloc[0]
    rewrite(dst.table_path("held_back_datasets"), lambda df: _held_back_leak(dst, df, source))
    ev = assert_stopped(collection_checks.held_back_datasets_valid, dst, "1 held-back images have the same bytes as a collected or benchmark image")
    assert md(ev, "leaked_images") == 1


# benchmark_sets: the train/benchmark leak first ---------------------------------------------------

def _leak(dst, df, scenes, split: str) -> tuple[pd.DataFrame, str]:
    """The first bench row's image replaced by a byte copy, at a path of its own, of an image of `split`."""
    source = scenes[scenes.split == split].image_path.iloc[0]
    copy = dst.path("world", "bench_copy.png")
    shutil.copyfile(source, copy)
    i = df.index[df.split == "bench"][0]
    return _row(df, lambda d: d.index == i, image_path=str(copy)), source


@breaks("benchmark_sets_valid")
@pytest.mark.parametrize("split", ["collect", "corpus"])
def test_a_benchmark_image_that_is_also_a_training_image_stops_the_run(graph, split):
    """A benchmark image whose bytes are those of a collected (or corpus) image, under another name: found by content."""
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet", "tables/benchmark_sets.parquet")
    ev, _ = guard_run(collection_checks.benchmark_sets_valid, dst)
    assert ev.passed and md(ev, "leaked_images") == 0
    scenes = dst.read_table("world_scenes")
    leaked = {}
    rewrite(dst.table_path("benchmark_sets"), lambda df: (leaked.update(zip(("df", "source"), _leak(dst, df, scenes, split))), leaked["df"])[1])
    ev = assert_stopped(collection_checks.benchmark_sets_valid, dst, "1 benchmark images have the same bytes as a training image")
    assert f"= {leaked['source']}" in problems_of(ev) and md(ev, "leaked_images") == 1


@breaks("benchmark_sets_valid")
def test_a_published_benchmark_sharing_an_image_with_the_collected_data_stops_the_run(graph):
    """Published data (no world): a benchmark file with the bytes of a collected image, at another path."""
    _, dst, copy = graph
    copy("tables/collected_datasets.parquet", "tables/benchmark_sets.parquet")
    for name, source in (("collected_datasets", "vqav2:train_questions.json"), ("benchmark_sets", "vqav2:val_questions.json")):
        rewrite(dst.table_path(name), lambda df: df.assign(source=source))
    collected = read_samples(dst.table_path("collected_datasets"))
    ev, _ = guard_run(collection_checks.benchmark_sets_valid, dst)
    assert ev.passed and md(ev, "oracle_agreement") == "no oracle (published benchmarks)"
    rewrite(dst.table_path("benchmark_sets"), lambda df: _leak(dst, df, collected.assign(split="collect"), "collect")[0])
    assert_stopped(collection_checks.benchmark_sets_valid, dst, "1 benchmark images have the same bytes as a training image")


@breaks("benchmark_sets_valid")
def test_a_benchmark_answer_the_world_contradicts_stops_the_run(graph):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet", "tables/benchmark_sets.parquet")
    rewrite(dst.table_path("benchmark_sets"), _wrong_answer)
    assert_stopped(collection_checks.benchmark_sets_valid, dst, "oracle says incorrect")


# instruction templates and templated instructions ---------------------------------------------------

def _templates(change):
    def apply(t):
        t = json.loads(json.dumps(t))
        change(t)
        return t
    return apply


TEMPLATE_BREAKS = {
    "a task without its specific instruction": (_templates(lambda t: t["specific"].pop("rec")), "no specific instruction for rec"),
    "too few general instructions": (_templates(lambda t: t.update(general=t["general"][:12])), "only 12 distinct general instructions"),
    "a phrasing without its placeholder": (_templates(lambda t: t["phrasings"]["colour"].append("What colour is it?")),
                                           "'What colour is it?' of kind 'colour' is missing slot(s) ['ref']"),
    "a general instruction with a placeholder": (_templates(lambda t: t["general"].append("Describe {ref}.")),
                                                 "general instruction has a placeholder"),
}


@breaks("instruction_templates_valid")
@pytest.mark.parametrize("broken", list(TEMPLATE_BREAKS))
def test_instruction_templates_check_fails_on_broken_templates(graph, broken):
    _, dst, copy = graph
    copy("tables/instruction_templates.json")
    assert guard_run(instructions_checks.instruction_templates_valid, dst)[0].passed
    path = dst.path("tables", "instruction_templates.json")
    breaker, message = TEMPLATE_BREAKS[broken]
    path.write_text(json.dumps(breaker(json.loads(path.read_text()))))
    assert_stopped(instructions_checks.instruction_templates_valid, dst, message)


def _target_of_another(df):
    j = next(j for j in range(1, len(df)) if df.sample_id[j] != df.sample_id[0] and df.target[j] != df.target[0])
    return _row(df, lambda d: d.index == 0, target=df.target[j])


TEMPLATED_BREAKS = {
    "a target that is another sample's": (_target_of_another, "target does not parse back to its sample"),
    "an empty prompt": (lambda df: _row(df, lambda d: d.index == 0, prompt="  "), "empty prompt or target"),
    "a target that does not parse": (lambda df: _row(df, lambda d: d.index == 0, target="no question here"), ": "),
}


@breaks("templated_instructions_valid")
@pytest.mark.parametrize("broken", list(TEMPLATED_BREAKS))
def test_templated_instructions_check_fails_on_broken_records(graph, broken):
    _, dst, copy = graph
    copy("tables/collected_datasets.parquet", "tables/templated_instructions.parquet")
    assert guard_run(instructions_checks.templated_instructions_valid, dst)[0].passed
    breaker, message = TEMPLATED_BREAKS[broken]
    df = rewrite(dst.table_path("templated_instructions"), breaker)
    ev = assert_stopped(instructions_checks.templated_instructions_valid, dst, message)
    assert problems_of(ev).startswith(f"{df.record_id[0]}: ")  # the broken record, named


# the generators: parse rate and weights ---------------------------------------------------------------

@breaks("genixer_l_parse_rate", "genixer_s_parse_rate")
@pytest.mark.parametrize("name", ["genixer_l", "genixer_s"])
def test_a_generator_whose_outputs_do_not_parse_stops_the_run(graph, name):
    _, dst, copy = graph
    copy(f"tables/{name}_eval.parquet")
    check = getattr(generators_checks, f"{name}_parse_rate")
    assert guard_run(check, dst)[0].passed
    need = dst.get_preset().min_parse_rate
    df = rewrite(dst.table_path(f"{name}_eval"), lambda d: d.assign(parsed=[i % 4 == 0 for i in range(len(d))]))
    ev = assert_stopped(check, dst, f"{df.parsed.mean():.1%} of generations parse, < {need:.0%}", where="description")
    assert md(ev, "parse_rate") == pytest.approx(df.parsed.mean()) and md(ev, "parse_rate") < need


def _poison(folder, value: float) -> str:
    """One tensor of the folder's first safetensors file gets a non-finite value; returns the tensor's name."""
    from safetensors.torch import load_file, save_file

    f = sorted(folder.glob("*.safetensors"))[0]
    tensors = load_file(str(f))
    key = next(k for k, t in sorted(tensors.items()) if t.is_floating_point() and t.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[1] = value
    save_file(tensors, str(f), metadata={"format": "pt"})
    return f"{f.name}:{key} has non-finite values"


@breaks("base_mllm_weights_finite", "genixer_l_weights_finite", "genixer_s_weights_finite", "judge_mllm_weights_finite")
@pytest.mark.parametrize("name", ["base_mllm", "genixer_l", "genixer_s", "judge_mllm"])
@pytest.mark.parametrize("broken", ["nan", "inf", "no weights"])
def test_a_model_with_non_finite_or_missing_weights_stops_the_run(graph, name, broken):
    _, dst, copy = graph
    copy(f"models/{name}")
    check = getattr(filtering_checks if name == "judge_mllm" else generators_checks, f"{name}_weights_finite")
    ev, _ = guard_run(check, dst)
    assert ev.passed and md(ev, "path") == str(dst.model_dir(name))
    if broken == "no weights":
        for f in dst.model_dir(name).glob("*.safetensors"):
            f.unlink()
        message = "no safetensors weights in"
    else:
        message = _poison(dst.model_dir(name), float(broken))
    assert_stopped(check, dst, message)


# the filtered sets: not empty, not worse than raw ----------------------------------------------------------

@breaks("genixer_vqa_not_empty", "genixer_rec_not_empty")
@pytest.mark.parametrize("name", ["genixer_vqa", "genixer_rec"])
def test_a_filter_that_keeps_nothing_stops_the_run(graph, name):
    _, dst, copy = graph
    copy(f"tables/{name}.parquet")
    check = getattr(filtering_checks, f"{name}_not_empty")
    assert guard_run(check, dst)[0].passed
    rewrite(dst.table_path(name), lambda df: df.iloc[:0])
    ev = assert_stopped(check, dst, f"{name} kept no row", where="description")
    assert md(ev, "rows") == 0


FILTERS = {"genixer_vqa": ("scored_generations_l", "common_vqa"), "genixer_rec": ("scored_generations_s", "rec")}


def _keep(dst, name: str, ids: set[str]) -> None:
    """The filtered set rewritten to hold exactly these raw rows (a filter that chose them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.concat_tables([pq.read_table(f) for f in sorted(dst.path("tables", FILTERS[name][0]).glob("*.parquet"))])
    own = pq.read_schema(dst.table_path(name))
    kept = raw.filter(pa.array([s in ids for s in raw.column("sample_id").to_pylist()]))
    kept = kept.append_column("hard_band", pa.array([False] * len(kept))) if "hard_band" in own.names else kept
    pq.write_table(kept.select(own.names).replace_schema_metadata(own.metadata), dst.table_path(name))


@breaks("genixer_vqa_not_worse_than_raw", "genixer_rec_not_worse_than_raw")
@pytest.mark.parametrize("name", ["genixer_vqa", "genixer_rec"])
def test_a_filter_keeping_the_wrong_rows_fails_by_the_oracle(graph, name):
    """With the world: half the raw rows made right (the world's own annotation of their image), the filter keeps
    only rows the oracle calls incorrect; the exact test says worse than a random subset."""
    import random

    from genixer.oracle_eval import oracle_column
    from genixer.world.annotate import annotate

    raw_name, task = FILTERS[name]
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet", f"tables/{raw_name}", f"tables/{name}.parquet")
    check = getattr(filtering_checks, f"{name}_not_worse_than_raw")
    scenes = {r.image_id: Scene.from_json(r.scene) for r in dst.read_table("world_scenes").itertuples()}

    def right_answers(df):  # rows the oracle does not call incorrect get the world's annotation of their image
        df = df.copy()
        for i in df.index[oracle_column(df, scenes) != "incorrect"]:
            s = annotate(task, scenes[df.image_id[i]], random.Random(i))
            for c in ("task", "turns", "boxes", "points"):
                df.at[i, c] = s[c]
            df.at[i, "quarantine_reason"] = None
        return df

    for f in sorted(dst.path("tables", raw_name).glob("*.parquet")):
        rewrite(f, right_answers)
    raw = dst.read_table(raw_name)
    oracle = oracle_column(raw, scenes)
    wrong = set(raw.sample_id[oracle == "incorrect"])
    assert len(wrong) >= 5 and (oracle == "correct").sum() >= 10
    _keep(dst, name, set(raw.sample_id[oracle == "correct"]))
    ev, _ = guard_run(check, dst)
    assert ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and md(ev, "filter_verdict") == "yes"
    _keep(dst, name, wrong)
    ev = assert_stopped(check, dst, "the kept rows are correct less often than a random subset", where="description")
    assert md(ev, "kept_correct") == 0.0 and md(ev, "p_worse") < 0.025


def _world_free(dst) -> None:
    """collected_datasets as published files would have made it: no row from the world, so the run has no oracle."""
    rewrite(dst.table_path("collected_datasets"), lambda df: df.assign(source="vqav2:train_questions.json"))


def _review_sheet(dst, name: str) -> pd.DataFrame:
    """generation_quality's review sheet of the scored rows (genixer.review), its verdicts filled in: the rows of this
    filter alternately correct and incorrect; returns the filled sheet."""
    from genixer import review
    from genixer_assets.data_quality import REVIEW_COLUMNS

    vqa, rec = dst.read_table("scored_generations_l"), dst.read_table("scored_generations_s")
    population = pd.concat([vqa.assign(kept=vqa.sample_id.isin(set(read_samples(dst.table_path("genixer_vqa")).sample_id)))[REVIEW_COLUMNS],
                            rec.assign(kept=rec.filter_reason.isna())[REVIEW_COLUMNS]], ignore_index=True)
    sample = review.review_sample(population, 50, seed=0)
    folder = dst.path("review", "review.csv").parent
    csv, _ = review.write_review(sample, folder, overwrite=True)
    sample.to_parquet(folder / "review_sample.parquet", index=False)
    sheet = pd.read_csv(csv, dtype=str, keep_default_na=False)
    ours = set(dst.read_table(FILTERS[name][0]).sample_id)
    mine = sheet.sample_id.isin(ours)
    sheet.loc[mine, "verdict"] = ["correct" if k % 2 else "incorrect" for k in range(int(mine.sum()))]
    return sheet


@breaks("genixer_vqa_not_worse_than_raw", "genixer_rec_not_worse_than_raw")
@pytest.mark.parametrize("name", ["genixer_vqa", "genixer_rec"])
def test_without_the_world_a_filled_review_sheet_decides_the_filters_gate(graph, name):
    """No world: no sheet -> not measured (a WARN failure: a warning, not a pass, nothing stopped); a sheet with no
    verdict yet -> not measured; filled, and the filter keeps the rows the reviewer marked correct -> passed; keeps
    those marked incorrect -> the kept rows' interval is below the raw rows': ERROR, downstream stopped."""
    raw_name = FILTERS[name][0]
    _, dst, copy = graph
    copy("tables/collected_datasets.parquet", "tables/scored_generations_l", "tables/scored_generations_s",
         "tables/genixer_vqa.parquet", "tables/genixer_rec.parquet")
    _world_free(dst)
    check = getattr(filtering_checks, f"{name}_not_worse_than_raw")

    ev, downstream_ran = guard_run(check, dst)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN and downstream_ran
    assert ev.description.startswith("not measured: no oracle") and "no review sheet at" in ev.description

    sheet = _review_sheet(dst, name)
    ev, downstream_ran = guard_run(check, dst)  # written, not filled in yet
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN and downstream_ran and "has no verdict" in ev.description

    csv = dst.path("review", "review.csv")
    sheet.to_csv(csv, index=False)
    right, wrong = set(sheet.sample_id[sheet.verdict == "correct"]), set(sheet.sample_id[sheet.verdict == "incorrect"])
    assert len(right) >= 10 and len(wrong) >= 10 and right | wrong <= set(dst.read_table(raw_name).sample_id)
    _keep(dst, name, right)
    ev, downstream_ran = guard_run(check, dst)
    assert ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and downstream_ran
    assert md(ev, "kept_correct") == 1.0 and md(ev, "raw_correct") == pytest.approx(len(right) / len(right | wrong))
    assert ev.description.startswith("by the review sheet: kept rows 100% correct")

    _keep(dst, name, wrong)
    ev = assert_stopped(check, dst, "by the review sheet, the kept rows are correct less often than the raw rows", where="description")
    assert md(ev, "verdict") == "worse" and md(ev, "kept_correct") == 0.0
    assert md(ev, "kept_correct_ci_high") < md(ev, "raw_correct_ci_low")


def test_a_review_sheet_of_rows_regenerated_since_is_not_measured(graph):
    _, dst, copy = graph
    copy("tables/collected_datasets.parquet", "tables/scored_generations_l", "tables/scored_generations_s",
         "tables/genixer_vqa.parquet", "tables/genixer_rec.parquet")
    _world_free(dst)
    _review_sheet(dst, "genixer_vqa").to_csv(dst.path("review", "review.csv"), index=False)
    rewrite(sorted(dst.path("tables", "scored_generations_l").glob("*.parquet"))[0],
            lambda df: df.assign(sample_id=[f"{s}:again" for s in df.sample_id]))
    ev, downstream_ran = guard_run(filtering_checks.genixer_vqa_not_worse_than_raw, dst)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN and downstream_ran
    assert ev.description.startswith("not measured: ") and "are no longer in scored_generations_l (regenerated since)" in ev.description


# benchmark_scores ------------------------------------------------------------------------------------

SCORES_BREAKS = {
    "a recipe not scored on a benchmark": (lambda df: df.drop(index=df.index[df.recipe == "genixer_vqa"][0]), ": missing"),
    "a mean that is not a number": (lambda df: _row(df, lambda d: d.recipe == "baseline", mean=float("nan")), "mean nan"),
    "fewer seeds than the preset's": (lambda df: _row(df, lambda d: d.recipe == "genixer_rec", seeds=1), "1 seeds (want 2)"),
}


@breaks("benchmark_scores_complete")
@pytest.mark.parametrize("broken", list(SCORES_BREAKS))
def test_benchmark_scores_check_fails_on_incomplete_scores(graph, broken):
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/benchmark_sets.parquet", "tables/benchmark_scores.parquet",
         "tables/held_back_datasets.parquet")
    assert dst.get_preset().retrain_seeds == 2  # the breaks assume two seeds
    assert guard_run(benchmarks_checks.benchmark_scores_complete, dst)[0].passed
    breaker, message = SCORES_BREAKS[broken]
    rewrite(dst.table_path("benchmark_scores"), breaker)
    assert_stopped(benchmarks_checks.benchmark_scores_complete, dst, message)


@breaks("baseline_beats_blind_prior")
def test_a_baseline_no_better_than_the_blind_prior_is_named(graph):
    """Blocking on the paper preset only (benchmarks_checks.REFERENCE_BLOCKING): there it stops what is downstream, elsewhere it warns."""
    _, dst, copy = graph
    copy("tables/benchmark_scores.parquet")
    rewrite(dst.table_path("benchmark_scores"),
            lambda df: df.assign(verdict=df.verdict.where(df.recipe != "ref:blind_prior", "within noise")))
    ev, downstream_ran = guard_run(benchmarks_checks.baseline_beats_blind_prior, dst)
    assert not ev.passed and "(within noise for the prior)" in problems_of(ev)
    assert ev.severity == (dg.AssetCheckSeverity.ERROR if benchmarks_checks.REFERENCE_BLOCKING else dg.AssetCheckSeverity.WARN)
    assert downstream_ran is not benchmarks_checks.REFERENCE_BLOCKING


# dataset_exports ---------------------------------------------------------------------------------------

def _exports(dst, name):
    return dst.root / "exports" / name


EXPORT_BREAKS = {
    "a format's file deleted": (lambda dst: (_exports(dst, "genixer_vqa") / "shikra" / "shikra.jsonl").unlink(),
                                "genixer_vqa/shikra/shikra.jsonl: missing: genixer_vqa has"),
    "the exports folder deleted": (lambda dst: shutil.rmtree(dst.root / "exports"),
                                   "genixer_vqa/llava/llava.json: missing"),
    "a sample lost from a file": (lambda dst: (lambda p: p.write_text("".join(p.read_text().splitlines(True)[1:])))(
        _exports(dst, "genixer_rec") / "shikra" / "shikra.jsonl"), "genixer_rec/shikra/shikra.jsonl: "),
    "a card deleted": (lambda dst: (_exports(dst, "genixer_vqa") / "parquet" / "README.md").unlink(), "no dataset card"),
}


@breaks("dataset_exports_complete")
@pytest.mark.parametrize("broken", list(EXPORT_BREAKS))
def test_dataset_exports_check_fails_on_missing_or_short_exports(graph, broken):
    _, dst, copy = graph
    copy("tables/genixer_vqa.parquet", "tables/genixer_rec.parquet", "exports")
    assert len(read_samples(dst.table_path("genixer_vqa"))) and len(read_samples(dst.table_path("genixer_rec")))
    ev, _ = guard_run(exports_checks.dataset_exports_complete, dst)
    assert ev.passed and md(ev, "exports_checked") == 6 and md(ev, "formats") == "llava, shikra, parquet"
    breaker, message = EXPORT_BREAKS[broken]
    breaker(dst)
    assert_stopped(exports_checks.dataset_exports_complete, dst, message)


def test_dataset_exports_check_expects_the_formats_it_was_asked_for(graph):
    """Only llava asked for (formats.json, as dataset_exports records it): the other formats' files may be absent; an
    emptied set's export must be gone."""
    from genixer_assets.common import FORMATS_FILE

    _, dst, copy = graph
    copy("tables/genixer_vqa.parquet", "tables/genixer_rec.parquet", "exports")
    (dst.root / "exports" / FORMATS_FILE).write_text(json.dumps({"formats": ["llava"]}))
    for name in ("genixer_vqa", "genixer_rec"):
        for fmt in ("shikra", "parquet"):
            shutil.rmtree(_exports(dst, name) / fmt)
    assert guard_run(exports_checks.dataset_exports_complete, dst)[0].passed
    rewrite(dst.table_path("genixer_rec"), lambda df: df.iloc[:0])  # the filter now keeps nothing, its old export stays
    assert_stopped(exports_checks.dataset_exports_complete, dst, "genixer_rec/llava/llava.json: ")


# the registry --------------------------------------------------------------------------------------------

def test_every_blocking_check_has_a_break_and_fail_test():
    """Every blocking check of the definitions has a test here that breaks its asset's output and sees it fail; a new
    blocking check without one fails this test."""
    from genixer_assets.definitions import defs

    blocking = {spec.key.name for c in defs.asset_checks for spec in c.check_specs if spec.blocking}
    assert len(blocking) >= 26
    missing = sorted(blocking - set(BREAK_TESTS))
    assert not missing, f"blocking checks without a break-and-fail test in tests/test_checks_fail.py: {missing}"
    for name, tests in BREAK_TESTS.items():
        assert all(t.startswith("test_") and callable(globals().get(t)) for t in tests), (name, tests)


# loop: the closed loop's round (development split, Adaptive Bad-case Sampling) ---------------------------------

def _loop_round(graph, *tables: str):
    """The smoke graph's round-1 tables (and what the loop's source needs) copied into a fresh data root."""
    _, dst, copy = graph
    copy("tables/world_scenes.parquet", "tables/collected_datasets.parquet", *(f"tables/{t}" for t in tables))
    return dst


@breaks("loop_evaluation_valid")
@pytest.mark.parametrize("broken", ["a training image", "a benchmark split", "an untyped question"])
def test_a_loop_evaluation_off_the_development_split_stops_the_round(looped, graph, broken):
    from genixer_assets import loop_checks
    from genixer_assets.common import run_context
    from genixer_assets.partitions import loop_rounds

    dst = _loop_round(graph, "loop_evaluation")
    ev, downstream_ran = in_run(loop_checks.loop_evaluation_valid, dst, "round_1", loop_rounds, downstream=True)
    assert ev.passed and md(ev, "questions") > 0 and downstream_ran
    _, src = run_context(dst)
    trained = next(i for i in read_samples(dst.table_path("collected_datasets")).image_id if i not in src.heldout)
    change, message = {"a training image": ({"image_id": trained}, "which is not held out of training"),
                       "a benchmark split": ({"split": "bench"}, "is of split 'bench', not 'dev'"),
                       "an untyped question": ({"question_type": ""}, "has no question type")}[broken]
    rewrite(dst.table_path("loop_evaluation", "round_1"), lambda df: _row(df, lambda d: d.index == 0, **change))
    ev, downstream_ran = in_run(loop_checks.loop_evaluation_valid, dst, "round_1", loop_rounds, downstream=True)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and message in problems_of(ev), problems_of(ev)
    assert not downstream_ran


def _queries_broken(broken: str, ev: pd.DataFrame):
    """(change of the loop_queries table, the problem it must raise)."""
    right = ev[ev.correct.astype(bool)].sample_id
    right = right.iloc[0] if len(right) else "a question the round did not evaluate"

    def right_answer(df):
        df = df.copy()
        df.at[0, "in_context"] = [right, list(df.in_context[0])[1]]
        return df

    def other_type(df):
        df = df.copy()
        t = df.question_type[0]
        other = ev[~ev.correct.astype(bool) & (ev.question_type != t)].sample_id.iloc[0]
        df.at[0, "in_context"] = [other, list(df.in_context[0])[1]]
        return df

    def twice(df):
        df = df.copy()
        same = df.index[(df.arm == df.arm[0]) & (df.index > 0)][0]
        df.at[same, "image_id"] = df.image_id[0]
        return df

    def off_rule(df):
        df = df.copy()
        df.loc[(df.arm == "targeted") & (df.question_type == df.question_type[0]), "p_type"] = 0.999
        return df

    return {"a right answer shown as a bad case": (right_answer, "is not a bad case of the round's evaluation"),
            "a bad case of another type": (other_type, "the query asks for"),
            "an image asked about twice": (twice, "images asked about twice"),
            "a probability off the sampling rule": (off_rule, "drawn with p 0.9990, the rule gives")}[broken]


@breaks("loop_queries_valid")
@pytest.mark.parametrize("broken", ["a right answer shown as a bad case", "a bad case of another type", "an image asked about twice",
                                    "a probability off the sampling rule"])
def test_loop_queries_that_break_adaptive_bad_case_sampling_stop_the_round(looped, graph, broken):
    from genixer_assets import loop_checks
    from genixer_assets.partitions import loop_rounds

    dst = _loop_round(graph, "loop_evaluation", "loop_queries")
    ev, downstream_ran = in_run(loop_checks.loop_queries_valid, dst, "round_1", loop_rounds, downstream=True)
    assert ev.passed and md(ev, "queries") > 0 and downstream_ran
    change, message = _queries_broken(broken, pd.read_parquet(dst.table_path("loop_evaluation", "round_1")))
    rewrite(dst.table_path("loop_queries", "round_1"), change)
    ev, downstream_ran = in_run(loop_checks.loop_queries_valid, dst, "round_1", loop_rounds, downstream=True)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and message in problems_of(ev), problems_of(ev)
    assert not downstream_ran


def _generations_broken(broken: str):
    """(change of the loop_generations table, the problem it must raise)."""
    def other_type(df):
        df = df.copy()
        i = df.index[df.status == "kept"][0]
        df.at[i, "generated_type"] = "unmatched"
        return df

    def below_lambda(df):
        df = df.copy()
        df.loc[df.index[df.status == "kept"][0], "judge_p_yes"] = -1.0
        return df

    def not_the_best(df):
        df = df.copy()  # every in-context request kept, rightly: that variant now has the fewest failures
        m = (df.arm == "targeted") & (df.variant == "type_in_context")
        df.loc[m, ["status", "oracle", "judge_p_yes"]] = ["kept", "correct", 1.0]
        df.loc[m, "generated_type"] = df.requested_type[m]
        df.loc[m, "quarantine_reason"] = None
        return df

    return {"a kept row of another type": (other_type, "question, the query a"),
            "a kept row below lambda": (below_lambda, "has P(Yes) -1.0, below lambda"),
            "a variant that is not the best": (not_the_best, "the fewest failures are 'type_in_context''s")}[broken]


@breaks("loop_generations_valid")
@pytest.mark.parametrize("broken", ["a kept row of another type", "a kept row below lambda", "a variant that is not the best"])
def test_loop_generations_that_keep_what_quality_control_rejects_stop_the_round(looped, graph, broken):
    from genixer_assets import loop_checks
    from genixer_assets.partitions import loop_rounds

    dst = _loop_round(graph, "loop_evaluation", "loop_generations")
    ev, downstream_ran = in_run(loop_checks.loop_generations_valid, dst, "round_1", loop_rounds, downstream=True)
    assert ev.passed and md(ev, "rows") > 0 and downstream_ran
    change, message = _generations_broken(broken)
    rewrite(dst.table_path("loop_generations", "round_1"), change)
    ev, downstream_ran = in_run(loop_checks.loop_generations_valid, dst, "round_1", loop_rounds, downstream=True)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and message in problems_of(ev), problems_of(ev)
    assert not downstream_ran


def _models_broken(broken: str, gens: pd.DataFrame):
    """(change of the loop_models table, the problem it must raise)."""
    def other_batches(df):
        return _row(df, lambda d: d.arm == "targeted", base_batches_sha="0000000000000000")

    def not_kept(df):
        df = df.copy()
        i = df.index[df.arm == "targeted"][0]
        rejected = gens[(gens.arm == "targeted") & (gens.status != "kept")].sample_id.iloc[0]
        df.at[i, "added_sample_ids"] = [rejected, *list(df.added_sample_ids[i])[1:]]
        return df

    def replay_adds(df):
        df = df.copy()
        i, j = df.index[df.arm == "replay"][0], df.index[df.arm == "targeted"][0]
        df.at[i, "added_sample_ids"] = list(df.added_sample_ids[j])
        df.at[i, "added_rows"] = df.added_rows[j]
        return df

    return {"an arm on other base batches": (other_batches, "the arms read different base batches"),
            "a row the arm did not keep": (not_kept, "added rows are not a kept row of the arm"),
            "a replay arm with rows": (replay_adds, "the replay arm adds")}[broken]


@breaks("loop_models_paired")
@pytest.mark.parametrize("broken", ["an arm on other base batches", "a row the arm did not keep", "a replay arm with rows"])
def test_loop_models_off_the_paired_design_stop_the_round(looped, graph, broken):
    from genixer_assets import loop_checks
    from genixer_assets.partitions import loop_rounds

    dst = _loop_round(graph, "loop_evaluation", "loop_generations", "loop_models")
    ev, downstream_ran = in_run(loop_checks.loop_models_paired, dst, "round_1", loop_rounds, downstream=True)
    assert ev.passed and md(ev, "models") > 0 and downstream_ran
    change, message = _models_broken(broken, pd.read_parquet(dst.table_path("loop_generations", "round_1")))
    rewrite(dst.table_path("loop_models", "round_1"), change)
    ev, downstream_ran = in_run(loop_checks.loop_models_paired, dst, "round_1", loop_rounds, downstream=True)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR and message in problems_of(ev), problems_of(ev)
    assert not downstream_ran
