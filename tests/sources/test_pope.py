"""POPE: coco_pope_<kind>.json as RUCAIBox/POPE writes it (JSON lines despite the suffix), and the
SEEM-built <dataset>_pope_seem_<kind>.json (an indented JSON list)."""

import json

import pandas as pd

from tests.sources.helpers import collected, run_collect, write_image, write_json

IMAGE = "COCO_val2014_000000310196.jpg"
GOOD = [
    {"question_id": 1, "image": IMAGE, "text": "Is there a snowboard in the image?", "label": "yes"},
    {"question_id": 2, "image": IMAGE, "text": "Is there a car in the image?", "label": "no"},
]
LINES = [json.dumps(r) for r in GOOD] + [
    '{"question_id": 3, "image": "COCO_val2014_0000',  # cut off: not JSON
    json.dumps({"question_id": 4, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?", "label": "no"}),
    json.dumps({"question_id": 5, "image": IMAGE, "text": "Is there a person in the image?", "label": "maybe"}),
    json.dumps({"question_id": 6, "image": IMAGE, "label": "yes"}),
    json.dumps({"image": IMAGE, "text": "Is there a cat in the image?", "label": "no"}),
    json.dumps([1, 2]),
]


def _release(tmp_path):
    images = tmp_path / "val2014"
    write_image(images / IMAGE, (640, 427))
    f = tmp_path / "coco_pope_adversarial.json"
    f.write_text("".join(line + "\n" for line in LINES))
    return f, images


def test_pope_rows_match_the_records(tmp_path):
    f, images = _release(tmp_path)
    rows, quarantine, out = collected("pope", [f], images, tmp_path / "pope.parquet")
    assert len(rows) == 2
    for rec, (_, r) in zip(GOOD, rows.iterrows()):
        assert r.record_id == str(rec["question_id"]) and r.task == "adv_vqa"
        assert list(r.turns) == [{"question": rec["text"], "answer": rec["label"]}]
        assert (r.width, r.height) == (640, 427) and r.image_id == IMAGE and r.image_path == str((images / IMAGE).resolve())
        assert r.split == "adversarial" and r.source == "pope:coco_pope_adversarial.json" and pd.isna(r.extra)
    q = quarantine.set_index("record_id")
    assert dict(q.reason) == {"line 3": "malformed record", "4": "image missing", "5": "label not yes/no",
                              "6": "missing field", "line 7": "missing field", "line 8": "malformed record"}
    assert "line 3 is not JSON" in q.detail["line 3"] and q.detail["5"] == "label 'maybe'"
    assert "2 rows written" in out and "COCO_val2014_000000000001.jpg" in out


def test_pope_seem_list(tmp_path):
    images = tmp_path / "gqa_images"
    write_image(images / "2405722.jpg", (500, 375))
    rec = {"question_id": 1, "image": "2405722.jpg", "text": "Is there a bird in the image?", "label": "yes"}
    f = tmp_path / "gqa_pope_seem_random.json"
    f.write_text(json.dumps([rec], indent=4))
    rows, quarantine, _ = collected("pope", [f], images, tmp_path / "seem.parquet")
    assert len(quarantine) == 0 and len(rows) == 1
    r = rows.iloc[0]
    assert r.split == "random" and r.record_id == "1" and (r.width, r.height) == (500, 375)
    assert list(r.turns) == [{"question": rec["text"], "answer": "yes"}]


def test_pope_other_format_is_one_clear_error(tmp_path):
    _, images = _release(tmp_path)
    vqav2 = write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json",
                       {"info": {}, "task_type": "Open-Ended", "questions": [{"image_id": 42, "question": "Why?", "question_id": 1}]})
    r = run_collect("pope", [vqav2], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("pope expects POPE questions ({question_id, image, text, label} objects) in v2_OpenEnded_mscoco_val2014_questions.json; "
            "its first record is an object with keys ['info', 'task_type', 'questions']") in r.stderr
    llava = write_json(tmp_path / "llava.json", [{"id": "1", "image": IMAGE, "conversations": []}])
    r = run_collect("pope", [llava], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "its first record is an object with keys ['id', 'image', 'conversations']" in r.stderr
    text = tmp_path / "coco_pope_random.json"
    text.write_text("Is there a snowboard in the image?\tyes\n")
    r = run_collect("pope", [text], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "pope expects POPE questions" in r.stderr and "its first line is not JSON" in r.stderr
