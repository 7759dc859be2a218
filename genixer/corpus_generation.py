"""Step (iv), first half: generating instruction data on an unlabeled image corpus.

Every request is keyed by (image sha256, prompt, generator checkpoint, sampling parameters,
seed); a rerun reuses rows already produced for the same key. Every output is kept: text
that does not parse, an unreadable image or a box outside the image becomes a quarantined
row with its reason, never a silent drop.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import pandas as pd

from genixer.boxes import BoxFormatError, find_box_groups, parse_boxes, parse_point, POINT_RE
from genixer.decoding import Sampling, generate
from genixer.images import ImageError, image_size, open_rgb
from genixer.templates import ParseError, parse_generation, specific_instruction
from genixer.progress import progress


def checkpoint_id(model_dir: str | Path) -> str:
    """A content id of a saved model (a directory, or one weights file): the hash of its config files whole
    and, per weights file, its size and its first and last MiB (a safetensors header and the tensors at both
    ends). Sampling keeps a 14 GB checkpoint's id cheap; any retraining changes those bytes."""
    h = hashlib.sha256()
    path = Path(model_dir)
    files = [path] if path.is_file() else sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors"))
    for f in files:
        h.update(f.name.encode())
        size = f.stat().st_size
        h.update(str(size).encode())
        with open(f, "rb") as fh:
            if size <= 2 * _MIB or f.suffix == ".json":
                h.update(fh.read())
            else:
                h.update(fh.read(_MIB))
                fh.seek(size - _MIB)
                h.update(fh.read(_MIB))
    return h.hexdigest()[:16]


_MIB = 1 << 20


def request_key(image_sha256: str, prompt: str, generator_id: str, sampling: Sampling, seed: int) -> str:
    payload = json.dumps([image_sha256, prompt, generator_id, asdict(sampling), seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def readable(path: str, decode: bool = True) -> str | None:
    """None if the image opens (``decode``: and decodes whole), else why not."""
    try:
        image_size(path, verify=decode)
        return None
    except ImageError as e:
        return f"unreadable image: {e}"


def plan_requests(images: pd.DataFrame, general: list[str], task: str | None, per_image: int, seed: int) -> list[dict]:
    """(image, prompt) requests: a random general instruction per request, plus the task's
    specific instruction in type-specific mode (task given) or none (type-agnostic)."""
    out = []
    for img in images.to_dict("records"):
        for k in range(per_image):
            rng = random.Random(f"{seed}/{img['image_id']}/{k}")
            gid = rng.randrange(len(general))
            prompt = general[gid] + (f" {specific_instruction(task)}" if task else "")
            out.append({**img, "k": k, "seed": rng.randrange(2**31), "prompt": prompt,
                        "template_id": f"general_{gid:02d}" + (f"+{task}" if task else "")})
    return out


def parse_row(text: str, width: int, height: int, fallback_task: str, task_of: Callable[[list[dict]], str | None]) -> dict:
    """Generated text -> sample fields, or the reason it cannot be one. ``task_of``: the data source's classifier
    of a sample's turns (``DataSource.task_of``); a sample it cannot type gets ``fallback_task``."""
    try:
        turns = parse_generation(text)
    except ParseError as e:
        return {"turns": None, "boxes": None, "points": None, "task": fallback_task, "quarantine_reason": f"parse: {e}"}
    boxes, points = [], []
    try:
        for t in turns:
            for part in (t["question"], t["answer"]):
                for grp in find_box_groups(part):
                    boxes += [list(b) for b in parse_boxes(grp, width, height)]
                stripped = part
                for grp in find_box_groups(part):
                    stripped = stripped.replace(grp, "")
                points += [list(parse_point(m.group(0), width, height)) for m in POINT_RE.finditer(stripped)]
    except BoxFormatError as e:
        return {"turns": turns, "boxes": None, "points": None, "task": fallback_task, "quarantine_reason": f"box: {e}"}
    return {"turns": turns, "boxes": boxes, "points": points, "task": task_of(turns) or fallback_task, "quarantine_reason": None}


def _unreadable(base: dict, fallback_task: str, why: str) -> dict:
    return {**base, "task": fallback_task, "turns": None, "boxes": None, "points": None, "quarantine_reason": why}


def generate_shard(model, processor, requests: list[dict], generator: str, generator_id: str, sampling: Sampling,
                   requested_task: str | None, fallback_task: str, cache: pd.DataFrame | None,
                   save: Callable[[pd.DataFrame], None] | None = None, batch_size: int = 32, *,
                   task_of: Callable[[list[dict]], str | None]) -> tuple[pd.DataFrame, int]:
    """Run the generator over `requests`; returns (rows, number of rows reused from `cache`). Each parsed row's task
    is ``task_of`` of its turns (the data source's classifier, :func:`parse_row`).

    `save` is called after every batch with that batch's new rows (to append: the shard so far is never
    rewritten), so an interrupted shard resumes from its last batch. Each image is decoded once: its header
    is checked up front, its pixels when its batch is built (a file that fails then is quarantined there)."""
    cached = {} if cache is None or cache.empty else {r["request_key"]: r for r in cache.to_dict("records")}
    rows, todo, reused = [], [], 0
    for req in requests:
        key = request_key(req["sha256"], req["prompt"], generator_id, sampling, req["seed"])
        if key in cached:
            rows.append(cached[key])
            reused += 1
            continue
        base = {
            "sample_id": f"{generator}:{key}", "image_id": req["image_id"], "image_path": req["image_path"],
            "width": int(req["width"]), "height": int(req["height"]), "source": generator, "split": req.get("split", "corpus"),
            "generator": generator_id, "template_id": req["template_id"], "seed": int(req["seed"]),
            "judge_p_yes": None, "clip_score": None, "filter_reason": None,
            "mode": "type_specific" if requested_task else "type_agnostic", "requested_task": requested_task or "",
            "sampling": json.dumps(asdict(sampling)), "request_key": key, "prompt": req["prompt"], "raw_text": "",
        }
        why = readable(req["image_path"], decode=False)
        if why:
            rows.append(_unreadable(base, fallback_task, why))
        else:
            todo.append(base)
    bar = progress(total=len(todo), desc=f"generate {generator}", unit="req")
    for start in range(0, len(todo), batch_size):
        chunk, images, new = [], {}, []
        for r in todo[start : start + batch_size]:
            try:
                if r["image_path"] not in images:
                    images[r["image_path"]] = open_rgb(r["image_path"])
                chunk.append(r)
            except ImageError as e:
                new.append(_unreadable(r, fallback_task, f"unreadable image: {e}"))
        # Each row samples from its own recorded seed, so its text does not depend on its batch (or on what a resume reused).
        outs = generate(model, processor, [images[r["image_path"]] for r in chunk], [r["prompt"] for r in chunk], sampling,
                        batch_size=batch_size, seeds=[r["seed"] for r in chunk]) if chunk else []
        for r, o in zip(chunk, outs):
            text = o[0]
            new.append({**r, "raw_text": text, **parse_row(text, r["width"], r["height"], requested_task or fallback_task, task_of)})
        rows += new
        if save is not None and new:
            save(pd.DataFrame(new))
        bar.update(len(todo[start : start + batch_size]))
    bar.close()
    return pd.DataFrame(rows), reused
