"""Unlabeled image corpora the generators run on, cut into shards that stay put as the corpus grows.

A corpus is one of (:class:`CorpusSpec`):

- ``folder``: a folder of images, searched recursively (.jpg/.jpeg/.png/.webp, any case), cut into
  shards of ``shard_size`` images: ``folder-00000``, ``folder-00001``, ...
- ``parquet``: parquet files with an image column holding bytes, a ``{bytes, path}`` struct (how
  Hugging Face ``datasets`` writes an Image feature) or a path; one file is one shard, ``pq-<stem>``.
- ``webdataset``: tar shards as img2dataset writes them (``<key>.jpg`` with ``<key>.txt`` and/or
  ``<key>.json`` holding the caption); one tar is one shard, ``wds-<stem>``. The ``.parquet`` and
  ``_stats.json`` img2dataset leaves beside each tar are not read.

**The manifest** (a small JSON file the caller keeps) records each shard key with its members: the
image paths relative to the folder, or the one file of a parquet / tar shard::

    {"version": 1, "kind": "folder", "shards": {"folder-00000": ["a.jpg", "sub/b.png"], ...}}

:func:`plan_shards` only ever appends to it: a file already in a shard stays there, and the files
that are new form new shards, so an old shard keeps its key and its contents however the corpus
grows (what Dagster dynamic partitions need). Keys use letters, digits, ``_`` and ``-`` only.
Parquet and tar files are recorded by their resolved path: moved elsewhere, they would be new files.
The manifest is not locked: one planner (a sensor, or one asset) should own it.

:func:`read_shard` reads one shard into rows (image_id, image_path, width, height, sha256, caption,
shard). Images held inside a tar or a parquet file are written once into the caller's cache folder,
named by their hash (tar members are read as bytes, never extracted by their names). A bad image
(not an image, truncated, over the pixel limit, missing) is quarantined with its reason, never
dropped; a shard whose whole file is gone raises FileNotFoundError.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genixer.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageError, image_size

KINDS = {"folder": "folder", "parquet": "pq", "webdataset": "wds"}  # kind -> shard key prefix
_FILE_SUFFIX = {"parquet": ".parquet", "webdataset": ".tar"}
# Parquet columns tried, in order, when no image column is named (after any binary or {bytes, path} column).
PATH_COLUMNS = ("image", "image_path", "path", "file_name", "filename", "file")
CAPTION_COLUMNS = ("caption", "text")
COLUMNS = ["image_id", "image_path", "width", "height", "sha256", "caption", "shard"]


@dataclass(frozen=True)
class CorpusSpec:
    kind: str  # "folder" | "parquet" | "webdataset"
    path: str | Path | Sequence[str | Path]  # the folder; for parquet / webdataset also a glob, or a list of files, folders or globs
    shard_size: int = 1000  # images per shard of a folder
    image_column: str | None = None  # parquet: the image column (None: the first binary or {bytes, path} column, else a path column)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown corpus kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, not {self.shard_size}")


@dataclass(frozen=True)
class ShardPlan:
    shards: dict[str, list[str]]  # every shard key -> its members, oldest shard first
    new: list[str]  # the keys this call added
    waiting: list[str] = field(default_factory=list)  # new files left for a later call (still being written, or a partial shard held back)


# -- planning --------------------------------------------------------------------------------------
def _folder(spec: CorpusSpec) -> Path:
    if not isinstance(spec.path, (str, Path)) or not Path(spec.path).is_dir():
        raise ValueError(f"a folder corpus takes one existing folder, not {spec.path!r}")
    return Path(spec.path).resolve()


def _corpus_files(spec: CorpusSpec) -> list[str]:
    """What the corpus holds now, sorted: image paths relative to the folder, or resolved shard files."""
    if spec.kind == "folder":
        root = _folder(spec)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    suffix = _FILE_SUFFIX[spec.kind]
    found = set()
    for entry in [spec.path] if isinstance(spec.path, (str, Path)) else spec.path:
        p = Path(entry)
        hits = p.rglob(f"*{suffix}") if p.is_dir() else map(Path, glob.glob(str(p), recursive=True))
        found.update(str(h.resolve()) for h in hits if h.suffix.lower() == suffix and h.is_file())
    return sorted(found)


def _load_manifest(manifest_path: str | Path, kind: str) -> dict:
    p = Path(manifest_path)
    if not p.exists():
        return {"version": 1, "kind": kind, "shards": {}}
    m = json.loads(p.read_text())
    if m.get("kind") != kind:
        raise ValueError(f"{p} is the manifest of a {m.get('kind')} corpus, not of a {kind} corpus")
    return m


def _key_of(file: str, prefix: str, taken: dict) -> str:
    base = f"{prefix}-" + (re.sub(r"[^A-Za-z0-9_-]", "_", Path(file).stem) or "_")
    key, n = base, 1
    while key in taken:  # the same stem in two folders
        n += 1
        key = f"{base}-{n}"
    return key


def _mtime(spec: CorpusSpec, file: str) -> float:
    path = _folder(spec) / file if spec.kind == "folder" else Path(file)
    try:
        return path.stat().st_mtime
    except OSError:  # gone since it was listed: not ready
        return float("inf")


def plan_shards(spec: CorpusSpec, manifest_path: str | Path, settle_seconds: float = 0.0,
                partial_after_seconds: float | None = None, now: float | None = None) -> ShardPlan:
    """Every shard of the corpus, the files not in the manifest yet forming new shards (appended to
    the manifest; the old shards are never changed).

    For a corpus that is being written to (an inbox), `settle_seconds` leaves a new file modified less
    than that long ago for a later call (it may still be being copied), and `partial_after_seconds`
    holds back a folder's last, partial shard (fewer than `shard_size` new images) until the folder has
    been quiet that long: no new file modified more recently (0: formed at any count, at once). Full
    shards never wait for quiet. The files left are in `waiting`. The defaults plan everything now."""
    now = time.time() if now is None else now
    m = _load_manifest(manifest_path, spec.kind)
    shards: dict[str, list[str]] = m["shards"]
    known = {f for members in shards.values() for f in members}
    fresh = [f for f in _corpus_files(spec) if f not in known]
    waiting = []
    if settle_seconds > 0 or partial_after_seconds is not None:
        mtimes = {f: _mtime(spec, f) for f in fresh}
        waiting = [f for f in fresh if now - mtimes[f] < settle_seconds]
        fresh = [f for f in fresh if now - mtimes[f] >= settle_seconds]
        full = len(fresh) // spec.shard_size * spec.shard_size
        if spec.kind == "folder" and partial_after_seconds is not None and full < len(fresh) \
                and now - max(mtimes.values()) < partial_after_seconds:  # a file came in lately: more may follow
            waiting = sorted(waiting + fresh[full:])
            fresh = fresh[:full]
    new = []
    if spec.kind == "folder":
        for i in range(0, len(fresh), spec.shard_size):
            key = f"{KINDS['folder']}-{len(shards):05d}"
            shards[key] = fresh[i : i + spec.shard_size]
            new.append(key)
    else:
        for f in fresh:
            key = _key_of(f, KINDS[spec.kind], shards)
            shards[key] = [f]
            new.append(key)
    if new:
        tmp = Path(f"{manifest_path}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(m, indent=1))
        os.replace(tmp, manifest_path)
    return ShardPlan(shards, new, waiting)


# -- reading ---------------------------------------------------------------------------------------
class _Shard:
    """The rows and the quarantine of one shard being read."""

    def __init__(self, key: str, cache_dir: str | Path, max_pixels: int):
        self.key, self.cache_dir, self.max_pixels = key, Path(cache_dir), max_pixels
        self.rows: list[dict] = []
        self.quarantine: list[dict] = []

    def reject(self, source, key, reason: str) -> None:
        self.quarantine.append({"source": str(source), "key": None if key is None else str(key), "reason": reason})

    def add(self, source, key, image_id: str, data: bytes, caption: str | None = None,
            path: Path | None = None, suffix: str = "") -> None:
        """One image from its bytes; `path` is its file, or None to write it into the cache."""
        f = io.BytesIO(data)
        f.name = str(key)  # names the image in an ImageError
        try:
            w, h = image_size(f, self.max_pixels)
        except ImageError as e:
            return self.reject(source, key, str(e))
        digest = hashlib.sha256(data).hexdigest()
        if path is None:
            suffix = suffix.lower() if suffix.lower() in IMAGE_SUFFIXES else ""
            path = self.cache_dir / digest[:2] / f"{digest}{suffix}"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
        self.rows.append({"image_id": image_id, "image_path": str(path), "width": w, "height": h,
                          "sha256": digest, "caption": caption, "shard": self.key})

    def add_file(self, source, key, image_id: str, path: Path, caption: str | None = None) -> None:
        try:
            data = path.read_bytes()
        except OSError as e:
            return self.reject(source, key, f"{path}: cannot read ({e.strerror or e})")
        self.add(source, key, image_id, data, caption, path=path.resolve())


def image_column(schema: pa.Schema, wanted: str | None = None) -> str:
    """The column holding the images: `wanted`, else the first binary or {bytes, path} column, else
    the first string column named like a path (PATH_COLUMNS)."""
    if wanted is not None:
        if wanted not in schema.names:
            raise ValueError(f"no image column {wanted!r}; the columns are {schema.names}")
        return wanted
    for f in schema:
        t = f.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0):
            return f.name
    for name in PATH_COLUMNS:
        if name in schema.names and schema.field(name).type in (pa.string(), pa.large_string()):
            return name
    raise ValueError(f"no image column found among {schema.names}: name it with image_column")


def _read_parquet(sh: _Shard, file: Path, wanted_column: str | None) -> None:
    with pq.ParquetFile(file) as pf:
        col = image_column(pf.schema_arrow, wanted_column)
        cap = next((c for c in CAPTION_COLUMNS if c in pf.schema_arrow.names and c != col), None)
        row = 0
        for batch in pf.iter_batches(batch_size=256, columns=[col] + ([cap] if cap else [])):
            values = batch.column(col).to_pylist()
            captions = batch.column(cap).to_pylist() if cap else [None] * len(values)
            for v, caption in zip(values, captions):
                image_id, suffix = f"{sh.key}/{row}", ""
                if isinstance(v, dict):  # {bytes, path}: the bytes if there are any, else the file
                    suffix = Path(v.get("path") or "").suffix
                    v = v.get("bytes") or v.get("path")
                if isinstance(v, bytes):
                    sh.add(file, row, image_id, v, caption, suffix=suffix)
                elif isinstance(v, str) and v:
                    sh.add_file(file, row, image_id, file.parent / v, caption)  # an absolute path stays as it is
                else:
                    sh.reject(file, row, f"no image in column {col!r}")
                row += 1


def _split_member(name: str) -> tuple[str, str]:
    """A WebDataset member name -> (key, extension): the key runs to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _caption(parts: dict[str, bytes]) -> str | None:
    if "txt" in parts:
        return parts["txt"].decode("utf-8", errors="replace")
    try:
        caption = json.loads(parts["json"]).get("caption") if "json" in parts else None
    except (ValueError, AttributeError):  # not JSON, or not an object: no caption
        return None
    return caption if isinstance(caption, str) else None


def _read_tar(sh: _Shard, file: Path) -> None:
    seen: set[str] = set()

    def flush(key: str, parts: dict[str, bytes]) -> None:
        ext = next((e for e in parts if f".{e}" in IMAGE_SUFFIXES), None)
        if key in seen:
            sh.reject(file, key, "key appears twice in the tar")
        elif ext is None:
            sh.reject(file, key, f"no image beside {', '.join(sorted(parts))}")
        else:
            sh.add(file, key, f"{sh.key}/{key}", parts[ext], _caption(parts), suffix=f".{ext}")
        seen.add(key)

    key, parts = None, {}
    try:
        with tarfile.open(file, "r|") as tar:  # streamed in order: a sample's members lie together
            for m in tar:
                if m.isdir():
                    continue
                k, ext = _split_member(m.name)
                if m.name.startswith("/") or ".." in PurePosixPath(m.name).parts:
                    sh.reject(file, k, f"unsafe member name {m.name!r}")
                    continue
                if f".{ext}" not in IMAGE_SUFFIXES and ext not in ("txt", "json"):
                    continue
                if not m.isfile():
                    sh.reject(file, k, f"{m.name} is not a regular file")
                    continue
                if k != key and key is not None:
                    flush(key, parts)
                    parts = {}
                key = k
                parts[ext] = tar.extractfile(m).read()
            end = tar.offset
    except (tarfile.TarError, EOFError) as e:  # cut short or corrupt: what came before it stands
        sh.reject(file, key, f"the tar cannot be read past here: {e}")
        return
    if key is not None:
        flush(key, parts)
    with open(file, "rb") as f:  # tarfile stops quietly at a cut header: look for the end-of-archive block
        f.seek(end)
        if f.read(512) != bytes(512):
            sh.reject(file, None, f"the tar is cut short: no end-of-archive block after byte {end}")


def read_shard(spec: CorpusSpec, shard_key: str, manifest_path: str | Path, cache_dir: str | Path,
               max_pixels: int = MAX_PIXELS) -> tuple[pd.DataFrame, list[dict]]:
    """The images of one planned shard (COLUMNS) and its quarantine ({source, key, reason} each)."""
    shards = _load_manifest(manifest_path, spec.kind)["shards"]
    if shard_key not in shards:
        raise KeyError(f"shard {shard_key!r} is not in {manifest_path}; plan_shards makes it")
    members = shards[shard_key]
    sh = _Shard(shard_key, cache_dir, max_pixels)
    if spec.kind == "folder":
        root = _folder(spec)
        for rel in members:
            sh.add_file(root, rel, rel, root / rel)
    else:
        file = Path(members[0])
        if not file.is_file():
            raise FileNotFoundError(f"shard {shard_key}: {file} is gone")
        if spec.kind == "parquet":
            _read_parquet(sh, file, spec.image_column)
        else:
            _read_tar(sh, file)
    return pd.DataFrame(sh.rows, columns=COLUMNS), sh.quarantine
