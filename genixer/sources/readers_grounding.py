"""Readers of the grounding-task formats: RefCOCO(+/g), Visual Genome, Visual7W, PointQA Local, Shikra GPT4Gen.

Boxes are read into pixel xyxy of the source image through genixer.boxes and written into text
the project's one way (box_to_text / boxes_to_text / point_to_text). Where a release groups records
by image (VG regions, Visual7W and LocalQA QA pairs), a wrong image (missing, unsafe path, size)
quarantines the image's group once, and each record in it is quarantined on its own otherwise.
"""

from __future__ import annotations

import random
import re
from functools import partial
from pathlib import Path
from typing import Any

from genixer.boxes import box_to_text, boxes_to_text, inside, point_to_text, to_xyxy
from genixer.sources import register
from genixer.sources.common import (
    REC_QUESTION,
    REG_QUESTION,
    Context,
    ImageRef,
    Reject,
    SourceFormatError,
    UnsafePickleError,
    check_first_record,
    json_items,
    json_lines,
    load_plain_pickle,
)

VG_DIRS = ("VG_100K", "VG_100K_2")  # Visual Genome ships its images in two folders


# -- shared ----------------------------------------------------------------------------------------
def _text(d: dict, key: str) -> str:
    v = d[key]
    if not isinstance(v, str):
        raise TypeError(f"{key} is a {type(v).__name__}, not text")
    return v


def _list(d: dict, key: str) -> list:
    v = d[key]
    if not isinstance(v, list):
        raise TypeError(f"{key} is a {type(v).__name__}, not a list")
    return v


def _xywh(x: Any, y: Any, w: Any, h: Any) -> tuple[float, float, float, float]:
    return to_xyxy((x, y, w, h), "xywh", 0, 0)  # xywh needs no image size


def _rec_reg(ctx: Context, image: ImageRef, box, expression: str, record_id: str, file: Path,
             split: str | None = None, extra: dict | None = None) -> list[dict]:
    """The REC and the REG sample of one referring expression and its box (pixel xyxy)."""
    text, expression = box_to_text(box, image.width, image.height), expression.strip()
    return [ctx.sample("rec", [(REC_QUESTION.format(ref=expression), text)], image, record_id, file, boxes=[box],
                       split=split, extra=extra),
            ctx.sample("reg", [(REG_QUESTION.format(box=text), expression)], image, record_id, file, boxes=[box],
                       split=split, extra=extra)]


# -- RefCOCO / RefCOCO+ / RefCOCOg (lichengunc/refer) ---------------------------------------------
def _load_refs(ctx: Context, path: Path) -> list[dict]:
    expected = "the refs pickle refs(<splitBy>).p as its first file"
    try:
        refs = load_plain_pickle(path)
    except UnsafePickleError as e:
        raise SourceFormatError(f"{ctx.fmt} expects {expected}; {path.name} was refused: {e}") from e
    except SourceFormatError as e:
        raise SourceFormatError(f"{ctx.fmt} expects {expected}: {e}") from e
    if not isinstance(refs, list) or not refs:
        raise SourceFormatError(f"{ctx.fmt} expects a list of refs in {path.name}; found "
                                f"{'no records (an empty list)' if isinstance(refs, list) else 'a pickled ' + type(refs).__name__}")
    check_first_record(ctx, path, refs[0], ("ref_id", "ann_id", "image_id", "sentences"), "a list of refs {ref_id, ann_id, image_id, sentences, ...}")
    return refs


@register("refcoco",
          files=("refs pickle refs(<splitBy>).p (refs(unc).p, refs(google).p, refs(umd).p)",
                 "instances.json from the same folder"),
          images="the COCO train2014/ folder holding COCO_train2014_<id:012d>.jpg",
          tasks="rec and reg, one each per sentence of a ref (RefCOCO, RefCOCO+, RefCOCOg as lichengunc/refer ships them)")
def read_refcoco(files: list[Path], ctx: Context):
    refs_file, inst_file = files
    refs = _load_refs(ctx, refs_file)
    want_images = {r["image_id"] for r in refs if isinstance(r, dict) and isinstance(r.get("image_id"), int)}
    want_anns = {r["ann_id"] for r in refs if isinstance(r, dict) and isinstance(r.get("ann_id"), int)}
    expected = "a COCO instances JSON object with 'images' and 'annotations' lists"
    images = {i["id"]: i for i in json_items(ctx, inst_file, "images.item", expected)
              if isinstance(i, dict) and i.get("id") in want_images}
    anns = {a["id"]: a for a in json_items(ctx, inst_file, "annotations.item", expected)
            if isinstance(a, dict) and a.get("id") in want_anns}
    split_by = re.fullmatch(r"refs\((.+)\)\.p", refs_file.name)
    for ref in refs:
        def convert(ref=ref):
            ann, info = anns.get(ref["ann_id"]), images.get(ref["image_id"])
            if ann is None:
                raise Reject("no annotation", f"ann_id {ref['ann_id']} is not in {inst_file.name}")
            if info is None:
                raise Reject("no image record", f"image_id {ref['image_id']} is not in {inst_file.name}")
            if ann["image_id"] != ref["image_id"]:
                raise Reject("malformed record", f"ann {ref['ann_id']} is on image {ann['image_id']}, the ref on {ref['image_id']}")
            # refer.py opens the instances image's file_name (the ref's own file_name ends in _<ann_id>)
            image = ctx.image(_text(info, "file_name"), size=(info["width"], info["height"]))
            box = _xywh(*ann["bbox"])
            split = _text(ref, "split")
            out = []
            for s in _list(ref, "sentences"):
                extra = {"ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "sent_id": s["sent_id"], "image_id": ref["image_id"],
                         "category_id": ref.get("category_id"), "raw": s.get("raw"), "dataset": refs_file.parent.name,
                         "split_by": split_by.group(1) if split_by else None}
                out += _rec_reg(ctx, image, box, _text(s, "sent"), f"{ref['ref_id']}/{s['sent_id']}", refs_file, split, extra)
            if not out:
                raise Reject("no sentences", f"ref {ref['ref_id']} has no sentences")
            return out
        yield from ctx.record(ref.get("ref_id") if isinstance(ref, dict) else None, refs_file, ref, convert)


# -- Visual Genome region descriptions ------------------------------------------------------------
def _either(d: dict, key: str, old: str) -> Any:
    """A field the VG releases name two ways (as the official driver reads them)."""
    return d[key] if key in d else d[old]


@register("visual_genome",
          files=("region_descriptions.json (a list of {id, regions})",
                 "image_data.json (a list of {image_id, url, width, height, coco_id, flickr_id})"),
          images="the Visual Genome folder holding VG_100K/ and VG_100K_2/ (an image is looked for in both)",
          tasks="rec and reg, one each per region description")
def read_visual_genome(files: list[Path], ctx: Context):
    regions_file, images_file = files
    meta: dict[int, dict] = {}
    expected = "image_data.json (a list of {image_id, url, width, height, coco_id, flickr_id})"
    for n, im in enumerate(json_items(ctx, images_file, "item", expected)):
        if n == 0:
            check_first_record(ctx, images_file, im, ("url", "width", "height"), expected)
        try:
            meta[int(_either(im, "image_id", "id"))] = im
        except (KeyError, TypeError, ValueError) as e:
            ctx.reject(None, images_file, im, "malformed record", f"no usable image id: {e!r}")
    expected = "region_descriptions.json (a list of {id, regions})"
    for n, entry in enumerate(json_items(ctx, regions_file, "item", expected)):
        if n == 0:
            check_first_record(ctx, regions_file, entry, ("regions",), expected)

        def convert(entry=entry):
            image_id = int(_either(entry, "id", "image_id"))
            if image_id not in meta:
                raise Reject("no image record", f"image {image_id} is not in {images_file.name}")
            im, regions = meta[image_id], _list(entry, "regions")
            image = ctx.image(f"{image_id}.jpg", VG_DIRS, size=(im["width"], im["height"]))
            extra = {"image_id": image_id, "coco_id": im.get("coco_id"), "flickr_id": im.get("flickr_id")}
            out = []
            for r in regions:
                def region(r=r):
                    rid = _either(r, "region_id", "id")
                    return _rec_reg(ctx, image, _xywh(r["x"], r["y"], r["width"], r["height"]), _text(r, "phrase"), rid,
                                    regions_file, extra=extra)
                out += ctx.record(r.get("region_id", r.get("id")) if isinstance(r, dict) else None, regions_file, r, region)
            return out
        image_id = entry.get("id", entry.get("image_id")) if isinstance(entry, dict) else None
        yield from ctx.record(f"image {image_id}", regions_file, entry, convert)


# -- Visual7W pointing ----------------------------------------------------------------------------
@register("visual7w",
          files=("dataset_v7w_pointing.json",),
          images="the Visual7W images/ folder holding v7w_<image_id>.jpg",
          tasks="pointqa: a 'which' question listing its 4 candidate boxes (answer and multiple_choices in an order "
                "shuffled by random.Random(qa_id)); the answer is the right box")
def read_visual7w(files: list[Path], ctx: Context):
    (path,) = files
    expected = "the Visual7W pointing JSON (an object with 'images' and 'boxes' lists)"
    boxes = {b["box_id"]: b for b in json_items(ctx, path, "boxes.item", expected)
             if isinstance(b, dict) and isinstance(b.get("box_id"), int)}
    for img in json_items(ctx, path, "images.item", expected):
        def convert(img=img):
            qas, split, image_id = _list(img, "qa_pairs"), _text(img, "split"), img["image_id"]
            image = ctx.image(_text(img, "filename"))
            out = []
            for qa in qas:
                out += ctx.record(qa.get("qa_id") if isinstance(qa, dict) else None, path, qa,
                                  lambda qa=qa: [_v7w_sample(ctx, path, image, split, image_id, qa, boxes)])
            return out
        yield from ctx.record(f"image {img.get('image_id') if isinstance(img, dict) else None}", path, img, convert)


def _v7w_sample(ctx: Context, path: Path, image: ImageRef, split: str, image_id: Any, qa: dict, boxes: dict) -> dict:
    qa_id, answer = int(qa["qa_id"]), qa["answer"]
    order = [answer, *_list(qa, "multiple_choices")]
    unknown = [b for b in order if not isinstance(b, int) or b not in boxes]
    if unknown:
        raise Reject("unknown box", f"box ids {unknown} are not in the boxes list")
    random.Random(qa_id).shuffle(order)
    px = {b: _xywh(boxes[b]["x"], boxes[b]["y"], boxes[b]["width"], boxes[b]["height"]) for b in order}
    w, h = image.width, image.height
    question = _text(qa, "question") + " Candidates: " + " ".join(box_to_text(px[b], w, h) for b in order)
    extra = {"candidates": order, "answer_box_id": answer, "answer_index": order.index(answer),
             "names": [boxes[b].get("name") for b in order], "type": qa.get("type"), "image_id": image_id}
    return ctx.sample("pointqa", [(question, box_to_text(px[answer], w, h))], image, qa_id, path,
                      boxes=[px[b] for b in order] + [px[answer]], split=split, extra=extra)


# -- PointQA Local (princetonvisualai/pointingqa, Datasets/LocalQA) --------------------------------
@register("pointqa_local",
          files=("localqa_dataset.json (an object {Visual Genome image id: [QA pairs]})",),
          images="the Visual Genome folder holding VG_100K/ and VG_100K_2/ (an image is looked for in both)",
          tasks="pointqa: one question per pointed object (as the release flattens it), the point written after the "
                "question; the object's box in extra.object_box")
def read_pointqa_local(files: list[Path], ctx: Context):
    (path,) = files
    expected = "the LocalQA JSON (an object mapping Visual Genome image ids to lists of {question, all_ans, all_objs, points})"
    for n, (key, qas) in enumerate(json_items(ctx, path, "kv", expected)):
        if n == 0:
            check_first_record(ctx, path, qas[0] if isinstance(qas, list) and qas else qas, ("question", "all_objs", "points"), expected)

        def convert(key=key, qas=qas):
            if not isinstance(qas, list):
                raise TypeError(f"the QA pairs of image {key} are a {type(qas).__name__}, not a list")
            image = ctx.image(f"{int(key)}.jpg", VG_DIRS)
            out = []
            for i, qa in enumerate(qas):
                out += ctx.record(f"{key}/{i}", path, qa, lambda qa=qa, i=i: _localqa_samples(ctx, path, image, key, i, qa))
            return out
        yield from ctx.record(f"image {key}", path, qas, convert)


def _localqa_samples(ctx: Context, path: Path, image: ImageRef, key: str, i: int, qa: dict) -> list[dict]:
    question, points, objs = _text(qa, "question"), _list(qa, "points"), _list(qa, "all_objs")
    if len(points) != len(objs):
        raise Reject("malformed record", f"{len(points)} points but {len(objs)} objects")
    w, h = image.width, image.height
    out = []
    for j, (p, obj) in enumerate(zip(points, objs)):
        point = (float(p["x"]), float(p["y"]))
        box = _xywh(obj["x"], obj["y"], obj["w"], obj["h"])
        if not inside(box, w, h):
            raise Reject("invalid sample", f"object box {list(box)} not inside the {w}x{h} image")
        extra = {"object_box": list(box), "object_id": obj.get("object_id"), "names": obj.get("names"),
                 "all_ans": qa.get("all_ans"), "image_id": key}
        out.append(ctx.sample("pointqa", [(f"{question} {point_to_text(point, w, h)}", _text(p, "ans"))], image,
                              f"{key}/{i}/{j}", path, points=[point], extra=extra))
    return out


# -- Shikra GPT4Gen (shikras/shikra, mllm/dataset/single_image_dataset/gpt_gen.py) -----------------
GPT4GEN_FILE = re.compile(r"GPT4GEN_(RD_)?BoxCoT_(\w+)\.jsonl")
PHRASE_START, PHRASE_END = "<ph_st>", "<ph_ed>"  # Shikra's marks around a grounded phrase


def _fill_boxes(text: str, seq: list | None, boxes: list, image: ImageRef) -> tuple[str, list]:
    """Shikra's markup -> text: <ph_st> goes, and each <ph_ed> becomes the bracket of the boxes its
    boxes_seq entry names (box indices into the record's boxes); also the boxes in that order."""
    seq = seq or []
    parts = text.replace(PHRASE_START, "").split(PHRASE_END)
    if len(parts) - 1 != len(seq):
        raise Reject("malformed record", f"{len(parts) - 1} {PHRASE_END} marks but {len(seq)} boxes_seq entries in {text!r}")
    out, mentioned = parts[0], []
    for group, part in zip(seq, parts[1:]):
        if not group or any(not isinstance(k, int) or not 0 <= k < len(boxes) for k in group):
            raise Reject("malformed record", f"boxes_seq entry {group!r} does not name boxes 0..{len(boxes) - 1}")
        group_boxes = [boxes[k] for k in group]
        mentioned += group_boxes
        out += boxes_to_text(group_boxes, image.width, image.height) + part
    return out, mentioned


@register("shikra_gpt4gen",
          files=("GPT4GEN_BoxCoT_<split>.jsonl or GPT4GEN_RD_BoxCoT_<split>.jsonl ...",),
          images="the Flickr30k flickr30k-images/ folder (img_path is relative to it)",
          tasks="qca from GPT4GEN_BoxCoT_*, rd from GPT4GEN_RD_BoxCoT_* (the file name decides): the question and "
                "cot_with_ans with their boxes written where <ph_ed> marks them; the short answer in extra.answer")
def read_shikra_gpt4gen(files: list[Path], ctx: Context):
    kinds = []
    for f in files:
        m = GPT4GEN_FILE.fullmatch(f.name)
        if not m:
            raise SourceFormatError(f"{ctx.fmt} expects files named GPT4GEN_BoxCoT_<split>.jsonl (qca) or "
                                    f"GPT4GEN_RD_BoxCoT_<split>.jsonl (rd); found {f.name}")
        kinds.append(("rd" if m.group(1) else "qca", m.group(2)))
    expected = "Shikra GPT4Gen JSON lines {img_path, boxes, question, cot_with_ans, answer, question_boxes_seq, answer_boxes_seq}"
    for f, (task, split) in zip(files, kinds):
        for k, (n, raw) in enumerate(json_lines(ctx, f, expected)):
            if k == 0:
                check_first_record(ctx, f, raw, ("img_path", "boxes", "question", "cot_with_ans"), expected)
            rid = f"{f.stem}:{n}"
            yield from ctx.record(rid, f, raw, partial(_gpt4gen_sample, ctx, f, task, split, rid, raw))


def _gpt4gen_sample(ctx: Context, f: Path, task: str, split: str, rid: str, raw: dict) -> list[dict]:
    image = ctx.image(_text(raw, "img_path"))
    boxes = [to_xyxy(b, "xyxy", 0, 0) for b in _list(raw, "boxes")]
    question, q_boxes = _fill_boxes(_text(raw, "question"), raw["question_boxes_seq"], boxes, image)
    answer, a_boxes = _fill_boxes(_text(raw, "cot_with_ans"), raw["answer_boxes_seq"], boxes, image)
    return [ctx.sample(task, [(question, answer)], image, rid, f, boxes=q_boxes + a_boxes, split=split,
                       extra={"answer": raw.get("answer")})]
