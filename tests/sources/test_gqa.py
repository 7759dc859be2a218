"""GQA: the balanced questions JSON as the release writes it (a dict keyed by question id)."""

from tests.sources.helpers import collected, extra, run_collect, write_image, write_json

GOOD = {
    "07333408": {
        "semantic": [{"operation": "select", "dependencies": [], "argument": "wall (722332)"},
                     {"operation": "filter color", "dependencies": [0], "argument": "white"},
                     {"operation": "relate", "dependencies": [1], "argument": "_,on,s (722335)"},
                     {"operation": "query", "dependencies": [2], "argument": "name"}],
        "entailed": [], "equivalent": ["07333408"], "question": "What is on the white wall?", "imageId": "2375429",
        "isBalanced": True, "groups": {"global": "", "local": "14-wall_on,s"}, "answer": "pipe",
        "semanticStr": "select: wall (722332)->filter color: white [0]->relate: _,on,s (722335) [1]->query: name [2]",
        "annotations": {"answer": {"0": "722335"}, "question": {"4:6": "722332"}, "fullAnswer": {"1": "722335", "5": "722332"}},
        "types": {"detailed": "relS", "semantic": "rel", "structural": "query"}, "fullAnswer": "The pipe is on the wall.",
    },
    "20903190": {
        "semantic": [{"operation": "select", "dependencies": [], "argument": "person (7)"},
                     {"operation": "exist", "dependencies": [0], "argument": "?"}],
        "entailed": [], "equivalent": ["20903190"], "question": "Do you see a train near the person?", "imageId": "n411121",
        "isBalanced": False, "groups": {"global": None, "local": "13-person_train"}, "answer": "no",
        "semanticStr": "select: person (7)->exist: ? [0]",
        "annotations": {"answer": {}, "question": {}, "fullAnswer": {"4": "6"}},
        "types": {"detailed": "existRelSC", "semantic": "rel", "structural": "verify"},
        "fullAnswer": "No, there is a van near the person.",
    },
}


def _release(tmp_path):
    images = tmp_path / "images"
    write_image(images / "2375429.jpg", (500, 333))
    write_image(images / "n411121.jpg", (640, 480))
    bad = {
        "05515938": {**GOOD["07333408"], "imageId": "999"},  # image not in the folder
        "05515939": {k: v for k, v in GOOD["07333408"].items() if k != "question"},
        "1238592": {"imageId": "2375429", "question": "Is there a red apple on the table?", "isBalanced": True},  # test-style: no answer
        "05515940": "not a question",
    }
    q = write_json(tmp_path / "val_balanced_questions.json", {**GOOD, **bad})
    return q, images


def test_gqa_rows_match_the_records(tmp_path):
    q, images = _release(tmp_path)
    shard = write_json(tmp_path / "train_all_questions" / "train_all_questions_0.json",
                       {"201307251": {**GOOD["20903190"], "question": "Is there a train?"}})
    rows, quarantine, out = collected("gqa", [q, shard], images, tmp_path / "gqa.parquet")
    assert len(rows) == 3
    by_id = rows.set_index("record_id")
    for qid, size in (("07333408", (500, 333)), ("20903190", (640, 480))):
        r, rec = by_id.loc[qid], GOOD[qid]
        assert r.task == "common_vqa" and list(r.turns) == [{"question": rec["question"], "answer": rec["answer"]}]
        assert (r.width, r.height) == size and r.split == "val" and r.source == "gqa:val_balanced_questions.json"
        assert r.image_id == f"{rec['imageId']}.jpg" and r.image_path == str((images / r.image_id).resolve())
        assert extra(r) == {"fullAnswer": rec["fullAnswer"], "types": rec["types"], "isBalanced": rec["isBalanced"]}
        assert r.sample_id == f"gqa:{qid}:common_vqa" and len(r.boxes) == 0 and len(r.points) == 0
    s = by_id.loc["201307251"]
    assert s.split == "train" and s.source == "gqa:train_all_questions_0.json"
    assert list(s.turns) == [{"question": "Is there a train?", "answer": "no"}]
    reasons = dict(zip(quarantine.record_id, quarantine.reason))
    assert reasons == {"05515938": "image missing", "05515939": "missing field", "1238592": "no answer",
                       "05515940": "malformed record"}
    assert set(quarantine.source) == {"gqa:val_balanced_questions.json"}
    assert "3 rows written" in out and "4 rows quarantined" in out and "999.jpg" in out


def test_gqa_vqav2_file_is_one_clear_error(tmp_path):
    _, images = _release(tmp_path)
    vqav2 = write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", {
        "info": {"description": "This is v2.0 of the VQA dataset.", "url": "http://visualqa.org", "version": "2.0"},
        "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
        "questions": [{"image_id": 42, "question": "What is on the table?", "question_id": 420000}]})
    r = run_collect("gqa", [vqav2], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("gqa expects a JSON object of GQA questions keyed by question id in v2_OpenEnded_mscoco_val2014_questions.json; "
            "its first record is an object with keys ['description', 'url', 'version']") in r.stderr


def test_gqa_list_is_one_clear_error(tmp_path):
    _, images = _release(tmp_path)
    lst = write_json(tmp_path / "val_balanced_questions.json", list(GOOD.values()))
    r = run_collect("gqa", [lst], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "gqa expects a JSON object of GQA questions keyed by question id in val_balanced_questions.json; found a JSON array" in r.stderr
