"""Metadata helpers: what the Dagster UI shows of an asset without opening a file."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd


def md_table(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False))


def md_counts(df: pd.DataFrame, *by: str) -> dg.MetadataValue:
    counts = df.groupby(list(by)).size().rename("rows").reset_index()
    return dg.MetadataValue.md(counts.to_markdown(index=False))


def md_png(png: bytes, alt: str = "preview") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def turns_text(turns) -> str:
    return " / ".join(f"Q: {t['question']} A: {t['answer']}" for t in turns)


def sample_preview(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    view = df.assign(turns=df["turns"].map(turns_text))[["sample_id", "task", "turns"]]
    return md_table(view, n)
