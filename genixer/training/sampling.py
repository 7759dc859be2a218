"""How records are drawn: mixtures of named pools as per-record weights (:func:`weighted_pools`), the weights
checked and normalised (:func:`sampling_probs`), and batches grouped by length (:func:`grouped_batch`)."""

from __future__ import annotations

import math

import numpy as np

from genixer.training.config import TrainConfig


def weighted_pools(pools: list[tuple[str, list[dict], float]]) -> tuple[list[dict], list[float] | None, dict[str, float]]:
    """Records and per-record sampling weights for a mixture of named pools, each drawn at its share
    of the batches (shares of empty pools are reported as 0); the shares must sum to 1. One pool
    alone gets no weights (uniform draws, as for plain records)."""
    shares = {name: (float(share) if recs else 0.0) for name, recs, share in pools}
    if any(v < 0 for v in shares.values()) or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"pool shares must be non-negative and sum to 1 over the non-empty pools, got {shares}")
    live = [(recs, shares[name]) for name, recs, _ in pools if shares[name] > 0]
    rounded = {k: round(v, 4) for k, v in shares.items()}
    if len(live) == 1:
        return live[0][0], None, rounded
    records = [r for recs, _ in live for r in recs]
    weights = [share / len(recs) for recs, share in live for _ in recs]
    return records, weights, rounded


def sampling_probs(sample_weights, n_records: int) -> np.ndarray | None:
    """Per-record sampling probabilities (the weights normalised), or None (uniform draws) without weights."""
    probs = None
    if sample_weights is not None:
        probs = np.asarray(sample_weights, dtype=np.float64)
        if probs.shape != (n_records,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError("sample_weights must be one non-negative weight per record, not all zero")
        probs = probs / probs.sum()
    return probs


def grouped_batch(cfg: TrainConfig, probs, lengths: np.ndarray, m: int, n_proc: int) -> list[int]:
    """The global micro-batch number `m` when batches are grouped by length: each run of `group_by_length`
    micro-batches is drawn at once from its own RNG (seed, group number), sorted by length, cut into batches and
    taken in a random order. Nothing is carried between steps, so a resumed run draws what an uninterrupted one
    would have."""
    k, size = cfg.group_by_length, cfg.batch_size * n_proc
    g = np.random.default_rng([cfg.seed, m // k])
    idx = g.choice(len(lengths), size=size * k, replace=True, p=probs)
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    j = int(g.permutation(k)[m % k])
    return idx[j * size:(j + 1) * size].tolist()
