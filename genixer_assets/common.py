"""Helpers shared by the asset modules: what the Dagster UI shows of an asset without opening a
file, and the one switch "does this run have the world?" with the collected images it implies."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

WORLD_SOURCE = "shapes_world"  # the `source` of every row the shapes world annotates ("shapes_world", "shapes_world:gqa" ...)


def md_table(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False))


def md_counts(df: pd.DataFrame, *by: str) -> dg.MetadataValue:
    counts = df.groupby(list(by)).size().rename("rows").reset_index()
    return dg.MetadataValue.md(counts.to_markdown(index=False))


def md_png(png: bytes, alt: str = "preview") -> dg.MetadataValue:
    """The figure at its own size: the Dagster UI shows it behind [Show Markdown], in a dialog."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


# dagster-webserver renders a markdown metadata value in the asset's metadata table when it is shorter than this
# (ui-core MetadataEntry: `expandSmallValues && mdStr.length < 1000`), else only behind [Show Markdown].
UI_INLINE_MD_CHARS = 1000


def md_thumbnail(png: bytes, alt: str = "preview") -> dg.MetadataValue:
    """A thumbnail short enough for the UI to render in the metadata table itself (genixer.preview.thumbnail)."""
    from genixer.preview import thumbnail

    frame = f"![{alt}](data:image/webp;base64,)"
    data, mime = thumbnail(png, UI_INLINE_MD_CHARS - 1 - len(frame))
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def md_figure(key: str, png: bytes, alt: str = "preview") -> dict[str, dg.MetadataValue]:
    """A figure as two metadata entries: `<key> (thumbnail)`, seen at a glance in the metadata table, then `<key>`, the
    figure itself behind [Show Markdown]."""
    return {f"{key} (thumbnail)": md_thumbnail(png, alt), key: md_png(png, alt)}


def table_meta(path) -> dict:
    """``dagster/row_count`` and ``dagster/column_schema`` of a parquet table, from its footer (no data read):
    the UI shows them on every table asset."""
    f = pq.ParquetFile(path)
    schema = dg.TableSchema(columns=[dg.TableColumn(name=field.name, type=str(field.type)) for field in f.schema_arrow])
    return {"dagster/row_count": f.metadata.num_rows, "dagster/column_schema": schema}


def turns_text(turns) -> str:
    return " / ".join(f"Q: {t['question']} A: {t['answer']}" for t in turns)


def sample_preview(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    view = df.assign(turns=df["turns"].map(turns_text))[["sample_id", "task", "turns"]]
    return md_table(view, n)


# ---- the world switch ----------------------------------------------------------------------------

def from_world(settings, name: str = "collected_datasets") -> bool:
    """Whether a sample table's rows came from the shapes world: any row's `source` starts with
    ``shapes_world`` (the world annotates a whole table or none of it; the published readers write
    ``<format>:<file>``). Reads the `source` column only."""
    path = settings.table_path(name)
    if not path.exists():
        raise dg.Failure(f"{name} has not been materialised: {path} is missing")
    source = pq.read_table(path, columns=["source"]).column("source")
    return bool(len(source)) and bool(pc.any(pc.fill_null(pc.starts_with(source, WORLD_SOURCE), False)).as_py())


def has_world(settings) -> bool:
    """THE switch of the graph after collection: this run has the shapes world (its scenes, its
    oracle) when `collected_datasets` was annotated from it; collected from published files
    (`collected_datasets` config `sources`), every asset downstream runs without `world_scenes`."""
    return from_world(settings, "collected_datasets")


def collected_images(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per image of collected samples (image_id, image_path, width, height), sorted by
    image_id; text-only rows (no image) are left out. The world-free counterpart of the world's
    `collect` split."""
    pictured = samples[samples.image_path.notna()]
    cols = ["image_id", "image_path", "width", "height"]
    return pictured[cols].drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)


def heldout_count(n_images: int, val_images: int) -> int:
    """Images held out of training without the world: the preset's `val_images`, but never more than
    a fifth of the images (a small published set keeps most of its images for training)."""
    return min(val_images, n_images // 5)


def benchmark_rows(settings) -> tuple[pd.DataFrame, bool]:
    """The `benchmark_sets` samples that belong to a benchmark, each with its `benchmarks` list, and
    whether they are published benchmarks (True) or the world's (False). The world's membership
    needs its scenes (object counts split RefCOCO testA/testB); a published row's benchmark comes
    from its source, task and split (genixer.real_benchmarks.benchmark_of); rows of none (training
    splits, REG rows) and rows without an image are left out."""
    from genixer.benchmarks import benchmark_samples
    from genixer.real_benchmarks import benchmark_of
    from genixer.schema import read_samples

    bench = read_samples(settings.table_path("benchmark_sets"))
    if from_world(settings, "benchmark_sets"):
        world = settings.read_table("world_scenes")
        return benchmark_samples(bench, dict(zip(world.image_id, world.n_objects))), False
    names = [benchmark_of(r) for r in bench.to_dict("records")]
    out = bench.assign(benchmarks=[[n] for n in names])
    keep = pd.Series([n != "" for n in names], index=bench.index) & bench.image_path.notna()
    return out[keep].reset_index(drop=True), True
