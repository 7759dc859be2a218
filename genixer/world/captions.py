"""The world's dense captions, written from its scene graphs (the analogue of LLaVA's caption pretraining)."""

from __future__ import annotations

from genixer.templates import CAPTION_PROMPT
from genixer.world.grammar import Desc
from genixer.world.scene import Scene


def caption_records(images: list[dict]) -> list[dict]:
    """Dense captions (every object with its size, colour and shape, top to bottom, left to
    right): the analogue of LLaVA's caption pretraining stage, written from the annotation."""
    out = []
    for img in images:
        scene = Scene.from_json(img["scene"])
        objs = sorted(scene.objects, key=lambda o: (o.box[1] // 16, o.box[0]))
        target = "; ".join(Desc(o.size, o.colour, o.shape).thing() for o in objs) + "."
        out.append({"record_id": f"{img['image_id']}:caption", "task": "caption", "image_id": img["image_id"],
                    "image_path": img["image_path"], "prompt": CAPTION_PROMPT, "target": target})
    return out
