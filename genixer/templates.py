"""Two-level instruction templates (step ii of the paper) and the generator's text format.

Prompt = a general instruction [+ " " + the task's specific instruction].
Target = ``Question: <q> Answer: <a>``, one line per turn for multi-turn tasks.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS, TASK_NAMES, TASKS

CAPTION_PROMPT = "Describe the image."  # the prompt of every dense caption record (the world's and the collected data's)

GENERAL_INSTRUCTIONS = (
    "Please provide a clear and direct question and answer after examining the image.",
    "Look at the image and write a question about it together with its answer.",
    "Generate a question and its answer based on the picture.",
    "Examine the image, then ask a question and answer it.",
    "Create one question about this image and give the correct answer.",
    "Write a question that this image can answer, followed by the answer.",
    "Study the picture and produce a question-answer pair.",
    "Based on the image, compose a question and provide its answer.",
    "Observe the image carefully and write a question with its answer.",
    "Formulate a question about the visual content and answer it.",
    "Give a question about the image and a correct answer to it.",
    "Inspect the image and generate a question along with the answer.",
    "Produce a question and answer that describe something in the image.",
    "After looking at the picture, write a question and its answer.",
    "Think of a question about this image and answer it correctly.",
    "Ask something about the image and then answer it.",
    "Please generate a question-answer pair grounded in the image.",
    "Construct a question about what is shown and give the answer.",
    "Pose a question about the picture and supply the answer.",
    "Using the image, write one question and its accurate answer.",
    "Read the image and create a relevant question with its answer.",
    "Generate an instruction-following example: a question about the image and its answer.",
    "Come up with a question that refers to the image and answer it.",
    "Describe the image through a question and its answer.",
    "Write a visual question and its answer for this image.",
    "Provide a question someone might ask about this picture, and the answer.",
    "Make a question about the objects in the image and answer it.",
    "Create a training example: ask about the image and answer.",
    "Examine the picture closely and output a question with its answer.",
    "Please write a question on the image content and give its answer.",
    "From this image, generate a question and the matching answer.",
    "Give me a question-answer pair about this image.",
    "Look closely at the image; write a question and answer about it.",
    "Propose a question about the picture and answer it precisely.",
    "Write a clear question about the image and a short answer.",
    "Generate a concise question about the scene and its answer.",
    "Question the image and answer your own question.",
    "Produce a question grounded in this picture, then answer it.",
    "Author a question about the visual scene and provide the answer.",
    "View the image and create a question along with a correct answer.",
    "Analyse the image and write a question-answer pair about it.",
    "Please give one question about the picture and answer it directly.",
    "Draft a question about the image contents and state the answer.",
    "Consider the image and produce a question and its answer.",
)


def specific_instruction(task: str) -> str:
    name = TASK_NAMES[task]
    return f"This is {'an' if name[0] in 'AEIOU' else 'a'} {name} task."


class TemplateError(ValueError):
    """A template that cannot be used."""


def validate_general(instructions) -> tuple[str, ...]:
    """General instructions carry no slot and are distinct."""
    out = tuple(str(s).strip() for s in instructions)
    for s in out:
        if not s:
            raise TemplateError("empty general instruction")
        if re.search(r"\{\w*\}", s):
            raise TemplateError(f"general instruction has a placeholder {s!r}; general instructions take none")
    if len(set(out)) != len(out):
        raise TemplateError("general instructions contain duplicates")
    return out


# ---- the generator's text format ------------------------------------------------------------

def format_target(turns) -> str:
    return "\n".join(f"Question: {t['question']} Answer: {t['answer']}" for t in turns)


_PAIR = re.compile(r"question:\s*(?P<q>.+?)\s+answer:\s*(?P<a>.+?)\s*$", re.IGNORECASE | re.DOTALL)


class ParseError(ValueError):
    """Generated text that is not ``Question: .. Answer: ..``."""


def parse_generation(text: str) -> list[dict]:
    """``Question: q Answer: a`` (one line per turn) -> turns; raises ParseError with the reason."""
    if not text or not text.strip():
        raise ParseError("empty generation")
    chunks = [c for c in re.split(r"(?=question:)", text.strip(), flags=re.IGNORECASE) if c.strip()]
    turns = []
    for c in chunks:
        m = _PAIR.fullmatch(c.strip())
        if not m:
            raise ParseError(f"not 'Question: .. Answer: ..': {c.strip()[:80]!r}")
        turns.append({"question": " ".join(m.group("q").split()), "answer": " ".join(m.group("a").split())})
    return turns


# ---- templated training records ---------------------------------------------------------------

@dataclass(frozen=True)
class RecordConfig:
    """How collected samples become generator training records."""

    controlling_constant: float = 0.3  # share of records with only the general instruction
    # Genixer_L: share of each general data set drawn into training (paper: 0.2, 0.2, 0.5, 0.2)
    l_ratios: tuple[tuple[str, float], ...] = (("common_vqa", 0.2), ("adv_vqa", 0.2), ("mc_vqa", 0.5), ("md", 0.2))
    # Genixer_S phase 1: REC+REG in full; phase 2: every grounding task at 0.5
    s_phase1: tuple[tuple[str, float], ...] = (("rec", 1.0), ("reg", 1.0))
    s_phase2: tuple[tuple[str, float], ...] = (("rec", 0.5), ("reg", 0.5), ("pointqa", 0.5), ("qca", 0.5), ("rd", 0.5))
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 <= self.controlling_constant <= 1.0:
            raise TemplateError(f"controlling_constant={self.controlling_constant} must lie in [0, 1]")
        for name, mix, allowed in (("l_ratios", self.l_ratios, GENERAL_TASKS), ("s_phase1", self.s_phase1, GROUNDING_TASKS),
                                   ("s_phase2", self.s_phase2, GROUNDING_TASKS)):
            for task, r in mix:
                if task not in allowed:
                    raise TemplateError(f"{name}: task {task!r} is not one of {allowed}")
                if not 0 < r <= 1:
                    raise TemplateError(f"{name}: ratio {r} for {task} must lie in (0, 1]")


def build_records(samples: list[dict], general: tuple[str, ...], cfg: RecordConfig) -> list[dict]:
    """Training records for Genixer_L (phase 1) and Genixer_S (phases 1 and 2)."""
    cfg.validate()
    by_task: dict[str, list[dict]] = {t: [] for t in TASKS}
    for s in samples:
        by_task[s["task"]].append(s)
    rng = random.Random(cfg.seed)
    records = []
    plan = [("genixer_l", 1, cfg.l_ratios), ("genixer_s", 1, cfg.s_phase1), ("genixer_s", 2, cfg.s_phase2)]
    for generator, phase, mix in plan:
        for task, ratio in mix:
            pool = by_task[task]
            for s in rng.sample(pool, round(ratio * len(pool))):
                gid = rng.randrange(len(general))
                only_general = rng.random() < cfg.controlling_constant
                prompt = general[gid] if only_general else f"{general[gid]} {specific_instruction(task)}"
                records.append({
                    "record_id": f"{generator}:{phase}:{s['sample_id']}",
                    "generator": generator,
                    "phase": phase,
                    "task": task,
                    "sample_id": s["sample_id"],
                    "image_id": s["image_id"],
                    "image_path": s["image_path"],
                    "template_id": f"general_{gid:02d}" + ("" if only_general else f"+{task}"),
                    "general_only": only_general,
                    "prompt": prompt,
                    "target": format_target(s["turns"]),
                    "n_turns": len(s["turns"]),
                })
    return records

