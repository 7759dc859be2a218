"""The judge MLLM of the data filter (Fuyu-8B's role in the Genixer paper), as a pure library.

The judge reads ``Question: <q> Answer: <a>`` with the image and answers Yes or No. Its score is the
probability of "Yes" at the answer position, softmax over the Yes/No logits (one forward pass per
pair, no sampling; "Yes" and "No" as the judge's tokenizer writes them after the prompt, and where either
takes several tokens, the probabilities of the two whole continuations normalised between them, see
``genixer.decoding.score_yes_no``): unlike the official code, which samples an answer with top-p and keeps the
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

Training data: each true pair of a collected sample gives a "Yes" record and one corrupted version of
the same pair a "No" record (:func:`verification_pair`, the one record shape of every judge training
set). Where the corruptions come from is the data source's business: the world's grammar corruptions,
confirmed false by its oracle (the world's ``negatives`` module), or, for collected data read from files,
corruptions wrong by construction (:mod:`genixer.sources.negatives`); ask the data source
(:mod:`genixer.datasource`) for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genixer.decoding import Sampling, generate, score_yes_no
from genixer.models.embedded import EmbeddedSize, build_embedded_judge
from genixer.models.tokenizer import build_tokenizer
from genixer.training import TrainConfig, TrainResult, train

YES, NO = "Yes", "No"
JUDGE_PROMPT = "Question: {q} Answer: {a} Is this answer to the question correct for the image? Answer Yes or No."
NONE = "none"  # the corruption field of true records

# "Options: A. red B. blue C. green D. star" at the end of a question; option texts may span words.
_OPTIONS = re.compile(r"\s*Options:\s*(?P<body>(?:[A-Z]\.\s*\S.*?)+)\s*$", re.IGNORECASE | re.DOTALL)
_OPTION = re.compile(r"(?:^|\s)([A-Z])\.\s*(.+?)(?=\s+[A-Z]\.\s|\s*$)", re.DOTALL)
_LETTER = re.compile(r"^\(?([A-Z])\)?(?:[.:)]\s*.*)?$", re.IGNORECASE | re.DOTALL)


def judge_prompt(q: str, a: str) -> str:
    return JUDGE_PROMPT.format(q=q, a=a)


def clean_text(text) -> str:
    """The text with its whitespace runs collapsed to one space (None: empty)."""
    return " ".join(str(text if text is not None else "").split())


def split_options(question: str) -> tuple[str, dict[str, str]] | None:
    """(stem, {letter: option text}) of a multiple-choice question, or None if it lists no options."""
    q = clean_text(question)
    m = _OPTIONS.search(q)
    if not m:
        return None
    opts = {k.upper(): v.strip() for k, v in _OPTION.findall(m.group("body"))}
    if len(opts) < 2:
        return None
    return q[: m.start()].strip(), opts


def mc_pair(question: str, answer: str) -> tuple[str, str, dict[str, str]] | None:
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
        q, a = clean_text(t.get("question")), clean_text(t.get("answer"))
        if not q or not a:
            return []  # a malformed turn: the sample cannot be judged (NaN; callers quarantine it)
        mc = mc_pair(q, a)
        pairs.append((mc[0], mc[1]) if mc else (q, a))
    return pairs


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

