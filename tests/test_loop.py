"""The closed loop's decisions (genixer.loop): per-type scores, the bad-case pool (development split only), Adaptive
Bad-case Sampling (inverse to the score, its fallback, in-context cases and query images) and the stopping rule."""

import json

import numpy as np
import pandas as pd
import pytest

from genixer.loop import (
    bad_cases, carried_type, sample_queries, sampling_weights, stop_reason, text_type, type_table, uniform_weights,
)


def _evals(spec: dict[str, tuple[int, int]], split: str = "dev") -> pd.DataFrame:
    """type -> (questions, right answers): one row per question."""
    rows = []
    for t, (n, k) in spec.items():
        for i in range(n):
            rows.append({"sample_id": f"{t}{i}", "question_type": t, "correct": i < k, "split": split,
                         "image_id": f"img_{t}{i}", "question": f"q {t} {i}", "truth": "a", "answer": "a" if i < k else "b"})
    return pd.DataFrame(rows)


def test_type_table_scores_each_type_with_its_interval_weakest_first():
    t = type_table(_evals({"colour": (10, 8), "count": (20, 4), "exist": (5, 5)}))
    assert list(t.question_type) == ["count", "colour", "exist"]
    row = t.set_index("question_type").loc["count"]
    assert row.n == 20 and row.correct == 4 and row.accuracy == pytest.approx(0.2) and row.bad_cases == 16
    assert row.lo == pytest.approx(0.0807, abs=1e-3) and row.hi == pytest.approx(0.4160, abs=1e-3)  # Wilson 95%
    assert (t.lo <= t.accuracy).all() and (t.accuracy <= t.hi).all()


def test_bad_cases_come_from_the_development_split_only():
    ev = _evals({"colour": (10, 8)})
    pool = bad_cases(ev)
    assert list(pool.sample_id) == ["colour8", "colour9"] and not pool.correct.any()
    with pytest.raises(ValueError, match="development split only.*bench"):
        bad_cases(pd.concat([ev, _evals({"count": (3, 1)}, split="bench")]))


def test_weights_are_inverse_to_the_score_over_types_with_two_bad_cases():
    t = type_table(_evals({"a": (10, 2), "b": (10, 4), "c": (10, 8), "d": (10, 9)}))  # d has one bad case
    w, note = sampling_weights(t)
    assert set(w.index) == {"a", "b", "c"} and "inverse" in note
    assert w["a"] == pytest.approx(4 / 7) and w["b"] == pytest.approx(2 / 7) and w["c"] == pytest.approx(1 / 7)
    zero = type_table(_evals({"never": (10, 0), "half": (10, 5)}))
    w0, _ = sampling_weights(zero, floor=0.05)
    assert w0["never"] / w0["half"] == pytest.approx((1 / 0.05) / (1 / 0.5))  # floored, not infinite
    assert uniform_weights(t).to_dict() == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 3), "c": pytest.approx(1 / 3)}


def test_unusable_weights_fall_back_to_uniform_and_an_empty_pool_gives_none():
    t = type_table(_evals({"a": (10, 2), "b": (10, 4)})).assign(accuracy=[np.nan, 0.4])
    w, note = sampling_weights(t)
    assert w.to_dict() == {"a": 0.5, "b": 0.5} and "uniform" in note
    perfect = type_table(_evals({"a": (10, 10), "b": (10, 9)}))
    w, note = sampling_weights(perfect)
    assert w.empty and "no question type has 2 bad cases" in note
    assert sample_queries(w, bad_cases(_evals({"a": (10, 10)})), pd.DataFrame({"image_id": ["x"]}), 5, 0).empty


def test_queries_follow_the_weights_with_two_bad_cases_of_their_type():
    ev = _evals({"a": (40, 10), "b": (40, 30), "c": (40, 35)})
    pool = bad_cases(ev)
    w, _ = sampling_weights(type_table(ev))
    corpus = pd.DataFrame({"image_id": [f"c{i}" for i in range(3000)]})
    q = sample_queries(w, pool, corpus, 3000, seed=1)
    share = q.question_type.value_counts(normalize=True)
    for t, p in w.items():
        assert abs(share[t] - p) < 4 * np.sqrt(p * (1 - p) / len(q)), (t, share[t], p)
    types = pool.set_index("sample_id").question_type
    assert all(len(set(ic)) == 2 and {types[s] for s in ic} == {t} for ic, t in zip(q.in_context, q.question_type))
    assert q.image_id.is_unique and set(q.image_from) == {"random"}  # no embeddings: every image at random


def test_half_the_query_images_are_the_nearest_to_the_bad_cases_images():
    ev = _evals({"a": (6, 2), "b": (6, 2)})
    pool = bad_cases(ev)  # a2..a5, b2..b5
    rng = np.random.default_rng(0)
    pool_emb = np.where(pool.question_type.to_numpy()[:, None] == "a", [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) + 0.01 * rng.normal(size=(len(pool), 3))
    # corpus: 10 images near "a", 10 near "b", 30 elsewhere
    corpus_emb = np.r_[np.tile([1.0, 0.0, 0.1], (10, 1)), np.tile([0.0, 1.0, 0.1], (10, 1)), np.tile([0.0, 0.0, 1.0], (30, 1))]
    corpus_emb = corpus_emb + 0.01 * rng.normal(size=corpus_emb.shape)
    corpus = pd.DataFrame({"image_id": [f"near_a{i}" for i in range(10)] + [f"near_b{i}" for i in range(10)] + [f"far{i}" for i in range(30)]})
    w = pd.Series({"a": 0.5, "b": 0.5})
    q = sample_queries(w, pool, corpus, 12, seed=3, corpus_emb=corpus_emb, pool_emb=pool_emb)
    similar = q[q.image_from == "similar"]
    assert list(q.image_from) == ["random", "similar"] * 6 and q.image_id.is_unique
    assert all(img.startswith(f"near_{t}") for img, t in zip(similar.image_id, similar.question_type))


def test_the_stopping_rule():
    assert stop_reason(1, 3, pool_size=0, verdicts=None).startswith("the bad-case pool is empty")
    assert stop_reason(4, 3, pool_size=10, verdicts=["better"]) == "maximum rounds reached (3)"  # rounds 1-3 trained
    assert stop_reason(3, 3, pool_size=10, verdicts=["better"]) is None  # round 3 still generates and trains
    assert stop_reason(2, 3, pool_size=10, verdicts=["within noise", "worse"]).startswith("no question type improved")
    assert stop_reason(2, 3, pool_size=10, verdicts=["within noise"], min_rounds=2) is None  # two rounds train first
    assert stop_reason(3, 3, pool_size=10, verdicts=["within noise"], min_rounds=2).startswith("no question type improved")
    assert stop_reason(2, 3, pool_size=10, verdicts=["within noise", "better"]) is None
    assert stop_reason(1, 3, pool_size=10, verdicts=None) is None  # round 1 has no previous round to beat


def test_published_types_are_carried_or_read_off_the_text():
    assert carried_type(json.dumps({"question_type": "what color is the", "answer_type": "other"})) == "what color is the"
    assert carried_type({"types": {"structural": "query", "semantic": "rel", "detailed": "relS"}}) == "relS"
    assert carried_type(None) is None and carried_type("not json") is None and carried_type({"answers": ["a"]}) is None
    assert text_type("common_vqa", "What colour is the star?") == "common_vqa:what colour"
    assert text_type("mc_vqa", "Which shape is red? Options: A. circle") == "mc_vqa:which shape"


def test_the_worlds_question_type_is_the_grammar_kind_it_was_written_from(tmp_path):
    from genixer.world import WorldConfig, annotate_images, build_split
    from genixer.world.grammar import TASK_KINDS
    from genixer.world.source import WorldSource

    images = build_split("bench", 12, tmp_path, WorldConfig(), base_seed=5)
    samples = annotate_images(images, ["common_vqa", "adv_vqa", "mc_vqa", "pointqa"])
    typed = [(s["task"], WorldSource.question_type(None, s["task"], s["turns"][0]["question"])) for s in samples]
    assert len(typed) >= 24 and all(k in TASK_KINDS[t] for t, k in typed), typed[:5]
    assert len({k for _, k in typed}) >= 5  # colour / shape / size / count / relation / exist / mc_* / point_*
    assert WorldSource.question_type(None, "common_vqa", "Tell me a story") == "unmatched"


# ---- targeted generation: the third level, prompt variants, correction, the failure table ---------------------------

def test_the_type_level_is_taught_like_the_task_level():
    from genixer.loop import type_instruction, typed_records

    recs = [{"record_id": f"r{i}", "sample_id": f"s{i}", "general_only": i % 5 == 0, "n_turns": 1 if i % 7 else 2,
             "prompt": "Ask. This is a Common VQA task.", "template_id": "general_00+common_vqa"} for i in range(400)]
    types = {f"s{i}": ("colour" if i % 2 else "unmatched") for i in range(400)}
    out = typed_records(recs, types, {"colour": "the colour of an object"}, controlling_constant=0.3, seed=0)
    assert [r["record_id"].split(":")[0] for r in out] == [r["record_id"] for r in recs]  # every record, in order
    typed = [r for r in out if r["question_type"]]
    eligible = [r for r in recs if not r["general_only"] and r["n_turns"] == 1 and types[r["sample_id"]] == "colour"]
    assert 0.55 < len(typed) / len(eligible) < 0.85  # 1 - the controlling constant of them, as the task level
    assert all(r["prompt"].endswith(type_instruction("the colour of an object")) and r["template_id"].endswith("+type") for r in typed)
    untouched = [r for r in out if not r["question_type"]]
    assert all(r["prompt"] == "Ask. This is a Common VQA task." for r in untouched)
    assert not any(types[r["sample_id"]] == "unmatched" or r["general_only"] or r["n_turns"] != 1 for r in typed)


def test_prompt_variants_add_the_type_then_the_bad_cases():
    from genixer.loop import variant_prompt

    cases = [("What colour is the star?", "red"), ("What colour is the circle?", "blue")]
    a, b, c = (variant_prompt(v, "Ask.", "This is a Common VQA task.", "the colour of an object", cases)
               for v in ("task", "type", "type_in_context"))
    assert a == "Ask. This is a Common VQA task." and b == a + " The question is about the colour of an object."
    assert c.startswith(b) and "Question: What colour is the star? Answer: red" in c and "the circle? Answer: blue" in c
    with pytest.raises(ValueError, match="variant"):
        variant_prompt("typo", "Ask.", "", "", [])


def test_correction_keeps_agreeing_answers_replaces_settled_ones_and_drops_unsettled():
    from genixer.loop import settle

    first = ["red", "blue", "2", "yes"]
    answers = {1: ["red", "green", "3", "no"], 2: ["green", "4", "yes"], 3: ["green", "5", "no"]}
    asked = []

    def answer(i, idx):
        asked.append((i, list(idx)))
        return answers[i][:len(idx)]

    settled, at = settle(first, answer, passes=3)
    assert settled == ["red", "green", None, None] and at == [1, 2, 0, 0]  # agree at once; settle at pass 2; never
    assert asked == [(1, [0, 1, 2, 3]), (2, [1, 2, 3]), (3, [2, 3])]  # a settled pair is not asked again
    greedy, _ = settle(["red", "blue"], lambda i, idx: ["red", "green"][:len(idx)] if i == 1 else ["green"], passes=2)
    assert greedy == ["red", "green"]  # a deterministic model settles at pass 2
    one, _ = settle(["red", "blue"], lambda i, idx: ["red", "green"], passes=1)
    assert one == ["red", None]  # one pass: a disagreement is dropped


def test_the_failure_table_and_the_variant_with_fewest_failures():
    from genixer.loop import choose_variant, failure_table

    rows = pd.DataFrame({"variant": ["task"] * 4 + ["type"] * 4 + ["type_in_context"] * 4,
                         "status": ["kept", "kept", "wrong type", "unparseable", "kept", "kept", "kept", "judge-rejected",
                                    "unparseable", "unparseable", "kept", "kept"],
                         "oracle": ["correct", "incorrect", "", "", "incorrect", "correct", "incorrect", "correct", "", "", "correct", "correct"]})
    t = failure_table(rows).set_index("variant")
    assert t.loc["task", "failures"] == 3 and t.loc["type", "failures"] == 3 and t.loc["type_in_context", "failures"] == 2
    assert t.loc["type", "oracle-wrong (kept)"] == 2 and t.loc["task", "wrong type"] == 1 and t.loc["type", "judge-rejected"] == 1
    assert choose_variant(t.reset_index()) == "type_in_context"
    assert choose_variant(t.drop("type_in_context").reset_index()) == "task"  # a tie goes to the simpler variant


def test_the_weakest_types_are_those_targeting_draws_more_than_uniform():
    from genixer.loop import weakest_types

    table = type_table(_evals({"colour": (10, 2), "count": (10, 5), "shape": (10, 9), "size": (10, 10)}))
    assert weakest_types(table) == ["colour"]  # 1/0.2 vs 1/0.5, 1/0.9 (size has no bad case): only colour is above 1/3


def test_the_type_classifier_recovers_vqav2s_types_and_is_measured_on_records_that_carry_them():
    from genixer.loop import TypeClassifier, classifier_accuracy

    # VQAv2's question_type is the question's opening, of varying length
    openings = {"what color is the": ["car", "sky", "dog's collar"], "what is the": ["man holding", "sign saying"],
                "how many": ["dogs are there", "people are in the picture"], "is there a": ["cat", "bus"],
                "is the": ["man smiling", "light on"]}
    qs, ts = [], []
    for t, rests in openings.items():
        for i in range(30):
            qs.append(f"{t.capitalize()} {rests[i % len(rests)]} {i}?")
            ts.append(t)
    clf = TypeClassifier().fit(qs, ts)
    assert clf.predict("What color is the umbrella?") == "what color is the" and clf.predict("What is the woman eating?") == "what is the"
    assert clf.predict("Is there a tree?") == "is there a" and clf.predict("Is the door open?") == "is the"
    assert clf.predict("Why is it dark?") is None  # no opening it learnt
    acc = classifier_accuracy(qs, ts, seed=0)
    assert acc["tested_on"] == 30 and acc["trained_on"] == 120 and acc["accuracy"] == 1.0 and acc["lo"] < 1.0
    # GQA-like types that openings tell only in part: the measurement says so
    gqa_q = [f"What is {x} the {o}?" for x in ("on", "under", "near") for o in ("table", "chair", "box", "bed")] * 3
    gqa_t = [("relS" if i % 2 else "relO") for i in range(len(gqa_q))]
    assert classifier_accuracy(gqa_q, gqa_t, seed=0)["accuracy"] < 0.9


def test_a_collected_record_is_typed_by_what_it_carries_else_by_the_classifier(tmp_path):
    from genixer.sources.collected import CollectedSource

    rows = []
    for i, (q, t) in enumerate([("What color is the bus?", "what color is the"), ("How many dogs are there?", "how many")] * 5):
        rows.append({"sample_id": f"s{i}", "image_id": f"i{i}", "image_path": str(tmp_path / f"i{i}.png"), "task": "common_vqa",
                     "turns": [{"question": q, "answer": "1"}], "extra": json.dumps({"question_type": t}), "width": 8, "height": 8})
    src = CollectedSource(pd.DataFrame(rows), phrasings={}, rec_reading=None, val_images=2)
    assert src.question_type("common_vqa", "What color is the bus?", json.dumps({"question_type": "what color"})) == "what color"
    assert src.question_type("common_vqa", "How many cats?") == "how many"  # no type carried: the classifier's
    assert src.question_type("common_vqa", "Why is it red?") == "common_vqa:why is"  # nothing learnt: the text's kind
    assert src.type_classifier_accuracy()["accuracy"] == 1.0
