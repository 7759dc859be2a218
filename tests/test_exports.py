"""`genixer export`: LLaVA JSON, Shikra jsonl and HF parquet from a samples table, with its card."""

import json
import os
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from genixer.boxes import BOX_GROUP_RE, box_to_text, boxes_to_text, from_xyxy, parse_boxes, point_to_text, to_xyxy
from genixer.schema import write_samples
from tests.sources.helpers import genixer_cmd, write_image

GEN_L, GEN_S = "0123456789abcdef", "fedcba9876543210"
APPLIED = {"judge_lambda": 0.7, "hard_band_share": 0.01, "hard_band": [0.5, 0.7], "clip_threshold": 0.25, "judge_checkpoint": "ab12cd34ef56ab78"}


def _samples(root: Path) -> list[dict]:
    a = write_image(root / "coco" / "a.jpg", (640, 480))
    b = write_image(root / "vg" / "part2" / "b.png", (300, 500))
    box_a, box_b, spheres, pt = [100.5, 60.25, 300.75, 400.0], [20.0, 30.0, 120.0, 260.0], [[150.0, 300.0, 290.0, 480.0], [0.0, 10.0, 40.0, 90.0]], [210.0, 77.0]

    def row(i, img, size, task, turns, source, boxes=(), points=(), **lineage):
        return {"sample_id": f"s{i}", "image_id": Path(img).stem, "image_path": str(img), "width": size[0], "height": size[1], "task": task,
                "turns": [{"question": q, "answer": a} for q, a in turns], "boxes": [list(x) for x in boxes],
                "points": [list(x) for x in points], "source": source, "split": "corpus", **lineage}

    def lin(gen, seed, **kw):
        return {"generator": gen, "template_id": f"general_{seed:02d}", "seed": seed, **kw}

    return [
        row(0, a, (640, 480), "common_vqa", [("What colour is the bus?", "Red.")], "genixer_l", **lin(GEN_L, 1, judge_p_yes=0.91)),
        row(1, b, (300, 500), "md", [("How many cubes are there?", "Two."), ("Which is bigger?", "The left one."),
                                     ("Is it metal?", "Yes.")], "genixer_l", **lin(GEN_L, 2, judge_p_yes=0.8)),
        row(2, a, (640, 480), "common_vqa", [("Is it raining?", "No.")], "vqav2"),
        row(3, b, (300, 500), "rec", [("Where is the small red cube?", box_to_text(box_b, 300, 500) + ".")], "genixer_s", [box_b],
            **lin(GEN_S, 3, clip_score=0.41)),
        row(4, a, (640, 480), "rd", [(f"What is the object {box_to_text(box_a, 640, 480)}?", "It is a large cube."),
                                     ("Where are the spheres?", f"The spheres are at {boxes_to_text(spheres, 640, 480)}."),
                                     (f"What is at {point_to_text(pt, 640, 480)}?", f"The cube {box_to_text(box_a, 640, 480)}.")],
            "genixer_s", [box_a, *spheres, box_a], [pt], **lin(GEN_S, 4, clip_score=0.33)),
        row(5, b, (300, 500), "rec", [("Where is the blue ball?", box_to_text(box_b, 300, 500))], "genixer_s", [box_b],
            **lin(GEN_S, 5, clip_score=0.1, filter_reason="3-clip: 0.100 < 0.250")),
    ]


@pytest.fixture()
def table(tmp_path):
    root = tmp_path / "images"
    samples = _samples(root)
    path = write_samples(samples, tmp_path / "genixer.parquet", lineage=True, applied=APPLIED)
    return path, root, {s["sample_id"]: s for s in samples}


def _export(fmt, src, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([genixer_cmd(), "export", fmt, str(src), "--out", str(out), *extra], check=False, capture_output=True, text=True,
                          env={**os.environ}, timeout=300)


def _ok(*args) -> subprocess.CompletedProcess:
    r = _export(*args)
    assert r.returncode == 0, r.stderr + r.stdout
    return r


def test_llava(table, tmp_path):
    src, root, samples = table
    out = tmp_path / "llava" / "train.json"
    _ok("llava", src, out)  # the root defaults to the images' common folder
    records = json.loads(out.read_text())
    assert [r["id"] for r in records] == list(samples)
    for r in records:
        s, conv = samples[r["id"]], r["conversations"]
        assert set(r) == {"id", "image", "conversations"}
        assert [c["from"] for c in conv] == ["human", "gpt"] * len(s["turns"])
        assert conv[0]["value"].startswith("<image>\n") and sum("<image>" in c["value"] for c in conv) == 1
        assert [c["value"].removeprefix("<image>\n") for c in conv] == [v for t in s["turns"] for v in (t["question"], t["answer"])]
        image = root / r["image"]
        assert not Path(r["image"]).is_absolute() and image.resolve().is_relative_to(root.resolve()) and image.is_file()
        assert image.resolve() == Path(s["image_path"]).resolve()
    assert records[4]["conversations"][3]["value"] == samples["s4"]["turns"][1]["answer"]  # boxes stay as generated
    assert (out.parent / "README.md").is_file()


def test_shikra_boxes_round_trip(table, tmp_path):
    src, root, samples = table
    out = tmp_path / "shikra" / "train.jsonl"
    _ok("shikra", src, out, "--images-root", str(root))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(samples)
    for r in records:
        s = samples[r["id"]]
        w, h = s["width"], s["height"]
        assert (root / r["img_path"]).resolve() == Path(s["image_path"]).resolve()
        assert r["boxes"] == s["boxes"] and r["points"] == s["points"]  # pixel, as Shikra's jsonl stores them
        conv = r["conversations"]
        assert conv[0]["value"].startswith("<image>") and [c["from"] for c in conv] == ["human", "gpt"] * len(s["turns"])
        originals = [v for t in s["turns"] for v in (t["question"], t["answer"])]
        for c, text in zip(conv, originals):
            assert c["value"].count("<boxes>") == len(c["boxes_seq"]) and c["value"].count("<points>") == len(c["points_seq"])
            # What Shikra's loader makes of it: boxes padded to a centred square, normalised by its side, 3 decimals.
            shown = c["value"]
            for seq in c["boxes_seq"]:
                vals = [from_xyxy(r["boxes"][i], "norm_pad", w, h) for i in seq]
                shown = shown.replace("<boxes>", "[" + ";".join(",".join(f"{v:.3f}" for v in b) for b in vals) + "]", 1)
            groups = BOX_GROUP_RE.findall(shown)
            assert len(groups) == len(BOX_GROUP_RE.findall(text))
            for shown_group, text_group, seq in zip(groups, BOX_GROUP_RE.findall(text), c["boxes_seq"]):
                back = [to_xyxy([float(v) for v in part.split(",")], "norm_pad", w, h) for part in shown_group[1:-1].split(";")]
                generated = parse_boxes(text_group, w, h)
                for b, g, i in zip(back, generated, seq):
                    assert b == pytest.approx(r["boxes"][i], abs=max(w, h) * 5e-4 + 1e-6)
                    assert g == pytest.approx(r["boxes"][i], abs=max(w, h) * 5e-4 + 1e-6)
    rd = next(r for r in records if r["id"] == "s4")
    assert [c["boxes_seq"] for c in rd["conversations"]] == [[[0]], [], [], [[1, 2]], [], [[3]]]
    assert [c["points_seq"] for c in rd["conversations"]] == [[], [], [], [], [[0]], []]
    assert rd["conversations"][3]["value"] == "The spheres are at <boxes>."
    # Non-square images: Shikra's convention is not the generator's.
    assert from_xyxy(rd["boxes"][0], "norm_pad", 640, 480) != pytest.approx(from_xyxy(rd["boxes"][0], "norm", 640, 480))


def _load(path: Path) -> list[dict]:
    try:
        import datasets
    except ImportError:
        return pq.read_table(path).to_pylist()
    return list(datasets.load_dataset("parquet", data_files=str(path), split="train"))


@pytest.mark.parametrize("embed", [False, True])
def test_parquet(table, tmp_path, embed):
    src, root, samples = table
    out = tmp_path / "hf" / "data.parquet"
    _ok("parquet", src, out, *(["--embed-images"] if embed else []))
    rows = _load(out)
    assert set(rows[0]) == {"id", "image", "conversations", "boxes", "points", "width", "height", "task", "source",
                            "generator", "template_id", "seed", "judge_p_yes", "clip_score", "filter_reason"}
    for r in rows:
        s = samples[r["id"]]
        rel = Path(s["image_path"]).relative_to(root).as_posix()
        if embed:
            image = r["image"]
            if isinstance(image, dict):  # pyarrow: the stored struct
                assert image["path"] == rel and image["bytes"] == Path(s["image_path"]).read_bytes()
            else:  # datasets: decoded by its Image feature
                assert image.size == (s["width"], s["height"])
        else:
            assert r["image"] == rel
        assert r["conversations"][0] == {"from": "human", "value": "<image>\n" + s["turns"][0]["question"]}
        assert len(r["conversations"]) == 2 * len(s["turns"])
        assert r["boxes"] == s["boxes"] and r["points"] == s["points"] and r["task"] == s["task"]
        for k in ("generator", "template_id", "seed", "judge_p_yes", "clip_score", "filter_reason"):
            assert r[k] == s.get(k), k


def test_card(table, tmp_path):
    src, root, _ = table
    out = tmp_path / "hf" / "data.parquet"
    _ok("parquet", src, out)
    card = (out.parent / "README.md").read_text()
    for line in ("| genixer_s | 3 | not stated (the releaser states it) |", "| genixer_l | 2 | not stated (the releaser states it) |", "| vqav2 | 1 | not stated (the releaser states it) |",
                 "| rec | 2 |", "| common_vqa | 2 |", "| md | 1 |", "| rd | 1 |",
                 f"| genixer_l | `{GEN_L}` | 2 |", f"| genixer_s | `{GEN_S}` | 3 |", "- judge checkpoint: ab12cd34ef56ab78",
                 "- λ (judge, keep P(Yes) >= λ): 0.7", "- CLIP threshold (region CLIP, keep cosine >= it): 0.25",
                 "| kept | 5 |", "| 3-clip | 1 |", f"- images: paths relative to `{root}`"):
        assert line in card, line
    _ok("parquet", src, out)  # re-exported: the same card, rewritten in place
    assert (out.parent / "README.md").read_text() == card and sorted(p.name for p in out.parent.iterdir()) == ["README.md", "data.parquet"]
    # Another export in the same folder gets a card of its own; one without applied settings says so.
    plain = write_samples(pq.read_table(src).to_pandas(), tmp_path / "plain.parquet", lineage=True)
    r = _ok("llava", plain, out.parent / "data.json")
    other = out.parent / "data.json.README.md"
    assert str(other) in r.stdout and other.is_file() and (out.parent / "README.md").read_text() == card
    text = other.read_text()
    assert "- λ (judge, keep P(Yes) >= λ): not applied" in text and "- CLIP threshold (region CLIP, keep cosine >= it): not applied" in text
    assert "- judge checkpoint: not recorded in the input" in text


def test_image_outside_root(table, tmp_path):
    src, root, _ = table
    r = _export("llava", src, tmp_path / "out.json", "--images-root", str(root / "vg"))
    assert r.returncode == 2
    assert re.search(r"image .*a\.jpg \(sample s0\) is outside --images-root", r.stderr), r.stderr
    assert not (tmp_path / "out.json").exists()
