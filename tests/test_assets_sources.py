"""The graph on published data: `collected_datasets` from configured sources instead of the world."""

import dagster as dg
import pandas as pd

from genixer.schema import read_samples
from genixer_assets.collection_checks import collected_datasets_valid
from genixer_assets.collection import collected_datasets
from resources import GenixerSettings
from tests.sources.test_vqav2 import _release as vqav2_release


def _materialize(tmp_path, sources):
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))
    res = dg.materialize([collected_datasets, collected_datasets_valid], resources={"settings": settings},
                         run_config={"ops": {"collected_datasets": {"config": {"sources": sources}}}})
    return settings, res


def test_collected_datasets_reads_configured_sources(tmp_path):
    q, a, images, answers = vqav2_release(tmp_path / "vqa")
    settings, res = _materialize(tmp_path, [{"format": "vqav2", "files": [str(q), str(a)], "images": str(images)}])
    assert res.success
    df = read_samples(settings.table_path("collected_datasets"))
    assert sorted(df.record_id) == ["420000", "730001"] and set(df.task) == {"common_vqa"}
    assert set(df.source) == {"vqav2:v2_mscoco_val2014_annotations.json"}
    quarantine = pd.read_parquet(settings.table_path("collected_quarantine"))
    assert sorted(quarantine.reason) == ["image missing", "missing field"]
    md = {k: getattr(v, "value", v) for k, v in res.asset_materializations_for_node("collected_datasets")[0].metadata.items()}
    assert md["samples"] == 2 and md["quarantined"] == 2 and md["images_missing"] == 1
    assert "vqav2:v2_mscoco_val2014_annotations.json" in md["by_source_task"] and "data:image/png;base64," in md["boxes"]
    check = res.get_asset_check_evaluations()[0]
    assert check.passed and check.metadata["oracle_agreement"].value == "no oracle (published data)"


def test_collected_datasets_from_vqav2_refcoco_and_llava_together(tmp_path):
    from tests.sources.test_llava import _release as llava_release
    from tests.sources.test_refcoco import _release as refcoco_release

    q, a, vqa_images, _ = vqav2_release(tmp_path / "vqa")
    refs, instances, coco = refcoco_release(tmp_path / "ref")
    llava, playground = llava_release(tmp_path / "llava")
    settings, res = _materialize(tmp_path, [
        {"format": "vqav2", "files": [str(q), str(a)], "images": str(vqa_images)},
        {"format": "refcoco", "files": [str(refs), str(instances)], "images": str(coco)},
        {"format": "llava", "files": [str(llava)], "images": str(playground)}])
    assert res.success and res.get_asset_check_evaluations()[0].passed
    df = read_samples(settings.table_path("collected_datasets"))
    # every source's own rows, as `genixer collect` writes them one by one
    for i, (fmt, files, images) in enumerate([("vqav2", [q, a], vqa_images), ("refcoco", [refs, instances], coco), ("llava", [llava], playground)]):
        alone = read_samples(settings.path("tables", "_sources", f"{i:02d}_{fmt}.parquet"))
        mine = df[df.source.str.startswith(fmt + ":")].reset_index(drop=True)
        assert len(alone) > 0 and alone.sample_id.tolist() == mine.sample_id.tolist()
    assert {"rec", "reg", "common_vqa", "md"} <= set(df.task)
    text_only = df[df.image_path.isna()]
    assert text_only.record_id.tolist() == ["i6IyJda_0"] and text_only.extra.str.contains("text_only").all()
    md = {k: getattr(v, "value", v) for k, v in res.asset_materializations_for_node("collected_datasets")[0].metadata.items()}
    assert md["text_only"] == 1 and md["samples"] == len(df)
    quarantine = pd.read_parquet(settings.table_path("collected_quarantine"))
    assert {"vqav2", "refcoco", "llava"} == set(quarantine.source.str.split(":").str[0])


def test_collected_datasets_wrong_format_fails_clearly(tmp_path):
    q, a, images, _ = vqav2_release(tmp_path / "vqa")
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))
    res = dg.materialize([collected_datasets], resources={"settings": settings}, raise_on_error=False,
                         run_config={"ops": {"collected_datasets": {"config": {"sources": [
                             {"format": "vqav2", "files": [str(a), str(q)], "images": str(images)}]}}}})
    assert not res.success
    err = res.get_step_failure_events()[0].event_specific_data.error
    assert "vqav2 expects a JSON object with a 'questions' list" in str(err.cause or err.message) + err.message


def test_corpus_shards_become_dynamic_partitions_once(tmp_path):
    from genixer_assets.collection import corpus_shards, image_corpus, world_scenes
    from genixer_assets.partitions import CORPUS_SHARDS

    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["stale_from_another_root"])
    small = {"ops": {"world_scenes": {"config": {"n_collect": 2, "n_corpus": 6, "n_bench": 2, "n_heldout": 2}}}}
    res = dg.materialize([world_scenes, corpus_shards], resources={"settings": settings}, instance=instance, run_config=small)
    md = res.asset_materializations_for_node("corpus_shards")[0].metadata
    assert md["new_shards"].value == ["shard_000", "shard_001"] and md["removed_stale_partitions"].value == ["stale_from_another_root"]
    assert instance.get_dynamic_partitions(CORPUS_SHARDS) == ["shard_000", "shard_001"]
    again = dg.materialize([corpus_shards], resources={"settings": settings}, instance=instance)
    assert again.asset_materializations_for_node("corpus_shards")[0].metadata["new_shards"].value == []
    dg.materialize([image_corpus], partition_key="shard_001", resources={"settings": settings}, instance=instance)
    shard = settings.read_table("image_corpus", "shard_001")
    scenes = settings.read_table("world_scenes")
    corpus = scenes[scenes.split == "corpus"].reset_index(drop=True)
    assert list(shard.image_id) == list(corpus.image_id[1::2]) and (shard.shard == "shard_001").all()
    assert list(shard.sha256) == list(corpus.sha256[1::2])


def _corpus_run(settings, instance, corpus_config):
    from genixer_assets.collection import corpus_shards

    res = dg.materialize([corpus_shards], resources={"settings": settings}, instance=instance,
                         run_config={"ops": {"corpus_shards": {"config": corpus_config}}})
    return res.asset_materializations_for_node("corpus_shards")[0].metadata["new_shards"].value


def _corpus_shard(settings, instance, key):
    from genixer_assets.collection import image_corpus

    res = dg.materialize([image_corpus], partition_key=key, resources={"settings": settings}, instance=instance)
    return settings.read_table("image_corpus", key), res.asset_materializations_for_node("image_corpus")[0].metadata


def test_image_corpus_from_a_folder_and_from_webdataset_tars(tmp_path):
    from tests.sources.test_corpus import _img2dataset_shard, _jpeg, _sha

    instance = dg.DagsterInstance.ephemeral()
    # a folder of plain images, cut into shards of 2; a truncated file is quarantined, a text file ignored
    folder = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "sub/b.png", "sub/deeper/c.webp"]):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_jpeg((30 + i, 20), fmt={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[name.rsplit(".", 1)[1]]))
    (folder / "broken.jpg").write_bytes(_jpeg((40, 40))[:200])
    (folder / "notes.txt").write_text("not an image")
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data_folder"))
    cfg = {"kind": "folder", "path": str(folder), "shard_size": 2}
    assert _corpus_run(settings, instance, cfg) == ["folder-00000", "folder-00001"]
    rows = pd.concat([_corpus_shard(settings, instance, k)[0] for k in ("folder-00000", "folder-00001")])
    assert sorted(rows.image_id) == ["a.jpg", "sub/b.png", "sub/deeper/c.webp"]
    assert rows.set_index("image_id").loc["a.jpg", ["width", "height"]].tolist() == [30, 20]
    assert (rows.sha256.str.len() == 64).all()
    q = pd.read_parquet(settings.table_path("image_corpus_quarantine", "folder-00000"))
    q2 = pd.read_parquet(settings.table_path("image_corpus_quarantine", "folder-00001"))
    assert list(pd.concat([q, q2]).key) == ["broken.jpg"]
    (folder / "new.jpg").write_bytes(_jpeg((8, 8)))
    assert _corpus_run(settings, instance, cfg) == ["folder-00002"]  # the old shards keep their images
    assert list(_corpus_shard(settings, instance, "folder-00002")[0].image_id) == ["new.jpg"]

    # WebDataset tars as img2dataset writes them: a tar is a shard
    wds = tmp_path / "wds"
    wds.mkdir()
    jpg = _jpeg((12, 9))
    _img2dataset_shard(wds, "00000", {"000000000": (jpg, "a red kite", {"json", "txt"}), "000000001": (_jpeg((5, 5)), "grass", {"json"})})
    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data_wds"))
    instance = dg.DagsterInstance.ephemeral()
    assert _corpus_run(settings, instance, {"kind": "webdataset", "path": str(wds)}) == ["wds-00000"]
    shard, md = _corpus_shard(settings, instance, "wds-00000")
    r = shard.set_index("image_id").loc["wds-00000/000000000"]
    assert (r.width, r.height, r.caption, r.sha256) == (12, 9, "a red kite", _sha(jpg))
    assert open(r.image_path, "rb").read() == jpg and md["images"].value == 2
    _img2dataset_shard(wds, "00001", {"000010000": (_jpeg((6, 6)), "sky", {"txt"})})
    assert _corpus_run(settings, instance, {"kind": "webdataset", "path": str(wds)}) == ["wds-00001"]
