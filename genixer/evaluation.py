"""Measuring generators and solvers against the world's oracle (evaluation only); without the world,
solvers against the collected data's own answers (`evaluate_solver_free`, `prior_baseline_free`)."""

from __future__ import annotations

import random
from collections import Counter

import pandas as pd

from genixer.generation import Sampling, generate
from genixer.templates import ParseError, parse_generation, specific_instruction
from genixer.world import Scene, check
from genixer.world.oracle import check_turn, task_of


def solver_records(samples: list[dict]) -> list[dict]:
    """Question -> answer records (one per turn) for training a problem solver (base_mllm)."""
    out = []
    for s in samples:
        for i, t in enumerate(s["turns"]):
            out.append({"record_id": f"{s['sample_id']}:{i}", "task": s["task"], "image_path": s["image_path"],
                        "image_id": s["image_id"], "prompt": t["question"], "target": t["answer"]})
    return out


def evaluate_solver(model, processor, samples: list[dict], scenes: dict[str, Scene], batch_size: int = 32) -> pd.DataFrame:
    """Answer each sample's first question greedily; the oracle judges the answer."""
    qs = [s["turns"][0]["question"] for s in samples]
    outs = generate(model, processor, [s["image_path"] for s in samples], qs, Sampling(max_new_tokens=48), batch_size=batch_size)
    rows = []
    for s, q, o in zip(samples, qs, outs):
        v = check_turn(q, o[0], scenes[s["image_id"]])
        rows.append({"sample_id": s["sample_id"], "task": s["task"], "question": q, "truth": s["turns"][0]["answer"],
                     "answer": o[0], "correct": v.ok, "reason": v.reason})
    return pd.DataFrame(rows)


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


def judge_generation(text: str, scene: Scene | None) -> dict:
    """Parse generated text and let the oracle judge it: the row every quality figure uses.
    `task_of` is the world grammar's task where every question is in the grammar, else the task the
    turns' form makes (genixer.task_form.task_by_form), so a generator trained on published data is
    typed too. Without a scene (no world) a parsed row is `unchecked`."""
    try:
        turns = parse_generation(text)
    except ParseError as e:
        return {"parsed": False, "parse_error": str(e), "turns": None, "task_of": None, "oracle": "unparseable", "oracle_reason": str(e)}
    task = task_of(turns)
    if scene is None:
        return {"parsed": True, "parse_error": "", "turns": turns, "task_of": task, "oracle": UNCHECKED, "oracle_reason": "no world"}
    v = check({"task": task, "turns": turns}, scene)
    return {"parsed": True, "parse_error": "", "turns": turns, "task_of": task, "oracle": v.status, "oracle_reason": v.reason}


def evaluate_generator(model, processor, images: list[dict], tasks: list[str], general: list[str], type_specific: bool,
                       sampling: Sampling, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
    """One generation per (image, task); parse rate, type accuracy and oracle correctness rows (images
    without a `scene`, i.e. without the world, are not checked: oracle `unchecked`)."""
    rng = random.Random(seed)
    reqs = [(img, t) for img in images for t in (tasks if type_specific else [""])]
    prompts = generation_prompts([t for _, t in reqs], general, type_specific, rng)
    outs = generate(model, processor, [img["image_path"] for img, _ in reqs], [p for _, p, _ in prompts], sampling, batch_size=batch_size,
                    desc="evaluate generator")
    rows = []
    for (img, task), (tid, prompt, _), o in zip(reqs, prompts, outs):
        rows.append({"image_id": img["image_id"], "requested_task": task, "template_id": tid, "text": o[0],
                     **judge_generation(o[0], Scene.from_json(img["scene"]) if img.get("scene") is not None else None)})
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


def prior_baseline(train_samples: list[dict], val_samples: list[dict], scenes: dict[str, Scene]) -> pd.DataFrame:
    """A blind answerer: for each question kind, the answer most common in training.
    Its accuracy is the chance level a solver must beat."""
    from genixer.world.oracle import classify

    common: dict[str, Counter] = {}
    for s in train_samples:
        t = s["turns"][0]
        kind = classify(t["question"])[0]
        common.setdefault(kind, Counter())[t["answer"]] += 1
    rows = []
    for s in val_samples:
        q = s["turns"][0]["question"]
        kind = classify(q)[0]
        guess = common[kind].most_common(1)[0][0] if kind in common else ""
        rows.append({"task": s["task"], "correct": check_turn(q, guess, scenes[s["image_id"]]).ok})
    return pd.DataFrame(rows)


# ---- without the world: the collected answer is the reference ----------------------------------

def answer_correct(answer: str, sample: dict) -> bool:
    """A solver's answer to a collected sample's first question, against the data set's own answer
    (there is no oracle): a multiple-choice letter must pick the right option (metrics.choice_letter);
    a box answer must hit the answer's box at IoU >= 0.5 (boxes.answer_box); any other answer must
    equal, after VQA normalisation, the recorded answer or one the data set also accepts (VQAv2's ten
    annotator answers, A-OKVQA's direct answers: corruptions.accepted_answers)."""
    from genixer.boxes import BoxFormatError, answer_box
    from genixer.corruptions import accepted_answers, answer_type
    from genixer.metrics import choice_letter, iou_hit, normalize_answer, parse_options

    t = sample["turns"][0]
    q, truth, answer = str(t["question"]), str(t["answer"]), str(answer)
    kind = answer_type(q, truth)
    if kind == "mc":
        return choice_letter(answer, parse_options(q)) == truth.strip().strip("().").upper()
    if kind == "box":
        try:
            want = answer_box(truth, sample["width"], sample["height"])
            got = answer_box(answer, sample["width"], sample["height"])
        except BoxFormatError:
            return False
        return want is not None and iou_hit(got, want)
    accepted = {normalize_answer(truth)} | {normalize_answer(a) for a in accepted_answers(sample)}
    return normalize_answer(answer) in accepted


def evaluate_solver_free(model, processor, samples: list[dict], batch_size: int = 32) -> pd.DataFrame:
    """:func:`evaluate_solver` without the world: each sample's first question answered greedily and
    checked against the collected answer (:func:`answer_correct`)."""
    qs = [s["turns"][0]["question"] for s in samples]
    outs = generate(model, processor, [s["image_path"] for s in samples], qs, Sampling(max_new_tokens=48), batch_size=batch_size) if samples else []
    rows = []
    for s, q, o in zip(samples, qs, outs):
        ok = answer_correct(o[0], s)
        rows.append({"sample_id": s["sample_id"], "task": s["task"], "question": q, "truth": s["turns"][0]["answer"],
                     "answer": o[0], "correct": ok, "reason": "" if ok else "differs from the collected answer"})
    return pd.DataFrame(rows, columns=["sample_id", "task", "question", "truth", "answer", "correct", "reason"])


def prior_baseline_free(train_samples: list[dict], val_samples: list[dict]) -> pd.DataFrame:
    """:func:`prior_baseline` without the world: per question kind (the task and the question's first
    two words, benchmarks.question_kind) the most common training answer, checked by :func:`answer_correct`."""
    from genixer.benchmarks import question_kind

    common: dict[str, Counter] = {}
    for s in train_samples:
        t = s["turns"][0]
        common.setdefault(question_kind(s["task"], t["question"]), Counter())[t["answer"]] += 1
    rows = []
    for s in val_samples:
        kind = question_kind(s["task"], s["turns"][0]["question"])
        guess = common[kind].most_common(1)[0][0] if kind in common else ""
        rows.append({"task": s["task"], "correct": answer_correct(guess, s)})
    return pd.DataFrame(rows, columns=["task", "correct"])
