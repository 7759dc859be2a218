"""What every reader of a published data set format shares: safe image paths, quarantine, streaming
JSON, a restricted unpickler, and the sample constructor.

A reader is a generator ``read(files, ctx)`` that yields samples in the one schema. For each record
it calls ``ctx.record(record_id, file, raw, convert)``; ``convert()`` returns the record's samples,
and anything wrong with the record (a :class:`Reject`, a missing field, a value of the wrong type)
quarantines that record with its reason instead of stopping the read. A file that is not the format
at all raises :class:`SourceFormatError`, one clear error for the whole read.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson
from tqdm.auto import tqdm

from genixer.images import MAX_PIXELS, ImageError, image_size
from genixer.schema import sample_problems
from genixer.tasks import TASKS

# The question a REC / REG sample asks of a real data set's expression or box (the world's annotator
# uses its own phrasings; the instruction templates wrap either the same way).
REC_QUESTION = "Which region does this describe: {ref}?"
REG_QUESTION = "Describe the region {box} so that it can be told apart from the rest."


class SourceFormatError(ValueError):
    """A file that is not the format it was given as."""


class UnsafePickleError(SourceFormatError, pickle.UnpicklingError):
    """A pickle that asks to build or call anything beyond plain containers, strings and numbers."""


class Reject(Exception):
    """One record that cannot become a sample: `kind` is counted, `detail` kept with the row."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class ImageRef:
    image_id: str  # the path relative to --images (stable across machines)
    path: str  # resolved absolute path
    width: int
    height: int


@dataclass
class Context:
    """One read of one format: where images are, what was quarantined, which images are missing."""

    fmt: str
    images: Path | None
    max_pixels: int = MAX_PIXELS
    verify_images: bool = True
    progress: bool = True
    quarantined: list[dict] = field(default_factory=list)
    missing_images: set[str] = field(default_factory=set)
    _sizes: dict[str, tuple[int, int] | str] = field(default_factory=dict)
    _counter: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.images = Path(self.images).resolve() if self.images is not None else None

    # -- records ---------------------------------------------------------------------------------
    def record(self, record_id: Any, file: str | Path, raw: Any, convert: Callable[[], list[dict]]) -> list[dict]:
        """The samples of one record, or [] with the record quarantined and its reason kept."""
        try:
            return list(convert())
        except Reject as e:
            self.reject(record_id, file, raw, e.kind, e.detail)
        except KeyError as e:
            self.reject(record_id, file, raw, "missing field", str(e))
        except (TypeError, ValueError, IndexError, AttributeError) as e:
            self.reject(record_id, file, raw, "malformed record", f"{type(e).__name__}: {e}")
        return []

    def reject(self, record_id: Any, file: str | Path, raw: Any, kind: str, detail: str = "") -> None:
        try:
            text = json.dumps(raw, default=str)
        except (TypeError, ValueError):
            text = repr(raw)
        self.quarantined.append({"record_id": None if record_id is None else str(record_id),
                                 "source": f"{self.fmt}:{Path(file).name}", "reason": kind, "detail": detail,
                                 "record": text[:2000]})

    def sample(self, task: str, turns: list[tuple[str, str]], image: ImageRef | None, record_id: Any, file: str | Path,
               boxes: Iterable = (), points: Iterable = (), split: str | None = None, extra: dict | None = None) -> dict:
        """A sample in the one schema; it is checked (task, turns, boxes inside the image) and a
        problem raises Reject, so the record is quarantined with the schema's reason."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        rid = str(record_id)
        key = (rid, task)
        n = self._counter[key]
        self._counter[key] += 1
        s = {
            "sample_id": f"{self.fmt}:{rid}:{task}" + (f":{n}" if n else ""),
            "image_id": image.image_id if image else None,
            "image_path": image.path if image else None,
            "width": image.width if image else None,
            "height": image.height if image else None,
            "task": task,
            "turns": [{"question": str(q), "answer": str(a)} for q, a in turns],
            "boxes": [[float(v) for v in b] for b in boxes],
            "points": [[float(v) for v in p] for p in points],
            "source": f"{self.fmt}:{Path(file).name}",
            "split": split,
            "record_id": rid,
            "extra": json.dumps(extra, sort_keys=True) if extra else None,
        }
        if image is not None:
            s["boxes"] = [_clamp(b, image.width, image.height) for b in s["boxes"]]
        problems = _problems(s)
        if problems:
            raise Reject("invalid sample", "; ".join(problems))
        return s

    # -- images ----------------------------------------------------------------------------------
    def resolve(self, rel: str, subdirs: Iterable[str] = ("",)) -> Path | None:
        """The file `rel` names under --images (trying each of `subdirs`), or None if it is in none.
        A path that leaves --images (absolute, `..`, or a symlink pointing out) is a Reject."""
        if self.images is None:
            raise Reject("no image folder", "this format needs --images")
        rel = str(rel).replace("\\", "/")
        if not rel or rel.startswith("/") or Path(rel).is_absolute() or ".." in Path(rel).parts or ":" in Path(rel).parts[0]:
            raise Reject("unsafe image path", f"{rel!r} is not a relative path inside --images")
        for sub in subdirs:
            p = self.images / sub / rel
            if p.is_file() or p.is_symlink():
                real = p.resolve()
                if not real.is_relative_to(self.images):
                    raise Reject("unsafe image path", f"{rel!r} resolves to {real}, outside --images")
                if real.is_file():
                    return real
        return None

    def image(self, rel: str, subdirs: Iterable[str] = ("",), size: tuple[Any, Any] | None = None) -> ImageRef:
        """The image `rel` with its width and height read from the file. `size` is what the
        annotation says (if it says): a disagreement with the file is a Reject."""
        subdirs = tuple(subdirs)
        path = self.resolve(rel, subdirs)
        if path is None:
            self.missing_images.add(str(rel))
            raise Reject("image missing", f"{rel} not found under {self.images}" + (f" (looked in {', '.join(s or '.' for s in subdirs)})" if subdirs != ("",) else ""))
        key = str(path)
        if key not in self._sizes:
            try:
                self._sizes[key] = image_size(path, self.max_pixels, verify=self.verify_images)
            except ImageError as e:
                self._sizes[key] = str(e)
        got = self._sizes[key]
        if isinstance(got, str):
            raise Reject("image unreadable", got)
        w, h = got
        if size is not None and all(v is not None for v in size) and (int(size[0]), int(size[1])) != (w, h):
            raise Reject("image size mismatch", f"the annotation says {int(size[0])}x{int(size[1])}, {rel} is {w}x{h}")
        return ImageRef(image_id=path.relative_to(self.images).as_posix(), path=key, width=w, height=h)

    # -- files -----------------------------------------------------------------------------------
    def open(self, path: str | Path):
        """A binary file handle that drives a progress bar by bytes read (large files)."""
        path = Path(path)
        f = open(path, "rb")
        if not self.progress:
            return f
        return tqdm.wrapattr(f, "read", total=path.stat().st_size, desc=f"{self.fmt} {path.name}", unit="B",
                             unit_scale=True, leave=False, miniters=1)


# Releases round boxes outward: a corner at most this many pixels outside the image is moved onto its
# edge; one further out makes the record quarantined ("box ... not inside the image").
EDGE_SLACK_PX = 2.0


def _clamp(box: list[float], w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    if -EDGE_SLACK_PX <= x0 and -EDGE_SLACK_PX <= y0 and x1 <= w + EDGE_SLACK_PX and y1 <= h + EDGE_SLACK_PX:
        return [max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))]
    return box


def _problems(s: dict) -> list[str]:
    if s["image_path"] is None:  # text-only: no geometry to check
        return [p for p in sample_problems({**s, "boxes": [], "points": []})]
    return sample_problems(s)


def check_first_record(ctx: Context, path: str | Path, first: Any, fields: Iterable[str], expected: str,
                       need: str = "all") -> None:
    """A file's first record decides whether the file is the format at all: it must be an object with
    `need` ("all" or "any") of the format's own `fields`; if not, one clear error names what was found
    (instead of every record quarantined one by one)."""
    fields = set(fields)
    if isinstance(first, dict) and (fields <= first.keys() if need == "all" else bool(fields & first.keys())):
        return
    found = f"an object with keys {list(first)[:8]}" if isinstance(first, dict) else f"a JSON {type(first).__name__}: {json.dumps(first, default=str)[:60]}"
    raise SourceFormatError(f"{ctx.fmt} expects {expected} in {Path(path).name}; its first record is {found}")


# -- streaming JSON --------------------------------------------------------------------------------
def _top_type(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return {b"{"[0]: "object", b"["[0]: "array"}.get(head[:1][0] if head else -1, "not JSON" if head else "an empty file")


def _describe_found(path: Path) -> str:
    t = _top_type(path)
    if t != "object":
        return {"array": "a JSON array", "not JSON": "a file that is not JSON"}.get(t, t)
    keys = []
    with open(path, "rb") as f:
        try:
            for prefix, event, value in ijson.parse(f):
                if prefix == "" and event == "map_key":
                    keys.append(value)
                    if len(keys) >= 6:
                        break
        except ijson.JSONError:
            return "a file that is not JSON"
    return f"a JSON object with keys {keys}"


def _json_error(e: Exception) -> str:
    """ijson's message on one line (yajl adds lines pointing at the place)."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def json_items(ctx: Context, path: str | Path, where: str, expected: str) -> Iterator[Any]:
    """Stream the values at `where` of a large JSON file: "item" (a top-level array), "kv" (the
    (key, value) pairs of a top-level object), or "<key>.item" (the array under a top-level key).
    A file without that structure, or with no value there, raises SourceFormatError saying what was
    expected and found."""
    path = Path(path)
    want = "array" if where == "item" else "object"
    if _top_type(path) != want:
        raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; found {_describe_found(path)}")
    n = 0
    try:
        if "." in where:
            key = where.split(".")[0]
            with open(path, "rb") as f:
                if not any(prefix == "" and event == "map_key" and value == key for prefix, event, value in ijson.parse(f)):
                    raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; found {_describe_found(path)}")
        with ctx.open(path) as f:
            values = ijson.kvitems(f, "", use_float=True) if where == "kv" else ijson.items(f, where, use_float=True)
            for n, item in enumerate(values, 1):
                yield item
    except ijson.JSONError as e:
        raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; it is not valid JSON ({_json_error(e)}"
                                f"{' after the first value: JSON lines?' if 'trailing garbage' in str(e) else ''})") from e
    if n == 0:
        place = {"item": "its top-level list", "kv": "its top-level object"}.get(where, f"its {where.split('.')[0]!r} list")
        raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; found no records ({place} is empty)")


def json_lines(ctx: Context, path: str | Path, expected: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) of a JSON-lines file; a line that is not JSON (or not UTF-8) is
    quarantined, a file whose first line is not a JSON object, or that has no line, is a SourceFormatError."""
    path = Path(path)
    first = True
    # surrogateescape: a byte that is not UTF-8 fails its own line (below), not the whole read
    with ctx.open(path) as f:
        for n, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape"), start=1):
            if not line.strip():
                continue
            try:
                line.encode("utf-8")
                obj = json.loads(line)
            except ValueError as e:  # JSONDecodeError, UnicodeEncodeError
                why = f"not JSON ({e})" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
                if first:
                    raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; its first line is {why}") from e
                ctx.reject(f"line {n}", path, line[:200], "malformed record", f"line {n} is {why}")
                continue
            if not isinstance(obj, dict):
                if first:
                    raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; its first line is a JSON {type(obj).__name__}")
                ctx.reject(f"line {n}", path, obj, "malformed record", f"line {n} is not a JSON object")
                continue
            first = False
            yield n, obj
    if first:
        found = "an empty file" if path.stat().st_size == 0 else "no records (only blank lines)"
        raise SourceFormatError(f"{ctx.fmt} expects {expected} in {path.name}; found {found}")


# -- pickles ---------------------------------------------------------------------------------------
class _PlainUnpickler(pickle.Unpickler):
    """Allows only what pickle builds without a global: dicts, lists, tuples, sets, strings, bytes,
    numbers, booleans, None. Any class or function lookup is refused before it is imported."""

    def find_class(self, module, name):
        raise UnsafePickleError(f"the pickle asks for {module}.{name}; only plain containers, strings and numbers are "
                                "allowed (nothing in it is run)")

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle uses persistent ids; refused")


def load_plain_pickle(path: str | Path) -> Any:
    if Path(path).stat().st_size == 0:
        raise SourceFormatError(f"{Path(path).name} is an empty file, not a pickle")
    with open(path, "rb") as f:
        try:
            return _PlainUnpickler(f, encoding="latin1").load()
        except UnsafePickleError:
            raise
        except Exception as e:
            raise SourceFormatError(f"{Path(path).name} is not a readable pickle ({type(e).__name__}: {e})") from e
