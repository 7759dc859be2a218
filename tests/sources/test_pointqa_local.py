"""PointQA Local: localqa_dataset.json as princetonvisualai/pointingqa ships it (Datasets/LocalQA).

{VG image id (str): [{id, question, all_ans, all_objs: [VG attribute objects], points: [{x, y, ans}]}]};
all_objs and points are in the same order, one question per point."""

import os

from genixer.boxes import point_to_text
from tests.sources.helpers import collected, extra, run_collect, write_image, write_json


def _obj(object_id, name, attribute, x, y, w, h):
    return {"synsets": [f"{name}.n.01"], "h": h, "object_id": object_id, "names": [name], "w": w, "attributes": [attribute],
            "y": y, "x": x}


def _qa(image_id, question, objs_points):
    return {"id": image_id, "question": question, "all_ans": sorted({p[2] for _, p in objs_points}),
            "all_objs": [o for o, _ in objs_points], "points": [{"x": x, "y": y, "ans": a} for _, (x, y, a) in objs_points]}


def _release(tmp_path):
    images = tmp_path / "vg"
    write_image(images / "VG_100K_2" / "2363870.jpg", (160, 120))
    write_image(images / "VG_100K" / "1769.jpg", (100, 100))
    os.symlink(write_image(tmp_path / "elsewhere" / "5.jpg", (50, 50)), images / "VG_100K" / "5.jpg")
    shirt_white, shirt_blue = _obj(11, "shirt", "white", 10, 20, 30, 40), _obj(12, "shirt", "blue", 100, 10, 50, 60)
    data = {
        "2363870": [
            _qa(2363870, "What color is the shirt?", [(shirt_white, (25, 40, "white")), (shirt_blue, (125, 40, "blue"))]),
            {**_qa(2363870, "What shape is the sign?", [(shirt_white, (25, 40, "round"))]), "points": []},  # 0 points, 1 object
            _qa(2363870, "What is the dog doing?", [(_obj(13, "dog", "sitting", 0, 0, 10, 10), (200, 5, "sitting"))]),
            _qa(2363870, "What color is the car?", [(_obj(14, "car", "red", 150, 10, 20, 10), (155, 15, "red"))]),
            _qa(2363870, "What color is the cup?", [(_obj(15, "cup", "red", 5, 5, -2, 10), (5, 10, "red"))]),
            {"id": 2363870, "all_ans": ["red"], "all_objs": [shirt_white], "points": [{"x": 1, "y": 1, "ans": "red"}]},
            {**_qa(2363870, "What color is the hat?", [(shirt_white, (25, 40, "white"))]), "points": {"x": 25, "y": 40}},
            _qa(2363870, "What color is the bag?", [(shirt_white, (25, 40, 3))]),
        ],
        "1769": [_qa(1769, "What is the man doing?", [(_obj(21, "man", "standing", 0, 0, 100, 100), (50, 50, "standing"))])],
        "3": [_qa(3, "What color is it?", [(shirt_white, (25, 40, "white"))])],
        "5": [_qa(5, "What color is it?", [(shirt_white, (25, 40, "white"))])],
        "../1769": [_qa(1769, "What color is it?", [(shirt_white, (25, 40, "white"))])],
        "6": "not a list",
    }
    return write_json(tmp_path / "localqa_dataset.json", data), images


def test_pointqa_local_rows_match_the_records(tmp_path):
    path, images = _release(tmp_path)
    rows, quarantine, out = collected("pointqa_local", [path], images, tmp_path / "pqa.parquet")
    by = rows.set_index("record_id")
    assert sorted(by.index) == ["1769/0/0", "2363870/0/0", "2363870/0/1"]
    for rid, question, (x, y), answer, box, (w, h), rel, object_id, name, all_ans in [
        ("2363870/0/0", "What color is the shirt?", (25, 40), "white", [10, 20, 40, 60], (160, 120), "VG_100K_2/2363870.jpg", 11,
         "shirt", ["blue", "white"]),
        ("2363870/0/1", "What color is the shirt?", (125, 40), "blue", [100, 10, 150, 70], (160, 120), "VG_100K_2/2363870.jpg", 12,
         "shirt", ["blue", "white"]),
        ("1769/0/0", "What is the man doing?", (50, 50), "standing", [0, 0, 100, 100], (100, 100), "VG_100K/1769.jpg", 21, "man",
         ["standing"]),
    ]:
        r = by.loc[rid]
        assert list(r.turns) == [{"question": f"{question} {point_to_text((x, y), w, h)}", "answer": answer}]
        assert [list(p) for p in r.points] == [[x, y]] and len(list(r.boxes)) == 0
        assert (r.task, r.width, r.height, r.image_id) == ("pointqa", w, h, rel)
        assert r.image_path == str((images / rel).resolve()) and r.source == "pointqa_local:localqa_dataset.json"
        assert extra(r) == {"object_box": box, "object_id": object_id, "names": [name], "all_ans": all_ans,
                            "image_id": rid.split("/")[0]}
    assert list(by.loc["2363870/0/0"].turns)[0]["question"] == "What color is the shirt? [0.156,0.333]"

    reasons = dict(zip(quarantine.record_id, quarantine.reason))
    assert reasons == {"2363870/1": "malformed record", "2363870/2": "invalid sample", "2363870/3": "invalid sample",
                       "2363870/4": "invalid sample", "2363870/5": "missing field", "2363870/6": "malformed record",
                       "2363870/7": "malformed record", "image 3": "image missing", "image 5": "unsafe image path",
                       "image ../1769": "malformed record", "image 6": "malformed record"}
    detail = dict(zip(quarantine.record_id, quarantine.detail))
    assert "0 points but 1 objects" in detail["2363870/1"] and "point [200.0, 5.0] not inside the 160x120 image" in detail["2363870/2"]
    assert "object box [150.0, 10.0, 170.0, 20.0] not inside the 160x120 image" in detail["2363870/3"]
    assert "ans is a int" in detail["2363870/7"] and "looked in VG_100K, VG_100K_2" in detail["image 3"]
    assert "3 rows written" in out


def test_pointqa_local_wrong_file_is_one_clear_error(tmp_path):
    _, images = _release(tmp_path)
    split_list = write_json(tmp_path / "localqa_train_imgs.json", ["2363870", "1769"])
    r = run_collect("pointqa_local", [split_list], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "pointqa_local expects the LocalQA JSON (an object mapping Visual Genome image ids" in r.stderr
    assert "in localqa_train_imgs.json; found a JSON array" in r.stderr
    looktwice = write_json(tmp_path / "looktwiceqa_dataset.json", {"1": [{"obj_question": "?", "answer": "2"}]})
    r = run_collect("pointqa_local", [looktwice], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "its first record is an object with keys ['obj_question', 'answer']" in r.stderr
