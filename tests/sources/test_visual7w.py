"""Visual7W pointing: dataset_v7w_pointing.json as the release writes it (see yukezhu/visual7w-toolkit)."""

import os
import random

from genixer.boxes import box_to_text
from tests.sources.helpers import collected, extra, run_collect, write_image, write_json


def _qa(qa_id, image_id, question, answer, choices):
    return {"qa_id": qa_id, "image_id": image_id, "question": question, "answer": answer, "multiple_choices": choices,
            "type": "which"}


def _box(box_id, x, y, w, h, name):
    return {"box_id": box_id, "x": x, "y": y, "width": w, "height": h, "name": name}


def _release(tmp_path):
    images = tmp_path / "images"
    write_image(images / "v7w_2388.jpg", (200, 100))
    write_image(images / "v7w_107899.jpg", (80, 120))
    os.symlink(write_image(tmp_path / "elsewhere" / "x.jpg", (50, 50)), images / "v7w_5.jpg")
    data = {
        "images": [
            {"qa_pairs": [_qa(1, 2388, "Which object is on the table?", 10, [11, 12, 13]),
                          _qa(2, 2388, "Which animal is sleeping?", 12, [10, 11, 13]),
                          _qa(3, 2388, "Which chair is empty?", 10, [11, 12, 999]),  # 999 is no box
                          _qa(4, 2388, "Which cup is full?", 14, [10, 11, 12]),  # 14 runs past the right edge
                          _qa(5, 2388, "Which lamp is on?", 15, [10, 11, 12]),  # 15 has a negative height
                          {"qa_id": 6, "image_id": 2388, "answer": 10, "multiple_choices": [11, 12, 13], "type": "which"},
                          _qa(7, 2388, ["Which?"], 10, [11, 12, 13]),
                          _qa(8, 2388, "Which one?", 10, "11,12,13")],
             "image_id": 2388, "split": "train", "filename": "v7w_2388.jpg"},
            {"qa_pairs": [_qa(20, 107899, "Which is the man's hat?", 21, [22, 23, 24])],
             "image_id": 107899, "split": "test", "filename": "v7w_107899.jpg"},
            {"qa_pairs": [_qa(30, 3, "Which?", 10, [11, 12, 13])], "image_id": 3, "split": "val", "filename": "v7w_3.jpg"},
            {"qa_pairs": [_qa(40, 4, "Which?", 10, [11, 12, 13])], "image_id": 4, "split": "val", "filename": "../v7w_4.jpg"},
            {"qa_pairs": [_qa(41, 4, "Which?", 10, [11, 12, 13])], "image_id": 41, "split": "val", "filename": "/tmp/v7w_4.jpg"},
            {"qa_pairs": [_qa(50, 5, "Which?", 10, [11, 12, 13])], "image_id": 5, "split": "val", "filename": "v7w_5.jpg"},
            {"qa_pairs": [], "image_id": 6, "filename": "v7w_2388.jpg"},  # no split
        ],
        "boxes": [_box(10, 10, 20, 30, 40, "cup"), _box(11, 100, 0, 100, 100, "table"), _box(12, 0, 50, 20.5, 10, "cat"),
                  _box(13, 150, 60, 10, 10, "lamp"), _box(14, 190, 10, 20, 10, "cup"), _box(15, 5, 5, 5, -1, "lamp"),
                  _box(21, 0, 0, 80, 30, "hat"), _box(22, 1, 1, 2, 2, "a"), _box(23, 3, 3, 2, 2, "b"), _box(24, 5, 5, 2, 2, "c")],
    }
    return write_json(tmp_path / "dataset_v7w_pointing.json", data), images, data


def _px(b):
    return [float(b["x"]), float(b["y"]), float(b["x"] + b["width"]), float(b["y"] + b["height"])]


def test_visual7w_rows_match_the_records(tmp_path):
    path, images, data = _release(tmp_path)
    rows, quarantine, out = collected("visual7w", [path], images, tmp_path / "v7w.parquet")
    boxes = {b["box_id"]: b for b in data["boxes"]}
    by = rows.set_index("record_id")
    assert sorted(by.index) == ["1", "2", "20"]
    for qa_id, question, answer, choices, (w, h), fname, split, image_id in [
        (1, "Which object is on the table?", 10, [11, 12, 13], (200, 100), "v7w_2388.jpg", "train", 2388),
        (2, "Which animal is sleeping?", 12, [10, 11, 13], (200, 100), "v7w_2388.jpg", "train", 2388),
        (20, "Which is the man's hat?", 21, [22, 23, 24], (80, 120), "v7w_107899.jpg", "test", 107899),
    ]:
        r = by.loc[str(qa_id)]
        order = [answer, *choices]
        random.Random(qa_id).shuffle(order)  # the documented order of the candidates
        assert extra(r) == {"candidates": order, "answer_box_id": answer, "answer_index": order.index(answer),
                            "names": [boxes[b]["name"] for b in order], "type": "which", "image_id": image_id}
        cands = " ".join(box_to_text(_px(boxes[b]), w, h) for b in order)
        assert list(r.turns) == [{"question": f"{question} Candidates: {cands}", "answer": box_to_text(_px(boxes[answer]), w, h)}]
        assert [list(b) for b in r.boxes] == [_px(boxes[b]) for b in order] + [_px(boxes[answer])]
        assert (r.task, r.width, r.height, r.split, r.image_id) == ("pointqa", w, h, split, fname)
        assert r.image_path == str((images / fname).resolve()) and r.source == "visual7w:dataset_v7w_pointing.json"
        assert len(list(r.points)) == 0
    assert any(extra(by.loc[k])["answer_index"] != 0 for k in ("1", "2", "20"))  # the answer is not always first

    reasons = dict(zip(quarantine.record_id, quarantine.reason))
    assert reasons == {"3": "unknown box", "4": "invalid sample", "5": "invalid sample", "6": "missing field", "7": "malformed record",
                       "8": "malformed record", "image 3": "image missing", "image 4": "unsafe image path",
                       "image 41": "unsafe image path", "image 5": "unsafe image path", "image 6": "missing field"}
    detail = dict(zip(quarantine.record_id, quarantine.detail))
    assert "[999]" in detail["3"] and "not inside the 200x100 image" in detail["4"] and "outside --images" in detail["image 5"]
    assert "3 rows written" in out and "v7w_3.jpg" in out


def test_visual7w_wrong_file_is_one_clear_error(tmp_path):
    _, images, _ = _release(tmp_path)
    telling = write_json(tmp_path / "dataset_v7w_telling.json", {"images": [{"qa_pairs": [], "image_id": 1, "split": "train",
                                                                             "filename": "v7w_1.jpg"}]})
    r = run_collect("visual7w", [telling], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("visual7w expects the Visual7W pointing JSON (an object with 'images' and 'boxes' lists) in dataset_v7w_telling.json; "
            "found a JSON object with keys ['images']") in r.stderr
