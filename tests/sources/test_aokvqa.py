"""A-OKVQA: aokvqa_v1p0_<split>.json as the release writes it, images from the COCO 2017 root."""

from tests.sources.helpers import collected, extra, run_collect, write_image, write_json

RATIONALES = ["The man is holding a cigarette.", "He is smoking.", "There is smoke near his mouth."]
DIRECT = ["cigarette"] * 8 + ["cigar", "smoke"]
GOOD = [
    {"split": "val", "image_id": 461751, "question_id": "22jbM6gDxdaMaunuzgrsBB",
     "question": "What is in the motorcyclist's mouth?", "choices": ["toothpick", "food", "popsicle stick", "cigarette"],
     "correct_choice_idx": 3, "direct_answers": DIRECT, "difficult_direct_answer": False, "rationales": RATIONALES},
    {"split": "val", "image_id": 245, "question_id": "2EnjR8eoMsRoYBb4qvMbDb",
     "question": "What is the man by the bags awaiting?", "choices": ["cab", "train", "delivery", "skateboarder"],
     "correct_choice_idx": 0, "direct_answers": ["cab"] * 10, "difficult_direct_answer": True,
     "rationales": ["A cab is coming.", "He has luggage.", "He is at the curb."]},
]


def _record(**kw):
    return {**GOOD[0], **kw}


def _release(tmp_path):
    coco = tmp_path / "coco"
    write_image(coco / "val2017" / "000000461751.jpg", (640, 427))
    write_image(coco / "val2017" / "000000000245.jpg", (480, 640))
    bad = [
        _record(question_id="idx4", correct_choice_idx=4),
        _record(question_id="idxstr", correct_choice_idx="3"),
        _record(question_id="noimage", image_id=1),
        {k: v for k, v in _record(question_id="noquestion").items() if k != "question"},
        _record(question_id="threechoices", choices=["a", "b", "c"]),
    ]
    return write_json(tmp_path / "aokvqa_v1p0_val.json", GOOD + bad), coco


def test_aokvqa_rows_match_the_records(tmp_path):
    f, coco = _release(tmp_path)
    rows, quarantine, out = collected("aokvqa", [f], coco, tmp_path / "aokvqa.parquet")
    assert len(rows) == 2
    by_id = rows.set_index("record_id")
    for rec, size, letter in ((GOOD[0], (640, 427), "D"), (GOOD[1], (480, 640), "A")):
        r = by_id.loc[rec["question_id"]]
        options = " ".join(f"{l}. {c}" for l, c in zip("ABCD", rec["choices"]))
        assert r.task == "mc_vqa"
        assert list(r.turns) == [{"question": f"{rec['question']} Options: {options}", "answer": letter}]
        assert (r.width, r.height) == size and r.split == "val" and r.source == "aokvqa:aokvqa_v1p0_val.json"
        assert r.image_id == f"val2017/{rec['image_id']:012d}.jpg" and r.image_path == str((coco / r.image_id).resolve())
        assert extra(r) == {k: rec[k] for k in ("choices", "direct_answers", "rationales", "difficult_direct_answer")}
    q = quarantine.set_index("record_id")
    assert dict(q.reason) == {"idx4": "answer indexes no choice", "idxstr": "answer indexes no choice",
                              "noimage": "image missing", "noquestion": "missing field", "threechoices": "malformed record"}
    assert q.detail["idx4"] == "correct_choice_idx 4 with 4 choices" and "'question'" in q.detail["noquestion"]
    assert "val2017/000000000001.jpg" in out


def test_aokvqa_test_split_has_no_answer(tmp_path):
    coco = tmp_path / "coco"
    write_image(coco / "test2017" / "000000000016.jpg", (320, 240))
    test = [{"split": "test", "image_id": 16, "question_id": "2aHXQ6dZQ7jsjsS2zVMsRB", "question": "What sport is this?",
             "choices": ["tennis", "golf", "soccer", "baseball"], "difficult_direct_answer": False}]
    rows, quarantine, _ = collected("aokvqa", [write_json(tmp_path / "aokvqa_v1p0_test.json", test)], coco, tmp_path / "t.parquet")
    assert len(rows) == 0
    assert list(quarantine.reason) == ["no answer"] and "test split" in quarantine.detail[0]


def test_aokvqa_other_format_is_one_clear_error(tmp_path):
    _, coco = _release(tmp_path)
    gqa = write_json(tmp_path / "val_balanced_questions.json", {"07333408": {"imageId": "1", "question": "q", "answer": "a"}})
    r = run_collect("aokvqa", [gqa], coco, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "aokvqa expects a JSON list of A-OKVQA questions in val_balanced_questions.json; found a JSON object with keys ['07333408']" in r.stderr
    llava = write_json(tmp_path / "llava.json", [{"id": "1", "image": "a.jpg", "conversations": []}])
    r = run_collect("aokvqa", [llava], coco, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "aokvqa expects a JSON list of A-OKVQA questions in llava.json; its first record is an object with keys ['id', 'image', 'conversations']" in r.stderr
