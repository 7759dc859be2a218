"""The filtered sets leave the graph as LLaVA JSON, Shikra jsonl and parquet, each with its card."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from genixer.schema import read_samples
from tests.conftest import metadata_of


def test_dataset_exports_hold_the_filtered_rows(built):
    settings, results = built
    md = metadata_of(results, "dataset_exports")
    for name in ("genixer_vqa", "genixer_rec"):
        table = read_samples(settings.table_path(name))
        folder = settings.path("exports", name)
        if table.empty:
            assert f"{name}" in md["exports"] and "nothing to export" in md["exports"]
            continue
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
        assert f"{len(table)} samples exported as **llava**" in card and "TODO: fill in" in card
        assert "not recorded in the input" not in card.split("judge checkpoint:")[1].splitlines()[0] or name == "genixer_rec"
        shikra = [json.loads(line) for line in (folder / "shikra" / "shikra.jsonl").read_text().splitlines()]
        assert [r["id"] for r in shikra] == list(table.sample_id)
