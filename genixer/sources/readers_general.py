"""Readers of the general-task formats: VQAv2, GQA, A-OKVQA, POPE, LLaVA conversations."""

from __future__ import annotations

import re
from pathlib import Path

import ijson

from genixer.sources import register
from genixer.sources.common import Context, Reject, json_items


def _coco_subtype(ctx: Context, path: Path) -> str:
    """`data_subtype` of a VQAv2 file (e.g. val2014): the field if the file has it, else the file name."""
    with open(path, "rb") as f:
        value = next(ijson.items(f, "data_subtype"), None)
    if value:
        return str(value)
    m = re.search(r"(train|val|test)(20\d\d)", path.name)
    if not m:
        raise ValueError(f"{path.name}: no data_subtype field and none in the file name")
    return m.group(0)


@register("vqav2",
          files=("questions JSON (v2_OpenEnded_mscoco_<subtype>_questions.json)",
                 "annotations JSON (v2_mscoco_<subtype>_annotations.json)"),
          images="the COCO folder of the subtype (val2014/ or train2014/) holding COCO_<subtype>_<id:012d>.jpg",
          tasks="common_vqa (all 10 answers kept in extra.answers)")
def read_vqav2(files: list[Path], ctx: Context):
    qfile, afile = files
    subtype = _coco_subtype(ctx, qfile)
    questions = {}
    for q in json_items(ctx, qfile, "questions.item", "a JSON object with a 'questions' list"):
        try:
            questions[int(q["question_id"])] = q
        except (KeyError, TypeError, ValueError) as e:
            ctx.reject(q.get("question_id") if isinstance(q, dict) else None, qfile, q, "missing field" if isinstance(e, KeyError) else "malformed record", str(e))
    seen = set()
    for a in json_items(ctx, afile, "annotations.item", "a JSON object with an 'annotations' list"):
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
