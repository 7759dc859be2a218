"""The closed loop of MLLM-DataEngine (seed 003), the parts that decide what to generate next: a round's
per-question-type scores on a development split, its bad-case pool, Adaptive Bad-case Sampling and the stopping rule.

- **Scores by type** (:func:`type_table`): each development question's type (the data source says it:
  ``DataSource.question_type``), the model's accuracy per type with its Wilson 95% interval.
- **The bad-case pool** (:func:`bad_cases`): the questions the model got wrong, development split only (a row of
  another split is an error: the report's test questions must never steer generation).
- **Adaptive Bad-case Sampling** (:func:`sampling_weights`, :func:`sample_queries`): a query's question type is
  drawn with probability inversely proportional to the type's score, as the paper does; the score is floored
  (``floor``, default 0.05) so that a type the model never gets right does not take every query, and a type needs
  two bad cases (the query's two in-context examples) to be drawn at all. Weights that cannot be used (none
  positive and finite) fall back to uniform over the eligible types, and the note says so. Query images: half drawn
  at random from the unlabeled corpus, half the corpus image most similar (cosine of image embeddings, e.g. the
  region CLIP's) to the query's bad-case images, each image used once.
- **The stopping rule** (:func:`stop_reason`): the maximum number of rounds, an empty bad-case pool (a perfect
  model ends the loop; that is a reason, not a failure), or no type better than the previous round's beyond noise.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from genixer.review import wilson
from genixer.world_benchmarks import question_kind

IN_CONTEXT = 2  # bad cases shown per query (the paper: two)
DEV_SPLIT = "dev"  # the split label of the development questions a round is evaluated on


def carried_type(extra) -> str | None:
    """The question type a published record carries in its ``extra`` (a dict or its JSON): VQAv2's
    ``question_type`` ('what color is the'), GQA's ``types.detailed`` ('relS'); None when it carries none."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if not isinstance(extra, dict):
        return None
    if extra.get("question_type"):
        return str(extra["question_type"])
    types = extra.get("types")
    return str(types["detailed"]) if isinstance(types, dict) and types.get("detailed") else None


def text_type(task: str, question: str) -> str:
    """The type read off the question's text when no type is carried: the blind prior's kind of question, the task and
    the question's first two words ('common_vqa:what colour')."""
    return question_kind(task, question)


class TypeClassifier:
    """A question's type from its text, learnt from records that carry one: for k = ``max_words`` down to 1, the
    question's first k words (lower case, punctuation dropped) -> the type most often carried by training questions
    that begin so; the longest known beginning decides, and a question no beginning matches gets None. VQAv2's types
    are question openings ('what color is the'), so this recovers them; GQA's (`relS`) it learns as far as openings tell."""

    def __init__(self, max_words: int = 4):
        self.max_words = max_words
        self.table: dict[tuple[str, ...], str] = {}

    def _words(self, question: str) -> tuple[str, ...]:
        return tuple("".join(c for c in w if c.isalnum()) for w in str(question).lower().split())[: self.max_words]

    def fit(self, questions, types) -> "TypeClassifier":
        from collections import Counter

        counts: dict[tuple[str, ...], Counter] = {}
        for q, t in zip(questions, types):
            w = self._words(q)
            for k in range(1, len(w) + 1):
                counts.setdefault(w[:k], Counter())[t] += 1
        self.table = {k: c.most_common(1)[0][0] for k, c in counts.items()}
        return self

    def predict(self, question: str) -> str | None:
        w = self._words(question)
        for k in range(len(w), 0, -1):
            if w[:k] in self.table:
                return self.table[w[:k]]
        return None


def classifier_accuracy(questions: list[str], types: list[str], seed: int = 0, held_out: float = 0.2,
                        max_words: int = 4) -> dict:
    """The type classifier's accuracy on the typed records it did not learn from (a random ``held_out`` share), with
    its Wilson 95% interval."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(questions))
    n_test = max(1, round(held_out * len(questions))) if len(questions) > 1 else 0
    test, train = idx[:n_test], idx[n_test:]
    clf = TypeClassifier(max_words).fit([questions[i] for i in train], [types[i] for i in train])
    hits = [clf.predict(questions[i]) == types[i] for i in test]
    acc = float(np.mean(hits)) if hits else float("nan")
    lo, hi = wilson(acc, len(hits)) if hits else (float("nan"), float("nan"))
    return {"typed_records": len(questions), "trained_on": len(train), "tested_on": len(test), "accuracy": acc, "lo": lo, "hi": hi}


def type_table(evals: pd.DataFrame) -> pd.DataFrame:
    """Per question type (``evals``: one row per development question, columns ``question_type`` and ``correct``):
    questions, correct answers, accuracy and its Wilson 95% interval, bad cases; sorted by accuracy, weakest first."""
    if not len(evals):
        return pd.DataFrame(columns=["question_type", "n", "correct", "accuracy", "lo", "hi", "bad_cases"])
    g = evals.assign(correct=evals.correct.astype(bool)).groupby("question_type").correct.agg(["size", "sum"])
    rows = []
    for t, (n, k) in g.iterrows():
        lo, hi = wilson(k / n, n)
        rows.append({"question_type": t, "n": int(n), "correct": int(k), "accuracy": k / n, "lo": lo, "hi": hi, "bad_cases": int(n - k)})
    return pd.DataFrame(rows).sort_values(["accuracy", "question_type"]).reset_index(drop=True)


def bad_cases(evals: pd.DataFrame) -> pd.DataFrame:
    """The bad-case pool: the development questions answered wrong (image, question, the model's answer, the truth,
    its type). Raises ValueError if a row is not of the development split."""
    if "split" in evals and (evals.split != DEV_SPLIT).any():
        other = sorted(evals.split[evals.split != DEV_SPLIT].astype(str).unique())
        raise ValueError(f"bad cases come from the development split only; got rows of split(s) {other}")
    return evals[~evals.correct.astype(bool)].reset_index(drop=True)


def sampling_weights(table: pd.DataFrame, floor: float = 0.05) -> tuple[pd.Series, str]:
    """(question type -> probability, a note): inversely proportional to the type's accuracy (floored at ``floor``),
    over the types with at least two bad cases. Unusable weights fall back to uniform, saying so; no eligible type:
    an empty series (the pool has nothing to show)."""
    eligible = table[table.bad_cases >= IN_CONTEXT]
    if not len(eligible):
        return pd.Series(dtype=float), f"no question type has {IN_CONTEXT} bad cases"
    w = 1.0 / np.maximum(eligible.accuracy.to_numpy(dtype=float), floor)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return (pd.Series(1.0 / len(eligible), index=eligible.question_type.to_numpy()),
                "weights inverse to the score were not usable (non-finite or zero): uniform over the eligible types")
    return pd.Series(w / w.sum(), index=eligible.question_type.to_numpy()), f"inverse to accuracy, floored at {floor}"


def uniform_weights(table: pd.DataFrame) -> pd.Series:
    """The control arm's weights: uniform over the same eligible types."""
    eligible = table[table.bad_cases >= IN_CONTEXT].question_type.to_numpy()
    return pd.Series(1.0 / len(eligible), index=eligible) if len(eligible) else pd.Series(dtype=float)


def sample_queries(weights: pd.Series, pool: pd.DataFrame, corpus: pd.DataFrame, n_queries: int, seed: int,
                   corpus_emb: np.ndarray | None = None, pool_emb: np.ndarray | None = None) -> pd.DataFrame:
    """``n_queries`` generation queries: a question type drawn from ``weights``, two bad cases of that type from
    ``pool`` (their sample ids, questions and truths, for an instruction-following generator's prompt), and a
    query image from ``corpus`` (rows with ``image_id``), each image used once: even-numbered queries a random image,
    odd-numbered ones the unused corpus image nearest (cosine) to the mean embedding of its bad cases' images
    (``corpus_emb``: one row per corpus row; ``pool_emb``: one row per pool row); without embeddings, random too."""
    if not len(weights) or n_queries <= 0:
        return pd.DataFrame(columns=["query", "question_type", "in_context", "image_id", "image_from"])
    rng = np.random.default_rng(seed)
    n_queries = min(n_queries, len(corpus))
    types = rng.choice(weights.index.to_numpy(), size=n_queries, p=weights.to_numpy(dtype=float))
    by_type = {t: np.flatnonzero(pool.question_type.to_numpy() == t) for t in weights.index}
    free = np.ones(len(corpus), dtype=bool)
    unit = None
    if corpus_emb is not None and pool_emb is not None:
        unit = corpus_emb / np.maximum(np.linalg.norm(corpus_emb, axis=1, keepdims=True), 1e-12)
    rows = []
    for q, t in enumerate(types):
        shown = rng.choice(by_type[t], size=IN_CONTEXT, replace=False)
        if q % 2 == 1 and unit is not None:
            target = pool_emb[shown].mean(0)
            sim = unit @ (target / max(np.linalg.norm(target), 1e-12))
            i, how = int(np.argmax(np.where(free, sim, -np.inf))), "similar"
        else:
            i, how = int(rng.choice(np.flatnonzero(free))), "random"
        free[i] = False
        rows.append({"query": q, "question_type": t, "in_context": [str(pool.sample_id.iloc[j]) for j in shown],
                     "image_id": corpus.image_id.iloc[i], "image_from": how})
    return pd.DataFrame(rows)


def stop_reason(round_index: int, max_rounds: int, pool_size: int, verdicts: list[str] | None, min_rounds: int = 1) -> str | None:
    """Why the loop stops at round ``round_index``'s evaluation (1-based; round r evaluates the model round r - 1
    trained), or None for the round to generate and train: an empty bad-case pool; the maximum number of rounds
    trained already (``round_index > max_rounds``); or, from round 2 on, no question type better than at the previous
    round's evaluation beyond noise (``verdicts``: per type, 'better' / 'worse' / 'within noise'), once ``min_rounds``
    rounds have trained (a loop that must show two rounds runs two)."""
    if pool_size == 0:
        return "the bad-case pool is empty: the model answers every development question right"
    if round_index > max_rounds:
        return f"maximum rounds reached ({max_rounds})"
    if verdicts is not None and "better" not in verdicts and round_index > min_rounds:
        return "no question type improved beyond noise over the previous round"
    return None


# ---- targeted generation: the third instruction level, prompt variants, correction, the failure table ----------------

VARIANTS = ("task", "type", "type_in_context")  # the instruction variants a round's prompt selection measures


def type_instruction(phrase: str) -> str:
    """The third instruction level, after the general and the task's: the question type, in words."""
    return f"The question is about {phrase}."


def typed_records(records: list[dict], types: dict[str, str], phrases: dict[str, str], controlling_constant: float,
                  seed: int) -> list[dict]:
    """Genixer_L's training records with the third level taught the way the task level is: a record with the task
    level and one question of a known type (``types``: sample id -> type; 'unmatched' and missing are unknown) gets
    the type's instruction (``phrases``: type -> words) with probability 1 - ``controlling_constant``; the others
    keep their prompts. Records gain ``question_type`` ('' when not typed)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        t = types.get(r["sample_id"], "")
        typed = (not r["general_only"] and r["n_turns"] == 1 and t not in ("", "unmatched") and t in phrases
                 and rng.random() >= controlling_constant)
        out.append({**r, "question_type": t if typed else "",
                    **({"prompt": f"{r['prompt']} {type_instruction(phrases[t])}", "template_id": f"{r['template_id']}+type",
                        "record_id": f"{r['record_id']}:typed"} if typed else {})})
    return out


def type_tasks(typed: pd.DataFrame) -> dict[str, str]:
    """Question type -> the task its questions belong to most often (``typed``: columns question_type, task)."""
    typed = typed[~typed.question_type.isin(["", "unmatched"])]
    return {t: g.task.value_counts().index[0] for t, g in typed.groupby("question_type")}


def variant_prompt(variant: str, general: str, task_instruction: str, phrase: str, cases: list[tuple[str, str]]) -> str:
    """A query's prompt under an instruction variant: ``task`` (general + task level: Genixer as it is), ``type`` (+ the
    question type's level), ``type_in_context`` (+ the query's bad cases as examples, for a generator that follows
    instructions: the paper's in-context bad cases)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    prompt = f"{general} {task_instruction}"
    if variant == "task":
        return prompt
    prompt = f"{prompt} {type_instruction(phrase)}"
    if variant == "type":
        return prompt
    shown = " ".join(f"Question: {q} Answer: {a}" for q, a in cases)
    return f"{prompt} Examples of questions of this type, answered wrong before: {shown}"


def _same(a: str, b: str) -> bool:
    return " ".join(str(a).lower().split()).rstrip(".") == " ".join(str(b).lower().split()).rstrip(".")


def settle(first: list[str], answer, passes: int) -> tuple[list[str | None], list[int]]:
    """VIGC's correction as a fixed point: ``first`` are the generator's answers; pass i (1..``passes``) asks the
    current model again (``answer(i)``: the answers of pass i, one per question) and an answer settles when a pass
    repeats the one before it (pass 1 compared with the generator's). Returns (the settled answer, None where none
    settled within ``passes``; the pass it settled at, 0 if never). The rule: a settled answer replaces the generator's
    (kept as it was when the model agrees with it at once); an unsettled pair is dropped. With greedy decoding a
    model's answer to the same question cannot change, so two passes always settle and one pass drops every pair the
    model disagrees with."""
    prev, settled, at = list(first), [None] * len(first), [0] * len(first)
    for i in range(1, passes + 1):
        todo = [k for k in range(len(first)) if settled[k] is None]
        if not todo:
            break
        got = answer(i, todo)
        for k, a in zip(todo, got):
            if _same(a, prev[k]):
                settled[k], at[k] = prev[k], i
            prev[k] = a
    return settled, at


FAILURES = ("unparseable", "wrong type", "unsettled", "judge-rejected")


def failure_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per instruction variant (``rows``: variant, status = 'kept' or one of :data:`FAILURES`, oracle = 'correct' /
    'incorrect' / '' when unchecked): requests, the count of each failure, the kept rows the oracle calls wrong, and
    the failures in all (every row not kept, plus the kept oracle-wrong ones); the paper's Tab. 5 analogue."""
    out = []
    for v, g in rows.groupby("variant", sort=False):
        kept = g[g.status == "kept"]
        oracle_wrong = int((kept.oracle == "incorrect").sum())
        rec = {"variant": v, "requests": len(g), **{f: int((g.status == f).sum()) for f in FAILURES},
               "oracle-wrong (kept)": oracle_wrong, "kept": len(kept)}
        rec["failures"] = len(g) - len(kept) + oracle_wrong
        out.append(rec)
    return pd.DataFrame(out)


def choose_variant(table: pd.DataFrame) -> str:
    """The variant with the fewest failures (ties: the earlier, simpler one in :data:`VARIANTS`)."""
    order = {v: i for i, v in enumerate(VARIANTS)}
    return min(table.itertuples(), key=lambda r: (r.failures, order.get(r.variant, len(order)))).variant


# ---- the loop's report: per round and type on the test split, and the two controls ----------------------------------

def weakest_types(table: pd.DataFrame, floor: float = 0.05) -> list[str]:
    """A round's weakest types: those the targeted arm draws more often than the uniform arm does (inverse-score
    weight above uniform), from the round's development type table."""
    w = sampling_weights(table, floor)[0]
    return sorted(w.index[w > 1.0 / len(w)]) if len(w) else []


def round_tables(perq: pd.DataFrame, weakest: list[str], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A round's test-split scores (``perq``: recipe = arm or 'start', seed, question_type, sample_id, value) ->
    (per type: the targeted arm's accuracy over seeds, its change from the round's start model and from the paired
    replay arm, each with its 95% interval and verdict; the controls: targeted minus uniform on the weakest types and
    on all, targeted minus previous (round >= 2), oracle and targeted minus replay)."""
    from genixer.noise_test import bootstrap, contrast

    boot = bootstrap(perq.assign(benchmark=perq.question_type), seed=seed)
    types = sorted(perq.question_type.unique())
    arms = set(perq.recipe)
    rows = []
    for t in types:
        lo, hi = np.nanpercentile(boot.reps[("targeted", t)], [2.5, 97.5]) if np.isfinite(boot.reps[("targeted", t)]).any() else (np.nan,) * 2
        prior = boot.point("ref:blind_prior", t) if ("ref:blind_prior", t) in boot.seed_scores else float("nan")
        rec = {"question_type": t, "questions": int(perq[(perq.question_type == t)].sample_id.nunique()), "blind_prior": prior,
               "start": boot.point("start", t), "targeted": boot.point("targeted", t), "targeted_lo": float(lo), "targeted_hi": float(hi)}
        for ref in ("start", "replay"):
            c = contrast(boot, "targeted", ref, [t])
            rec.update({f"minus_{ref}": c["point"], f"minus_{ref}_lo": c["lo"], f"minus_{ref}_hi": c["hi"], f"minus_{ref}_verdict": c["verdict"]})
        rows.append(rec)
    controls = []

    def add(name: str, a: str, b: str, over: list[str]) -> None:
        if a in arms and b in arms and over:
            c = contrast(boot, a, b, over)
            controls.append({"control": name, "contrast": f"{a} - {b}", "types": len(over), "delta": c["point"], "lo": c["lo"],
                             "hi": c["hi"], "verdict": c["verdict"]})

    add("targeting, weakest types", "targeted", "uniform", [t for t in weakest if t in types])
    add("targeting, all types", "targeted", "uniform", types)
    add("iteration: this round's data vs more of the previous round's", "targeted", "previous", types)
    add("the targeted data's effect", "targeted", "replay", types)
    add("the uniform data's effect", "uniform", "replay", types)
    add("a perfect judge's data (oracle)", "oracle", "replay", types)
    add("change from the round's start model", "targeted", "start", types)
    return pd.DataFrame(rows), pd.DataFrame(controls)
