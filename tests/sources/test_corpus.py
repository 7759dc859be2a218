"""Image corpora: a folder, parquet files (bytes or paths), WebDataset tars as img2dataset writes them;
shards that keep their keys and contents as the corpus grows."""

import hashlib
import io
import json
import re
import tarfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from genixer.sources.corpus import CorpusSpec, plan_shards, read_shard

KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # what a Dagster partition key may safely be


def _jpeg(size, colour=(200, 40, 10), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_all(spec, manifest, cache):
    plan = plan_shards(spec, manifest)
    rows, quarantine = [], []
    for key in plan.shards:
        df, q = read_shard(spec, key, manifest, cache)
        assert set(df.shard) <= {key}
        rows.append(df)
        quarantine += q
    return plan, pd.concat(rows, ignore_index=True).set_index("image_id"), quarantine


def test_folder_corpus_grows_in_new_shards(tmp_path):
    root = tmp_path / "photos"
    files = {"a.jpg": ((30, 20), "JPEG"), "sub/b.png": ((16, 12), "PNG"), "sub/deeper/c.webp": ((8, 24), "WEBP"),
             "D.JPG": ((10, 10), "JPEG")}
    data = {}
    for rel, (size, fmt) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data[rel] = _jpeg(size, fmt=fmt)
        (root / rel).write_bytes(data[rel])
    (root / "notes.txt").write_text("not an image, not in the corpus")
    (root / "sub" / "cut.jpg").write_bytes(_jpeg((64, 64))[:-10])  # the header whole, the pixels cut
    spec, manifest, cache = CorpusSpec("folder", root, shard_size=2), tmp_path / "manifest.json", tmp_path / "cache"

    plan, rows, quarantine = _read_all(spec, manifest, cache)
    assert list(plan.shards) == plan.new == ["folder-00000", "folder-00001", "folder-00002"]
    assert plan.shards["folder-00000"] == ["D.JPG", "a.jpg"] and plan.shards["folder-00002"] == ["sub/deeper/c.webp"]
    assert sorted(rows.index) == sorted(files)
    for rel, (size, _) in files.items():
        r = rows.loc[rel]
        assert (r.width, r.height) == size and r.sha256 == _sha(data[rel]) and r.caption is None
        assert r.image_path == str((root / rel).resolve())
    assert [(q["key"], "truncated" in q["reason"]) for q in quarantine] == [("sub/cut.jpg", True)]
    assert not cache.exists()  # folder images are used where they are

    before = {k: list(v) for k, v in plan.shards.items()}
    (root / "new").mkdir()
    (root / "new" / "e.jpg").write_bytes(_jpeg((5, 7)))
    (root / "f.png").write_bytes(_jpeg((9, 3), fmt="PNG"))
    grown = plan_shards(spec, manifest)
    assert grown.new == ["folder-00003"] and grown.shards["folder-00003"] == ["f.png", "new/e.jpg"]
    assert {k: grown.shards[k] for k in before} == before
    again = plan_shards(CorpusSpec("folder", root, shard_size=100), manifest)
    assert again.new == [] and again.shards == grown.shards
    df, _ = read_shard(spec, "folder-00003", manifest, cache)
    assert dict(zip(df.image_id, zip(df.width, df.height))) == {"f.png": (9, 3), "new/e.jpg": (5, 7)}

def test_a_partial_shard_forms_once_the_folder_is_quiet(tmp_path):
    """An inbox: full shards form at once; the rest forms once no new image has come for `partial_after_seconds`,
    however few images it holds (an hour-old image beside one copied 5 s ago waits with it)."""
    import os

    root, manifest = tmp_path / "inbox", tmp_path / "manifest.json"
    root.mkdir()
    now = 1_000_000.0

    def put(name, at):
        (root / name).write_bytes(_jpeg((4, 4), fmt="PNG"))
        os.utime(root / name, (at, at))

    for name, age in (("a.png", 3600), ("b.png", 3500), ("c.png", 3400), ("d.png", 3300), ("e.png", 5)):
        put(name, now - age)
    spec = CorpusSpec("folder", root, shard_size=3)

    first = plan_shards(spec, manifest, settle_seconds=0, partial_after_seconds=60, now=now)
    assert first.new == ["folder-00000"] and first.shards["folder-00000"] == ["a.png", "b.png", "c.png"]
    assert first.waiting == ["d.png", "e.png"]  # e came 5 s ago: the rest waits for a quiet minute
    assert plan_shards(spec, manifest, partial_after_seconds=60, now=now + 50).new == []
    later = plan_shards(spec, manifest, partial_after_seconds=60, now=now + 55)  # e is 60 s old: quiet
    assert later.new == ["folder-00001"] and later.shards["folder-00001"] == ["d.png", "e.png"] and later.waiting == []
    put("f.png", now + 55)
    at_once = plan_shards(spec, manifest, partial_after_seconds=0, now=now + 55)  # 0: any count, at once
    assert at_once.new == ["folder-00002"] and at_once.shards["folder-00002"] == ["f.png"]


def test_parquet_with_image_bytes_and_with_paths(tmp_path):
    red, blue = _jpeg((12, 8)), _jpeg((6, 9), (0, 0, 255), fmt="PNG")
    hf = pa.table({  # as Hugging Face `datasets` writes an Image feature
        "image": pa.array([{"bytes": red, "path": "red.jpg"}, {"bytes": blue, "path": None}, {"bytes": b"garbage", "path": "x.jpg"},
                           None], pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "caption": ["a red square", "a blue one", "broken", "nothing"],
    })
    images = tmp_path / "shards" / "img"
    images.mkdir(parents=True)
    pq.write_table(hf, tmp_path / "shards" / "train-0.parquet")
    pq.write_table(pa.table({"key": ["k0"], "jpg": [red]}), tmp_path / "shards" / "plain.parquet")  # a bare binary column
    (images / "g.png").write_bytes(blue)
    pq.write_table(pa.table({"id": [1, 2, 3], "file_name": ["img/g.png", str((images / "g.png").resolve()), "img/absent.png"]}),
                   tmp_path / "shards" / "by path.parquet")
    spec, manifest, cache = CorpusSpec("parquet", tmp_path / "shards"), tmp_path / "manifest.json", tmp_path / "cache"

    plan, rows, quarantine = _read_all(spec, manifest, cache)
    assert sorted(plan.shards) == ["pq-by_path", "pq-plain", "pq-train-0"] and all(KEY.match(k) for k in plan.shards)
    assert rows.loc["pq-plain/0"].sha256 == _sha(red) and rows.loc["pq-plain/0"].width == 12
    r = rows.loc["pq-train-0/0"]
    assert (r.width, r.height, r.sha256, r.caption) == (12, 8, _sha(red), "a red square")
    assert r.image_path == str(cache / _sha(red)[:2] / f"{_sha(red)}.jpg")
    b = rows.loc["pq-train-0/1"]
    assert (b.width, b.height) == (6, 9) and open(b.image_path, "rb").read() == blue
    for i in (0, 1):
        p = rows.loc[f"pq-by_path/{i}"]
        assert p.image_path == str((images / "g.png").resolve()) and p.sha256 == _sha(blue) and p.caption is None
    reasons = {(q["source"].rsplit("/", 1)[-1], q["key"]): q["reason"] for q in quarantine}
    assert set(reasons) == {("train-0.parquet", "2"), ("train-0.parquet", "3"), ("by path.parquet", "2")}
    assert "not a readable image" in reasons[("train-0.parquet", "2")]
    assert "cannot read" in reasons[("by path.parquet", "2")]

    with pytest.raises(ValueError, match="the manifest of a parquet corpus, not of a folder corpus"):
        read_shard(CorpusSpec("folder", tmp_path), "pq-by_path", manifest, cache)
    named = CorpusSpec("parquet", str(tmp_path / "shards" / "*.parquet"), image_column="id")
    df, q = read_shard(named, "pq-by_path", manifest, cache)  # ints are no image: every row quarantined, none dropped
    assert df.empty and [x["reason"] for x in q] == ["no image in column 'id'"] * 3


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _img2dataset_shard(folder, stem, samples, extra=()):
    """A shard laid out as img2dataset writes it: <key>.jpg, <key>.json, <key>.txt per sample, and
    <stem>.parquet / <stem>_stats.json beside the tar."""
    with tarfile.open(folder / f"{stem}.tar", "w") as tar:
        for key, (jpg, caption, parts) in samples.items():
            meta = {"caption": caption, "url": f"http://example.com/{key}.jpg", "key": key, "status": "success",
                    "width": Image.open(io.BytesIO(jpg)).width, "height": Image.open(io.BytesIO(jpg)).height}
            _add(tar, f"{key}.jpg", jpg)
            if "json" in parts:
                _add(tar, f"{key}.json", json.dumps(meta).encode())
            if "txt" in parts:
                _add(tar, f"{key}.txt", caption.encode())
        for name, data in extra:
            _add(tar, name, data)
    pq.write_table(pa.table({"key": list(samples), "status": ["success"] * len(samples)}), folder / f"{stem}.parquet")
    (folder / f"{stem}_stats.json").write_text(json.dumps({"count": len(samples), "successes": len(samples)}))


def test_webdataset_tars_as_img2dataset_writes_them(tmp_path):
    wds = tmp_path / "laion" / "wds"
    wds.mkdir(parents=True)
    a, b, c = _jpeg((20, 10)), _jpeg((7, 11), (0, 255, 0)), _jpeg((4, 4), (9, 9, 9))
    _img2dataset_shard(wds, "00000", {"000000000": (a, "a dog on a sofa", ("json", "txt")),
                                      "000000001": (b, "only json", ("json",)),
                                      "000000002": (c, "only txt", ("txt",))},
                       extra=[("../evil.jpg", a), ("000000003.jpg", b"not a jpeg"), ("000000004.json", b'{"caption": "no image"}')])
    spec, manifest, cache = CorpusSpec("webdataset", wds), tmp_path / "state" / "manifest.json", tmp_path / "cache"
    before = set(tmp_path.rglob("*"))

    plan, rows, quarantine = _read_all(spec, manifest, cache)
    assert plan.new == ["wds-00000"]
    for key, data, caption in [("000000000", a, "a dog on a sofa"), ("000000001", b, "only json"), ("000000002", c, "only txt")]:
        r = rows.loc[f"wds-00000/{key}"]
        size = Image.open(io.BytesIO(data)).size
        assert (r.width, r.height, r.sha256, r.caption) == (*size, _sha(data), caption)
        assert r.image_path == str(cache / _sha(data)[:2] / f"{_sha(data)}.jpg") and open(r.image_path, "rb").read() == data
    reasons = {q["key"]: q["reason"] for q in quarantine}
    assert set(reasons) == {"../evil", "000000003", "000000004"}
    assert "unsafe member name" in reasons["../evil"] and "not a readable image" in reasons["000000003"]
    written = set(tmp_path.rglob("*")) - before
    assert written and all(cache in p.parents or p == cache or manifest.parent in (p, p.parent) for p in written)
    assert not (tmp_path / "laion" / "evil.jpg").exists()

    _img2dataset_shard(wds, "00001", {"000010000": (c, "later", ("json", "txt"))})
    grown = plan_shards(spec, manifest)
    assert grown.new == ["wds-00001"] and grown.shards["wds-00000"] == plan.shards["wds-00000"]
    df, q = read_shard(spec, "wds-00001", manifest, cache)
    assert list(df.image_id) == ["wds-00001/000010000"] and q == []
    assert df.image_path[0] == rows.loc["wds-00000/000000002"].image_path  # the same bytes are cached once


@pytest.mark.parametrize("cut", ["inside the last image", "before the end-of-archive block"])
def test_a_cut_tar_keeps_what_came_before(tmp_path, cut):
    _img2dataset_shard(tmp_path, "00000", {f"{i:09d}": (_jpeg((30, 30)), f"c{i}", ("txt",)) for i in range(3)})
    path = tmp_path / "00000.tar"
    with tarfile.open(path) as tar:
        at = tar.getmember("000000002.jpg").offset_data + 100 if cut.startswith("inside") else tar.getmember("000000002.txt").offset_data + 512
    path.write_bytes(path.read_bytes()[:at])
    spec, manifest = CorpusSpec("webdataset", [str(tmp_path / "*.tar")]), tmp_path / "m.json"
    assert plan_shards(spec, manifest).new == ["wds-00000"]
    df, q = read_shard(spec, "wds-00000", manifest, tmp_path / "cache")
    if cut.startswith("inside"):
        assert len(df) == 2 and [x["key"] for x in q] == ["000000002"] and "cannot be read past here" in q[0]["reason"]
    else:
        assert len(df) == 3 and [x["key"] for x in q] == [None] and "cut short" in q[0]["reason"]
