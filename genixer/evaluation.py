"""Measuring generators and solvers, whatever the data source: the solver's question -> answer records, the
generators' requests and the summary of their generations. What checks an answer or a generation is the data
source's (:mod:`genixer.datasource`): the world's oracle (:mod:`genixer.oracle_eval`) or the collected answers
(:mod:`genixer.sources.collected`)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pandas as pd

from genixer.decoding import Sampling, generate
from genixer.templates import ParseError, parse_generation, specific_instruction


def solver_records(samples: list[dict]) -> list[dict]:
    """Question -> answer records (one per turn) for training a problem solver (base_mllm)."""
    out = []
    for s in samples:
        for i, t in enumerate(s["turns"]):
            out.append({"record_id": f"{s['sample_id']}:{i}", "task": s["task"], "image_path": s["image_path"],
                        "image_id": s["image_id"], "prompt": t["question"], "target": t["answer"]})
    return out


def generation_prompts(tasks: list[str], general: list[str], type_specific: bool, rng: random.Random) -> list[tuple[str, str, str]]:
    """(template_id, prompt, requested task) for each request: a random general instruction,
    plus the task's specific instruction in type-specific mode."""
    out = []
    for task in tasks:
        gid = rng.randrange(len(general))
        if type_specific:
            out.append((f"general_{gid:02d}+{task}", f"{general[gid]} {specific_instruction(task)}", task))
        else:
            out.append((f"general_{gid:02d}", general[gid], ""))
    return out


UNCHECKED = "unchecked"  # the oracle column without the world: parsed, but nothing can say whether it is true


def unchecked_generation(text: str, task_of: Callable[[list[dict]], str | None]) -> dict:
    """Generated text parsed and typed by ``task_of`` (the data source's classifier), with nothing to say whether
    it is true: a parsed row is `unchecked` (the row shape of the oracle's ``judge_generation``)."""
    try:
        turns = parse_generation(text)
    except ParseError as e:
        return {"parsed": False, "parse_error": str(e), "turns": None, "task_of": None, "oracle": "unparseable", "oracle_reason": str(e)}
    return {"parsed": True, "parse_error": "", "turns": turns, "task_of": task_of(turns), "oracle": UNCHECKED, "oracle_reason": "no world"}


def evaluate_generator(model, processor, images: list[dict], tasks: list[str], general: list[str], type_specific: bool,
                       sampling: Sampling, seed: int = 0, batch_size: int = 32, *,
                       judge: Callable[[str, dict], dict]) -> pd.DataFrame:
    """One generation per (image, task); parse rate, type accuracy and correctness rows. ``judge`` (the data
    source's ``judge_generation``: text, image row -> the row's parse, task and oracle fields) checks each."""
    rng = random.Random(seed)
    reqs = [(img, t) for img in images for t in (tasks if type_specific else [""])]
    prompts = generation_prompts([t for _, t in reqs], general, type_specific, rng)
    outs = generate(model, processor, [img["image_path"] for img, _ in reqs], [p for _, p, _ in prompts], sampling, batch_size=batch_size,
                    desc="evaluate generator")
    rows = []
    for (img, task), (tid, prompt, _), o in zip(reqs, prompts, outs):
        rows.append({"image_id": img["image_id"], "requested_task": task, "template_id": tid, "text": o[0], **judge(o[0], img)})
    return pd.DataFrame(rows)


def generator_summary(df: pd.DataFrame) -> dict:
    """Parse rate, share of the requested type, oracle correctness per task, and the type mix."""
    spec = df[df.requested_task != ""]
    out = {"parse_rate": float(df.parsed.mean()) if len(df) else 0.0}
    if len(spec):
        out["type_accuracy"] = float((spec.task_of == spec.requested_task).mean())
        correct = (spec.oracle == "correct").astype(float).where(spec.oracle != UNCHECKED)  # NaN: no oracle
        per = spec.assign(right_type=spec.task_of == spec.requested_task, correct=correct)
        out["per_task"] = per.groupby("requested_task").agg(
            n=("parsed", "size"), parsed=("parsed", "mean"), right_type=("right_type", "mean"), correct=("correct", "mean")).reset_index()
    agn = df[df.requested_task == ""]
    if len(agn):
        out["agnostic_mix"] = dict(Counter(agn.task_of.fillna("unparsed")))
    return out
