"""Shared set-up of the benchmarks: a small world and models at the demo preset's sizes. The benchmarks run on the
shapes world, rendered and annotated here (the one bench module that imports it), and read its REC questions the
world's way (REC_READING, task_of)."""

import resource
import tempfile
import time
from pathlib import Path

import torch

from genixer.finetune import vocabulary_texts
from genixer.presets import get_preset
from genixer.templates import GENERAL_INSTRUCTIONS
from genixer.world import WorldConfig, annotate_images, build_split
from genixer.world.grammar import PHRASINGS
from genixer.world.oracle import task_of  # noqa: F401  (bench.run's generated rows: their task, the world's reading)
from genixer.world.regions import WORLD_REC_READING as REC_READING  # noqa: F401  (bench.run's region pairs)


def world(n: int = 64):
    root = Path(tempfile.mkdtemp(prefix="genixer_bench_"))
    p = get_preset("demo")
    images = build_split("collect", n, root, WorldConfig())
    samples = annotate_images(images)
    vocab = vocabulary_texts(samples, list(GENERAL_INSTRUCTIONS), {k: list(v) for k, v in PHRASINGS.items()})
    return p, root, images, samples, vocab


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def matmul_flops(n: int = 1024, reps: int = 20) -> float:
    """The machine's fp32 matmul FLOP/s, measured now (the ceiling training is compared with)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t
