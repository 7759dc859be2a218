"""LLaVA conversations: llava_v1_5_mix665k.json as the release writes it (a JSON list of {id, image,
conversations}; `image` absent for the text-only ShareGPT records)."""

import pandas as pd

from tests.sources.helpers import collected, extra, run_collect, write_image, write_json


def _conv(*pairs):
    return [m for q, a in pairs for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]


BUS = {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": _conv(
    ("<image>\nWhat are the colors of the bus in the image?", "The bus in the image is white and red."),
    ("What feature can be seen on the back of the bus?", "The back of the bus features an advertisement."))}
VG = {"id": "VG_2349", "image": "vg/VG_100K/2349.jpg", "conversations": _conv(
    ("Please provide the bounding box coordinate of the region this sentence describes: a red car.\n<image>",
     "[0.12, 0.3, 0.45, 0.67]"))}
TEXT = {"id": "i6IyJda_0", "conversations": _conv(("How do I boil an egg?", "Put it in boiling water for 8 minutes."))}
BAD = [
    {"id": "empty", "image": BUS["image"], "conversations": []},
    {"id": "gptfirst", "image": BUS["image"], "conversations": list(reversed(BUS["conversations"][:2]))},
    {"id": "odd", "image": BUS["image"], "conversations": BUS["conversations"][:3]},
    {"id": "noimage", "image": "coco/train2017/000000000001.jpg", "conversations": BUS["conversations"][:2]},
    {"id": "noconv", "image": BUS["image"]},
    {"id": "twoimages", "image": [BUS["image"], VG["image"]], "conversations": BUS["conversations"][:2]},
    {"image": BUS["image"], "conversations": BUS["conversations"][:2]},
]


def _release(tmp_path):
    data = tmp_path / "playground" / "data"
    write_image(data / BUS["image"], (640, 480))
    write_image(data / VG["image"], (800, 600))
    return write_json(tmp_path / "llava_v1_5_mix665k.json", [BUS, VG, TEXT] + BAD), data


def test_llava_rows_match_the_records(tmp_path):
    f, data = _release(tmp_path)
    rows, quarantine, out = collected("llava", [f], data, tmp_path / "llava.parquet")
    assert len(rows) == 3
    by_id = rows.set_index("record_id")
    bus = by_id.loc[BUS["id"]]
    assert bus.task == "md" and bus.sample_id == "llava:000000033471:md"
    assert list(bus.turns) == [
        {"question": "What are the colors of the bus in the image?", "answer": "The bus in the image is white and red."},
        {"question": "What feature can be seen on the back of the bus?", "answer": "The back of the bus features an advertisement."}]
    assert (bus.width, bus.height) == (640, 480) and bus.image_id == BUS["image"]
    assert bus.image_path == str((data / BUS["image"]).resolve()) and pd.isna(bus.extra)
    vg = by_id.loc[VG["id"]]
    assert vg.task == "common_vqa" and (vg.width, vg.height) == (800, 600) and len(vg.boxes) == 0
    assert list(vg.turns) == [{"question": "Please provide the bounding box coordinate of the region this sentence describes: a red car.",
                               "answer": "[0.12, 0.3, 0.45, 0.67]"}]  # kept as LLaVA wrote it
    text = by_id.loc[TEXT["id"]]
    assert text.task == "common_vqa" and extra(text) == {"text_only": True}
    assert all(pd.isna(text[c]) for c in ("image_id", "image_path", "width", "height"))
    assert list(text.turns) == [{"question": "How do I boil an egg?", "answer": "Put it in boiling water for 8 minutes."}]
    assert set(rows.source) == {"llava:llava_v1_5_mix665k.json"} and rows.split.isna().all()
    q = quarantine.set_index("record_id")
    assert dict(zip(quarantine.record_id.fillna("no id"), quarantine.reason)) == {
        "empty": "empty conversation", "gptfirst": "conversation not human/gpt alternating",
        "odd": "conversation not human/gpt alternating", "noimage": "image missing", "noconv": "missing field",
        "twoimages": "malformed record", "no id": "missing field"}
    assert q.detail["gptfirst"] == "roles ['gpt', 'human']" and q.detail["odd"] == "roles ['human', 'gpt', 'human']"
    assert "1 images missing: coco/train2017/000000000001.jpg" in out


def test_llava_other_format_is_one_clear_error(tmp_path):
    _, data = _release(tmp_path)
    gqa = write_json(tmp_path / "val_balanced_questions.json", {"07333408": {"imageId": "1", "question": "q", "answer": "a"}})
    r = run_collect("llava", [gqa], data, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "llava expects a JSON list of LLaVA conversations ({id, image, conversations}) in val_balanced_questions.json; found a JSON object" in r.stderr
    aokvqa = write_json(tmp_path / "aokvqa_v1p0_val.json", [{"split": "val", "image_id": 1, "question_id": "x", "question": "q",
                                                             "choices": ["a", "b", "c", "d"], "correct_choice_idx": 0}])
    r = run_collect("llava", [aokvqa], data, tmp_path / "x.parquet")
    assert r.returncode == 2
    assert "its first record is an object with keys ['split', 'image_id', 'question_id', 'question', 'choices', 'correct_choice_idx']" in r.stderr
