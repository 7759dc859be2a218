"""Generation and filtering assets on the smoke preset: lineage, reuse, quarantine, scores."""

import dagster as dg
import numpy as np
import pytest

from genixer.schema import read_applied, read_samples
from genixer_assets.definitions import defs
from resources import MLLMBackend
from tests.conftest import metadata_of

LINEAGE = ["generator", "template_id", "seed", "mode", "sampling", "request_key", "prompt", "raw_text", "quarantine_reason"]


@pytest.mark.parametrize("name", ["raw_generations_l", "raw_generations_s"])
def test_raw_generations_keep_lineage_and_every_row(built, name):
    settings, results = built
    df = settings.read_table(name)
    assert set(LINEAGE) <= set(df.columns)
    corpus = settings.read_table("image_corpus")
    assert len(df) == len(corpus) * settings.get_preset().gen_per_image  # nothing dropped
    assert df.request_key.is_unique and df.generator.str.len().eq(16).all()
    bad = df[df.quarantine_reason.notna()]
    assert (bad.quarantine_reason.str.len() > 0).all()
    good = df[df.quarantine_reason.isna()]
    assert good.turns.map(len).gt(0).all()


def test_rerun_reuses_rows(built, instance):
    settings, _ = built
    before = settings.read_table("raw_generations_l", "shard_000")
    res = dg.materialize(list(defs.assets), selection=["raw_generations_l"], partition_key="shard_000", instance=instance,
                         resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    meta = metadata_of([res], "raw_generations_l")
    assert meta["reused_from_cache"] == len(before) and meta["generated_now"] == 0
    after = settings.read_table("raw_generations_l", "shard_000")
    assert list(after.raw_text) == list(before.raw_text)


def test_an_interrupted_shard_resumes_from_its_part_files(built, instance):
    """An interrupted shard: its finished output gone, the batches it had appended left as part files. The rerun
    reuses exactly those rows, generates the rest, and removes the parts; the shard comes out as before."""
    from genixer.schema import write_samples

    settings, _ = built
    before = settings.read_table("raw_generations_s", "shard_001")
    out = settings.table_path("raw_generations_s", "shard_001")
    out.unlink()
    partial = settings.path("tables", "_partial", "raw_generations_s", "shard_001")
    partial.mkdir(parents=True, exist_ok=True)
    write_samples(before.iloc[:3], partial / "part-00000.parquet", lineage=True)
    write_samples(before.iloc[3:5], partial / "part-00001.parquet", lineage=True)
    res = dg.materialize(list(defs.assets), selection=["raw_generations_s"], partition_key="shard_001", instance=instance,
                         resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    meta = metadata_of([res], "raw_generations_s")
    assert meta["reused_from_cache"] == 5 and meta["generated_now"] == len(before) - 5 and not partial.exists()
    after = settings.read_table("raw_generations_s", "shard_001")
    assert list(after.sample_id) == list(before.sample_id) and list(after.raw_text) == list(before.raw_text)
    assert meta["dagster/row_count"] == len(after)


def test_judge_scores_are_probabilities(built):
    settings, _ = built
    df = settings.read_table("scored_generations_l")
    ok = df[df.quarantine_reason.isna()]
    assert len(ok) and ok.judge_p_yes.between(0, 1).all()
    assert df[df.judge_p_yes.isna()].quarantine_reason.notna().all()  # no score without a reason


def test_genixer_vqa_follows_lambda_and_band(built):
    settings, results = built
    p = settings.get_preset()
    vqa = read_samples(settings.table_path("genixer_vqa"))
    assert read_applied(settings.table_path("genixer_vqa"))["judge_lambda"] == p.judge_lambda
    scored = settings.read_table("scored_generations_l")
    ok = scored[scored.quarantine_reason.isna()]
    # every row at or above lambda, and a small sample of the hard band (a share of the lambda rows, at least one)
    above = set(ok[ok.judge_p_yes >= p.judge_lambda].sample_id)
    band = ok[ok.judge_p_yes.between(0.5, 0.7, inclusive="left")]
    hard = vqa[vqa.hard_band]
    assert set(vqa.sample_id) == above | set(hard.sample_id) and set(hard.sample_id) <= set(band.sample_id)
    assert len(hard) == min(len(band), max(1, round(p.hard_band_share * len(above))))
    assert metadata_of(results, "genixer_vqa")["rows"] == len(vqa)


def test_rec_filter_keeps_a_reason_for_every_dropped_row(built):
    settings, _ = built
    rows = settings.read_table("scored_generations_s")
    dropped = rows[rows.filter_reason.notna()]
    assert dropped.filter_reason.str.match(r"^[123]-").all()
    kept = read_samples(settings.table_path("genixer_rec"))
    assert set(kept.sample_id) == set(rows[rows.filter_reason.isna()].sample_id)
    assert np.isfinite(kept.clip_score.astype(float)).all()


def test_generation_quality_reports(built):
    _, results = built
    meta = metadata_of(results, "generation_quality")
    for key in ("vqa_correctness", "rec_correctness", "judge_vs_oracle", "clip_vs_oracle", "question_statistics", "box_statistics", "held_in_vs_held_out"):
        assert key in meta
    assert 0 <= meta["vqa_raw_correct"] <= 1


def test_generation_quality_covers_both_domains(built):
    settings, _ = built
    d = settings.read_table("generation_quality_domains")
    assert set(d.domain) == {"held-in corpus", "held-out background"} and set(d.data) == {"genixer_l", "genixer_s"}
    assert d.raw_correct.between(0, 1).all() and (d.kept <= d.raw).all()


@pytest.mark.parametrize("cfg,match", [({"mode": "sometimes"}, "mode must be"), ({"task": "captioning"}, "is not one of")])
def test_bad_generation_config_is_a_clear_error(built, instance, cfg, match):
    settings, _ = built
    with pytest.raises(Exception, match=match):
        dg.materialize(list(defs.assets), selection=["raw_generations_l"], partition_key="shard_000", instance=instance,
                       resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                       run_config={"ops": {"raw_generations_l": {"config": cfg}}})


def test_data_and_model_checks_run_per_partition_and_pass_on_the_smoke_graph(built, instance):
    """The checks of the shard- and recipe-partitioned assets ran once in each partition's run (tests/test_checks_fail.py
    shows each one failing on a broken output)."""
    from genixer_assets.partitions import shard_partitions
    from genixer_assets.partitions import recipe_partitions

    _, results = built
    per_partition = {"image_corpus_valid": shard_partitions, "raw_generations_l_complete": shard_partitions,
                     "raw_generations_s_complete": shard_partitions, "scored_generations_l_valid": shard_partitions,
                     "scored_generations_s_valid": shard_partitions, "retrained_models_valid": recipe_partitions,
                     "benchmark_predictions_complete": recipe_partitions, "region_clip_model_valid": None}
    seen: dict[str, list] = {}
    for r in results:
        for c in r.get_asset_check_evaluations():
            if c.check_name in per_partition:
                seen.setdefault(c.check_name, []).append((r.dagster_run.tags.get("dagster/partition"), c.passed, c.metadata))
    for name, pdef in per_partition.items():
        keys = sorted(k for k, _, _ in seen.get(name, []))
        assert keys == (sorted(pdef.get_partition_keys(dynamic_partitions_store=instance)) if pdef else [None]), name
        assert all(ok for _, ok, _ in seen[name]), [(name, k, m) for k, ok, m in seen[name] if not ok]


def test_filtered_sets_show_kept_rows_with_their_scores(built):
    from genixer.preview import tile_lines

    settings, results = built
    for name, score in (("genixer_vqa", "P(Yes)"), ("genixer_rec", "CLIP")):
        preview = metadata_of(results, name)["kept_preview"]
        assert preview.startswith("![kept rows with their") and "data:image/png;base64," in preview
        kept = settings.read_table(name)
        (line,) = tile_lines(kept.iloc[0].to_dict())[:1]
        assert line.startswith(f"[{kept.task.iloc[0]}]") and score in line
    assert tile_lines({"task": "rec", "turns": [], "clip_score": float("nan")}) == ["[rec]"]
