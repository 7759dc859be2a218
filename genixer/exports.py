"""Exports of a samples table to the formats other trainers read, each with a dataset card.

    genixer export llava|shikra|parquet IN.parquet --out PATH [--images-root DIR] [--embed-images]

llava:   LLaVA-1.5 instruction JSON (as llava/train/train.py reads it, the layout of
         llava_v1_5_mix665k.json): a list of {id, image, conversations: [{from: human|gpt, value}]},
         `<image>\\n` leading the first human turn only, `image` relative to the images root
         (LLaVA's --image_folder). Boxes and points stay in the text as the generator wrote them:
         [x0,y0,x1,y1] normalised by the image's width and height (LLaVA-1.5 trains on padded
         squares and its own region data's convention is disputed: haotian-liu/LLaVA#606, #822).
shikra:  Shikra jsonl (the raw items of shikras/shikra mllm/dataset): one record a line,
         {id, img_path, boxes, points, conversations: [{from, value, boxes_seq, points_seq}]}.
         As in Shikra's own REC/GPT4Gen files, `boxes` are pixel xyxy in the original image and
         `points` pixel (x, y); every box group in the text becomes `<boxes>` and every point
         `<points>`, with boxes_seq/points_seq indexing them. Shikra's loader then pads the image to
         a centred square (Expand2square) and normalises by its side, so the model sees boxes in
         its own convention (`norm_pad` in genixer.boxes), not the generator's width/height one.
         Shikra has no reader for multi-turn records of this layout: a MInstrDataset subclass
         returning {image, target: {boxes, points}, conversations} from a line is all it takes.
parquet: a table Hugging Face `datasets` loads (load_dataset("parquet", data_files=...)): id,
         image (path relative to the root; with --embed-images the `datasets` Image feature,
         {bytes, path}), conversations (as llava), boxes (pixel xyxy), points (pixel), width,
         height, task, source and the lineage: generator (checkpoint hash), template_id, seed,
         judge_p_yes, clip_score, filter_reason (and hard_band where the table has it).

The card is README.md beside the output when the folder holds nothing else (or only an earlier
card of this same export), else `<output file name>.README.md` (the full name, so exports of
one stem in several formats do not share a card).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genixer.boxes import BOX_GROUP_RE, POINT_RE, parse_boxes
from genixer.schema import APPLIED_KEY, LINEAGE_SCHEMA, SAMPLE_SCHEMA, read_applied, read_samples

IMAGE = "<image>\n"
# A box group or a point, whichever starts first (a point never matches a box group).
MENTION_RE = re.compile(rf"(?P<boxes>{BOX_GROUP_RE.pattern})|(?P<points>{POINT_RE.pattern})")


class ExportError(ValueError):
    """Samples that cannot be exported as asked."""


def image_paths(df: pd.DataFrame, images_root: str | Path | None) -> tuple[Path, list[str]]:
    """(root, each image's path relative to it); the root defaults to the images' common folder."""
    paths = [Path(os.path.abspath(p)) for p in df.image_path]
    root = Path(os.path.abspath(images_root)) if images_root is not None else Path(os.path.commonpath([p.parent for p in paths]))
    for sid, p in zip(df.sample_id, paths):
        if not p.is_relative_to(root):
            raise ExportError(f"image {p} (sample {sid}) is outside --images-root {root}")
    return root, [p.relative_to(root).as_posix() for p in paths]


def conversations(turns) -> list[dict]:
    """Turns -> LLaVA conversations: human/gpt alternating, the image token in the first turn only."""
    out = []
    for i, t in enumerate(turns):
        out += [{"from": "human", "value": (IMAGE if i == 0 else "") + t["question"]}, {"from": "gpt", "value": t["answer"]}]
    return out


def export_llava(df: pd.DataFrame, out: str | Path, images_root: str | Path | None = None) -> Path:
    _, rel = image_paths(df, images_root)
    records = [{"id": sid, "image": r, "conversations": conversations(t)} for sid, r, t in zip(df.sample_id, rel, df.turns)]
    return _write(out, json.dumps(records, indent=1))


def shikra_record(row: dict, img_path: str) -> dict:
    """One sample -> Shikra's raw item: the row's pixel boxes/points, in the order the text
    mentions them (the schema's rule), behind <boxes>/<points> placeholders."""
    w, h = row["width"], row["height"]
    n = {"boxes": 0, "points": 0}

    def sentence(who: str, text: str) -> dict:
        seq = {"boxes": [], "points": []}

        def placeholder(m: re.Match) -> str:
            kind = m.lastgroup
            k = len(parse_boxes(m.group(0), w, h)) if kind == "boxes" else 1
            seq[kind].append(list(range(n[kind], n[kind] + k)))
            n[kind] += k
            return f"<{kind}>"

        value = MENTION_RE.sub(placeholder, text)
        return {"from": who, "value": value, "boxes_seq": seq["boxes"], "points_seq": seq["points"]}

    conv = [sentence(c["from"], c["value"]) for c in conversations(row["turns"])]
    boxes, points = (_floats(row[k]) for k in ("boxes", "points"))
    if (n["boxes"], n["points"]) != (len(boxes), len(points)):
        raise ExportError(f"sample {row['sample_id']}: its text mentions {n['boxes']} boxes and {n['points']} points, "
                          f"its columns hold {len(boxes)} and {len(points)}")
    return {"id": row["sample_id"], "img_path": img_path, "boxes": boxes, "points": points, "conversations": conv}


def export_shikra(df: pd.DataFrame, out: str | Path, images_root: str | Path | None = None) -> Path:
    _, rel = image_paths(df, images_root)
    return _write(out, "".join(json.dumps(shikra_record(r, p)) + "\n" for r, p in zip(df.to_dict("records"), rel)))


HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
CONVERSATION = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))


def export_parquet(df: pd.DataFrame, out: str | Path, images_root: str | Path | None = None, embed_images: bool = False) -> Path:
    _, rel = image_paths(df, images_root)
    image = [{"bytes": Path(p).read_bytes(), "path": r} for p, r in zip(df.image_path, rel)] if embed_images else rel
    lineage = list(LINEAGE_SCHEMA) + ([pa.field("hard_band", pa.bool_())] if "hard_band" in df else [])
    frame = pd.DataFrame({"id": df.sample_id.values, "image": image, "conversations": [conversations(t) for t in df.turns],
                          **{c: df[c].values for c in ("boxes", "points", "width", "height", "task", "source")},
                          **{f.name: df[f.name].values if f.name in df else None for f in lineage}})
    schema = pa.schema([("id", pa.string()), ("image", HF_IMAGE if embed_images else pa.string()), ("conversations", CONVERSATION),
                        *(SAMPLE_SCHEMA.field(c) for c in ("boxes", "points", "width", "height", "task", "source")), *lineage])
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if embed_images:  # `datasets` takes features it is told from this key, and infers the others from the schema
        table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}}).encode()})
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return Path(out)


EXPORTERS = {"llava": export_llava, "shikra": export_shikra, "parquet": export_parquet}
BOXES = {
    "llava": "in the text as generated: `[x0,y0,x1,y1]` normalised by the image width and height (3 decimals); points `[x,y]` likewise",
    "shikra": "`boxes` pixel xyxy and `points` pixel (x, y) in the original image; the text holds `<boxes>`/`<points>` placeholders "
              "indexed by `boxes_seq`/`points_seq`. Shikra's loader pads to a centred square and normalises by its side",
    "parquet": "`boxes` pixel xyxy and `points` pixel (x, y) in the original image (`width` x `height`); the conversation text keeps "
               "them as generated, normalised by width and height",
}


def card_path(out: Path) -> Path:
    readme = out.parent / "README.md"
    alone = not {p.name for p in out.parent.iterdir()} - {out.name, readme.name}
    ours = not readme.exists() or readme.read_text().startswith(_marker(out))
    return readme if alone and ours else out.with_name(out.name + ".README.md")


def write_card(df: pd.DataFrame, out: str | Path, fmt: str, images_root: Path, applied: dict | None = None,
               input_path: str | Path | None = None) -> Path:
    """The dataset card of an export: what it holds, where it came from, how it was filtered."""
    out, applied = Path(out), applied or {}
    gens = df.groupby(["source", "generator"]).size() if "generator" in df else pd.Series(dtype=int)
    lines = [
        _marker(out), f"# Genixer data: {out.name}", "",
        f"{len(df)} samples exported as **{fmt}**" + (f" from `{input_path}`" if input_path else "") + ".", "",
        f"- images: paths relative to `{images_root}`", f"- boxes: {BOXES[fmt]}.", "",
        "## Sources", "", "| source | samples | licence |", "| --- | --- | --- |",
        *(f"| {s} | {n} | not stated (the releaser states it) |" for s, n in df.source.value_counts().items()), "",
        "## Tasks", "", "| task | samples |", "| --- | --- |", *(f"| {t} | {n} |" for t, n in df.task.value_counts().items()), "",
        "## Models and thresholds", "", "Generator checkpoints (sha256 of the saved config and weights, first 16 hex digits):", "",
        "| source | generator checkpoint | samples |", "| --- | --- | --- |", *(f"| {s} | `{g}` | {n} |" for (s, g), n in gens.items()), "",
        f"- judge checkpoint: {_or(applied.get('judge_checkpoint'), 'not recorded in the input')}",
        f"- region CLIP checkpoint: {_or(applied.get('region_clip_checkpoint'), 'not recorded in the input')}",
        f"- λ (judge, keep P(Yes) >= λ): {_or(applied.get('judge_lambda'), 'not applied')}",
        f"- CLIP threshold (region CLIP, keep cosine >= it): {_or(applied.get('clip_threshold'), 'not applied')}",
        f"- settings the filter recorded: `{json.dumps(applied, sort_keys=True)}`" if applied else "- settings the filter recorded: none",
        *([f"- hard-band rows (0.5 <= P(Yes) < λ, kept for fine-tuning): {int(df.hard_band.sum())}"] if "hard_band" in df else []), "",
        "## Filter funnel", "",
    ]
    if "filter_reason" in df:
        steps = df.filter_reason.fillna("kept").str.split(":").str[0].value_counts()
        lines += ["| step | samples |", "| --- | --- |", *(f"| {s} | {n} |" for s, n in steps.items())]
    else:
        lines.append("The input has no `filter_reason` column.")
    return _write(card_path(out), "\n".join(lines) + "\n")


def export(input_path: str | Path, fmt: str, out: str | Path, images_root: str | Path | None = None,
           embed_images: bool = False) -> tuple[Path, Path, int]:
    """Export a samples table as `fmt` with its card: (output, card, samples written)."""
    if embed_images and fmt != "parquet":
        raise ExportError("--embed-images applies to the parquet format only")
    df = read_samples(input_path)
    if df.empty:
        raise ExportError(f"{input_path} holds no samples")
    if df.turns.isna().any():
        raise ExportError(f"{input_path} has rows without turns (quarantined), e.g. {df.sample_id[df.turns.isna()].iloc[0]}")
    applied = read_applied(input_path) if APPLIED_KEY in (pq.read_schema(input_path).metadata or {}) else None
    root, _ = image_paths(df, images_root)
    extra = {"embed_images": True} if embed_images else {}
    out = EXPORTERS[fmt](df, out, root, **extra)
    return out, write_card(df, out, fmt, root, applied, input_path), len(df)


def _run(args) -> int:
    try:
        out, card, n = export(args.input, args.format, args.out, args.images_root, args.embed_images)
    except ExportError as e:
        print(f"genixer export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} samples to {out} (card: {card})")
    return 0


def add_cli(subparsers) -> None:
    e = subparsers.add_parser("export", help="write a samples table as LLaVA JSON, Shikra jsonl or HF parquet, with a dataset card",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("format", choices=list(EXPORTERS))
    e.add_argument("input", metavar="IN.parquet", help="a samples table (e.g. genixer_vqa.parquet, genixer_rec.parquet)")
    e.add_argument("--out", required=True, help="output file")
    e.add_argument("--images-root", help="folder the image paths are written relative to (default: the images' common folder)")
    e.add_argument("--embed-images", action="store_true", help="parquet: store the image bytes (datasets' Image feature), not paths")
    e.set_defaults(run=_run)


def _marker(out: Path) -> str:
    return f"<!-- genixer export card of {out.name} -->"


def _or(value, default: str) -> str:
    return default if value is None else str(value)


def _floats(v) -> list[list[float]]:
    return [] if v is None else [[float(x) for x in b] for b in v]


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
