"""The one box-format module: conversions between conventions, and boxes in model text.

Canonical form inside the project is pixel xyxy in the original image. Text uses the
Shikra/Genixer convention: ``[x0,y0,x1,y1]`` normalised by the original width and height,
three decimals; several boxes are ``;``-separated inside one bracket; points are ``[x,y]``.
"""

from __future__ import annotations

import re
from typing import Sequence

Box = tuple[float, float, float, float]

CONVENTIONS = ("xyxy", "xywh", "norm", "norm_pad", "int1000")


class BoxFormatError(ValueError):
    """Box text or values that cannot be a box."""


def to_xyxy(box: Sequence[float], convention: str, width: float, height: float) -> Box:
    """Any convention -> pixel xyxy.

    xyxy: pixel corners; xywh: pixel corner + size (COCO); norm: [0,1] by width/height
    (Genixer); norm_pad: [0,1] after padding to a centred square (Shikra's expand2square);
    int1000: integers 0..1000 by width/height (Qwen-VL).
    """
    a, b, c, d = (float(v) for v in box)
    if convention == "xyxy":
        return (a, b, c, d)
    if convention == "xywh":
        return (a, b, a + c, b + d)
    if convention == "norm":
        return (a * width, b * height, c * width, d * height)
    if convention == "int1000":
        return (a / 1000 * width, b / 1000 * height, c / 1000 * width, d / 1000 * height)
    if convention == "norm_pad":
        side = max(width, height)
        ox, oy = (side - width) / 2, (side - height) / 2
        return (a * side - ox, b * side - oy, c * side - ox, d * side - oy)
    raise ValueError(f"unknown box convention {convention!r}; expected one of {CONVENTIONS}")


def from_xyxy(box: Sequence[float], convention: str, width: float, height: float) -> Box:
    """Pixel xyxy -> any convention (inverse of :func:`to_xyxy`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if convention == "xyxy":
        return (x0, y0, x1, y1)
    if convention == "xywh":
        return (x0, y0, x1 - x0, y1 - y0)
    if convention == "norm":
        return (x0 / width, y0 / height, x1 / width, y1 / height)
    if convention == "int1000":
        return tuple(round(v) for v in (x0 / width * 1000, y0 / height * 1000, x1 / width * 1000, y1 / height * 1000))
    if convention == "norm_pad":
        side = max(width, height)
        ox, oy = (side - width) / 2, (side - height) / 2
        return ((x0 + ox) / side, (y0 + oy) / side, (x1 + ox) / side, (y1 + oy) / side)
    raise ValueError(f"unknown box convention {convention!r}; expected one of {CONVENTIONS}")


def convert(box: Sequence[float], src: str, dst: str, width: float, height: float) -> Box:
    return from_xyxy(to_xyxy(box, src, width, height), dst, width, height)


def _num(v: float) -> str:
    return f"{min(max(v, 0.0), 1.0):.3f}"


def box_to_text(box: Sequence[float], width: float, height: float) -> str:
    """Pixel xyxy -> ``[x0,y0,x1,y1]`` normalised, 3 decimals."""
    return "[" + ",".join(_num(v) for v in from_xyxy(box, "norm", width, height)) + "]"


def boxes_to_text(boxes: Sequence[Sequence[float]], width: float, height: float) -> str:
    """Several pixel boxes -> one bracket, ``;``-separated."""
    parts = [",".join(_num(v) for v in from_xyxy(b, "norm", width, height)) for b in boxes]
    return "[" + ";".join(parts) + "]"


def point_to_text(point: Sequence[float], width: float, height: float) -> str:
    return f"[{_num(point[0] / width)},{_num(point[1] / height)}]"


_NUM = r"\d+(?:\.\d+)?"
_BOX = rf"{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}"
# A bracket of one or more boxes, or a point: what box-bearing text may contain.
BOX_GROUP_RE = re.compile(rf"\[\s*{_BOX}(?:\s*;\s*{_BOX})*\s*\]")
POINT_RE = re.compile(rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*\]")


def parse_boxes(text: str, width: float, height: float) -> list[Box]:
    """``[x0,y0,x1,y1;...]`` (normalised) -> pixel xyxy boxes; raises BoxFormatError."""
    m = BOX_GROUP_RE.fullmatch(text.strip())
    if not m:
        raise BoxFormatError(f"not a box group: {text!r}")
    out = []
    for part in text.strip()[1:-1].split(";"):
        vals = [float(v) for v in part.split(",")]
        if any(v < 0 or v > 1 for v in vals):
            raise BoxFormatError(f"coordinate outside [0,1] in {text!r}")
        if vals[2] <= vals[0] or vals[3] <= vals[1]:
            raise BoxFormatError(f"empty or inverted box (x1<=x0 or y1<=y0) in {text!r}")
        out.append(to_xyxy(vals, "norm", width, height))
    return out


def parse_point(text: str, width: float, height: float) -> tuple[float, float]:
    m = POINT_RE.fullmatch(text.strip())
    if not m:
        raise BoxFormatError(f"not a point: {text!r}")
    x, y = (float(v) for v in text.strip()[1:-1].split(","))
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise BoxFormatError(f"point outside [0,1]: {text!r}")
    return (x * width, y * height)


def find_box_groups(text: str) -> list[str]:
    """Every box bracket in a sentence, in order of appearance."""
    return [m.group(0) for m in BOX_GROUP_RE.finditer(text)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside(box: Sequence[float], width: float, height: float) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def answer_box(text: str, width: float, height: float) -> Box | None:
    """The box of a REC answer, read one way by the filter and the oracle: the whole answer is
    one box group (a final "." allowed). Malformed text raises BoxFormatError; a well-formed
    group of other than one box gives None."""
    boxes = parse_boxes(text.strip().rstrip("."), width, height)
    return boxes[0] if len(boxes) == 1 else None
