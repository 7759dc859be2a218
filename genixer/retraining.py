"""Retraining recipes (the paper's Tab. 5-9): what data each recipe adds to the base recipe, and
the weighted mixture the one training loop draws its batches from.

The base recipe is base_mllm's own: dense captions (the pretraining-like stage, LLaVA's 558K
captions) at `caption_share` of the batches and the collected question/answer data (the
fine-tuning stage) for the rest. A recipe adds generated data to one or both stages:

- `genixer_vqa`: rows with P(Yes) >= lambda join the caption stage, the hard band 0.5-0.7 joins
  the fine-tuning stage (Genixer-915K + 8K in LLaVA-1.5);
- `raw_vqa`: the same numbers of rows, drawn from the unfiltered generations;
- `genixer_rec`: the filtered REC rows join the fine-tuning stage (Genixer-350K in Shikra);
- ablations: a third or two thirds of the stage-1 rows of `genixer_vqa` (Tab. 8), or another
  judge threshold, 0.1 and 0.2 below the preset's (Tab. 9);
- a diagnostic the world allows and the paper could not run: `oracle_vqa`, the generated rows
  the oracle marks correct in the caption stage (what a perfect judge would keep), to tell a weak
  filter or weak generators from a budget too small to show any data effect.

Every recipe trains for the same number of steps, so added data displaces collected data
rather than adding iterations (the paper's equal-iteration protocol). Stage-1 generated rows get
`added_share` of the batches (the paper's pretraining stage was 915K generated vs 558K
captions); the hard band and the REC rows join their stage by plain concatenation unless
`rec_share` is set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

from genixer.evaluation import solver_records
from genixer.filters import HARD_BAND
from genixer.training import weighted_pools


@dataclass(frozen=True)
class Recipe:
    name: str
    added: str | None = None  # "vqa" (stage 1 + hard band), "raw_vqa" or "rec"
    scale: float = 1.0  # share of the stage-1 rows used (data-scale ablation)
    lambda_offset: float = 0.0  # judge threshold relative to the preset's (lambda ablation)
    ablation: bool = False
    what: str = ""


RECIPES = {r.name: r for r in [
    Recipe("baseline", what="collected data only (vanilla LLaVA-1.5 / Shikra)"),
    Recipe("genixer_vqa", "vqa", what="+ genixer_vqa: P(Yes) >= lambda in the caption stage, hard band in fine-tuning"),
    Recipe("genixer_rec", "rec", what="+ genixer_rec in fine-tuning, equal iterations"),
    Recipe("raw_vqa", "raw_vqa", what="as genixer_vqa, same row counts drawn from unfiltered generations"),
    Recipe("vqa_scale_33", "vqa", scale=1 / 3, ablation=True, what="genixer_vqa with a third of its stage-1 rows"),
    Recipe("vqa_scale_67", "vqa", scale=2 / 3, ablation=True, what="genixer_vqa with two thirds of its stage-1 rows"),
    Recipe("vqa_lambda_minus_0.2", "vqa", lambda_offset=-0.2, ablation=True, what="genixer_vqa re-selected at the preset's lambda - 0.2"),
    Recipe("vqa_lambda_minus_0.1", "vqa", lambda_offset=-0.1, ablation=True, what="genixer_vqa re-selected at the preset's lambda - 0.1"),
    Recipe("oracle_vqa", "oracle_vqa", ablation=True,
           what="diagnostic (world only): the generated rows the oracle marks correct, as a perfect judge would keep them"),
]}
MAIN_RECIPES = [r for r in RECIPES if not RECIPES[r].ablation]


class EmptyRecipeError(ValueError):
    """A recipe's generated data set is empty: retraining would silently copy the baseline."""


def added_rows(recipe: Recipe, scored_l: pd.DataFrame | None, genixer_rec: pd.DataFrame | None, judge_lambda: float,
               seed: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(stage-1 rows, stage-2 rows, upstream asset) that `recipe` adds; raises EmptyRecipeError
    naming the upstream asset when there is nothing to add."""
    empty = pd.DataFrame()
    if recipe.added is None:
        return empty, empty, ""
    if recipe.added == "rec":
        if genixer_rec is None or not len(genixer_rec):
            raise EmptyRecipeError(f"recipe {recipe.name!r}: the upstream asset `genixer_rec` holds no rows; "
                                   "materialise genixer_rec (or loosen its CLIP threshold) before retraining")
        return empty, genixer_rec, "genixer_rec"
    ok = scored_l[scored_l.quarantine_reason.isna() & scored_l.judge_p_yes.notna()] if scored_l is not None else pd.DataFrame()
    if recipe.added == "oracle_vqa":  # needs an `oracle_correct` column (the world's verdict on each row)
        stage1 = ok[ok.oracle_correct.astype(bool)] if len(ok) else ok
        if not len(stage1):
            raise EmptyRecipeError(f"recipe {recipe.name!r}: the upstream asset `scored_generations_l` holds no row the oracle marks correct")
        return stage1, ok.iloc[:0], "scored_generations_l (oracle-correct rows)"
    lam = round(judge_lambda + recipe.lambda_offset, 3)
    lo, hi = HARD_BAND
    stage1 = ok[ok.judge_p_yes >= lam]
    stage2 = ok[(ok.judge_p_yes >= lo) & (ok.judge_p_yes < hi) & (ok.judge_p_yes < lam)]
    upstream = "genixer_vqa" if not recipe.lambda_offset else f"scored_generations_l (at lambda = {lam})"
    if not len(stage1) and not len(stage2):
        raise EmptyRecipeError(f"recipe {recipe.name!r}: the upstream asset `{upstream}` holds no row with P(Yes) >= {lam} "
                               f"and none in the hard band ({len(ok)} scored rows); lower the judge threshold or generate more data")
    if recipe.scale < 1 and len(stage1):
        stage1 = stage1.sample(n=max(1, round(recipe.scale * len(stage1))), random_state=seed)
    if recipe.added == "raw_vqa":  # the same counts, unfiltered: drawn from every parsed row
        rng = random.Random(seed)
        idx = list(range(len(ok)))
        rng.shuffle(idx)
        stage1, stage2 = ok.iloc[idx[:len(stage1)]], ok.iloc[idx[len(stage1):len(stage1) + len(stage2)]]
        upstream = "scored_generations_l"
    return stage1, stage2, upstream


def mixture(captions: list[dict], collected: list[dict], stage1: list[dict], stage2: list[dict], caption_share: float,
            added_share: float, rec_share: float | None = None) -> tuple[list[dict], list[float], dict]:
    """Records and per-record sampling weights of a recipe, and the share of batches per pool.

    Stage 1 (captions + stage-1 generated rows): `caption_share` of the batches, of which the
    generated rows take `added_share` / `caption_share` (so `added_share` of all batches).
    Stage 2 (collected + stage-2 generated rows): the rest, by concatenation, or with the
    generated rows at `rec_share` of all batches when set."""
    gen1 = added_share if stage1 else 0.0
    cap = max(caption_share - gen1, 0.0) if captions else 0.0  # generated rows displace captions first
    rest = 1.0 - cap - gen1  # the fine-tuning stage
    if stage2 and rec_share is not None:
        gen2, col = rec_share, rest - rec_share
    else:
        n = len(collected) + len(stage2)
        gen2, col = rest * len(stage2) / n, rest * len(collected) / n
    if min(cap, gen1, col, gen2) < 0:
        raise ValueError(f"shares do not fit: captions {cap}, stage 1 {gen1}, collected {col}, stage 2 {gen2}")
    return weighted_pools([("captions", captions, cap), ("generated_stage1", stage1, gen1), ("collected", collected, col),
                           ("generated_stage2", stage2, gen2)])


def recipe_records(samples: pd.DataFrame) -> list[dict]:
    """Generated rows as solver records (one per turn), tagged so learning curves show them apart."""
    recs = solver_records(samples.to_dict("records"))
    return [{**r, "task": f"generated:{r['task']}"} for r in recs]
