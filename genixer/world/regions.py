"""The world's part of the region CLIP's inputs (:mod:`genixer.region_clip`, which does not import the world):

- :data:`WORLD_REC_READING`: how the world's REC and REG questions are read (its ``locate`` phrasings, its REG
  ``describe`` patterns, its descriptions as the words of a ``{ref}`` slot and of a paraphrase);
- :func:`scene_candidates`: the objects of each image as (box, expression), from its scene graph, for the
  region CLIP's swap negatives.
"""

from __future__ import annotations

import re

from genixer.region_clip.phrasings import RecReading, as_rows
from genixer.world.grammar import COMPILED, PHRASINGS, SLOT_RE, compile_phrasing, unique_desc
from genixer.world.scene import Scene

WORLD_REC_READING = RecReading(
    locate=tuple(PHRASINGS["locate"]),
    describe=tuple(COMPILED["describe"]),
    ref_anywhere=re.compile(r"\b" + SLOT_RE["ref"] + r"\b", re.IGNORECASE),
    compile=compile_phrasing,
)


def scene_candidates(rows) -> dict[str, list[tuple[list[float], str]]]:
    """image_path -> [(box, expression)]: every object of each image row (of :func:`genixer.world.build_split`, with
    its ``scene``; dicts or a DataFrame) that has a unique description, with its shortest one, in the scene's order."""
    out: dict[str, list[tuple[list[float], str]]] = {}
    for r in as_rows(rows):
        if "scene" not in r:
            raise ValueError(f"scene_candidates: image row {r.get('image_id', r.get('image_path'))!r} has no 'scene'")
        scene = Scene.from_json(r["scene"])
        for o in scene.objects:
            d = unique_desc(o, scene)
            if d is not None:
                out.setdefault(r["image_path"], []).append(([float(v) for v in o.box], d.ref()))
    return out
