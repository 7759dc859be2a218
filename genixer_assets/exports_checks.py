"""The exports' check: every export asked for exists, holds its table's samples in order, with its card."""

import json

import dagster as dg
import pandas as pd

from genixer.schema import read_samples
from genixer_assets.common import FILE_NAMES, FORMATS_FILE, check_result
from resources import GenixerSettings


@dg.asset_check(asset="dataset_exports", blocking=True,
                description="Guard: for every non-empty filtered set and every format dataset_exports was asked for (its "
                            f"{FORMATS_FILE}, else all), the export file exists and holds exactly the samples of its table (ids in "
                            "order), with its card; an empty set has no export.")
def dataset_exports_complete(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.exports import EXPORTERS, card_path

    record = settings.path("exports", FORMATS_FILE)
    formats = json.loads(record.read_text())["formats"] if record.exists() else list(EXPORTERS)
    problems, checked = [], 0
    for name in ("genixer_vqa", "genixer_rec"):
        ids = list(read_samples(settings.table_path(name)).sample_id)
        folder = settings.path("exports", name)
        want = {folder / f / FILE_NAMES[f]: f for f in formats} if ids else {}
        found = {p for p in folder.glob("*/*") if p.name in FILE_NAMES.values()}
        problems += [f"{out}: missing: {name} has {len(ids)} samples and the {f} export was asked for"
                     for out, f in sorted(want.items()) if out not in found]
        for out in sorted(found):
            checked += 1
            if out.suffix == ".json":
                got = [r["id"] for r in json.loads(out.read_text())]
            elif out.suffix == ".jsonl":
                got = [json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()]
            else:
                got = pd.read_parquet(out, columns=["id"]).id.tolist()
            if got != ids:
                problems.append(f"{out}: {len(got)} samples, {name} has {len(ids)} (or another order)")
            if not card_path(out).exists():
                problems.append(f"{out}: no dataset card")
    return check_result(not problems, problems, exports_checked=checked, formats=", ".join(formats))
