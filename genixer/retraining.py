"""Retraining recipes (the paper's Tab. 5-9): what data each recipe adds to the base recipe, and
the weighted mixture the one training loop draws its batches from.

The base recipe is base_mllm's own: dense captions (the pretraining-like stage, LLaVA's 558K
captions) at `caption_share` of its batches and the collected question/answer data (the
fine-tuning stage) for the rest, for `steps` steps. A recipe adds generated data to one or both
stages:

- `genixer_vqa`: the rows with P(Yes) >= lambda join the caption stage; the fixed hard-band
  sample (0.5 <= P(Yes) < 0.7, about 1% as 8K beside 915K) joins fine-tuning;
- `raw_vqa`: the same numbers of rows, drawn from the unfiltered generations;
- `genixer_rec`: the filtered REC rows join fine-tuning (Genixer-350K in Shikra);
- ablations: a third or two thirds of genixer_vqa's lambda rows (Tab. 8), or the rows at a judge
  threshold 0.1 / 0.2 below the applied one (Tab. 9), each with the same hard-band sample;
- `baseline_aa`: the baseline again under other seeds, an A/A control that measures how often
  the noise test calls two identical recipes different;
- a diagnostic the world allows and the paper could not run: `oracle_vqa`, the generated rows
  the oracle marks correct in the caption stage (what a perfect judge would keep).

As in the paper, more generated data means more training on it: every recipe trains the base
mix for the same steps, and its generated rows add `generated_epochs` passes over them on top
(so a recipe with three times the rows trains three times the generated steps). Held equal
across recipes: the steps on captions and collected data, the passes over generated rows, the
initial model, the seeds and the optimiser.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pandas as pd

from genixer.evaluation import solver_records
from genixer.training import weighted_pools


@dataclass(frozen=True)
class Recipe:
    name: str
    added: str | None = None  # "vqa" (lambda rows + hard band), "raw_vqa", "rec" or "oracle_vqa"
    scale: float = 1.0  # share of the lambda rows used (data-scale ablation)
    lambda_offset: float = 0.0  # judge threshold relative to the applied one (lambda ablation)
    ablation: bool = False
    seed_offset: int = 0  # added to the training seeds (the A/A control trains other seeds)
    what: str = ""

    @property
    def needs_world(self) -> bool:
        """Only a run with the shapes world can build it (its rows are chosen by the oracle)."""
        return self.added == "oracle_vqa"


RECIPES = {r.name: r for r in [
    Recipe("baseline", what="collected data only (vanilla LLaVA-1.5 / Shikra)"),
    Recipe("baseline_aa", seed_offset=1000, what="A/A control: the baseline under other seeds (the noise test's false alarms)"),
    Recipe("genixer_vqa", "vqa", what="+ genixer_vqa: P(Yes) >= lambda in the caption stage, the hard-band sample in fine-tuning"),
    Recipe("genixer_rec", "rec", what="+ genixer_rec in fine-tuning"),
    Recipe("raw_vqa", "raw_vqa", what="as genixer_vqa, same row counts drawn from unfiltered generations"),
    Recipe("vqa_scale_33", "vqa", scale=1 / 3, ablation=True, what="genixer_vqa with a third of its lambda rows"),
    Recipe("vqa_scale_67", "vqa", scale=2 / 3, ablation=True, what="genixer_vqa with two thirds of its lambda rows"),
    Recipe("vqa_lambda_minus_0.2", "vqa", lambda_offset=-0.2, ablation=True, what="the rows at the applied lambda - 0.2, same hard band"),
    Recipe("vqa_lambda_minus_0.1", "vqa", lambda_offset=-0.1, ablation=True, what="the rows at the applied lambda - 0.1, same hard band"),
    Recipe("oracle_vqa", "oracle_vqa", ablation=True,
           what="diagnostic (world only): the generated rows the oracle marks correct, as a perfect judge would keep them"),
]}
MAIN_RECIPES = [r for r in RECIPES if not RECIPES[r].ablation]


class EmptyRecipeError(ValueError):
    """A recipe's generated data set is empty: retraining would silently copy the baseline."""


def added_rows(recipe: Recipe, scored_l: pd.DataFrame | None, genixer_vqa: pd.DataFrame | None, genixer_rec: pd.DataFrame | None,
               judge_lambda: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(stage-1 rows, stage-2 rows, upstream asset) that `recipe` adds; raises EmptyRecipeError
    naming the upstream asset when there is nothing to add. `judge_lambda` is the threshold
    genixer_vqa applied; `genixer_vqa`'s `hard_band` rows are the fixed hard-band sample."""
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
    hard = genixer_vqa[genixer_vqa.hard_band.astype(bool)] if genixer_vqa is not None and len(genixer_vqa) else ok.iloc[:0]
    stage1 = ok[(ok.judge_p_yes >= lam) & ~ok.sample_id.isin(hard.sample_id)] if len(ok) else ok
    stage2 = ok[ok.sample_id.isin(hard.sample_id)] if len(ok) else ok
    upstream = "genixer_vqa" if not recipe.lambda_offset else f"scored_generations_l (at lambda = {lam}) + genixer_vqa's hard band"
    if not len(stage1) and not len(stage2):
        raise EmptyRecipeError(f"recipe {recipe.name!r}: the upstream asset `{upstream}` holds no row with P(Yes) >= {lam} "
                               f"and no hard-band row ({len(ok)} scored rows); lower the judge threshold or generate more data")
    if recipe.scale < 1 and len(stage1):
        stage1 = stage1.sample(n=max(1, round(recipe.scale * len(stage1))), random_state=seed)
    if recipe.added == "raw_vqa":  # the same counts, unfiltered: drawn from every parsed row
        rng = random.Random(seed)
        idx = list(range(len(ok)))
        rng.shuffle(idx)
        stage1, stage2 = ok.iloc[idx[:len(stage1)]], ok.iloc[idx[len(stage1):len(stage1) + len(stage2)]]
        upstream = "scored_generations_l"
    return stage1, stage2, upstream


def generated_steps(n_rows: int, batch_size: int, epochs: float) -> int:
    """Steps added for `epochs` passes over `n_rows` generated rows."""
    return math.ceil(epochs * n_rows / batch_size) if n_rows else 0


def mixture(captions: list[dict], collected: list[dict], stage1: list[dict], stage2: list[dict], caption_share: float,
            base_steps: int, batch_size: int, epochs: float = 1.0) -> tuple[list[dict], list[float], dict, int]:
    """Records, per-record sampling weights, the share of draws per pool, and the steps to train.

    The base mix (captions at `caption_share`, collected data for the rest) keeps its `base_steps`
    of batches; the generated rows add `epochs` passes on top, so they take epochs x rows of the
    draws and the step count grows with their number."""
    n_gen = len(stage1) + len(stage2)
    steps = base_steps + generated_steps(n_gen, batch_size, epochs)
    gen = min(epochs * n_gen / (steps * batch_size), 1.0) if n_gen else 0.0
    g1, g2 = (gen * len(stage1) / n_gen, gen * len(stage2) / n_gen) if n_gen else (0.0, 0.0)
    cap = caption_share * (1 - gen) if captions else 0.0
    records, weights, shares = weighted_pools([("captions", captions, cap), ("generated_stage1", stage1, g1),
                                               ("collected", collected, 1 - gen - cap), ("generated_stage2", stage2, g2)])
    return records, weights, shares, steps


def recipe_records(samples: pd.DataFrame) -> list[dict]:
    """Generated rows as solver records (one per turn), tagged so learning curves show them apart."""
    recs = solver_records(samples.to_dict("records"))
    return [{**r, "task": f"generated:{r['task']}"} for r in recs]
