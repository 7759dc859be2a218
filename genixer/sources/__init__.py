"""Readers of the published data set formats into the one sample schema, and `collect`, which
streams a reader's samples into parquet with its quarantine beside it.

Every format is registered in FORMATS with the files it takes (in order), what `--images` is for
it, and the tasks it yields; `genixer collect --help` prints this table.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genixer.images import MAX_PIXELS
from genixer.schema import SAMPLE_SCHEMA, to_table
from genixer.sources.common import Context, SourceFormatError

QUARANTINE_SCHEMA = pa.schema([("record_id", pa.string()), ("source", pa.string()), ("reason", pa.string()),
                               ("detail", pa.string()), ("record", pa.string())])


@dataclass(frozen=True)
class Format:
    name: str
    files: tuple[str, ...]  # what each positional file is, in order; a trailing "..." means "one or more"
    images: str  # what --images must be
    tasks: str
    read: Callable[[list[Path], Context], Iterator[dict]]

    @property
    def variadic(self) -> bool:
        return self.files[-1].endswith("...")


FORMATS: dict[str, Format] = {}


def register(name: str, files: tuple[str, ...], images: str, tasks: str):
    def deco(fn):
        FORMATS[name] = Format(name, files, images, tasks, fn)
        return fn
    return deco


def path_line(path: str) -> str:
    """A path as one line of OUT.missing_images.txt: as it is, or, if it holds a character that is not
    printable (a newline, NUL, tab, line separator, ...) or starts with a double quote, as a JSON string."""
    return json.dumps(path) if not path.isprintable() or path.startswith('"') else path


@dataclass
class CollectReport:
    fmt: str
    rows: int = 0
    by_task: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    missing_images: list[str] = field(default_factory=list)
    out: Path | None = None
    quarantine_path: Path | None = None

    def lines(self) -> list[str]:
        out = [f"{self.fmt}: {self.rows} rows written to {self.out}"]
        out += [f"  {t}: {n}" for t, n in sorted(self.by_task.items())]
        q = sum(self.quarantined.values())
        out.append(f"{q} rows quarantined" + (f" ({self.quarantine_path})" if q else ""))
        out += [f"  {r}: {n}" for r, n in self.quarantined.most_common()]
        out.append(f"{len(self.missing_images)} images missing" + (": " + ", ".join(map(path_line, self.missing_images[:10])) + (" ..." if len(self.missing_images) > 10 else "") if self.missing_images else ""))
        return out


def _check_files(fmt: Format, files: list[Path]) -> None:
    n = len(fmt.files)
    if (fmt.variadic and len(files) < n) or (not fmt.variadic and len(files) != n):
        raise SourceFormatError(f"{fmt.name} takes {'at least ' if fmt.variadic else ''}{n} file(s): {', '.join(fmt.files)}; "
                                f"got {len(files)}")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist")


def read_samples_of(fmt_name: str, files: list[str | Path], images: str | Path | None, ctx: Context | None = None,
                    **ctx_kwargs) -> tuple[Iterator[dict], Context]:
    if fmt_name not in FORMATS:
        raise SourceFormatError(f"unknown format {fmt_name!r}; expected one of {sorted(FORMATS)}")
    fmt = FORMATS[fmt_name]
    files = [Path(f) for f in files]
    _check_files(fmt, files)
    ctx = ctx or Context(fmt_name, Path(images) if images is not None else None, **ctx_kwargs)
    return fmt.read(files, ctx), ctx


def collect(fmt_name: str, files: list[str | Path], images: str | Path | None, out: str | Path,
            max_pixels: int = MAX_PIXELS, verify_images: bool = True, progress: bool = True, batch_rows: int = 4096) -> CollectReport:
    """Read `files` as `fmt_name` and stream the samples to `out` (parquet, the sample schema) in
    batches; the quarantined records go to `<out>.quarantine.parquet` with their reasons and the
    missing images to `<out>.missing_images.txt`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples, ctx = read_samples_of(fmt_name, files, images, max_pixels=max_pixels, verify_images=verify_images, progress=progress)
    report = CollectReport(fmt_name, out=out)
    schema = SAMPLE_SCHEMA
    tmp = out.with_suffix(out.suffix + ".partial")
    batch: list[dict] = []
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            def flush():
                if batch:
                    writer.write_table(to_table(batch))
                    batch.clear()
            for s in samples:
                batch.append(s)
                report.rows += 1
                report.by_task[s["task"]] += 1
                if len(batch) >= batch_rows:
                    flush()
            flush()
    except BaseException:  # a file that is not the format, cut short, interrupted: no half-written output stays
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    report.quarantined = Counter(q["reason"] for q in ctx.quarantined)
    report.missing_images = sorted(ctx.missing_images)
    qpath = out.with_name(out.stem + ".quarantine.parquet")
    pq.write_table(pa.Table.from_pylist(ctx.quarantined, schema=QUARANTINE_SCHEMA), qpath)
    report.quarantine_path = qpath
    out.with_name(out.stem + ".missing_images.txt").write_text("".join(path_line(m) + "\n" for m in report.missing_images),
                                                              encoding="utf-8")
    return report


def describe_formats() -> str:
    lines = []
    for f in FORMATS.values():
        lines.append(f"{f.name}  ->  {f.tasks}")
        lines.append("    files:    " + "  ".join(f"{i + 1}. {d}" for i, d in enumerate(f.files)))
        lines.append(f"    --images: {f.images}")
    return "\n".join(lines)



# The readers register themselves on import.
from genixer.sources import readers_general, readers_grounding  # noqa: F401
