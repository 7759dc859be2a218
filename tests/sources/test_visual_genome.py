"""Visual Genome: region_descriptions.json and image_data.json as the v1.2 release writes them."""

import os

import pandas as pd

from genixer.boxes import box_to_text
from genixer.sources.common import REC_QUESTION, REG_QUESTION
from tests.sources.helpers import collected, extra, run_collect, write_image, write_json

URL = "https://cs.stanford.edu/people/rak248/{}/{}.jpg"


def _image(image_id, folder, w, h, coco_id=None, flickr_id=None):
    return {"width": w, "url": URL.format(folder, image_id), "height": h, "image_id": image_id, "coco_id": coco_id,
            "flickr_id": flickr_id}


def _region(region_id, image_id, x, y, w, h, phrase):
    return {"region_id": region_id, "width": w, "height": h, "image_id": image_id, "phrase": phrase, "y": y, "x": x}


def _release(tmp_path):
    images = tmp_path / "vg"
    write_image(images / "VG_100K_2" / "1.jpg", (120, 90))
    write_image(images / "VG_100K" / "2.jpg", (100, 100))
    write_image(images / "VG_100K" / "4.jpg", (80, 80))  # image_data says 90x80
    os.symlink(write_image(tmp_path / "elsewhere" / "5.jpg", (50, 50)), images / "VG_100K" / "5.jpg")
    legacy = _image(2, "VG_100K", 100, 100, coco_id=139, flickr_id=2)
    legacy["id"] = legacy.pop("image_id")  # v1.0 names the image id "id"; the official driver reads both
    image_data = [_image(1, "VG_100K_2", 120, 90), legacy, _image(3, "VG_100K", 64, 64), _image(4, "VG_100K", 90, 80),
                  _image(5, "VG_100K", 50, 50), {"url": "", "width": 1, "height": 1}]
    regions = [
        {"regions": [_region(1382, 1, 21, 7, 40.5, 30, "the clock is green in colour"),
                     _region(1383, 1, 0, 0, 120, 90, "shade is along the street"),
                     _region(1384, 1, 100, 10, 30, 10, "runs past the right edge"),
                     _region(1385, 1, 50, 10, -4, 10, "negative width"),
                     {"region_id": 1386, "width": 5, "height": 5, "image_id": 1, "y": 1, "x": 1},
                     _region(1387, 1, 1, 1, 5, 5, 7),
                     {"width": 5, "height": 5, "image_id": 1, "phrase": "no id", "y": 1, "x": 1}], "id": 1},
        {"regions": [{"id": 2001, "width": 10, "height": 20, "image_id": 2, "phrase": "a man", "y": 3, "x": 4}], "id": 2},
        {"regions": [_region(3001, 3, 1, 1, 5, 5, "image file missing")], "id": 3},
        {"regions": [_region(4001, 4, 1, 1, 5, 5, "size disagrees")], "id": 4},
        {"regions": [_region(5001, 5, 1, 1, 5, 5, "symlink out")], "id": 5},
        {"regions": [_region(6001, 6, 1, 1, 5, 5, "not in image_data")], "id": 6},
        {"regions": [_region(7001, 7, 1, 1, 5, 5, "dot dot id")], "id": "../1"},
        {"regions": "no list", "id": 1},
    ]
    return write_json(tmp_path / "region_descriptions.json", regions), write_json(tmp_path / "image_data.json", image_data), images


def test_visual_genome_rows_match_the_records(tmp_path):
    regions, image_data, images = _release(tmp_path)
    rows, quarantine, out = collected("visual_genome", [regions, image_data], images, tmp_path / "vg.parquet")
    by = {(r.record_id, r.task): r for r in rows.itertuples()}
    assert sorted(by) == [(rid, t) for rid in ("1382", "1383", "2001") for t in ("rec", "reg")]
    for rid, phrase, box, (w, h), rel, ex in [
        ("1382", "the clock is green in colour", [21.0, 7.0, 61.5, 37.0], (120, 90), "VG_100K_2/1.jpg",
         {"image_id": 1, "coco_id": None, "flickr_id": None}),
        ("1383", "shade is along the street", [0.0, 0.0, 120.0, 90.0], (120, 90), "VG_100K_2/1.jpg",
         {"image_id": 1, "coco_id": None, "flickr_id": None}),
        ("2001", "a man", [4.0, 3.0, 14.0, 23.0], (100, 100), "VG_100K/2.jpg", {"image_id": 2, "coco_id": 139, "flickr_id": 2}),
    ]:
        rec, reg = by[(rid, "rec")], by[(rid, "reg")]
        text = box_to_text(box, w, h)
        assert list(rec.turns) == [{"question": REC_QUESTION.format(ref=phrase), "answer": text}]
        assert list(reg.turns) == [{"question": REG_QUESTION.format(box=text), "answer": phrase}]
        for r in (rec, reg):
            assert [list(b) for b in r.boxes] == [box] and list(r.points) == []
            assert (r.width, r.height, r.image_id) == (w, h, rel) and pd.isna(r.split)  # VG has no splits
            assert r.image_path == str((images / rel).resolve()) and r.source == "visual_genome:region_descriptions.json"
            assert extra(r._asdict()) == ex

    reasons = {(s, r): q for s, r, q in zip(quarantine.source, quarantine.record_id.fillna("none"), quarantine.reason)}
    rd, idata = "visual_genome:region_descriptions.json", "visual_genome:image_data.json"
    assert reasons == {(rd, "1384"): "invalid sample", (rd, "1385"): "invalid sample", (rd, "1386"): "missing field",
                       (rd, "1387"): "malformed record", (rd, "none"): "missing field",
                       (rd, "image 3"): "image missing", (rd, "image 4"): "image size mismatch", (rd, "image 5"): "unsafe image path",
                       (rd, "image 6"): "no image record", (rd, "image ../1"): "malformed record", (rd, "image 1"): "malformed record",
                       (idata, "none"): "malformed record"}
    detail = dict(zip(quarantine.record_id.fillna("none"), quarantine.detail))
    assert "not inside the 120x90 image" in detail["1384"] and "90x80" in detail["image 4"]
    assert "looked in VG_100K, VG_100K_2" in detail["image 3"]
    assert "6 rows written" in out and "3.jpg" in out


def test_visual_genome_wrong_files_are_one_clear_error(tmp_path):
    regions, image_data, images = _release(tmp_path)
    r = run_collect("visual_genome", [image_data, regions], images, tmp_path / "x.parquet")  # swapped: both are lists
    assert r.returncode == 2
    assert ("visual_genome expects image_data.json (a list of {image_id, url, width, height, coco_id, flickr_id}) in "
            "region_descriptions.json; its first record is an object with keys ['regions', 'id']") in r.stderr
    coco = write_json(tmp_path / "instances.json", {"images": [], "annotations": []})
    r = run_collect("visual_genome", [coco, image_data], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("visual_genome expects region_descriptions.json (a list of {id, regions}) in instances.json; "
            "found a JSON object with keys ['images', 'annotations']") in r.stderr
