"""Retraining recipes (the paper's Tab. 5-9): what data each recipe adds to the base recipe, and
the batches the one training loop reads (:func:`arm_plan`: a paired design).

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
- what the world allows and the paper could not run: `oracle_vqa`, the generated rows the oracle
  marks correct (what a perfect judge would keep);
- the ceiling, `annotated_vqa`: as many annotated rows of the general tasks as `oracle_vqa` adds
  (as `genixer_vqa` without an oracle), from the held-back annotations no model trained on (what
  real annotation of that much data would give).

The ladder baseline < raw < judge-filtered < oracle-correct <= annotated reads as the paper's
argument, and each filter's gain is measured as a share of the perfect judge's.

A paired design (genixer.training.PairedPlan): every arm of a seed reads the same base-mix batches
(captions at `caption_share`, the collected data for the rest) in the same order for `base_steps`,
and its added rows on top, `generated_epochs` passes spread evenly among them (so a recipe with
three times the rows trains three times the added steps, as in the paper). The seed's noise is
then shared by baseline and arm and cancels in their difference. Held equal across recipes: the
base batches, the passes over added rows, the initial model, the seeds and the optimiser.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pandas as pd

from genixer.evaluation import solver_records
from genixer.tasks import GENERAL_TASKS
from genixer.training import PairedPlan, weighted_pools


@dataclass(frozen=True)
class Recipe:
    name: str
    added: str | None = None  # "vqa" (lambda rows + hard band), "raw_vqa", "rec", "oracle_vqa" or "annotated_vqa"
    scale: float = 1.0  # share of the lambda rows used (data-scale ablation)
    lambda_offset: float = 0.0  # judge threshold relative to the applied one (lambda ablation)
    ablation: bool = False
    seed_offset: int = 0  # added to the training seeds (the A/A control trains other seeds)
    what: str = ""

    @property
    def needs_world(self) -> bool:
        """Only a run with the shapes world can build it (its rows are chosen by the oracle)."""
        return self.added == "oracle_vqa"

    @property
    def needs_held_back(self) -> bool:
        """Only a run with held-back annotations (held_back_datasets) can build it."""
        return self.added == "annotated_vqa"


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
    Recipe("oracle_vqa", "oracle_vqa",
           what="+ the generated rows the oracle marks correct, as a perfect judge would keep them (world only)"),
    Recipe("annotated_vqa", "annotated_vqa",
           what="the ceiling: + as many held-back annotated rows of the general tasks as oracle_vqa adds (genixer_vqa without an oracle)"),
]}
MAIN_RECIPES = [r for r in RECIPES if not RECIPES[r].ablation]


class EmptyRecipeError(ValueError):
    """A recipe's generated data set is empty: retraining would silently copy the baseline."""


def added_rows(recipe: Recipe, scored_l: pd.DataFrame | None, genixer_vqa: pd.DataFrame | None, genixer_rec: pd.DataFrame | None,
               judge_lambda: float, seed: int, held_back: pd.DataFrame | None = None,
               n_annotated: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(stage-1 rows, stage-2 rows, upstream asset) that `recipe` adds; raises EmptyRecipeError
    naming the upstream asset when there is nothing to add. `judge_lambda` is the threshold
    genixer_vqa applied; `genixer_vqa`'s `hard_band` rows are the fixed hard-band sample; the
    ceiling arm draws `n_annotated` rows of the general tasks from `held_back` (all it has when
    fewer: the metadata says how many it added)."""
    empty = pd.DataFrame()
    if recipe.added is None:
        return empty, empty, ""
    if recipe.added == "annotated_vqa":
        pool = held_back[held_back.task.isin(GENERAL_TASKS) & held_back.image_path.notna()] if held_back is not None else empty
        if not len(pool) or not n_annotated:
            raise EmptyRecipeError(f"recipe {recipe.name!r}: the upstream asset `held_back_datasets` holds {len(pool)} rows of the "
                                   f"general tasks ({n_annotated} to match); set the preset's n_held_back (the world) or its "
                                   "`sources` (published files held out of every other training set)")
        return pool.sample(n=min(n_annotated, len(pool)), random_state=seed), empty, "held_back_datasets"
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


def arm_plan(captions: list[dict], collected: list[dict], added: list[dict], caption_share: float, base_steps: int,
             batch_size: int, epochs: float, seed: int, grad_accum: int = 1) -> tuple[list[dict], PairedPlan, dict[str, float]]:
    """An arm's records (the base mix, then its added rows), its batch plan, and each pool's share of the batches.

    The base mix (captions at `caption_share`, collected data for the rest) fills `base_steps` batches, the
    same for every arm of `seed`; the added rows add `epochs` passes on top, so the steps grow with their number. The
    plan counts micro-batches: `base_steps` optimizer steps of `grad_accum` each, and whole steps of added rows."""
    cap = caption_share if captions else 0.0
    base, weights, _ = weighted_pools([("captions", captions, cap), ("collected", collected, 1 - cap)])
    plan = PairedPlan.build(weights, len(base), len(added), base_steps * grad_accum, batch_size, epochs, seed, multiple=grad_accum)
    part = plan.base_steps / plan.batches
    shares = {"captions": round(cap * part, 4), "collected": round((1 - cap) * part, 4), "added": round(1 - part, 4)}
    return base + added, plan, shares


def base_batches_digest(records: list[dict], plan: PairedPlan, batch_size: int) -> str:
    """A fingerprint of the base-mix batches `plan` reads, in order (the record ids of each): equal for every arm of
    a seed, so a reader can check the pairing from the retrained_models table."""
    h = hashlib.sha256()
    for m in range(plan.batches):
        if not plan.is_added(m):
            h.update(("|".join(records[i]["record_id"] for i in plan.batch(m, batch_size)) + "\n").encode())
    return h.hexdigest()[:16]


def recipe_records(samples: pd.DataFrame) -> list[dict]:
    """Generated rows as solver records (one per turn), tagged so learning curves show them apart."""
    recs = solver_records(samples.to_dict("records"))
    return [{**r, "task": f"generated:{r['task']}"} for r in recs]
