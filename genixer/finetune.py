"""Step (iii), empowering MLLMs: the base problem solver and its fine-tunes into generators."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from genixer.evaluation import solver_records
from genixer.models.checkpoint import load_model
from genixer.models.embedded import EmbeddedSize, build_embedded_mllm, vision_tower_from_open_clip
from genixer.models.tokenizer import build_tokenizer
from genixer.patch_labels import PatchLabels, load_tower_into, pretrain_tower
from genixer.tasks import TASKS
from genixer.templates import CAPTION_PROMPT, specific_instruction
from genixer.region_clip import RegionClipSize, load_region_clip, train_region_clip
from genixer.training import LoraSpec, PairedPlan, TrainConfig, TrainResult, train, weighted_pools


def vocabulary_texts(samples: list[dict], general: list[str], phrasings: dict[str, list[str]]) -> list[str]:
    """Every text the models may read or write: the tokenizer's vocabulary is built from it."""
    texts = [t["question"] + " " + t["answer"] for s in samples for t in s["turns"]]
    texts += list(general) + [specific_instruction(t) for t in TASKS] + [p for v in phrasings.values() for p in v]
    texts += ["Question: Answer:", CAPTION_PROMPT, "a an ; . Yes No yes no"]
    return texts


VISION_OBJECTIVES = ("patch_labels", "contrastive")


def vision_pretrain(images: list[dict], size: EmbeddedSize, cfg: TrainConfig, out_dir: str | Path, objective: str = "patch_labels",
                    val_images: list[dict] | None = None, captions: list[dict] | None = None,
                    patch_labels: PatchLabels | None = None) -> tuple[TrainResult, dict[str, float]]:
    """The stand-in for LLaVA's pretrained vision encoder: a tower of exactly the LLaVA tower's shape,
    trained on the annotated images before the solver, to initialise it.

    - ``patch_labels`` (default, :mod:`genixer.patch_labels`): every patch learns the colour, shape,
      size and box of the object covering it (`patch_labels`: the data source's labeller, e.g. the
      world's from its scene graphs); returns held-out per-patch accuracies.
    - ``contrastive``: an open_clip ViT trained on whole images against their dense captions (CLIP's
      objective, `captions`: the data source's ``captions`` of `images`; images without one are left
      out); returns no scores.
    """
    if objective == "patch_labels":
        return pretrain_tower(size, images, cfg, out_dir, val_images, labels=patch_labels)
    if objective != "contrastive":
        raise ValueError(f"unknown vision pre-stage objective {objective!r}; expected one of {VISION_OBJECTIVES}")
    if size.vision_act != "gelu" or size.vision_intermediate != 4 * size.vision_hidden:
        raise ValueError(f"the contrastive vision pre-stage needs vision_act='gelu' and vision_intermediate = 4 x vision_hidden "
                         f"(open_clip's ViT), got {size.vision_act!r} and {size.vision_intermediate}")
    clip_size = RegionClipSize(image_size=size.image_size, patch_size=size.patch_size, vision_width=size.vision_hidden,
                               vision_layers=size.vision_layers, vision_heads=size.vision_heads, text_width=size.vision_hidden,
                               text_layers=2, text_heads=size.vision_heads, context_length=48, embed_dim=size.vision_hidden)
    if captions is None:
        raise ValueError("the contrastive vision pre-stage trains on dense captions: pass the data source's captions of the images")
    by_id = {img["image_id"]: img for img in images}
    pairs = [{"image_path": c["image_path"], "box": [0.0, 0.0, float(img["width"]), float(img["height"])], "expression": c["target"],
              "sample_id": c["record_id"], "image_id": img["image_id"], "task": "caption"}
             for c in captions if (img := by_id.get(c["image_id"])) is not None]
    return train_region_clip(pairs, clip_size, cfg, out_dir), {}


def init_vision_tower(llava, path: str | Path) -> None:
    """Load a vision pre-stage's tower into `llava`: a transformers ``CLIPVisionModel`` directory
    (``config.json``, the patch-label pre-stage) or an open_clip one (the contrastive pre-stage)."""
    path = Path(path)
    if (path / "config.json").is_file():
        load_tower_into(llava, path)
    else:
        vision_tower_from_open_clip(llava, load_region_clip(path)[0])


def train_base_mllm(samples: list[dict], captions: list[dict], caption_share: float, vocab: list[str],
                    size: EmbeddedSize, cfg: TrainConfig, out_dir: str | Path, vision_init: str | Path | None = None) -> TrainResult:
    """The embedded MLLM trained as a problem solver on every collected task (question ->
    answer), mixed with dense captions at `caption_share` of the batches; its vision tower
    starts from the `vision_init` pre-stage tower when given (see :func:`init_vision_tower`)."""
    tokenizer = build_tokenizer(vocab)
    model, processor = build_embedded_mllm(tokenizer, size)
    if vision_init is not None:
        init_vision_tower(model, vision_init)
    cap = caption_share if captions else 0.0
    records, weights, _ = weighted_pools([("solver", solver_records(samples), 1 - cap), ("captions", captions, cap)])
    return train(model, processor, records, cfg, out_dir, sample_weights=weights)


def generator_mixture(records: list[dict], solver: list[dict], captions: list[dict], solver_share: float,
                      caption_share: float) -> tuple[list[dict], list[float] | None, dict[str, float]]:
    """A generator fine-tune's batches: its instruction records, plus a replay of the solver's own
    training data (question -> answer records and dense captions) at the given shares of the batches,
    so that the fine-tune keeps reading the image while it learns to write data (measured on the demo:
    README "Generator fine-tunes")."""
    solver_share = solver_share if solver else 0.0
    caption_share = caption_share if captions else 0.0
    solver, captions = ([{**r, "task": f"replay:{r['task']}"} for r in recs] for recs in (solver, captions))  # own learning curves
    return weighted_pools([("instructions", records, 1 - solver_share - caption_share), ("replay_solver", solver, solver_share),
                           ("replay_captions", captions, caption_share)])


def finetune(model_dir: str | Path, records: list[dict], cfg: TrainConfig, out_dir: str | Path,
             sample_weights: list[float] | None = None, device: str = "cpu", dtype: str = "float32",
             auto_lora: LoraSpec | None = None, lora_above_params: int | None = None, plan: PairedPlan | None = None) -> TrainResult:
    """Continue training a saved model on new records (the generators' fine-tunes, the retraining
    recipes); `sample_weights` set each record's chance of being drawn, or `plan` gives every batch. The start model is loaded on
    `device` in `dtype`; with `auto_lora`, a start model of over `lora_above_params` parameters trains
    those LoRA adapters when `cfg` sets none (a 7B model is not fully fine-tuned by default)."""
    if device == "auto":  # under `accelerate launch` each rank loads onto its own device, not all onto cuda:0
        from accelerate import PartialState

        device = str(PartialState().device)
    model, processor = load_model(model_dir, device=device, dtype=dtype)
    if cfg.lora is None and auto_lora is not None and lora_above_params is not None \
            and sum(p.numel() for p in model.parameters()) > lora_above_params:
        cfg = replace(cfg, lora=auto_lora)
    return train(model, processor, records, cfg, out_dir, sample_weights=sample_weights, plan=plan)

