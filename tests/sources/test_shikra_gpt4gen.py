"""Shikra GPT4Gen: GPT4GEN_BoxCoT_<split>.jsonl (qca) and GPT4GEN_RD_BoxCoT_<split>.jsonl (rd), the fields that
shikras/shikra's GPT4Gen dataset reads (img_path, boxes in pixel xyxy, question and cot_with_ans with
<ph_st>phrase<ph_ed> marks, answer, question_boxes_seq, answer_boxes_seq)."""

import os

from genixer.boxes import box_to_text, boxes_to_text
from tests.sources.helpers import collected, extra, run_collect, write_image, write_json, write_jsonl

MAN, CUP, TABLE = [10.0, 20.0, 60.0, 100.0], [100.0, 50.0, 130.0, 90.0], [0.0, 80.0, 200.0, 150.0]


def _rec(img, question, cot, answer, qseq, aseq, boxes=(MAN, CUP, TABLE)):
    return {"img_path": img, "boxes": boxes if isinstance(boxes, str) else [list(b) for b in boxes], "question": question,
            "cot_with_ans": cot, "answer": answer, "question_boxes_seq": qseq, "answer_boxes_seq": aseq}


def _release(tmp_path):
    images = tmp_path / "flickr30k-images"
    write_image(images / "1000092795.jpg", (200, 150))
    write_image(images / "10002456.jpg", (300, 200))
    os.symlink(write_image(tmp_path / "elsewhere" / "x.jpg", (50, 50)), images / "36979.jpg")
    qca = [
        _rec("1000092795.jpg", "What is <ph_st>the man<ph_ed> holding?",
             "<ph_st>The man<ph_ed> holds <ph_st>a cup<ph_ed> above <ph_st>the tables<ph_ed>. So the answer is a cup.", "a cup",
             [[0]], [[0], [1], [2, 1]]),
        _rec("10002456.jpg", "Is there a cup?", "Yes, <ph_st>a cup<ph_ed> is there. So the answer is yes.", "yes", [], [[1]]),
        _rec("1000092795.jpg", "What is <ph_st>he<ph_ed> doing?", "Standing.", "standing", [[0], [1]], []),  # 1 mark, 2 entries
        _rec("1000092795.jpg", "What is <ph_st>he<ph_ed> doing?", "Standing.", "standing", [[3]], []),  # box 3 of 3
        _rec("1000092795.jpg", "What is <ph_st>he<ph_ed> doing?", "Standing.", "standing", [[-1]], []),
        _rec("1000092795.jpg", "What is <ph_st>he<ph_ed> doing?", "Standing.", "standing", [[0]], [], boxes=[[150, 10, 210, 40]]),
        _rec("1000092795.jpg", "What is <ph_st>he<ph_ed> doing?", "Standing.", "standing", [[0]], [], boxes=[[50, 10, 40, 40]]),
        {k: v for k, v in _rec("1000092795.jpg", "Why?", "Because.", "because", [], []).items() if k != "cot_with_ans"},
        _rec("1000092795.jpg", "Why?", "Because.", "because", [], [], boxes="0,0,1,1"),
        _rec("404.jpg", "Why?", "Because.", "because", [], []),
        _rec("../1000092795.jpg", "Why?", "Because.", "because", [], []),
        _rec("/etc/passwd", "Why?", "Because.", "because", [], []),
        _rec("36979.jpg", "Why?", "Because.", "because", [], []),
    ]
    rd = [_rec("10002456.jpg", "Where is <ph_st>the cup<ph_ed>?", "<ph_st>It<ph_ed> is on <ph_st>the table<ph_ed>.", "on the table",
               [[1]], [[1], [2]])]
    qca_file = write_jsonl(tmp_path / "GPT4GEN_BoxCoT_train.jsonl", qca)
    with open(qca_file, "a") as f:
        f.write("{not json\n")
    return qca_file, write_jsonl(tmp_path / "GPT4GEN_RD_BoxCoT_train.jsonl", rd), images


def test_shikra_gpt4gen_rows_match_the_records(tmp_path):
    qca_file, rd_file, images = _release(tmp_path)
    rows, quarantine, out = collected("shikra_gpt4gen", [qca_file, rd_file], images, tmp_path / "gpt4gen.parquet")
    by = rows.set_index("record_id")
    assert sorted(by.index) == ["GPT4GEN_BoxCoT_train:1", "GPT4GEN_BoxCoT_train:2", "GPT4GEN_RD_BoxCoT_train:1"]

    def b(box, w, h):
        return box_to_text(box, w, h)

    r = by.loc["GPT4GEN_BoxCoT_train:1"]
    assert list(r.turns) == [{"question": f"What is the man{b(MAN, 200, 150)} holding?",
                              "answer": f"The man{b(MAN, 200, 150)} holds a cup{b(CUP, 200, 150)} above the tables"
                                        f"{boxes_to_text([TABLE, CUP], 200, 150)}. So the answer is a cup."}]
    assert boxes_to_text([TABLE, CUP], 200, 150) == "[0.000,0.533,1.000,1.000;0.500,0.333,0.650,0.600]"
    assert [list(x) for x in r.boxes] == [MAN, MAN, CUP, TABLE, CUP]
    assert (r.task, r.split, r.width, r.height, r.image_id) == ("qca", "train", 200, 150, "1000092795.jpg")
    assert r.source == "shikra_gpt4gen:GPT4GEN_BoxCoT_train.jsonl" and extra(r) == {"answer": "a cup"}
    assert r.image_path == str((images / "1000092795.jpg").resolve())

    r = by.loc["GPT4GEN_BoxCoT_train:2"]
    assert list(r.turns) == [{"question": "Is there a cup?", "answer": f"Yes, a cup{b(CUP, 300, 200)} is there. So the answer is yes."}]
    assert [list(x) for x in r.boxes] == [CUP] and (r.task, r.width, r.height) == ("qca", 300, 200)

    r = by.loc["GPT4GEN_RD_BoxCoT_train:1"]
    assert list(r.turns) == [{"question": f"Where is the cup{b(CUP, 300, 200)}?",
                              "answer": f"It{b(CUP, 300, 200)} is on the table{b(TABLE, 300, 200)}."}]
    assert [list(x) for x in r.boxes] == [CUP, CUP, TABLE]
    assert (r.task, r.split, r.source) == ("rd", "train", "shikra_gpt4gen:GPT4GEN_RD_BoxCoT_train.jsonl")
    assert extra(r) == {"answer": "on the table"}

    reasons = dict(zip(quarantine.record_id, quarantine.reason))
    q = "GPT4GEN_BoxCoT_train"
    assert reasons == {f"{q}:3": "malformed record", f"{q}:4": "malformed record", f"{q}:5": "malformed record",
                       f"{q}:6": "invalid sample", f"{q}:7": "invalid sample", f"{q}:8": "missing field", f"{q}:9": "malformed record",
                       f"{q}:10": "image missing", f"{q}:11": "unsafe image path", f"{q}:12": "unsafe image path",
                       f"{q}:13": "unsafe image path", "line 14": "malformed record"}
    detail = dict(zip(quarantine.record_id, quarantine.detail))
    assert "1 <ph_ed> marks but 2 boxes_seq entries" in detail[f"{q}:3"] and "[3]" in detail[f"{q}:4"] and "[-1]" in detail[f"{q}:5"]
    assert "not inside the 200x150 image" in detail[f"{q}:6"] and "boxes is a str, not a list" in detail[f"{q}:9"]
    assert "3 rows written" in out and "404.jpg" in out


def test_shikra_gpt4gen_file_name_decides_the_task(tmp_path):
    qca_file, _, images = _release(tmp_path)
    other = qca_file.with_name("GPT4GEN_QA_train.jsonl")
    other.write_text(qca_file.read_text())
    r = run_collect("shikra_gpt4gen", [qca_file, other], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("shikra_gpt4gen expects files named GPT4GEN_BoxCoT_<split>.jsonl (qca) or GPT4GEN_RD_BoxCoT_<split>.jsonl (rd); "
            "found GPT4GEN_QA_train.jsonl") in r.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_shikra_gpt4gen_wrong_file_is_one_clear_error(tmp_path):
    _, _, images = _release(tmp_path)
    llava = write_jsonl(tmp_path / "other" / "GPT4GEN_BoxCoT_test.jsonl",
                        [{"id": "1", "image": "1000092795.jpg", "conversations": [{"from": "human", "value": "<image>\nHi"}]}])
    r = run_collect("shikra_gpt4gen", [llava], images, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert ("shikra_gpt4gen expects Shikra GPT4Gen JSON lines {img_path, boxes, question, cot_with_ans, answer, question_boxes_seq, "
            "answer_boxes_seq} in GPT4GEN_BoxCoT_test.jsonl; its first record is an object with keys ['id', 'image', 'conversations']"
            ) in r.stderr
    array = write_json(tmp_path / "other2" / "GPT4GEN_BoxCoT_test.jsonl", [{"img_path": "1000092795.jpg"}])
    r = run_collect("shikra_gpt4gen", [array], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "in GPT4GEN_BoxCoT_test.jsonl; its first line is a JSON list" in r.stderr
