"""The shapes world: the embedded default, with full ground truth."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from genixer.tasks import TASKS
from genixer.world.annotate import pope_question, annotate, annotate_compositional
from genixer.world.oracle import check
from genixer.world.scene import Scene, WorldConfig, WorldConfigError, render, sample_scene

SPLITS = ("collect", "corpus", "bench", "heldout", "held_back")  # held_back: annotations only the ceiling arm reads

__all__ = ["SPLITS", "Scene", "WorldConfig", "WorldConfigError", "build_split", "annotate_images", "annotate_gqa", "annotate_pope", "check", "scene_seed"]


def scene_seed(base_seed: int, split: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{base_seed}/{split}/{index}".encode()).digest()[:8], "little")


def build_split(split: str, n: int, root: Path, cfg: WorldConfig, base_seed: int = 0) -> list[dict]:
    """Render `n` scenes of `split` to PNG + JSON under root/split/; one row per image."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    cfg.validate()
    out_dir = Path(root) / split
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image_id = f"{split}_{i:06d}"
        scene = sample_scene(image_id, scene_seed(base_seed, split, i), split, cfg)
        path = out_dir / f"{image_id}.png"
        render(scene).save(path, format="PNG")
        scene_json = scene.to_json()
        (out_dir / f"{image_id}.json").write_text(scene_json)
        rows.append({
            "image_id": image_id,
            "split": split,
            "image_path": str(path),
            "width": scene.width,
            "height": scene.height,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "background": scene.background,
            "n_objects": len(scene.objects),
            "scene": scene_json,
        })
    return rows


def annotate_images(images: list[dict], tasks=TASKS, per_image: int = 1, seed: int = 0) -> list[dict]:
    """Annotated samples of each task for each image row (the world's 'human labels')."""
    samples = []
    for img in images:
        scene = Scene.from_json(img["scene"])
        for task in tasks:
            rng = random.Random(f"{seed}/{img['image_id']}/{task}")
            for k in range(per_image):
                s = annotate(task, scene, rng)
                if s is None:
                    continue
                samples.append({
                    "sample_id": f"{img['image_id']}:{task}:{k}",
                    "image_id": img["image_id"],
                    "image_path": img["image_path"],
                    "width": img["width"],
                    "height": img["height"],
                    **s,
                    "split": img["split"],
                })
    return samples


def annotate_gqa(images: list[dict], seed: int = 0) -> list[dict]:
    """One GQA-like compositional question (relation or count) per image row."""
    samples = []
    for img in images:
        s = annotate_compositional(Scene.from_json(img["scene"]), random.Random(f"{seed}/{img['image_id']}/gqa"))
        if s is not None:
            samples.append({"sample_id": f"{img['image_id']}:gqa:0", "image_id": img["image_id"], "image_path": img["image_path"],
                            "width": img["width"], "height": img["height"], **s, "split": img["split"]})
    return samples


POPE_SPLITS = ("random", "popular", "adversarial")


def annotate_pope(images: list[dict], seed: int = 0) -> list[dict]:
    """POPE built as POPE is: per image, one question about an object that is there and, for each
    split, one about an absent object (random, most frequent, or co-occurring), so every split is
    50% "yes". The positive question is shared by the three splits (its answer does not depend on
    the split); an image that lacks a negative of some split is left out, keeping the balance."""
    samples = []
    for img in images:
        scene, rng = Scene.from_json(img["scene"]), random.Random(f"{seed}/{img['image_id']}/pope")
        try:
            made = [pope_question(scene, rng, sub) for sub in ("positive", *POPE_SPLITS)]
        except IndexError:  # rng.choice over no absent object of that kind
            continue
        for q, a, _, _, sub in made:
            samples.append({"sample_id": f"{img['image_id']}:pope_{sub}:0", "image_id": img["image_id"], "image_path": img["image_path"],
                            "width": img["width"], "height": img["height"], "task": "adv_vqa", "turns": [{"question": q, "answer": a}],
                            "boxes": [], "points": [], "source": f"shapes_world:pope_{sub}", "split": img["split"]})
    return samples
