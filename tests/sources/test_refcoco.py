"""RefCOCO(+/g): refs(<splitBy>).p and instances.json as lichengunc/refer ships them."""

import builtins
import os
import pickle

import pytest

from genixer.boxes import box_to_text
from genixer.sources.common import REC_QUESTION, REG_QUESTION
from tests.sources.helpers import collected, extra, run_collect, write_image, write_json


def _coco(i: int) -> str:
    return f"COCO_train2014_{i:012d}.jpg"


def _ref(ref_id, ann_id, image_id, split, sents, category_id=1):
    return {"sent_ids": [s[0] for s in sents], "file_name": _coco(image_id).replace(".jpg", f"_{ann_id}.jpg"),
            "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split,
            "sentences": [{"tokens": str(sent).split(), "raw": raw, "sent_id": sid, "sent": sent} for sid, raw, sent in sents],
            "category_id": category_id}


def _release(tmp_path):
    images = tmp_path / "images" / "mscoco" / "images" / "train2014"
    write_image(images / _coco(9), (120, 80))
    write_image(images / _coco(25), (60, 90))
    write_image(images / _coco(30), (100, 100))  # instances says 200x100
    outside = write_image(tmp_path / "elsewhere" / "secret.jpg", (50, 50))
    os.symlink(outside, images / _coco(31))
    data = tmp_path / "refcoco"
    image_rows = [(9, _coco(9), 120, 80), (25, _coco(25), 60, 90), (30, _coco(30), 200, 100), (31, _coco(31), 50, 50),
                  (40, _coco(40), 64, 64), (41, "../outside.jpg", 64, 64), (42, "/etc/passwd", 64, 64)]
    instances = {
        "info": {"description": "This is stable 1.0 version of the 2014 MS COCO dataset."},
        "images": [{"license": 1, "file_name": f, "coco_url": "", "height": h, "width": w, "date_captured": "2013-11-14 16:28:13",
                    "flickr_url": "", "id": i} for i, f, w, h in image_rows]
                  + [{"file_name": _coco(77), "height": 5, "width": 5, "id": 77}],
        "licenses": [],
        "annotations": [
            {"segmentation": [[10.0, 20.0, 40.0, 20.0, 40.0, 60.0]], "area": 1200.0, "iscrowd": 0, "image_id": 9,
             "bbox": [10.0, 20.0, 30.5, 40.0], "category_id": 1, "id": 1001},
            {"segmentation": [], "area": 100.0, "iscrowd": 0, "image_id": 25, "bbox": [0, 0, 60, 90], "category_id": 18, "id": 1002},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 9, "bbox": [100, 10, 40, 10], "category_id": 1, "id": 1003},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 9, "bbox": [50, 10, -5, 10], "category_id": 1, "id": 1004},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 30, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1005},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 31, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1006},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 40, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1007},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 41, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1008},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 42, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1009},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 9, "bbox": [1, 1, 5], "category_id": 1, "id": 1010},
            {"segmentation": [], "area": 1.0, "iscrowd": 0, "image_id": 9, "bbox": [1, 1, 5, 5], "category_id": 1, "id": 1011},
        ],
        "categories": [{"supercategory": "person", "id": 1, "name": "person"}, {"supercategory": "animal", "id": 18, "name": "dog"}],
    }
    no_sentences = _ref(9, 1011, 9, "train", [])
    del no_sentences["sentences"]
    refs = [
        _ref(1, 1001, 9, "train", [(11, "Man on the LEFT", " man on the left "), (12, "guy in red", "guy in red")]),
        _ref(2, 1002, 25, "testA", [(21, "the dog", "the dog")], category_id=18),
        _ref(3, 1003, 9, "train", [(31, "x", "box past the right edge")]),
        _ref(4, 1004, 9, "train", [(41, "x", "negative width")]),
        _ref(5, 1005, 30, "val", [(51, "x", "size disagrees")]),
        _ref(6, 1006, 31, "val", [(61, "x", "symlink out")]),
        _ref(7, 1007, 40, "val", [(71, "x", "image file missing")]),
        _ref(8, 1008, 41, "val", [(81, "x", "dot dot path")]),
        _ref(10, 1009, 42, "val", [(101, "x", "absolute path")]),
        no_sentences,
        _ref(11, 9999, 9, "train", [(111, "x", "annotation not in instances")]),
        _ref(12, 1010, 9, "train", [(121, "x", "bbox of three numbers")]),
        _ref(13, 1011, 9, "train", [(131, "x", 42)]),  # sent is not text
        _ref(14, 1011, 77, "train", [(141, "x", "ann on another image")]),
        _ref(15, 1011, 9, "train", []),
        "not a ref",
    ]
    refs_file = data / "refs(unc).p"
    data.mkdir(parents=True)
    with open(refs_file, "wb") as f:
        pickle.dump(refs, f, protocol=2)
    inst = write_json(data / "instances.json", instances)
    return refs_file, inst, images


def test_refcoco_rows_match_the_records(tmp_path):
    refs_file, inst, images = _release(tmp_path)
    rows, quarantine, out = collected("refcoco", [refs_file, inst], images, tmp_path / "refcoco.parquet")
    assert len(rows) == 6 and sorted(rows.task) == ["rec"] * 3 + ["reg"] * 3
    by = {(r.record_id, r.task): r for r in rows.itertuples()}
    box = [10.0, 20.0, 40.5, 60.0]
    for sid, sent, raw in [(11, "man on the left", "Man on the LEFT"), (12, "guy in red", "guy in red")]:
        rec, reg = by[(f"1/{sid}", "rec")], by[(f"1/{sid}", "reg")]
        text = box_to_text(box, 120, 80)
        assert list(rec.turns) == [{"question": REC_QUESTION.format(ref=sent), "answer": text}]
        assert list(reg.turns) == [{"question": REG_QUESTION.format(box=text), "answer": sent}]
        for r in (rec, reg):
            assert [list(b) for b in r.boxes] == [box] and list(r.points) == []
            assert (r.width, r.height, r.split, r.source) == (120, 80, "train", "refcoco:refs(unc).p")
            assert r.image_id == _coco(9) and r.image_path == str((images / _coco(9)).resolve())
            assert extra(r._asdict()) == {"ref_id": 1, "ann_id": 1001, "sent_id": sid, "image_id": 9, "category_id": 1, "raw": raw,
                                          "dataset": "refcoco", "split_by": "unc"}
    dog = by[("2/21", "rec")]
    assert [list(b) for b in dog.boxes] == [[0.0, 0.0, 60.0, 90.0]] and list(dog.turns)[0]["answer"] == "[0.000,0.000,1.000,1.000]"
    assert (dog.width, dog.height, dog.split, dog.sample_id) == (60, 90, "testA", "refcoco:2/21:rec")

    reasons = dict(zip(quarantine.record_id.fillna("none"), quarantine.reason))
    assert reasons == {"3": "invalid sample", "4": "invalid sample", "5": "image size mismatch", "6": "unsafe image path",
                       "7": "image missing", "8": "unsafe image path", "10": "unsafe image path", "9": "missing field",
                       "11": "no annotation", "12": "malformed record", "13": "malformed record", "14": "malformed record",
                       "15": "no sentences",
                       "none": "malformed record"}
    details = dict(zip(quarantine.record_id, quarantine.detail))
    assert "200x100" in details["5"] and "100x100" in details["5"] and "outside --images" in details["6"]
    assert "'sentences'" in details["9"] and "sent is a int" in details["13"]
    assert set(quarantine.source) == {"refcoco:refs(unc).p"}
    assert "6 rows written" in out and "1 images missing" in out and _coco(40) in out


def test_refcoco_wrong_files_are_one_clear_error(tmp_path):
    refs_file, inst, images = _release(tmp_path)
    r = run_collect("refcoco", [inst, refs_file], images, tmp_path / "x.parquet")  # swapped
    assert r.returncode == 2
    assert "refcoco expects the refs pickle refs(<splitBy>).p as its first file" in r.stderr and "not a readable pickle" in r.stderr
    other = tmp_path / "refs(google).p"
    with open(other, "wb") as f:
        pickle.dump({"images": [], "annotations": []}, f, protocol=2)
    r = run_collect("refcoco", [other, inst], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "refcoco expects a list of refs in refs(google).p; found a pickled dict" in r.stderr
    r = run_collect("refcoco", [refs_file, refs_file], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "refcoco expects a COCO instances JSON object with 'images' and 'annotations' lists in refs(unc).p; found a file that is not JSON" in r.stderr


class _Payload:
    """Unpickling this calls `fn(arg)`: what a hostile refs file would do."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_refcoco_hostile_pickle_is_refused_and_nothing_runs(tmp_path, kind):
    refs_file, inst, images = _release(tmp_path)
    marker = tmp_path / "pwned"
    payload = (_Payload(os.system, f"touch {marker}") if kind == "os.system"
               else _Payload(builtins.eval, f"open({str(marker)!r}, 'w').write('ran')"))
    ref = _ref(1, 1001, 9, "train", [(11, "man", "man")])
    ref["sentences"] = payload
    with open(refs_file, "wb") as f:
        pickle.dump([ref], f, protocol=2)

    r = run_collect("refcoco", [refs_file, inst], images, tmp_path / "x.parquet")
    assert r.returncode == 2, r.stderr
    assert "refs(unc).p was refused: the pickle asks for" in r.stderr and "nothing in it is run" in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "x.parquet").exists()

    # the payload is live: an ordinary unpickler would have run it
    with open(refs_file, "rb") as f:
        pickle.load(f)
    assert marker.exists()
