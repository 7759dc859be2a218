"""The judge MLLM of the data filter (Fuyu-8B's role in the Genixer paper), as a pure library.

The judge reads ``Question: <q> Answer: <a>`` with the image and answers Yes or No. Its score is the
probability of "Yes" at the answer position, softmax over the Yes/No logits (one forward pass per
pair, no sampling; "Yes" and "No" as the judge's tokenizer writes them after the prompt, and where either
takes several tokens, the probabilities of the two whole continuations normalised between them, see
``genixer.generation.score_yes_no``): unlike the official code, which samples an answer with top-p and keeps the
geometric mean of the sampled tokens' probabilities whatever the answer was.

Turning samples into judge pairs (``judge_pairs``):
- MC VQA: the option letter is replaced by the option text, and the options are REMOVED from the
  question: the pair becomes (stem, option text), e.g. ("What colour is the star?", "red"). The truth of
  the pair does not depend on the distractors, the prompt is shorter, and the stem is itself a question
  of the world grammar, so the oracle can check exactly the pair the judge sees. An answer that is not
  a letter (or names no listed option) is kept as written, with the full question.
- Multi-turn (MD, RD): one pair per turn. The sample's score is the minimum over its pairs (a dialogue
  is as good as its worst turn).
- A turn with an empty question or answer makes the whole sample unjudgeable: no pairs, score NaN.

Training data (``verification_records``): each true pair of a collected sample gives a "Yes" record and,
paired with it, one corrupted version of the same pair gives a "No" record (so the set is exactly 50/50
and every question kind appears with both targets). Corruptions are derived with the world grammar and
each is confirmed false by the oracle (accidentally true ones are discarded; a pair with no valid
corruption contributes neither record). Corruption kinds (``CORRUPTIONS``):
- ``wrong_attribute``: colour / shape / size (or PointQA attribute) answer swapped for another value,
  half of the time a value another object of the scene has (a binding error), else any other value.
- ``wrong_option``: MC VQA, the answer becomes the text of a distractor option.
- ``wrong_count``: count answer off by one, or another number 0..5.
- ``flipped_yes_no``: yes <-> no (relations, POPE-style existence).
- ``swapped_relation``: the relation word of a relation question replaced by its opposite, answer kept.
- ``absent_referent``: a word of a referring expression in the question changed (e.g. its colour) so
  that nothing in the image fits it, answer kept.
- ``ambiguous_referent``: a word of a referring expression changed or dropped so that it fits several
  objects, answer kept.
Question kinds outside the general tasks' grammar (locate, describe, reason_*) have no corruption here.

Collected data read from files has no scene graph and no oracle: its records come from
:func:`genixer.corruptions.verification_records_free` (corruptions that need no scene), in the same
record shape (both build their records with :func:`verification_pair`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from genixer.generation import Sampling, generate, score_yes_no
from genixer.models.embedded import EmbeddedSize, build_embedded_judge
from genixer.models.tokenizer import build_tokenizer
from genixer.tasks import GENERAL_TASKS
from genixer.training import TrainConfig, TrainResult, train
from genixer.world.grammar import COLOUR_NAMES, Desc, parse_desc
from genixer.world.oracle import INCORRECT, check_turn, classify
from genixer.world.scene import SHAPES, SIZES, Scene

YES, NO = "Yes", "No"
JUDGE_PROMPT = "Question: {q} Answer: {a} Is this answer to the question correct for the image? Answer Yes or No."
NONE = "none"  # the corruption field of true records
CORRUPTIONS = (
    "wrong_attribute", "wrong_option", "wrong_count", "flipped_yes_no", "swapped_relation",
    "absent_referent", "ambiguous_referent",
)

# "Options: A. red B. blue C. green D. star" at the end of a question; option texts may span words.
_OPTIONS = re.compile(r"\s*Options:\s*(?P<body>(?:[A-Z]\.\s*\S.*?)+)\s*$", re.IGNORECASE | re.DOTALL)
_OPTION = re.compile(r"(?:^|\s)([A-Z])\.\s*(.+?)(?=\s+[A-Z]\.\s|\s*$)", re.DOTALL)
_LETTER = re.compile(r"^\(?([A-Z])\)?(?:[.:)]\s*.*)?$", re.IGNORECASE | re.DOTALL)
_OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}
_ATTR_VALUES = {"colour": COLOUR_NAMES, "shape": SHAPES, "size": SIZES}


def judge_prompt(q: str, a: str) -> str:
    return JUDGE_PROMPT.format(q=q, a=a)


def _clean(text) -> str:
    return " ".join(str(text if text is not None else "").split())


def split_options(question: str) -> tuple[str, dict[str, str]] | None:
    """(stem, {letter: option text}) of a multiple-choice question, or None if it lists no options."""
    q = _clean(question)
    m = _OPTIONS.search(q)
    if not m:
        return None
    opts = {k.upper(): v.strip() for k, v in _OPTION.findall(m.group("body"))}
    if len(opts) < 2:
        return None
    return q[: m.start()].strip(), opts


def _mc_pair(question: str, answer: str) -> tuple[str, str, dict[str, str]] | None:
    """(stem, option text, options) when the question lists options and the answer picks one of them."""
    found = split_options(question)
    m = _LETTER.match(answer)
    if found is None or m is None or m.group(1).upper() not in found[1]:
        return None
    stem, opts = found
    return stem, opts[m.group(1).upper()], opts


def judge_pairs(turns, task: str | None = None) -> list[tuple[str, str]]:
    """The (question, answer) pairs the judge reads for one sample (see the module docstring).

    ``task`` is only a hint: MC questions are recognised by their options, so generated samples whose
    task is unknown (None) are handled the same way.
    """
    turns = list(turns) if turns is not None else []
    pairs = []
    for t in turns:
        q, a = _clean(t.get("question")), _clean(t.get("answer"))
        if not q or not a:
            return []  # a malformed turn: the sample cannot be judged (NaN; callers quarantine it)
        mc = _mc_pair(q, a)
        pairs.append((mc[0], mc[1]) if mc else (q, a))
    return pairs


# ---- corruptions ---------------------------------------------------------------------------------

def _other(values: Sequence[str], truth: str, rng: random.Random, scene_values: Iterable[str] = ()) -> str | None:
    """Another value than ``truth``: half of the time one present in the scene (a hard negative)."""
    present = sorted({v for v in scene_values if v != truth})
    if present and rng.random() < 0.5:
        return rng.choice(present)
    pool = [v for v in values if v != truth]
    return rng.choice(pool) if pool else None


def _wrong_attribute(kind, m, q, a, scene, rng, mc):
    attr = kind.split("_")[-1]
    if attr not in _ATTR_VALUES or mc:  # MC pairs get wrong_option instead
        return None
    new = _other(_ATTR_VALUES[attr], a.lower(), rng, (getattr(o, attr) for o in scene.objects))
    return (q, new) if new else None


def _wrong_option(kind, m, q, a, scene, rng, mc):
    others = [v for v in (mc or {}).values() if v.lower() != a.lower()]
    return (q, rng.choice(others)) if others else None


def _wrong_count(kind, m, q, a, scene, rng, mc):
    if kind != "count" or not a.isdigit():
        return None
    n = int(a)
    new = n + rng.choice((-1, 1)) if rng.random() < 0.6 else rng.choice([k for k in range(6) if k != n])
    return (q, str(new if new >= 0 else n + 1))


def _flipped_yes_no(kind, m, q, a, scene, rng, mc):
    if a.lower() not in ("yes", "no"):
        return None
    return (q, "no" if a.lower() == "yes" else "yes")


def _swapped_relation(kind, m, q, a, scene, rng, mc):
    if "rel" not in m.groupdict() or m.group("rel") is None:
        return None
    rel = m.group("rel")
    return (q[: m.start("rel")] + _OPPOSITE[rel.lower()] + q[m.end("rel") :], a)


def _referent_variants(kind: str, m: re.Match, q: str, scene: Scene) -> list[tuple[int, str]]:
    """(number of objects fitted, question) for every one-word change of a referring expression."""
    asked = kind.removeprefix("mc_") if kind.removeprefix("mc_") in _ATTR_VALUES else None
    out = []
    for slot in ("ref", "ref2"):
        if m.groupdict().get(slot) is None:
            continue
        d = parse_desc(m.group(slot))
        variants = []
        for f, values in _ATTR_VALUES.items():
            if f == asked:  # "What colour is the red circle?" would give the answer away
                continue
            variants += [replace(d, **{f: v}) for v in values if v != getattr(d, f)]
            if getattr(d, f) is not None:
                variants.append(replace(d, **{f: None}))
        for v in variants:
            if v == Desc():
                continue
            n = len(v.select(scene))
            if n != 1:
                out.append((n, q[: m.start(slot)] + v.ref() + q[m.end(slot) :]))
    return out


def _referent(want_absent: bool):
    def corrupt(kind, m, q, a, scene, rng, mc):
        cands = [vq for n, vq in _referent_variants(kind, m, q, scene) if (n == 0) == want_absent]
        return (rng.choice(cands), a) if cands else None
    return corrupt


_CORRUPT = {
    "wrong_attribute": _wrong_attribute,
    "wrong_option": _wrong_option,
    "wrong_count": _wrong_count,
    "flipped_yes_no": _flipped_yes_no,
    "swapped_relation": _swapped_relation,
    "absent_referent": _referent(True),
    "ambiguous_referent": _referent(False),
}


def corrupt_pair(question: str, answer: str, scene: Scene, rng: random.Random, kinds: Sequence[str] = CORRUPTIONS,
                 original_question: str | None = None) -> tuple[str, str, str] | None:
    """One false version of a true pair: (question, answer, corruption kind), confirmed by the oracle.

    ``original_question`` is the MC question with its options (for ``wrong_option``). Kinds are tried in a
    random order; the first one that applies and that the oracle marks incorrect is returned.
    """
    found_mc = split_options(original_question) if original_question else None
    mc = found_mc[1] if found_mc else None  # the MC options, for wrong_option
    found = classify(question)
    if found is None:
        return None
    kind, m = found
    order = list(kinds)
    rng.shuffle(order)
    for name in order:
        out = _CORRUPT[name](kind, m, question, answer, scene, rng, mc)
        if out is None or out == (question, answer):
            continue
        if check_turn(out[0], out[1], scene).status == INCORRECT:
            return out[0], out[1], name
    return None


def verification_records(samples, rng: random.Random | int, scenes: dict[str, Scene],
                         tasks: Sequence[str] = GENERAL_TASKS) -> list[dict]:
    """Judge training records from collected samples: each true pair -> "Yes", plus one corrupted version
    of it -> "No" (exactly balanced). Pairs the oracle does not confirm as true, or with no corruption the
    oracle confirms as false, are left out. Records are shuffled with ``rng``."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    samples = samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)
    records = []
    for s in samples:
        if s["task"] not in tasks:
            continue
        scene = scenes[s["image_id"]]
        turns = list(s["turns"]) if s["turns"] is not None else []
        for i, (t, (q, a)) in enumerate(zip(turns, judge_pairs(turns, s["task"]))):
            if not check_turn(q, a, scene).ok:
                continue
            bad = corrupt_pair(q, a, scene, rng, original_question=_clean(t["question"]))
            if bad is None:
                continue
            records += verification_pair(s, i, (q, a), bad)
    rng.shuffle(records)
    return records


def verification_pair(s: dict, i: int, true_pair: tuple[str, str], bad: tuple[str, str, str]) -> list[dict]:
    """The two records of judge pair ``i`` of sample ``s``: the true (question, answer) -> "Yes" and its
    corruption (question, answer, kind) -> "No". The one record shape of every judge training set."""
    base = {"image_path": s["image_path"], "image_id": s["image_id"], "task": s["task"],
            "sample_id": s["sample_id"], "pair_index": i}
    out = []
    for (pq, pa, corruption, target) in ((true_pair[0], true_pair[1], NONE, YES), (bad[0], bad[1], bad[2], NO)):
        out.append({**base, "record_id": f"{s['sample_id']}:{i}:{'yes' if target == YES else 'no'}",
                    "question": pq, "answer": pa, "prompt": judge_prompt(pq, pa), "target": target,
                    "corruption": corruption})
    return out


# ---- the judge model -----------------------------------------------------------------------------

def judge_vocabulary(vocab_texts: Iterable[str]) -> list[str]:
    """The texts the judge's tokenizer is built from: the world's texts plus the prompt and Yes/No."""
    return list(vocab_texts) + [JUDGE_PROMPT.format(q="", a=""), f"{YES} {NO} yes no"]


def train_judge(records: list[dict], vocab_texts: Iterable[str], size: EmbeddedSize | None, cfg: TrainConfig,
                out_dir: str | Path, sample_weights=None) -> TrainResult:
    """A Fuyu judge built from config (its own tokenizer over ``vocab_texts`` + the judge prompt), trained
    with the one loop ``train()`` on ``verification_records`` (other records, e.g. captions or solver
    question -> answer records, may be mixed in with ``sample_weights``); the model is saved to ``out_dir``."""
    tokenizer = build_tokenizer(judge_vocabulary(vocab_texts))
    for word in (YES, NO):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"{word!r} is not a single token of the judge's vocabulary ({ids})")
    model, processor = build_embedded_judge(tokenizer, size)
    return train(model, processor, records, cfg, out_dir, sample_weights=sample_weights)


def judge_pair_prompts(samples) -> tuple[list[str], list[str], list[int]]:
    """(image paths, judge prompts, index of the owning sample) of every judge pair of ``samples``."""
    samples = samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)
    paths, prompts, owner = [], [], []
    for k, s in enumerate(samples):
        for q, a in judge_pairs(s.get("turns"), s.get("task")):
            paths.append(s["image_path"])
            prompts.append(judge_prompt(q, a))
            owner.append(k)
    return paths, prompts, owner


def score_samples(model, processor, samples, batch_size: int = 32) -> np.ndarray:
    """Per sample: min over its judge pairs of P(Yes) (``score_yes_no``: softmax over the Yes/No logits, one
    forward pass per pair, all pairs batched together; the judge's chat template, if any, wraps each prompt).
    A sample with no judgeable pair gets NaN."""
    samples = samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)
    paths, prompts, owner = judge_pair_prompts(samples)
    p = score_yes_no(model, processor, paths, prompts, yes=YES, no=NO, batch_size=batch_size)
    out = np.full(len(samples), np.nan)
    for k, v in zip(owner, p):
        out[k] = v if math.isnan(out[k]) else min(out[k], v)
    return out


def sampled_judgement(model, processor, image_paths: Sequence[str | Path], prompts: Sequence[str],
                      temperature: float = 1.0, top_p: float = 0.9, max_new_tokens: int = 2, seed: int = 0,
                      batch_size: int = 16) -> list[str]:
    """The official code's way: sample the judge's answer (top-p) and return the sampled strings.
    For the throughput comparison only; the filter uses ``score_samples``."""
    sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    return [o[0] for o in generate(model, processor, image_paths, prompts, sampling, batch_size=batch_size)]


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (rank statistic, ties counted half); NaN without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def chance_auc_bound(n_pos: int, n_neg: int, alpha: float = 0.05) -> float:
    """The AUC that a scorer blind to the labels (its scores independent of them) exceeds with probability
    `alpha` on `n_pos` true and `n_neg` corrupted records: under no separation the AUC is the Mann-Whitney
    U / (n_pos n_neg), mean 1/2 and variance (n_pos + n_neg + 1) / (12 n_pos n_neg); one-sided, normal
    approximation. 0.528 at alpha 0.05 on 583 + 583 records, 0.65 on 20 + 20; NaN without both classes."""
    from statistics import NormalDist

    if n_pos <= 0 or n_neg <= 0:
        return float("nan")
    sd = ((n_pos + n_neg + 1) / (12 * n_pos * n_neg)) ** 0.5
    return float(0.5 + NormalDist().inv_cdf(1 - alpha) * sd)


def auc_by_corruption(held: pd.DataFrame) -> pd.DataFrame:
    """Per corruption kind of held-out verification records (``p_yes``, ``label``, ``corruption``): its "No"
    records against every true record, AUC and mean P(Yes); the true records' own row first."""
    true = held[held.label.astype(bool)]
    rows = [{"corruption": NONE, "n": len(true), "mean_p_yes": float(true.p_yes.mean()) if len(true) else float("nan"),
             "auc_vs_true": float("nan")}]
    for kind, g in held[~held.label.astype(bool)].groupby("corruption"):
        both = pd.concat([true, g])
        rows.append({"corruption": kind, "n": len(g), "mean_p_yes": float(g.p_yes.mean()), "auc_vs_true": auc(both.p_yes, both.label)})
    return pd.DataFrame(rows)
