"""The one sample schema, shared by every task, collected or generated (stored as parquet).

A sample is a dict with the columns below. ``turns`` is a list of ``{question, answer}``;
``boxes`` are pixel xyxy in the original image, in the order the text mentions them;
``points`` are pixel (x, y). Generated rows also carry the lineage columns. Rows read from a
published data set keep ``record_id`` and the format's own extra fields in ``extra`` (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genixer.boxes import inside
from genixer.tasks import MULTI_TURN_TASKS, TASKS

TURN = pa.struct([("question", pa.string()), ("answer", pa.string())])

SAMPLE_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("image_id", pa.string()),
        ("image_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("task", pa.string()),
        ("turns", pa.list_(TURN)),
        ("boxes", pa.list_(pa.list_(pa.float64()))),
        ("points", pa.list_(pa.list_(pa.float64()))),
        ("source", pa.string()),
        ("split", pa.string()),
        # Collected from a published data set: the record's own id in its file, and what the format
        # says beyond the schema (all VQA answers, choices, rationales, candidates...) as JSON.
        ("record_id", pa.string()),
        ("extra", pa.string()),
    ]
)
# Columns a writer may leave out (filled with nulls).
OPTIONAL_COLUMNS = ("record_id", "extra")

# Lineage of generated rows (null on collected data).
LINEAGE_SCHEMA = pa.schema(
    [
        ("generator", pa.string()),
        ("template_id", pa.string()),
        ("seed", pa.int64()),
        ("judge_p_yes", pa.float64()),
        ("clip_score", pa.float64()),
        ("filter_reason", pa.string()),
    ]
)

SAMPLE_COLUMNS = SAMPLE_SCHEMA.names


def to_table(samples: Iterable[dict] | pd.DataFrame, lineage: bool = False) -> pa.Table:
    """Samples -> an Arrow table in the schema (extra columns are kept after the schema's); the
    optional columns are filled with nulls where the samples lack them."""
    df = samples if isinstance(samples, pd.DataFrame) else pd.DataFrame(list(samples), columns=None)
    if df.empty and not len(df.columns):
        df = pd.DataFrame(columns=SAMPLE_SCHEMA.names)
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df = df.assign(**{c: None})
    schema = SAMPLE_SCHEMA
    if lineage:
        for f in LINEAGE_SCHEMA:
            if f.name not in df.columns:
                df = df.assign(**{f.name: None})
            schema = schema.append(f)
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise ValueError(f"samples are missing schema columns {missing}")
    extra = [c for c in df.columns if c not in schema.names]
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    for c in extra:
        table = table.append_column(c, pa.array(df[c].tolist(), from_pandas=True))
    return table


APPLIED_KEY = b"genixer.applied"


def write_samples(samples: Iterable[dict] | pd.DataFrame, path: str | Path, lineage: bool = False, applied: dict | None = None) -> Path:
    """Write samples as parquet; `applied` (the thresholds and settings a filter actually used) is
    stored in the file's metadata, so every reader downstream uses the values that made the rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = to_table(samples, lineage=lineage)
    if applied is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), APPLIED_KEY: json.dumps(applied).encode()})
    pq.write_table(table, path)
    return path


def read_applied(path: str | Path) -> dict:
    """The settings a filtered table was made with (see write_samples); a clear error if it has none."""
    meta = pq.read_schema(path).metadata or {}
    if APPLIED_KEY not in meta:
        raise ValueError(f"{path} records no applied thresholds: rematerialise the asset that wrote it")
    return json.loads(meta[APPLIED_KEY])


def concat_parquet(parts: list[str | Path], out: str | Path) -> Path:
    """Several sample files of the one schema -> one file, a row group at a time (never all in memory)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, SAMPLE_SCHEMA) as writer:
        for part in parts:
            f = pq.ParquetFile(part)
            for i in range(f.num_row_groups):
                writer.write_table(f.read_row_group(i, columns=SAMPLE_SCHEMA.names).cast(SAMPLE_SCHEMA))
    return out


def read_samples(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def sample_problems(s: dict) -> list[str]:
    """Why a sample breaks the schema's rules (empty list when it is valid)."""
    out = []
    if s.get("task") not in TASKS:
        out.append(f"unknown task {s.get('task')!r}")
    turns = list(s.get("turns") if s.get("turns") is not None else [])
    if not turns:
        out.append("no turns")
    if len(turns) > 1 and s.get("task") not in MULTI_TURN_TASKS:
        out.append(f"{len(turns)} turns in single-turn task {s.get('task')}")
    for i, t in enumerate(turns):
        if not str(t.get("question") or "").strip():
            out.append(f"turn {i}: empty question")
        if not str(t.get("answer") or "").strip():
            out.append(f"turn {i}: empty answer")
    w, h = s.get("width"), s.get("height")
    for b in list(s.get("boxes") if s.get("boxes") is not None else []):
        if len(b) != 4 or not inside(b, w, h):
            out.append(f"box {list(b)} not inside the {w}x{h} image")
    for p in list(s.get("points") if s.get("points") is not None else []):
        if len(p) != 2 or not (0 <= p[0] <= w and 0 <= p[1] <= h):
            out.append(f"point {list(p)} not inside the {w}x{h} image")
    return out
