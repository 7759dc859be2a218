"""The training loop on a tiny LLaVA, for tests/test_training_distributed.py: run under
``accelerate launch`` (every rank writes what it saw to ``<REPORT>.rank<i>.json``) or called in-process
through :func:`run`.

    _ddp_train_script.py DATA_ROOT OUT_DIR REPORT '{"batch_size": 2, "steps": 8, ...}'   (TrainConfig fields,
                                                                            and "varied_targets": true)

Every rank builds the same model (seeded) and the same records (images written once by the test into
DATA_ROOT). The targets are "Answer: <colour>" (all of the same token count) or, with ``varied_targets``,
that followed by 0 to 10 more words (4 to 14 target tokens with EOS), so the processes' halves of a batch
hold different numbers of target tokens.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from PIL import Image

if __name__ == "__main__":  # run as a file: the repo root holds genixer/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genixer import training
from genixer.training import checkpoint as training_checkpoint
from genixer.models.embedded import EmbeddedSize, build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "black": (0, 0, 0), "white": (255, 255, 255), "purple": (128, 0, 128), "orange": (255, 140, 0)}
PROMPTS = ["What colour is the image?", "Which colour fills the picture?", "Name the colour."]
FILLER = "it is the one colour that fills the whole square picture".split()
SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=64, text_layers=2, text_heads=4, text_intermediate=128)


def write_images(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, rgb) in enumerate(COLOURS.items()):
        Image.new("RGB", (48, 32) if i % 2 else (32, 32), rgb).save(root / f"{name}.png")


def make_records(root: Path, varied_targets: bool = False) -> list[dict]:
    """24 records: 8 colours x 3 prompts, two tasks (for the per-group curves); with `varied_targets` the
    answers have 0 to 10 words more than "Answer: <colour>"."""
    def target(i: int, j: int, name: str) -> str:
        return " ".join([f"Answer: {name}"] + (FILLER[: (3 * i + 4 * j) % 11] if varied_targets else []))

    return [{"image_path": str(root / f"{name}.png"), "prompt": p, "target": target(i, j, name), "task": f"t{j % 2}"}
            for i, name in enumerate(COLOURS) for j, p in enumerate(PROMPTS)]


def build(records: list[dict]):
    tok = build_tokenizer([r["prompt"] + " " + r["target"] for r in records])
    torch.manual_seed(0)
    return build_embedded_mllm(tok, SIZE)


class RecordingAdapter(training.SFTAdapter):
    """SFT, plus a log of the indices each micro-batch drew and of the final saves made by this process."""

    def __init__(self, processor, model):
        super().__init__(processor, model)
        self.draws: list[list[int]] = []
        self.final_saves = 0

    def batch(self, records, idx):
        self.draws.append(list(idx))
        return super().batch(records, idx)

    def save(self, model, out_dir):
        self.final_saves += 1
        super().save(model, out_dir)


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def run(root: Path, out_dir: Path, **cfg) -> dict:
    """Train on this process (or rank); what it drew, saved and ended with."""
    records = make_records(root, cfg.pop("varied_targets", False))
    model, processor = build(records)
    adapter = RecordingAdapter(processor, model)
    checkpoint_writes: list[int] = []
    write = training_checkpoint._write_checkpoint

    def recording_write(ckpt, model, optimizer, scheduler, step, rng, result, *rest):
        checkpoint_writes.append(step)
        write(ckpt, model, optimizer, scheduler, step, rng, result, *rest)

    training_checkpoint._write_checkpoint = recording_write
    try:
        config = training.TrainConfig(**{"lr": 1e-3, "warmup_steps": 1, "seed": 0, "curve_every": 4, **cfg})
        res = training.train(model, processor, records, config, out_dir, adapter=adapter)
    finally:
        training_checkpoint._write_checkpoint = write
    return {"losses": res.losses, "steps": res.steps, "tokens_seen": res.tokens_seen, "draws": adapter.draws,
            "group_curves": res.group_curves, "checkpoint_writes": checkpoint_writes,
            "final_saves": adapter.final_saves, "weights": weights_digest(model),
            "target_lengths": adapter.target_lengths.tolist()}


def main(argv: list[str]) -> None:
    from accelerate import PartialState

    torch.set_num_threads(1)
    root, out_dir, report, cfg = Path(argv[0]), Path(argv[1]), argv[2], json.loads(argv[3])
    out = run(root, out_dir, **cfg)
    state = PartialState()
    out.update(rank=state.process_index, num_processes=state.num_processes, backend=state.backend)
    Path(f"{report}.rank{state.process_index}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
