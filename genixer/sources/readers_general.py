"""Readers of the general-task formats: VQAv2, GQA, A-OKVQA, POPE, LLaVA conversations."""

from __future__ import annotations

import re
from pathlib import Path

import ijson

from genixer.sources import register
from genixer.sources.common import (
    Context,
    Reject,
    SourceFormatError,
    check_first_record,
    json_items,
    json_lines,
)


def _coco_subtype(ctx: Context, path: Path) -> str:
    """`data_subtype` of a VQAv2 file (e.g. val2014): the field if the file has it, else the file name."""
    with open(path, "rb") as f:
        value = next(ijson.items(f, "data_subtype"), None)
    if value:
        return str(value)
    m = re.search(r"(train|val|test)(20\d\d)", path.name)
    if not m:
        raise SourceFormatError(f"{ctx.fmt}: {path.name} has no data_subtype field and its name holds none (e.g. val2014): "
                                "name it as the release does, v2_OpenEnded_mscoco_<subtype>_questions.json")
    return m.group(0)


@register("vqav2",
          files=("questions JSON (v2_OpenEnded_mscoco_<subtype>_questions.json)",
                 "annotations JSON (v2_mscoco_<subtype>_annotations.json)"),
          images="the COCO folder of the subtype (val2014/ or train2014/) holding COCO_<subtype>_<id:012d>.jpg",
          tasks="common_vqa (all 10 answers kept in extra.answers)")
def read_vqav2(files: list[Path], ctx: Context):
    qfile, afile = files
    questions = {}
    expected = "a JSON object with a 'questions' list"
    for n, q in enumerate(json_items(ctx, qfile, "questions.item", expected)):
        if n == 0:
            check_first_record(ctx, qfile, q, ("question_id", "question"), expected + " of {question_id, image_id, question}")
        try:
            questions[int(q["question_id"])] = q
        except (KeyError, TypeError, ValueError) as e:
            ctx.reject(q.get("question_id") if isinstance(q, dict) else None, qfile, q, "missing field" if isinstance(e, KeyError) else "malformed record", str(e))
    subtype = _coco_subtype(ctx, qfile)  # after the questions: a file that is not the format fails above first
    seen = set()
    expected = "a JSON object with an 'annotations' list"
    for n, a in enumerate(json_items(ctx, afile, "annotations.item", expected)):
        if n == 0:
            check_first_record(ctx, afile, a, ("multiple_choice_answer", "answers", "answer_type"),
                               expected + " of {question_id, image_id, answers, multiple_choice_answer, ...}", need="any")

        def convert(a=a):
            qid = int(a["question_id"])
            if qid not in questions:
                raise Reject("no question", f"question_id {qid} is not in {qfile.name}")
            seen.add(qid)
            q = questions[qid]
            if int(q["image_id"]) != int(a["image_id"]):
                raise Reject("malformed record", f"image_id {a['image_id']} differs from the question's {q['image_id']}")
            answers = [str(x["answer"]) for x in a["answers"]]
            image = ctx.image(f"COCO_{subtype}_{int(q['image_id']):012d}.jpg")
            return [ctx.sample("common_vqa", [(q["question"], a["multiple_choice_answer"])], image, qid, afile, split=subtype,
                               extra={"answers": answers, "answer_type": a.get("answer_type"),
                                      "question_type": a.get("question_type")})]
        yield from ctx.record(a.get("question_id") if isinstance(a, dict) else None, afile, a, convert)
    for qid in sorted(set(questions) - seen):
        ctx.reject(qid, qfile, questions[qid], "no annotation", f"question_id {qid} has no annotation in {afile.name}")


@register("gqa",
          files=("questions JSON (<split>_balanced_questions.json, or the <split>_all_questions[_<n>].json shards) ...",),
          images="GQA's images/ folder holding <imageId>.jpg",
          tasks="common_vqa (the short answer; fullAnswer, types and isBalanced in extra; split from the file name)")
def read_gqa(files: list[Path], ctx: Context):
    expected = "a JSON object of GQA questions keyed by question id"
    for path in files:
        m = re.match(r"(train|val|testdev|test|challenge|submission)_", path.name)
        split = m.group(1) if m else None
        for n, (qid, q) in enumerate(json_items(ctx, path, "kv", expected)):
            if n == 0:
                check_first_record(ctx, path, q, {"imageId", "fullAnswer", "semantic", "isBalanced"}, expected, need="any")

            def convert(qid=qid, q=q, path=path, split=split):
                if q.get("answer") is None:
                    raise Reject("no answer", "the question has no answer (GQA's test, challenge and submission files have none)")
                image = ctx.image(f"{q['imageId']}.jpg")
                return [ctx.sample("common_vqa", [(q["question"], q["answer"])], image, qid, path, split=split,
                                   extra={k: q.get(k) for k in ("fullAnswer", "types", "isBalanced")})]
            yield from ctx.record(qid, path, q, convert)


@register("aokvqa",
          files=("A-OKVQA JSON (aokvqa_v1p0_<split>.json)",),
          images="the COCO 2017 root holding train2017/, val2017/, test2017/ (image <split>2017/<image_id:012d>.jpg)",
          tasks="mc_vqa (the question with options A-D, answered by the letter; choices, direct_answers, rationales, "
                "difficult_direct_answer in extra; the test split has no answer and is quarantined)")
def read_aokvqa(files: list[Path], ctx: Context):
    (path,) = files
    expected = "a JSON list of A-OKVQA questions"
    for n, r in enumerate(json_items(ctx, path, "item", expected)):
        if n == 0:
            check_first_record(ctx, path, r, {"choices", "correct_choice_idx", "direct_answers", "rationales"}, expected, need="any")

        def convert(r=r):
            choices, idx = r["choices"], r.get("correct_choice_idx")
            if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) for c in choices):
                raise Reject("malformed record", f"choices {choices!r} are not 4 strings")
            if idx is None:
                raise Reject("no answer", "no correct_choice_idx (A-OKVQA's test split has none)")
            if type(idx) is not int or not 0 <= idx < len(choices):
                raise Reject("answer indexes no choice", f"correct_choice_idx {idx!r} with {len(choices)} choices")
            image = ctx.image(f"{r['split']}2017/{int(r['image_id']):012d}.jpg")
            options = " ".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(choices))
            extra = {k: r.get(k) for k in ("choices", "direct_answers", "rationales", "difficult_direct_answer")}
            return [ctx.sample("mc_vqa", [(f"{r['question']} Options: {options}", "ABCD"[idx])], image, r["question_id"], path,
                               split=r["split"], extra=extra)]
        yield from ctx.record(r.get("question_id") if isinstance(r, dict) else None, path, r, convert)


@register("pope",
          files=(("POPE questions (coco_pope_<random|popular|adversarial>.json, JSON lines; the SEEM-built "
                  "<dataset>_pope_seem_<kind>.json JSON lists are read too)"),),
          images="the folder holding the `image` files (COCO val2014/ for coco_pope_*)",
          tasks="adv_vqa (yes/no object probing; split is the negative-sampling kind from the file name)")
def read_pope(files: list[Path], ctx: Context):
    (path,) = files
    m = re.search(r"_(random|popular|adversarial)$", path.stem)
    split = m.group(1) if m else None
    expected = "POPE questions ({question_id, image, text, label} objects)"
    with open(path, "rb") as f:
        is_list = f.read(1024).lstrip().startswith(b"[")
    records = enumerate(json_items(ctx, path, "item", expected), start=1) if is_list else json_lines(ctx, path, expected)
    where = "item" if is_list else "line"
    for i, (n, r) in enumerate(records):
        if i == 0:
            check_first_record(ctx, path, r, {"text", "label"}, expected, need="any")

        def convert(r=r):
            label = r["label"]
            if label not in ("yes", "no"):
                raise Reject("label not yes/no", f"label {label!r}")
            image = ctx.image(r["image"])
            return [ctx.sample("adv_vqa", [(r["text"], label)], image, r["question_id"], path, split=split)]
        rid = r.get("question_id", f"{where} {n}") if isinstance(r, dict) else f"{where} {n}"
        yield from ctx.record(rid, path, r, convert)


def _llava_turns(conversations) -> list[tuple[str, str]]:
    """(question, answer) pairs of a LLaVA conversation with the <image> token taken out of the
    questions the way LLaVA's preprocess_multimodal does (replace, strip)."""
    if not conversations:
        raise Reject("empty conversation")
    roles = [m["from"] for m in conversations]
    if roles != ["human", "gpt"] * (len(roles) // 2):
        raise Reject("conversation not human/gpt alternating", f"roles {roles}")
    text = [str(m["value"]) for m in conversations]
    return [(q.replace("<image>", "").strip(), a) for q, a in zip(text[::2], text[1::2])]


@register("llava",
          files=("LLaVA conversation JSON (llava_v1_5_mix665k.json or any list of {id, image, conversations})",),
          images="the folder the `image` paths are relative to (LLaVA's playground/data: coco/train2017, gqa/images, "
                 "ocr_vqa/images, textvqa/train_images, vg/VG_100K[_2])",
          tasks="common_vqa (one human/gpt exchange), md (several); records without `image` are kept text-only "
                "(image fields null, extra.text_only)")
def read_llava(files: list[Path], ctx: Context):
    (path,) = files
    expected = "a JSON list of LLaVA conversations ({id, image, conversations})"
    for n, r in enumerate(json_items(ctx, path, "item", expected)):
        if n == 0:
            check_first_record(ctx, path, r, {"conversations"}, expected, need="any")

        def convert(r=r):
            turns = _llava_turns(r["conversations"])
            if "image" in r and not isinstance(r["image"], str):
                raise Reject("malformed record", f"image {r['image']!r} is not one path")
            image = ctx.image(r["image"]) if "image" in r else None
            return [ctx.sample("md" if len(turns) > 1 else "common_vqa", turns, image, r["id"], path,
                               extra=None if image else {"text_only": True})]
        yield from ctx.record(r.get("id") if isinstance(r, dict) else None, path, r, convert)
