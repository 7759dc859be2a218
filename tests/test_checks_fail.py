"""The asset checks of the data and model assets can fail: each check passes on a small hand-made
output that is right, and fails on a copy of it broken one way. Nothing is trained: the outputs are
tiny parquet tables, image files and safetensors written into a temporary data root.

A check on a partitioned asset runs inside its asset's run (one partition): here a stand-in asset
with the same key and partitions "materialises" the partition (the table is already on disk) so
the check sees the run's partition key. Called directly (no partition), a check looks at every
partition of its asset."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.numpy import save_file

from genixer.presets import get_preset
from genixer.region_clip import CONFIG_NAME, WEIGHTS_NAME
from genixer.schema import write_samples
from genixer_assets import checks
from genixer_assets.partitions import shard_partitions
from genixer_assets.retraining import recipe_partitions
from resources import GenixerSettings

SHARDS = ["shard_000", "shard_001"]  # the smoke preset's world corpus shards
RECIPE = "baseline"


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
    assert direct(checks.image_corpus_valid, settings).passed
    for shard in SHARDS:
        ev, _ = in_run(checks.image_corpus_valid, settings, shard)
        assert ev.passed and md(ev, "shards") == shard


def test_image_corpus_check_fails_on_an_empty_shard_of_its_own_run_only(settings):
    corpus = write_corpus(settings)
    corpus["shard_001"].iloc[:0].to_parquet(settings.table_path("image_corpus", "shard_001"), index=False)
    ev, downstream_ran = in_run(checks.image_corpus_valid, settings, "shard_001", downstream=True)
    assert not ev.passed and "shard_001: the shard is empty" in problems_of(ev)
    assert not downstream_ran  # blocking: the shard's generation does not start
    ev, downstream_ran = in_run(checks.image_corpus_valid, settings, "shard_000", downstream=True)
    assert ev.passed and md(ev, "images") == 2 and downstream_ran  # the other shard is not read
    res = direct(checks.image_corpus_valid, settings)  # no partition: every shard, the empty one named
    assert not res.passed and "shard_001: the shard is empty" in problems_of(res)


def test_image_corpus_check_fails_on_a_missing_image_file(settings):
    corpus = write_corpus(settings)
    gone = corpus["shard_000"].image_path[1]
    (settings.root / "world" / gone.rsplit("/", 1)[-1]).unlink()
    ev, _ = in_run(checks.image_corpus_valid, settings, "shard_000")
    assert not ev.passed and f"missing {gone}" in problems_of(ev)


def test_image_corpus_check_fails_on_a_shard_never_materialised(settings):
    write_corpus(settings)
    settings.table_path("image_corpus", "shard_001").unlink()
    res = direct(checks.image_corpus_valid, settings)
    assert not res.passed and "image_corpus[shard_001] has not been materialised" in problems_of(res)
    ev, _ = in_run(checks.image_corpus_valid, settings, "shard_001")
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
    check = getattr(checks, f"{name}_complete")
    assert direct(check, settings).passed
    ev, _ = in_run(check, settings, "shard_001")
    assert ev.passed and md(ev, "rows") == 2 * settings.get_preset().gen_per_image


@pytest.mark.parametrize("name,generator", [("raw_generations_l", "genixer_l"), ("raw_generations_s", "genixer_s")])
@pytest.mark.parametrize("broken", list(RAW_BREAKS))
def test_raw_generations_check_fails_on_a_broken_shard(settings, name, generator, broken):
    assert settings.get_preset().gen_per_image == 2  # the breaks assume two requests per image
    rows = write_raw(settings, name, generator)
    breaker, message = RAW_BREAKS[broken]
    write_samples(breaker(rows["shard_001"]), settings.table_path(name, "shard_001"), lineage=True)
    check = getattr(checks, f"{name}_complete")
    ev, downstream_ran = in_run(check, settings, "shard_001", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran  # blocking: the broken shard is not scored
    assert in_run(check, settings, "shard_000")[0].passed


def test_raw_generations_check_fails_when_the_shard_is_missing(settings):
    write_raw(settings, "raw_generations_l", "genixer_l")
    settings.table_path("raw_generations_l", "shard_000").unlink()
    res = direct(checks.raw_generations_l_complete, settings)
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
    assert direct(checks.scored_generations_l_valid, settings).passed
    assert in_run(checks.scored_generations_l_valid, settings, "shard_000")[0].passed


@pytest.mark.parametrize("broken", list(SCORED_L_BREAKS))
def test_scored_generations_l_check_fails_on_a_broken_shard(settings, broken):
    rows = write_scored_l(settings)
    breaker, message = SCORED_L_BREAKS[broken]
    write_samples(breaker(rows["shard_000"]), settings.table_path("scored_generations_l", "shard_000"), lineage=True)
    ev, downstream_ran = in_run(checks.scored_generations_l_valid, settings, "shard_000", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran
    assert not direct(checks.scored_generations_l_valid, settings).passed


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
    res = direct(checks.scored_generations_s_valid, settings)
    assert res.passed and md(res, "kept") == 2
    assert in_run(checks.scored_generations_s_valid, settings, "shard_001")[0].passed


@pytest.mark.parametrize("broken", list(SCORED_S_BREAKS))
def test_scored_generations_s_check_fails_on_a_broken_shard(settings, broken):
    rows = write_scored_s(settings)
    breaker, message = SCORED_S_BREAKS[broken]
    write_samples(breaker(rows["shard_001"]), settings.table_path("scored_generations_s", "shard_001"), lineage=True)
    ev, downstream_ran = in_run(checks.scored_generations_s_valid, settings, "shard_001", downstream=True)
    assert not ev.passed and message in problems_of(ev)
    assert not downstream_ran
    assert in_run(checks.scored_generations_s_valid, settings, "shard_000")[0].passed


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
    res = checks.region_clip_model_valid(settings=settings)
    assert res.passed and md(res, "threshold") == 0.25


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, "0.3", None])
def test_region_clip_check_fails_on_a_bad_threshold(settings, threshold):
    write_region_clip(settings, threshold)
    res = checks.region_clip_model_valid(settings=settings)
    assert not res.passed and "is not a finite cosine in [-1, 1]" in problems_of(res)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_region_clip_check_fails_on_non_finite_weights(settings, bad):
    write_weights(write_region_clip(settings), bad)
    res = checks.region_clip_model_valid(settings=settings)
    assert not res.passed and f"{WEIGHTS_NAME}:layer.weight has non-finite values" in problems_of(res)


def test_region_clip_check_fails_on_missing_files(settings):
    model = write_region_clip(settings)
    (model / WEIGHTS_NAME).unlink()
    res = checks.region_clip_model_valid(settings=settings)
    assert not res.passed and "no safetensors weights" in problems_of(res)
    (model / CONFIG_NAME).unlink()
    assert f"no {CONFIG_NAME}" in problems_of(checks.region_clip_model_valid(settings=settings))
    write_region_clip(settings)
    settings.path("tables", "region_clip_calibration.json").unlink()
    res = checks.region_clip_model_valid(settings=settings)
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
    ev, _ = in_run(checks.retrained_models_valid, settings, RECIPE, recipe_partitions)
    assert ev.passed and md(ev, "seeds") == 2
    res = direct(checks.retrained_models_valid, settings)  # no partition: every recipe, and only one is there
    assert not res.passed and md(res, "problems") == len(recipe_partitions.get_partition_keys()) - 1
    assert "retrained_models[genixer_vqa] has not been materialised" in problems_of(res)


@pytest.mark.parametrize("broken", list(RETRAINED_BREAKS))
def test_retrained_models_check_fails_on_a_broken_recipe(settings, broken):
    _retrained_break(broken)(settings, write_retrained(settings))
    ev, downstream_ran = in_run(checks.retrained_models_valid, settings, RECIPE, recipe_partitions, downstream=True)
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
    ev, _ = in_run(checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions)
    assert ev.passed and md(ev, "samples_per_seed") == 2 and md(ev, "rows") == 4


@pytest.mark.parametrize("broken", list(PREDICTION_BREAKS))
def test_benchmark_predictions_check_fails_on_broken_predictions(settings, broken):
    breaker, message = PREDICTION_BREAKS[broken]
    breaker(write_predictions(settings)).to_parquet(settings.table_path("benchmark_predictions", RECIPE), index=False)
    ev, _ = in_run(checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions)
    assert not ev.passed and message in problems_of(ev)


def test_benchmark_predictions_check_fails_when_a_seed_model_has_no_predictions(settings):
    write_predictions(settings)
    settings.path("models", "retrained", RECIPE, "seed_2", "config.json").write_text("{}")  # a third seed retrained since
    ev, _ = in_run(checks.benchmark_predictions_complete, settings, RECIPE, recipe_partitions)
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
    res = dg.materialize([stand_in, checks.judge_mllm_beats_chance, uses_the_judge], resources={"settings": settings},
                         raise_on_error=False, instance=instance)
    (ev,) = res.get_asset_check_evaluations()
    ran = {e.asset_key for e in res.get_asset_materialization_events()}
    return ev, uses_the_judge.key in ran, RunOutcome(instance, res.run_id).failures()


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

    from genixer_assets.filtering import GATE_FILE, judge_auc_floor

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
