"""The graph after collection without the shapes world: `collected_datasets` (and `benchmark_sets`) read
from published files, every later asset materialised on the smoke preset into a temporary data root with
no world asset materialised (no `world_scenes` table exists at any point)."""

import json
import pickle

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from genixer.boxes import box_to_text
from genixer.datasource import holdout_images
from genixer.schema import read_applied, read_samples, write_samples
from genixer.sources.collected import collected_images, heldout_count
from genixer.sources.common import REC_QUESTION
from genixer.sources.negatives import CORRUPTIONS
from genixer_assets.common import data_source, from_world
from genixer_assets.collection import collected_datasets
from genixer_assets.instructions import instruction_templates
from resources import GenixerSettings, MLLMBackend
from tests.sources.helpers import write_image, write_json

COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
RGB = [(200, 30, 30), (30, 180, 30), (30, 30, 200), (220, 220, 30), (240, 240, 240), (10, 10, 10)]


# ---- fixture releases, in the formats the readers take ----------------------------------------

def vqav2_release(root, n_images=15, subtype="train2014", first_id=9000):
    """VQAv2 questions + annotations: per image a colour, a count and a yes/no question (ten answers each)."""
    images = root / subtype
    questions, annotations = [], []
    for i in range(n_images):
        iid = first_id + i
        write_image(images / f"COCO_{subtype}_{iid:012d}.jpg", (64, 48), RGB[i % 6])
        for k, (q, a, t) in enumerate([("What colour is the bus?", COLOURS[i % 6], "other"),
                                        ("How many dogs are there?", str(i % 4 + 1), "number"),
                                        ("Is there a cat in the picture?", ["yes", "no"][i % 2], "yes/no")]):
            qid = iid * 10 + k
            questions.append({"image_id": iid, "question": q, "question_id": qid})
            annotations.append({"question_type": " ".join(q.lower().split()[:2]), "multiple_choice_answer": a,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)],
                                "image_id": iid, "answer_type": t, "question_id": qid})
    q = write_json(root / f"v2_OpenEnded_mscoco_{subtype}_questions.json", {"data_subtype": subtype, "questions": questions})
    a = write_json(root / f"v2_mscoco_{subtype}_annotations.json", {"data_subtype": subtype, "annotations": annotations})
    return {"format": "vqav2", "files": [str(q), str(a)], "images": str(images)}


def aokvqa_release(root, n_images=3, split="train"):
    coco = root / "coco"
    recs = []
    for i in range(n_images):
        iid = 500 + i
        write_image(coco / f"{split}2017" / f"{iid:012d}.jpg", (56, 56), RGB[(i + 2) % 6])
        recs.append({"split": split, "image_id": iid, "question_id": f"q{iid}", "question": "What is the person holding?",
                     "choices": ["a kite", "an umbrella", "a cup", "a phone"], "correct_choice_idx": i % 4,
                     "direct_answers": [["kite", "umbrella", "cup", "phone"][i % 4]] * 10, "difficult_direct_answer": False,
                     "rationales": ["It is in the hand."]})
    f = write_json(root / f"aokvqa_v1p0_{split}.json", recs)
    return {"format": "aokvqa", "files": [str(f)], "images": str(coco)}


def refcoco_release(root, n_images=15, first_id=100, split="train", sentences=3):
    """refs(unc).p + instances.json: per image three objects side by side, each with `sentences` expressions."""
    from tests.sources.test_refcoco import _ref

    images = root / "train2014"
    image_rows, anns, refs = [], [], []
    for i in range(n_images):
        iid = first_id + i
        name = f"COCO_train2014_{iid:012d}.jpg"
        write_image(images / name, (96, 64), RGB[i % 6])
        image_rows.append({"file_name": name, "height": 64, "width": 96, "id": iid})
        for k, (thing, x) in enumerate([("left", 2), ("middle", 34), ("right", 66)]):
            aid = iid * 10 + k
            anns.append({"image_id": iid, "bbox": [x, 8.0, 28.0, 48.0], "category_id": 1, "id": aid, "area": 1.0, "iscrowd": 0})
            sents = [(aid * 10 + j, s, s) for j, s in enumerate([f"the {COLOURS[(i + k) % 6]} person on the {thing}",
                                                                  f"{thing} one", f"person at the {thing}"][:sentences])]
            refs.append(_ref(aid, aid, iid, split, sents))
    data = root / "refcoco"
    data.mkdir(parents=True)
    with open(data / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    inst = write_json(data / "instances.json", {"images": image_rows, "annotations": anns,
                                                "categories": [{"supercategory": "person", "id": 1, "name": "person"}]})
    return {"format": "refcoco", "files": [str(data / "refs(unc).p"), str(inst)], "images": str(images)}


def benchmark_sources(root) -> list[dict]:
    """benchmark_sets sources: the readers' fixture releases of VQAv2 val, POPE, A-OKVQA val and RefCOCO testA."""
    from tests.sources.test_aokvqa import _release as aokvqa_val
    from tests.sources.test_pope import _release as pope_release
    from tests.sources.test_refcoco import _release as refcoco_test
    from tests.sources.test_vqav2 import _release as vqav2_val

    q, a, vqa_images, _ = vqav2_val(root / "bench_vqa")
    pope, pope_images = pope_release(root / "bench_pope")
    aok, coco = aokvqa_val(root / "bench_aok")
    refs, inst, ref_images = refcoco_test(root / "bench_ref")
    return [{"format": "vqav2", "files": [str(q), str(a)], "images": str(vqa_images)},
            {"format": "pope", "files": [str(pope)], "images": str(pope_images)},
            {"format": "aokvqa", "files": [str(aok)], "images": str(coco)},
            {"format": "refcoco", "files": [str(refs), str(inst)], "images": str(ref_images)}]


# ---- running ------------------------------------------------------------------------------------

def _settings(tmp_path, name="data"):
    return GenixerSettings(preset="smoke", data_dir=str(tmp_path / name))


def _resources(settings):
    return {"settings": settings, "backend": MLLMBackend(device="cpu")}


def _md(res, asset: str) -> dict:
    (m,) = res.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in m.metadata.items()}


def _collect(settings, sources, templates_file=None):
    ops = {"collected_datasets": {"config": {"sources": sources}}}
    if templates_file:
        ops["instruction_templates"] = {"config": {"templates_file": str(templates_file)}}
    res = dg.materialize([collected_datasets, instruction_templates], resources=_resources(settings), run_config={"ops": ops})
    assert res.success
    return res


def _no_world(settings):
    assert not settings.table_path("world_scenes").exists() and not settings.path("world").exists()


# ---- 1. the data source ---------------------------------------------------------------------------

def test_the_data_source_is_chosen_from_the_collected_sources(tmp_path):
    settings = _settings(tmp_path)
    _collect(settings, [vqav2_release(tmp_path / "vqa", n_images=3)])
    src = data_source(settings)
    assert src.name == "collected" and src.oracle is None and src.patch_labels is None
    assert not from_world(settings, "collected_datasets")
    df = read_samples(settings.table_path("collected_datasets"))
    write_samples(df.assign(source="shapes_world"), settings.table_path("collected_datasets"))
    assert from_world(settings, "collected_datasets")
    with pytest.raises(dg.Failure, match="collected_datasets came from the shapes world, but world_scenes has not been materialised"):
        data_source(settings)  # the world's rows need its scenes
    with pytest.raises(dg.Failure, match="benchmark_sets has not been materialised"):
        from_world(settings, "benchmark_sets")
    images = collected_images(df)
    assert list(images.image_id) == sorted(set(df.image_id)) and heldout_count(len(images), 6) == 0 and heldout_count(40, 6) == 6


# ---- 2. the judge ---------------------------------------------------------------------------------

def test_judge_mllm_without_the_world(tmp_path):
    from genixer_assets.filtering_checks import judge_mllm_separates
    from genixer_assets.filtering import judge_mllm

    settings = _settings(tmp_path)
    sources = [vqav2_release(tmp_path / "vqa"), aokvqa_release(tmp_path / "aok"), refcoco_release(tmp_path / "ref", n_images=4)]
    _collect(settings, sources)
    res = dg.materialize([judge_mllm, judge_mllm_separates], resources=_resources(settings))
    assert res.success
    _no_world(settings)
    md = _md(res, "judge_mllm")
    assert "no world" in md["records_from"] and md["yes_share"] == 0.5
    for kind in ("answer_from_same_kind", "flipped_yes_no"):
        assert kind in md["corruptions"]
    assert "option_swapped" not in md["corruptions"]  # every A-OKVQA image sorts last: all three are held out
    ev = pd.read_parquet(settings.table_path("judge_mllm_eval"))
    # held-out records: from held-out images only (split by image), exactly one "No" per "Yes"
    samples = read_samples(settings.table_path("collected_datasets"))
    images = collected_images(samples)
    val = holdout_images(images.image_id, heldout_count(len(images), settings.get_preset().val_images))
    assert len(ev) > 0 and set(ev.image_id) <= val and md["heldout_images"] == len(val) == 4
    assert ev.label.mean() == 0.5 and (ev.corruption == "none").sum() == (ev.corruption != "none").sum()
    assert set(ev.corruption) - {"none"} <= set(CORRUPTIONS) and ev.p_yes.between(0, 1).all()
    assert {"option_swapped", "flipped_yes_no"} <= set(ev.corruption) and (ev.corruption == "option_swapped").sum() == 3
    assert md["heldout_records"] == len(ev) and "auc_vs_true" in md["auc_by_corruption"]
    for kind in set(ev.corruption) - {"none"}:
        assert kind in md["auc_by_corruption"]


# ---- 3. + 4. the region CLIP's threshold, and the REC filter's phrasings --------------------------

def _raw_rec_shard(settings, shard, image):
    """Raw Genixer_S rows of one shard: REC questions in the published phrasing, a custom phrasing of the
    templates in use, and a world phrasing that is not in use."""
    w, h = 96, 64
    box = [2.0, 8.0, 50.0, 60.0]
    questions = [REC_QUESTION.format(ref="the red person on the left"), "Kindly box the tall lamp for me.", "Where is the dog?"]
    rows = [{"sample_id": f"genixer_s:{k}", "image_id": f"img{k}", "image_path": image, "width": w, "height": h, "task": "rec",
             "turns": [{"question": q, "answer": box_to_text(box, w, h)}], "boxes": [box], "points": [], "source": "genixer_s",
             "split": "corpus", "generator": "g", "template_id": "t", "seed": k, "quarantine_reason": None}
            for k, q in enumerate(questions)]
    write_samples(pd.DataFrame(rows), settings.table_path("raw_generations_s", shard), lineage=True)


def test_region_clip_threshold_modes_and_the_rec_filter_phrasings(tmp_path):
    from genixer_assets.filtering_checks import region_clip_model_valid
    from genixer_assets.filtering import region_clip_model, scored_generations_s
    from genixer_assets.partitions import CORPUS_SHARDS
    from genixer.world.grammar import PHRASINGS

    # enough held-out pairs (3 held-out images x 3 objects x 3 REC expressions): calibrated
    settings = _settings(tmp_path)
    release = refcoco_release(tmp_path / "ref")
    templates = write_json(tmp_path / "templates.json", {"phrasings": {**{k: list(v) for k, v in PHRASINGS.items()},
                                                                       "locate": ["Kindly box {ref} for me."]}})
    _collect(settings, [release], templates)
    res = dg.materialize([region_clip_model, region_clip_model_valid], resources=_resources(settings))
    assert res.success and res.get_asset_check_evaluations()[0].passed
    md = _md(res, "region_clip_model")
    # 3 held-out images x 3 objects x 3 expressions, each a REC and a REG pair
    assert md["clip_threshold_mode"] == "calibrate" and md["heldout_true_pairs"] == 54 and md["heldout_negatives"] >= 54
    assert "warning" not in md and -1 <= md["clip_threshold"] <= 1
    cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
    assert cal["mode"] == "calibrate" and cal["objective"] == "f1" and cal["threshold"] == md["clip_threshold"]

    # the REC filter reads expressions with the phrasings in use (the templates' + REC_QUESTION), at the calibrated threshold
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["shard_000"])
    image = read_samples(settings.table_path("collected_datasets")).image_path.iloc[0]
    _raw_rec_shard(settings, "shard_000", image)
    res = dg.materialize([scored_generations_s], partition_key="shard_000", resources=_resources(settings), instance=instance)
    assert res.success
    rows = read_samples(settings.table_path("scored_generations_s", "shard_000")).set_index("sample_id")
    assert rows.loc["genixer_s:0", "expression"] == "the red person on the left"
    assert rows.loc["genixer_s:1", "expression"] == "the tall lamp"
    assert rows.loc["genixer_s:2", "filter_reason"].startswith("1-malformed: not a REC question")
    for k in (0, 1):
        r = rows.loc[f"genixer_s:{k}"]
        assert pd.notna(r.clip_score) and (pd.isna(r.filter_reason) or r.filter_reason.startswith("3-clip"))
    applied = read_applied(settings.table_path("scored_generations_s", "shard_000"))
    assert applied["clip_threshold"] == cal["threshold"] and applied["clip_threshold_mode"] == "calibrate"

    # clip_threshold_mode: fixed, on the same data
    res = dg.materialize([region_clip_model], resources=_resources(settings), run_config={"ops": {"region_clip_model": {"config": {
        "clip_threshold_mode": "fixed", "clip_threshold_value": 0.25}}}})
    md = _md(res, "region_clip_model")
    assert md["clip_threshold_mode"] == "fixed" and md["clip_threshold"] == 0.25 and "warning" not in md
    assert md["calibration_n_pos"] == 54  # what the fixed cut does on the held-out pairs is reported

    # too few held-out pairs (5 images: 1 held out, 9 REC + 9 REG pairs < 20): auto falls back to the paper's 0.6, with a warning
    small = _settings(tmp_path, "small")
    _collect(small, [refcoco_release(tmp_path / "ref_small", n_images=5)])
    res = dg.materialize([region_clip_model], resources=_resources(small))
    md = _md(res, "region_clip_model")
    assert md["clip_threshold_mode"] == "fixed" and md["clip_threshold"] == 0.6 and "only 18 held-out true pairs" in md["warning"]
    cal = json.loads(small.path("tables", "region_clip_calibration.json").read_text())
    assert cal["threshold"] == 0.6 and cal["requested_mode"] == "auto" and "warning" in cal
    _no_world(settings)
    _no_world(small)


# ---- 5. captions from the collected data -----------------------------------------------------------

def test_the_collected_sources_captions_are_its_region_descriptions(tmp_path):
    settings = _settings(tmp_path)
    _collect(settings, [refcoco_release(tmp_path / "ref", n_images=2, sentences=1), vqav2_release(tmp_path / "vqa", n_images=2)])
    samples = read_samples(settings.table_path("collected_datasets")).to_dict("records")
    src = data_source(settings)
    caps, where = src.captions(samples, {s["image_id"] for s in samples})
    assert [c["image_id"] for c in caps] == ["COCO_train2014_000000000100.jpg", "COCO_train2014_000000000101.jpg"]
    assert caps[0]["target"] == "the red person on the left; the green person on the middle; the blue person on the right."
    assert caps[0]["prompt"] == "Describe the image." and caps[0]["task"] == "caption" and where.startswith("collected region")
    assert src.captions(samples, {"COCO_train2014_000000000101.jpg"})[0] == caps[1:]
    vqa = [s for s in samples if s["task"] == "common_vqa"]
    assert src.captions(vqa, {s["image_id"] for s in vqa}) == ([], "none: no world and no REC/REG sample to describe an image "
                                                                     "(caption share 0)")


def test_base_mllm_without_the_world(tmp_path):
    from genixer_assets.generators_checks import base_mllm_above_chance, base_mllm_weights_finite
    from genixer_assets.generators import base_mllm

    # REC data: captions from its expressions, the contrastive vision pre-stage on them
    settings = _settings(tmp_path)
    _collect(settings, [vqav2_release(tmp_path / "vqa", n_images=10), refcoco_release(tmp_path / "ref", n_images=5, sentences=1)])
    res = dg.materialize([base_mllm, base_mllm_weights_finite, base_mllm_above_chance], resources=_resources(settings))
    assert res.success
    md = _md(res, "base_mllm")
    images = collected_images(read_samples(settings.table_path("collected_datasets")))
    val = holdout_images(images.image_id, heldout_count(len(images), settings.get_preset().val_images))
    train_refcoco = [i for i in images.image_id if i.startswith("COCO_train2014_00000000010") and i not in val]
    assert md["caption_source"].startswith("collected region descriptions") and md["captions"] == len(train_refcoco) == 5
    assert md["caption_share_applied"] == settings.get_preset().caption_share and md["vision_objective"] == "contrastive"
    assert "collected answers" in md["checked_against"] and md["text_only_left_out"] == 0
    ev = pd.read_parquet(settings.table_path("base_mllm_eval"))
    assert len(ev) == 3 * len(val) and ev.correct.dtype == bool
    checks = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert checks["base_mllm_weights_finite"].passed and "blind_prior" in checks["base_mllm_above_chance"].metadata

    # no REC/REG sample: no caption, caption share 0, no vision pre-stage (patch labels need scenes, contrastive captions)
    bare = _settings(tmp_path, "bare")
    _collect(bare, [vqav2_release(tmp_path / "vqa2", n_images=10)])
    res = dg.materialize([base_mllm], resources=_resources(bare))
    md = _md(res, "base_mllm")
    assert md["captions"] == 0 and md["caption_share_applied"] == 0.0 and md["caption_source"].startswith("none")
    assert md["vision_objective"] == "none: contrastive needs captions"
    _no_world(settings)
    _no_world(bare)


# ---- 6. filters and generation quality: review sample instead of the oracle ------------------------

def _scored_shards(settings, images: list[str], shards=("shard_000", "shard_001")):
    """Hand-made scored_generations_l/_s shards, as the scoring assets write them."""
    for n, shard in enumerate(shards):
        rows_l, rows_s = [], []
        for k in range(12):
            img, sid = images[k % len(images)], f"{shard}:{k}"
            base = {"image_id": img, "image_path": img, "width": 96, "height": 64, "points": [], "split": "corpus", "template_id": "t",
                    "seed": k}
            bad = k < 2
            p = (k + 0.5 + 12 * n) / 24
            rows_l.append({**base, "sample_id": f"genixer_l:{sid}", "task": "common_vqa", "source": "genixer_l", "generator": "gl",
                           "turns": None if bad else [{"question": "What colour is the bus?", "answer": COLOURS[k % 6]}], "boxes": None if bad else [],
                           "judge_p_yes": None if bad else p, "quarantine_reason": "parse: no Question:" if bad else None})
            box = [2.0, 8.0, 30.0 + 2 * k, 56.0]
            clip = None if bad else -0.3 + 1.1 * p
            reason = "1-malformed: parse: no Question:" if bad else (None if clip >= 0.2 else f"3-clip: {clip:.3f} < 0.200")
            rows_s.append({**base, "sample_id": f"genixer_s:{sid}", "task": "rec", "source": "genixer_s", "generator": "gs",
                           "turns": None if bad else [{"question": REC_QUESTION.format(ref=f"the {COLOURS[k % 6]} person"),
                                                       "answer": box_to_text(box, 96, 64)}], "boxes": None if bad else [box],
                           "clip_score": clip, "filter_reason": reason, "expression": None if bad else f"the {COLOURS[k % 6]} person",
                           "quarantine_reason": "parse: no Question:" if bad else None})
        write_samples(pd.DataFrame(rows_l), settings.table_path("scored_generations_l", shard), lineage=True,
                      applied={"judge_checkpoint": "judge0"})
        write_samples(pd.DataFrame(rows_s), settings.table_path("scored_generations_s", shard), lineage=True,
                      applied={"clip_threshold": 0.2, "clip_threshold_mode": "calibrate", "region_clip_checkpoint": "clip0"})


def test_filtered_recipes_and_generation_quality_without_the_world(tmp_path):
    from genixer_assets import filtering_checks as checks
    from genixer_assets.data_quality import generation_quality
    from genixer_assets.filtering import genixer_rec, genixer_vqa

    settings = _settings(tmp_path)
    _collect(settings, [vqav2_release(tmp_path / "vqa", n_images=4), refcoco_release(tmp_path / "ref", n_images=3, sentences=1)])
    images = sorted(read_samples(settings.table_path("collected_datasets")).image_path.unique())
    _scored_shards(settings, images)
    assets = [genixer_vqa, genixer_rec, generation_quality]
    vqa_checks = [checks.genixer_vqa_not_empty, checks.genixer_vqa_not_worse_than_raw, checks.genixer_vqa_better_than_raw,
                  checks.genixer_vqa_correctness_aim, checks.genixer_rec_not_empty, checks.genixer_rec_not_worse_than_raw,
                  checks.genixer_rec_better_than_raw]
    config = {"ops": {"generation_quality": {"config": {"review_per_task": 8}}}}
    res = dg.materialize(assets + vqa_checks, resources=_resources(settings), run_config=config)
    assert res.success
    _no_world(settings)
    ev = {e.check_name: e for e in res.get_asset_check_evaluations()}
    for name in ("genixer_vqa_not_worse_than_raw", "genixer_rec_not_worse_than_raw"):  # blocking, but no oracle, no review sheet:
        assert not ev[name].passed and ev[name].severity == dg.AssetCheckSeverity.WARN  # not measured, a warning, not a pass
        assert ev[name].description.startswith("not measured: no oracle") and "no review sheet" in ev[name].metadata["not_measured"].value
    for name in ("genixer_vqa_better_than_raw", "genixer_vqa_correctness_aim", "genixer_rec_better_than_raw"):  # aims: a warning
        assert not ev[name].passed and ev[name].severity == dg.AssetCheckSeverity.WARN

    md = _md(res, "generation_quality")
    assert md["measured_with"].startswith("no oracle")
    for key in ("score_distributions", "vqa_yield_by_lambda", "vqa_funnel_by_task", "rec_funnel_by_task", "question_statistics",
                "box_statistics", "judge_score_histogram", "clip_score_histogram", "question_length_histogram", "box_size_histogram"):
        assert key in md
    assert "judge P(Yes), raw Genixer_L" in md["score_distributions"] and "| common_vqa |" in md["vqa_funnel_by_task"]
    assert "vqa_correctness" not in md and "held_in_vs_held_out" not in md
    assert settings.read_table("generation_quality_domains").empty

    review_dir = settings.root / "review"
    csv = pd.read_csv(review_dir / "review.csv", dtype=str, keep_default_na=False)
    assert len(csv) == 16 and csv.task.value_counts().to_dict() == {"common_vqa": 8, "rec": 8} and (csv.verdict == "").all()
    scored = pd.concat([settings.read_table("scored_generations_l"), settings.read_table("scored_generations_s")])
    assert set(csv.sample_id) <= set(scored.sample_id) and md["review_rows"] == 16
    html = (review_dir / "review.html").read_text()
    assert html.count('class="card"') == 16 and "data:image/png;base64," in html

    # a reviewer fills the verdicts in: the next materialisation reports review_report's tables and keeps the CSV
    csv["verdict"] = ["correct" if i % 3 else "incorrect" for i in range(len(csv))]
    csv.to_csv(review_dir / "review.csv", index=False)
    res = dg.materialize([generation_quality], resources=_resources(settings), run_config=config)
    md = _md(res, "generation_quality")
    assert md["reviewed"] == 16 and md["review_status"] == "verdicts read from review.csv"
    assert "raw_correct" in md["review_correctness"] and "precision" in md["review_filters"]
    table = settings.read_table("generation_quality_review_correctness").set_index("task")
    assert table.loc["all", "correct_n"] + table.loc["all", "incorrect_n"] == 16
    assert table.loc["all", "correct_n"] == sum(1 for i in range(16) if i % 3)
    assert pd.read_csv(review_dir / "review.csv", dtype=str).verdict.tolist() == csv.verdict.tolist()


# ---- 7. published benchmarks ----------------------------------------------------------------------

def test_retraining_and_published_benchmarks_without_the_world(tmp_path):
    from genixer_assets.benchmarks import benchmark_predictions, benchmark_scores
    from genixer_assets.benchmarks_checks import benchmark_predictions_complete
    from genixer_assets.collection import benchmark_sets
    from genixer_assets.collection_checks import benchmark_sets_valid
    from genixer_assets.generators import base_mllm
    from genixer_assets.retraining import retrained_models
    from genixer_assets.retraining_checks import retrained_models_valid

    settings = _settings(tmp_path)
    _collect(settings, [vqav2_release(tmp_path / "vqa", n_images=10), aokvqa_release(tmp_path / "aok"),
                        refcoco_release(tmp_path / "ref", n_images=5, sentences=1)])
    res = dg.materialize([base_mllm], resources=_resources(settings))
    assert res.success
    res = dg.materialize([retrained_models, retrained_models_valid], partition_key="baseline", resources=_resources(settings))
    assert res.success and _md(res, "retrained_models")["caption_source"].startswith("collected region descriptions")

    sources = benchmark_sources(tmp_path)
    res = dg.materialize([benchmark_sets, benchmark_sets_valid], resources=_resources(settings),
                         run_config={"ops": {"benchmark_sets": {"config": {"sources": sources}}}})
    assert res.success and res.get_asset_check_evaluations()[0].passed
    md = _md(res, "benchmark_sets")
    assert md["benchmark_rows"] == 7 and "RefCOCO-testA" in md["by_benchmark"] and "no benchmark" in md["by_benchmark"]

    res = dg.materialize([benchmark_predictions, benchmark_predictions_complete], partition_key="baseline",
                         resources=_resources(settings))
    assert res.success and res.get_asset_check_evaluations()[0].passed
    preds = settings.read_table("benchmark_predictions", "baseline")
    seeds = settings.get_preset().retrain_seeds
    assert len(preds) == 7 * seeds and preds.prediction.map(lambda x: isinstance(x, str)).all()

    write_samples([], settings.table_path("genixer_vqa"), lineage=True,
                  applied={"judge_lambda": 0.3, "hard_band_share": 0.01})
    res = dg.materialize([benchmark_scores], resources=_resources(settings))
    assert res.success
    _no_world(settings)
    md = _md(res, "benchmark_scores")
    assert md["benchmarks_from"].startswith("published benchmarks")
    table = pd.read_parquet(settings.table_path("benchmark_scores"))
    base = table[table.recipe == "baseline"].set_index("benchmark")
    assert set(base.index) == {"VQAv2", "POPE-adversarial", "A-OKVQA-MC", "RefCOCO-testA"}
    assert (base.seeds == seeds).all() and base["mean"].between(0, 1).all()
    assert base.loc["POPE-adversarial", "kind"] == "detail" and base.loc["RefCOCO-testA", "kind"] == "rec"
    assert base.loc["VQAv2", "kind"] == "vqa"
    by_seed = pd.read_parquet(settings.table_path("benchmark_scores_by_seed"))
    # the per-seed scores are the official scripts' (real_benchmarks.score_real) on the predictions
    from genixer.published_benchmarks import score_real

    bench = read_samples(settings.table_path("benchmark_sets"))
    mine = score_real(bench, preds[["recipe", "seed", "sample_id", "prediction"]])
    got = by_seed[by_seed.recipe == "baseline"].set_index(["seed", "benchmark"]).value
    want = mine.set_index(["seed", "benchmark"]).score
    assert np.allclose(got.loc[want.index], want)
    always_yes = table[table.recipe == "ref:always_yes"].set_index("benchmark")
    assert always_yes.loc["POPE-adversarial", "mean"] == pytest.approx(2 / 3)  # 1 yes, 1 no: F1 of always yes
    assert "VQAv2" in md["scores"]
