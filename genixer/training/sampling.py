"""How records are drawn: mixtures of named pools as per-record weights (:func:`weighted_pools`), the weights
checked and normalised (:func:`sampling_probs`), batches grouped by length (:func:`grouped_batch`), and the paired
batches of retraining arms (:class:`PairedPlan`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PairedPlan:
    """The batches of one retraining arm, drawn so that the arms of a seed share their base batches (a paired design).

    The records are the base mix, indices ``[0, len(base_probs))`` drawn with replacement at ``base_probs`` as the
    loop draws, then the arm's ``n_added`` rows, read in shuffled passes. Of the plan's ``base_steps + added_steps``
    micro-batches the added ones are spread evenly; base batch k comes from the RNG (seed, 0, k) alone and added
    pass e from (seed, 1, e). So two arms of one seed, whatever they add, read the same base batches in the same
    order, and an arm that adds nothing reads exactly those. Stateless: a resumed run draws what an uninterrupted one
    would have."""

    base_probs: tuple[float, ...]
    n_added: int
    base_steps: int
    added_steps: int
    seed: int

    @classmethod
    def build(cls, base_weights: list[float] | None, n_base: int, n_added: int, base_steps: int, batch_size: int,
              epochs: float, seed: int, multiple: int = 1) -> "PairedPlan":
        """A plan whose added rows are read ``epochs`` times at ``batch_size`` (ceil(epochs x rows / batch) batches,
        rounded up to a ``multiple``: the micro-batches of whole optimizer steps)."""
        probs = sampling_probs(base_weights, n_base)
        probs = np.full(n_base, 1 / n_base) if probs is None else probs
        added = math.ceil(epochs * n_added / batch_size) if n_added else 0
        added = -(-added // multiple) * multiple
        return cls(tuple(float(p) for p in probs), n_added, base_steps, added, seed)

    @property
    def batches(self) -> int:
        return self.base_steps + self.added_steps

    def added_before(self, m: int) -> int:
        """How many of micro-batches 0..m-1 are added ones (spread evenly over the plan)."""
        return m * self.added_steps // self.batches

    def is_added(self, m: int) -> bool:
        return self.added_before(m + 1) > self.added_before(m)

    def batch(self, m: int, size: int) -> list[int]:
        """Record indices of micro-batch ``m`` (``size`` records: the global batch of every process)."""
        n_base = len(self.base_probs)
        if not self.is_added(m):
            k = m - self.added_before(m)
            return np.random.default_rng([self.seed, 0, k]).choice(n_base, size=size, replace=True, p=self.base_probs).tolist()
        start, out, passes = self.added_before(m) * size, [], {}
        for pos in range(start, start + size):
            epoch, within = divmod(pos, self.n_added)
            if epoch not in passes:
                passes[epoch] = np.random.default_rng([self.seed, 1, epoch]).permutation(self.n_added)
            out.append(n_base + int(passes[epoch][within]))
        return out
