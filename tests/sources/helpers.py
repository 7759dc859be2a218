"""Shared by the reader tests: write images and run the installed `genixer` entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from PIL import Image


def genixer_cmd() -> str:
    """The installed console script (beside this interpreter), as a user would run it."""
    exe = Path(sys.executable).with_name("genixer")
    assert exe.exists(), f"the `genixer` entry point is not installed beside {sys.executable}"
    return str(exe)


def run_collect(fmt: str, files, images, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [genixer_cmd(), "collect", fmt, *map(str, files), "--out", str(out), "--no-progress", *extra]
    if images is not None:
        cmd += ["--images", str(images)]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)


def collected(fmt: str, files, images, out: Path, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Run `genixer collect`, require success, and read back (rows, quarantine, stdout)."""
    r = run_collect(fmt, files, images, out, *extra)
    assert r.returncode == 0, r.stderr + r.stdout
    rows = pd.read_parquet(out)
    quarantine = pd.read_parquet(out.with_name(out.stem + ".quarantine.parquet"))
    return rows, quarantine, r.stdout


def write_image(path: Path, size: tuple[int, int], colour=(120, 30, 200), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def write_jsonl(path: Path, objs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def extra(row) -> dict:
    return json.loads(row["extra"]) if row["extra"] else {}


def has_entry_point() -> bool:
    return shutil.which("genixer") is not None or Path(sys.executable).with_name("genixer").exists()
