"""The filtered sets leave the graph as LLaVA JSON, Shikra jsonl and parquet, each with its card."""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from genixer.schema import read_samples, write_samples
from genixer_assets.common import FILE_NAMES
from genixer_assets.exports import dataset_exports
from genixer_assets.exports_checks import dataset_exports_complete
from resources import GenixerSettings
from tests.conftest import metadata_of

NOTHING = "nothing to export: the filter kept no rows"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _export_rows(table_md: str, name: str) -> dict[str, tuple[str, str]]:
    """dataset_exports' `exports` metadata (a markdown table: data, format, samples, path) for one set:
    format -> (samples, path)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table_md.splitlines()[2:]]
    return {fmt: (n, path) for data, fmt, n, path in rows if data == name}


def test_dataset_exports_hold_the_filtered_rows(built):
    settings, results = built
    md = metadata_of(results, "dataset_exports")
    for name in ("genixer_vqa", "genixer_rec"):
        table = read_samples(settings.table_path(name))
        folder = settings.path("exports", name)
        if table.empty:  # nothing written for the set, and the table of exports says so for each format
            assert _files(folder) == [], _files(folder)
            assert _export_rows(md["exports"], name) == {f: ("0", NOTHING) for f in FILE_NAMES}
            continue
        assert {f: n for f, (n, _) in _export_rows(md["exports"], name).items()} == {f: str(len(table)) for f in FILE_NAMES}
        llava = json.loads((folder / "llava" / "llava.json").read_text())
        assert [r["id"] for r in llava] == list(table.sample_id)
        root = Path(os.path.commonpath([str(Path(p).parent) for p in table.image_path]))  # the default root
        for rec, row in zip(llava, table.itertuples()):
            assert rec["conversations"][0]["value"].startswith("<image>\n")
            assert [c["from"] for c in rec["conversations"]] == ["human", "gpt"] * len(row.turns)
            assert (root / rec["image"]).resolve() == Path(row.image_path).resolve()
        parquet = pq.read_table(folder / "parquet" / "data.parquet").to_pandas()
        assert list(parquet.id) == list(table.sample_id) and parquet.generator.notna().all()
        card = (folder / "llava" / "README.md").read_text()
        assert f"{len(table)} samples exported as **llava**" in card and "not stated (the releaser states it)" in card
        assert "not recorded in the input" not in card.split("judge checkpoint:")[1].splitlines()[0] or name == "genixer_rec"
        shikra = [json.loads(line) for line in (folder / "shikra" / "shikra.jsonl").read_text().splitlines()]
        assert [r["id"] for r in shikra] == list(table.sample_id)


def test_a_set_the_filter_empties_leaves_no_export_behind(built, tmp_path):
    """dataset_exports run twice on a copy of the built filtered sets: first as built, then with one set emptied (its
    filter kept no rows). Read back: the emptied set's folder holds no file (no stale export or card of the first
    run), the table of exports says `nothing to export` for each format, the other set's exports still hold its rows,
    and the blocking completeness check passes. Before the fix the first run's files stayed, the check failed."""
    built_settings, _ = built
    mine = GenixerSettings(preset=built_settings.preset, data_dir=str(tmp_path))
    tables = {n: read_samples(built_settings.table_path(n)) for n in ("genixer_vqa", "genixer_rec")}
    emptied = next(n for n, t in tables.items() if len(t))  # the smoke graph keeps rows in at least one set
    other = next(n for n in tables if n != emptied)
    for n in tables:
        shutil.copy(built_settings.table_path(n), mine.table_path(n))

    def run():
        res = dg.materialize([dataset_exports, dataset_exports_complete], resources={"settings": mine}, raise_on_error=False)
        (check,) = res.get_asset_check_evaluations()
        return res.asset_materializations_for_node("dataset_exports")[0].metadata["exports"].value, check

    _, check = run()
    folder = mine.path("exports", emptied)
    assert check.passed and _files(folder) == sorted(f"{f}/{x}" for f, file in FILE_NAMES.items() for x in (file, "README.md"))
    write_samples(tables[emptied].iloc[:0], mine.table_path(emptied))
    exports_md, check = run()
    assert _files(folder) == [] and _export_rows(exports_md, emptied) == {f: ("0", NOTHING) for f in FILE_NAMES}
    assert check.passed and check.metadata["exports_checked"].value == (3 if len(tables[other]) else 0)
    if len(tables[other]):
        llava = json.loads((mine.path("exports", other) / "llava" / "llava.json").read_text())
        assert [r["id"] for r in llava] == list(tables[other].sample_id)
