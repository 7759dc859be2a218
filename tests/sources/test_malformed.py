"""Malformed input for every format `genixer collect --help` lists (issue 28, items 13-15).

An empty file, a file of another format, and a valid file that holds no records are each one line on
stderr and exit code 2, with nothing left in the output folder (no OUT.parquet.partial); a missing
image whose path holds a newline or NUL stays one line of OUT.missing_images.txt (a JSON string).
"""

import json
import pickle
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from genixer.cli import main
from genixer.sources import FORMATS, collect
from genixer.sources.common import SourceFormatError
from tests.sources import (test_aokvqa, test_gqa, test_llava, test_pointqa_local, test_pope, test_refcoco,
                           test_shikra_gpt4gen, test_visual7w, test_visual_genome, test_vqav2)
from tests.sources.helpers import genixer_cmd, run_collect, write_image


def _files_images(release):
    """A test module's _release(tmp_path) -> (its files in the format's order, its images folder)."""
    def build(tmp_path):
        got = release(tmp_path)
        paths = [x for x in got if isinstance(x, Path)]
        return paths[:-1], paths[-1]
    return build


# Every format's valid release, as its own test module writes it.
RELEASES = {
    "vqav2": _files_images(test_vqav2._release), "gqa": _files_images(test_gqa._release),
    "aokvqa": _files_images(test_aokvqa._release), "pope": _files_images(test_pope._release),
    "llava": _files_images(test_llava._release), "refcoco": _files_images(test_refcoco._release),
    "visual_genome": _files_images(test_visual_genome._release), "visual7w": _files_images(test_visual7w._release),
    "pointqa_local": _files_images(test_pointqa_local._release),
    "shikra_gpt4gen": _files_images(test_shikra_gpt4gen._release),
}

# A valid file of each format and position that holds no record at all.
NO_RECORDS = {
    "vqav2": [json.dumps({"info": {}, "data_subtype": "val2014", "questions": []}),
              json.dumps({"info": {}, "data_subtype": "val2014", "annotations": []})],
    "gqa": ["{}"],
    "aokvqa": ["[]"],
    "pope": ["[]"],  # the SEEM list layout; the JSON-lines layout with no line is below
    "llava": ["[]"],
    "refcoco": [pickle.dumps([], protocol=2), json.dumps({"info": {}, "images": [], "annotations": [], "categories": []})],
    "visual_genome": ["[]", "[]"],
    "visual7w": [json.dumps({"images": [], "boxes": []})],
    "pointqa_local": ["{}"],
    "shikra_gpt4gen": ["\n\n"],
}
POSITIONS = [(fmt, i) for fmt in sorted(FORMATS) for i in range(len(FORMATS[fmt].files))]


def _cli(capsys, fmt, files, images, out):
    rc = main(["collect", fmt, *map(str, files), "--images", str(images), "--out", str(out), "--no-progress"])
    got = capsys.readouterr()
    return rc, got.out, got.err


def _replace(tmp_path, files, i, content) -> list[Path]:
    """The release's files with file i replaced by `content` under the same name (names carry meaning)."""
    bad = tmp_path / "bad" / files[i].name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    return [bad if k == i else f for k, f in enumerate(files)]


def _one_error_line(rc, stdout, stderr, out: Path, *needles: str) -> str:
    lines = stderr.splitlines()
    assert rc == 2 and stdout == "" and len(lines) == 1, f"rc {rc}, stdout {stdout!r}, stderr {stderr!r}"
    assert lines[0].startswith("genixer collect: error: ") and "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    left = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert left == [], f"a failed collect left {left}"
    return lines[0]


def test_every_listed_format_is_covered():
    r = subprocess.run([genixer_cmd(), "collect", "--help"], capture_output=True, text=True, timeout=60)
    listed = set(re.findall(r"^(\w+)  ->  ", r.stdout, re.M))  # the epilog's "<format>  ->  <tasks>" lines
    assert listed == set(FORMATS) == set(RELEASES) == set(NO_RECORDS)
    assert all(len(NO_RECORDS[f]) == len(FORMATS[f].files) for f in FORMATS)


@pytest.mark.parametrize("fmt,i", POSITIONS)
def test_an_empty_file_is_one_error_line(tmp_path, capsys, fmt, i):
    files, images = RELEASES[fmt](tmp_path / "release")
    files = _replace(tmp_path, files, i, b"")
    out = tmp_path / "out" / "x.parquet"
    _one_error_line(*_cli(capsys, fmt, files, images, out), out, files[i].name, "empty file")


@pytest.mark.parametrize("fmt,i", POSITIONS)
def test_a_file_of_another_format_is_one_error_line(tmp_path, capsys, fmt, i):
    """Each file of every other format's release (and a JPEG) in place of file i: one error each."""
    files, images = RELEASES[fmt](tmp_path / "release")
    foreign = [write_image(tmp_path / "photo.jpg", (8, 8))]
    for other in sorted(set(RELEASES) - {fmt}):
        foreign += RELEASES[other](tmp_path / other)[0]
    for n, f in enumerate(foreign):
        given = _replace(tmp_path / str(n), files, i, f.read_bytes())
        out = tmp_path / str(n) / "out" / "x.parquet"
        line = _one_error_line(*_cli(capsys, fmt, given, images, out), out, given[i].name)
        assert f"{fmt} expects" in line, f"{f} as {fmt}: {line}"


@pytest.mark.parametrize("fmt,i", POSITIONS)
def test_a_valid_file_without_records_is_one_error_line(tmp_path, capsys, fmt, i):
    files, images = RELEASES[fmt](tmp_path / "release")
    files = _replace(tmp_path, files, i, NO_RECORDS[fmt][i])
    out = tmp_path / "out" / "x.parquet"
    _one_error_line(*_cli(capsys, fmt, files, images, out), out, files[i].name, "no records")


def test_pope_json_lines_without_a_line_is_one_error_line(tmp_path, capsys):
    files, images = RELEASES["pope"](tmp_path / "release")
    files = _replace(tmp_path, files, 0, "\n \n")
    out = tmp_path / "out" / "x.parquet"
    _one_error_line(*_cli(capsys, "pope", files, images, out), out, files[0].name, "no records")


@pytest.mark.parametrize("case", ["empty", "list layout, other name", "empty pope"])
def test_the_issue_cases_through_the_installed_command(tmp_path, case):
    """What issue 28 reported, run as a user runs it: one line on stderr, exit code 2, nothing left."""
    files, images = RELEASES["pope" if case == "empty pope" else "vqav2"](tmp_path / "release")
    if case == "list layout, other name":
        questions = json.loads(files[0].read_text())["questions"]
        files[0] = tmp_path / "my_questions.json"
        files[0].write_text(json.dumps(questions))
    else:
        files = _replace(tmp_path, files, 0, b"")
    out = tmp_path / "out" / "x.parquet"
    r = run_collect("pope" if case == "empty pope" else "vqav2", files, images, out)
    _one_error_line(r.returncode, r.stdout, r.stderr, out, files[0].name)


def test_a_failure_after_rows_were_written_leaves_no_partial_file(tmp_path):
    """A POPE list cut off after two good records: the rows already flushed to OUT.parquet.partial go with it."""
    images = tmp_path / "val2014"
    write_image(images / test_pope.IMAGE, (640, 427))
    f = tmp_path / "coco_pope_random.json"
    f.write_text(json.dumps(test_pope.GOOD * 3)[:-40])
    out = tmp_path / "out" / "pope.parquet"
    with pytest.raises(SourceFormatError, match="is not valid JSON"):
        collect("pope", [f], images, out, progress=False, batch_rows=1)
    assert sorted(p.name for p in out.parent.iterdir()) == []
    # the same file whole is read, so the failure above came after rows were written
    f.write_text(json.dumps(test_pope.GOOD * 3))
    assert collect("pope", [f], images, out, progress=False, batch_rows=1).rows == 6 and pq.read_table(out).num_rows == 6


def test_missing_image_paths_stay_one_line_each(tmp_path):
    """Paths with a newline, a NUL, a line separator or a leading quote are JSON strings; plain ones as they are."""
    images = tmp_path / "val2014"
    write_image(images / test_pope.IMAGE, (640, 427))
    odd = ["two\nlines.jpg", "nul\x00byte.jpg", "sep\u2028arator.jpg", '"quoted".jpg', "tab\there.jpg"]
    plain = ["sub dir/plain é.jpg"]
    records = [{"question_id": n, "image": p, "text": "Is there a cat in the image?", "label": "no"}
               for n, p in enumerate(odd + plain + [test_pope.IMAGE])]
    f = tmp_path / "coco_pope_random.json"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    r = run_collect("pope", [f], images, tmp_path / "pope.parquet")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "pope.missing_images.txt").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(odd + plain)
    assert sorted(lines[:-1]) == sorted([json.dumps(p) for p in odd] + plain)
    assert sorted(json.loads(x) if x.startswith('"') else x for x in lines[:-1]) == sorted(odd + plain)
    summary = [x for x in r.stdout.splitlines() if "images missing" in x]
    assert len(summary) == 1 and json.dumps("two\nlines.jpg") in summary[0] and "sub dir/plain é.jpg" in summary[0]
