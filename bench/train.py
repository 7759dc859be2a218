"""make bench-train: train a generator at the demo preset's size for a fixed number of steps;
print tokens/s, peak resident memory, and achieved FLOP/s as a share of measured matmul FLOP/s."""

import argparse
import tempfile
from dataclasses import replace

from bench.common import matmul_flops, peak_rss_gb, world
from genixer.evaluation import solver_records
from genixer.models.embedded import build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer.training import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--mixed-precision", default="no", choices=["no", "bf16"], help="TrainConfig.mixed_precision (bf16: autocast)")
    ap.add_argument("--group-by-length", type=int, default=0, help="TrainConfig.group_by_length (0: random batches)")
    args = ap.parse_args()
    p, root, images, samples, vocab = world(128)
    model, processor = build_embedded_mllm(build_tokenizer(vocab), p.mllm)
    vision = sum(x.numel() for n, x in model.named_parameters() if "vision_tower" in n)
    text = sum(x.numel() for x in model.parameters()) - vision
    cfg = replace(p.base_train, steps=args.steps, checkpoint_every=0, warmup_steps=5, mixed_precision=args.mixed_precision,
                  group_by_length=args.group_by_length)
    res = train(model, processor, solver_records(samples), cfg, tempfile.mkdtemp())
    patches = (p.mllm.image_size // p.mllm.patch_size) ** 2 + 1
    images_seen = args.steps * cfg.batch_size * cfg.grad_accum
    # forward + backward ~ 6 FLOPs per parameter per token (vision tower on patches, the rest on all tokens)
    flops = 6 * (text * res.tokens_seen + vision * patches * images_seen)
    achieved = flops / res.wall_s
    peak = matmul_flops()
    print(f"model: {res.n_params / 1e6:.2f}M parameters ({vision / 1e6:.2f}M vision), batch {cfg.batch_size}, {args.steps} steps, "
          f"mixed precision {cfg.mixed_precision}, group_by_length {cfg.group_by_length}, final loss {res.final_loss:.3f}")
    print(f"wall {res.wall_s:.1f}s  tokens/s {res.tokens_per_s:,.0f}  steps/s {args.steps / res.wall_s:.2f}")
    print(f"peak RSS {peak_rss_gb():.2f} GB")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s of measured fp32 matmul {peak / 1e9:.1f} GFLOP/s = {achieved / peak:.1%}")


if __name__ == "__main__":
    main()
