"""What the asset modules share, under public names (no asset module imports another: an asset names its
upstream by key, and what two stages need lives here or in partitions.py):

- what the Dagster UI shows of an asset without opening a file (md_* helpers, table_meta, sample_preview);
- the run's data source (`data_source`, genixer.datasource.choose: the world's or the collected data's), chosen
  once from what was collected: captions, the judge's negatives, the REC reading, a solver's evaluation, the blind
  prior and the oracle (None without the world) are asked of it;
- the run context of the model stages (`run_context`: the preset and the data source), a training run's metadata
  (`train_metadata`), where the base model and the generators are (`base_path`, `generator_path`), the fine-tune of
  a role (`finetune_role`), the question phrasings in use; `GPU`, the model steps' pool, kinds and pod GPU request;
- the judge's gate (read by judge_mllm, scored_generations_l and the gate's check), the export file names, the
  retrained models' directories;
- the pieces every asset check uses (guard / aim results, the partitions a check reads, finite weights)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genixer import finetune as gen
from genixer import judge
from genixer.datasource import WORLD_SOURCE, DataSource
from genixer.evaluation import solver_records
from genixer.plots import curves_png, smooth
from genixer.schema import read_samples
from genixer_assets.k8s import GPU  # noqa: F401  (the model steps' pool, kinds and pod GPU request: `**GPU` on every model asset)
from genixer_assets.partitions import partition_keys
from resources import GenixerSettings, MLLMBackend


def md_table(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False))


def md_counts(df: pd.DataFrame, *by: str) -> dg.MetadataValue:
    counts = df.groupby(list(by)).size().rename("rows").reset_index()
    return dg.MetadataValue.md(counts.to_markdown(index=False))


def md_png(png: bytes, alt: str = "preview") -> dg.MetadataValue:
    """The figure at its own size: the Dagster UI shows it behind [Show Markdown], in a dialog."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


# dagster-webserver renders a markdown metadata value in the asset's metadata table when it is shorter than this
# (ui-core MetadataEntry: `expandSmallValues && mdStr.length < 1000`), else only behind [Show Markdown].
UI_INLINE_MD_CHARS = 1000


def md_thumbnail(png: bytes, alt: str = "preview") -> dg.MetadataValue:
    """A thumbnail short enough for the UI to render in the metadata table itself (genixer.preview.thumbnail)."""
    from genixer.preview import thumbnail

    frame = f"![{alt}](data:image/webp;base64,)"
    data, mime = thumbnail(png, UI_INLINE_MD_CHARS - 1 - len(frame))
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def md_figure(key: str, png: bytes, alt: str = "preview") -> dict[str, dg.MetadataValue]:
    """A figure as two metadata entries: `<key> (thumbnail)`, seen at a glance in the metadata table, then `<key>`, the
    figure itself behind [Show Markdown]."""
    return {f"{key} (thumbnail)": md_thumbnail(png, alt), key: md_png(png, alt)}


def table_meta(path) -> dict:
    """``dagster/row_count`` and ``dagster/column_schema`` of a parquet table, from its footer (no data read):
    the UI shows them on every table asset."""
    f = pq.ParquetFile(path)
    schema = dg.TableSchema(columns=[dg.TableColumn(name=field.name, type=str(field.type)) for field in f.schema_arrow])
    return {"dagster/row_count": f.metadata.num_rows, "dagster/column_schema": schema}


def turns_text(turns) -> str:
    return " / ".join(f"Q: {t['question']} A: {t['answer']}" for t in turns)


def sample_preview(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    view = df.assign(turns=df["turns"].map(turns_text))[["sample_id", "task", "turns"]]
    return md_table(view, n)


# ---- the data source: chosen once, from what was collected --------------------------------------

def from_world(settings, name: str = "collected_datasets") -> bool:
    """Whether a sample table's rows came from the shapes world: any row's `source` starts with
    ``shapes_world`` (the world annotates a whole table or none of it; the published readers write
    ``<format>:<file>``). Reads the `source` column only."""
    path = settings.table_path(name)
    if not path.exists():
        raise dg.Failure(f"{name} has not been materialised: {path} is missing")
    source = pq.read_table(path, columns=["source"]).column("source")
    return bool(len(source)) and bool(pc.any(pc.fill_null(pc.starts_with(source, WORLD_SOURCE), False)).as_py())


def unbuildable(settings: GenixerSettings, recipe, world: bool) -> str | None:
    """Why a retraining recipe (genixer.retraining.Recipe) cannot be built in this run (`world`: whether it has the
    shapes world), or None: the oracle arm needs the world, the ceiling arm held-back annotations."""
    if recipe.needs_world and not world:
        return "no world: its oracle picks the rows"
    if recipe.needs_held_back:
        path = settings.table_path("held_back_datasets")
        if not path.exists() or not pq.read_metadata(path).num_rows:
            return "no held-back annotations (held_back_datasets is empty)"
    return None


def data_source(settings: GenixerSettings) -> DataSource:
    """THE data source of this run (genixer.datasource.choose): the shapes world's when `collected_datasets` was
    annotated from it (its scenes, its oracle, read from `world_scenes`), else the collected data's (published files:
    captions from their region descriptions, negatives wrong by construction, answers checked against the collected
    ones, no oracle). Whatever an asset needs from its data beyond the samples is asked of it; nothing downstream of
    collection forks on the world."""
    from genixer.datasource import choose
    from genixer.datasource import from_world as collected_from_world

    path = settings.table_path("collected_datasets")
    if not path.exists():
        raise dg.Failure(f"collected_datasets has not been materialised: {path} is missing")
    collected = read_samples(path)
    world = None
    if collected_from_world(collected):
        if not settings.table_path("world_scenes").exists():
            raise dg.Failure("collected_datasets came from the shapes world, but world_scenes has not been materialised: "
                             f"{settings.table_path('world_scenes')} is missing")
        world = settings.read_table("world_scenes")
    templates = settings.path("tables", "instruction_templates.json")
    phrasings = json.loads(templates.read_text())["phrasings"] if templates.exists() else None
    return choose(collected, world, phrasings, settings.get_preset().val_images)


def benchmark_rows(settings) -> tuple[pd.DataFrame, bool]:
    """The `benchmark_sets` samples that belong to a benchmark, each with its `benchmarks` list, and
    whether they are published benchmarks (True) or the world's (False). The world's membership
    needs its scenes (object counts split RefCOCO testA/testB); a published row's benchmark comes
    from its source, task and split (genixer.published_benchmarks.benchmark_of); rows of none (training
    splits, REG rows) and rows without an image are left out."""
    from genixer.world_benchmarks import benchmark_samples
    from genixer.published_benchmarks import benchmark_of

    bench = read_samples(settings.table_path("benchmark_sets"))
    if from_world(settings, "benchmark_sets"):
        world = settings.read_table("world_scenes")
        return benchmark_samples(bench, dict(zip(world.image_id, world.n_objects))), False
    names = [benchmark_of(r) for r in bench.to_dict("records")]
    out = bench.assign(benchmarks=[[n] for n in names])
    keep = pd.Series([n != "" for n in names], index=bench.index) & bench.image_path.notna()
    return out[keep].reset_index(drop=True), True


def per_question_values(bench: pd.DataFrame, preds: pd.DataFrame, real: bool) -> pd.DataFrame:
    """A row per (benchmark, sample, recipe, seed) of ``preds`` with its score under the benchmark's metric: the world's
    (genixer.world_benchmarks.per_question) or a published benchmark's official scorer (per_question_real)."""
    from genixer.published_benchmarks import per_question_real
    from genixer.world_benchmarks import per_question

    return per_question_real(bench, preds[["recipe", "seed", "sample_id", "prediction"]]) if real else per_question(preds)


# ---- the model stages: run context, training metadata, where the models are, the phrasings in use -----

def train_metadata(res, title: str) -> dict:
    """What a training run shows in the UI: sizes, steps, losses, throughput, truncation, the learning curves."""
    curves = {"all": smooth(res.losses, max(len(res.losses) // 40, 1)), **res.group_curves}
    return {
        "parameters": res.n_params,
        "trainable_parameters": res.n_trainable,
        "steps": res.steps,
        "resumed_from_step": res.resumed_from,  # 0: trained from the start; else from an interrupted run's checkpoint
        "first_loss": float(res.losses[0]) if res.losses else float("nan"),
        "final_loss": float(res.final_loss),
        "tokens_per_s": round(res.tokens_per_s, 1),
        "train_wall_s": round(res.wall_s, 1),
        "records_truncated": res.n_truncated,
        "records_truncated_by_task": res.truncated_by_task or "none",
        # answers the tokenizer would have merged into the end of their prompt, so tokenized on their own
        "answers_tokenized_apart_from_prompt": res.n_tokenized_alone,
        **md_figure("learning_curves", curves_png(curves, title), "loss per task"),
        "final_loss_by_group": {g: round(float(c[-1][1]), 4) for g, c in sorted(res.group_curves.items()) if c},
    }


def run_context(settings: GenixerSettings) -> tuple:
    """(preset, the run's data source): the source's `collect_images` are the images the model stages train and are
    evaluated on (the world's `collect` split with its scene graphs, or one row per collected image), its `heldout`
    the image ids held out of every training set (the last `val_images`; without the world at most a fifth)."""
    return settings.get_preset(), data_source(settings)


def base_path(settings: GenixerSettings, backend: MLLMBackend) -> str:
    return backend.checkpoint("base") or str(settings.model_dir("base_mllm"))


def generator_path(settings: GenixerSettings, backend: MLLMBackend, name: str) -> str:
    """Where generator `name` (genixer_l / genixer_s) is: its role's checkpoint, or the fine-tune made here."""
    return backend.checkpoint(name) or str(settings.model_dir(name))


def finetune_role(backend: MLLMBackend, role: str, start, records, cfg, out, weights=None, plan=None):
    """gen.finetune with the role's device, dtype and automatic LoRA for a large start model."""
    from resources.models import LORA_ABOVE_PARAMS

    return gen.finetune(start, records, cfg, out, weights, **backend.load_kwargs(role), auto_lora=backend.auto_lora(role),
                        lora_above_params=LORA_ABOVE_PARAMS, plan=plan)


def replay_mix(settings: GenixerSettings, solver_share: float, caption_share: float, src):
    """A function mixing a fine-tune's instruction records with the replay of the solver's own data (collected
    question -> answer records and captions, training images only) at the given shares of the batches, read once."""
    solver = captions = []
    collect, val = src.collect_images, src.heldout
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna() & ~samples.image_id.isin(val)].to_dict("records")
    if solver_share > 0:
        solver = solver_records(samples)
    if caption_share > 0:
        captions, _ = src.captions(samples, set(collect.image_id) - val)
    return lambda records: gen.generator_mixture(records, solver, captions, solver_share, caption_share)


def question_phrasings(settings: GenixerSettings):
    """The question phrasings in use (instruction_templates.json's): REC expressions are read with their
    REC phrasings, plus REC_QUESTION of published data (region_clip.rec_phrasings)."""
    return json.loads(settings.path("tables", "instruction_templates.json").read_text())["phrasings"]


def seed_dirs(settings: GenixerSettings, recipe: str) -> list:
    """The model directories of a recipe's seeds, as retrained_models left them."""
    root = settings.path("models", "retrained", recipe)
    return sorted(d for d in root.glob("seed_*") if (d / "config.json").is_file())


# ---- the judge's gate: judge_mllm writes its floor, scored_generations_l and judge_mllm_beats_chance read it ----

GATE_FILE = "judge_mllm_gate.json"  # the floor judge_mllm applied, beside judge_mllm_eval: read by the check and the report


def judge_auc_floor(configured: float | None, settings: GenixerSettings, n_true: int, n_corrupted: int) -> tuple[float, str]:
    """The held-out AUC the judge must reach, and where it came from: judge_mllm's op config `min_heldout_auc`, else the
    settings resource's `judge_min_auc` (run config of every run), else the preset's `judge_min_auc`, else the default,
    genixer.judge.chance_auc_bound at 5% on the held-out set's sizes: a judge at chance passes it in fewer than 1 run
    of 20, while a fixed floor such as 0.6 would stop the demo's own judge (0.587 on 1,166 records) and would not
    tighten as the held-out set grows."""
    preset = settings.get_preset()
    if configured is not None:
        return float(configured), "run config: judge_mllm min_heldout_auc"
    if settings.judge_min_auc is not None:
        return float(settings.judge_min_auc), "run config: settings judge_min_auc"
    if preset.judge_min_auc is not None:
        return float(preset.judge_min_auc), f"preset {preset.name}: judge_min_auc"
    return (judge.chance_auc_bound(n_true, n_corrupted),
            f"default: the AUC a scorer blind to the labels exceeds with probability 5% on {n_true} true and {n_corrupted} "
            "corrupted held-out records")


def judge_gate(settings: GenixerSettings) -> tuple[bool, str, dict]:
    """(passed, what it says, metadata) of the judge's gate: every held-out P(Yes) in [0, 1] and the held-out AUC at
    least the floor judge_mllm applied (its judge_mllm_gate.json; without that file, the settings', preset's or
    default floor on judge_mllm_eval's sizes). A floor <= 0 turns the AUC test off. Read by the blocking check
    judge_mllm_beats_chance and, before it scores anything, by scored_generations_l (a blocking check stops the
    assets of its own run only; an asset backfill runs the scoring in other runs)."""
    ev = settings.read_table("judge_mllm_eval")
    n_true = int(ev.label.astype(bool).sum()) if len(ev) else 0
    path = settings.path("tables", GATE_FILE)
    gate = json.loads(path.read_text()) if path.is_file() else {}
    if "min_auc" not in gate:
        gate["min_auc"], gate["source"] = judge_auc_floor(None, settings, n_true, len(ev) - n_true)
    floor, source = float(gate["min_auc"]), gate["source"]
    a = judge.auc(ev.p_yes, ev.label) if len(ev) else float("nan")
    bad = int((~pd.to_numeric(ev.p_yes, errors="coerce").between(0, 1)).sum())
    meta = {"auc": a, "required_auc": floor, "floor_source": source, "heldout_true": n_true, "heldout_corrupted": len(ev) - n_true,
            "p_yes_outside_0_1": bad}
    if bad:
        return False, f"{bad} held-out P(Yes) are not probabilities in [0, 1]", meta
    if floor <= 0:
        return True, f"gate off ({source}); held-out AUC {a:.3f}", meta
    if not a == a:  # NaN: no held-out record of one of the two kinds
        return False, f"no held-out AUC: {n_true} true and {len(ev) - n_true} corrupted held-out records", meta
    if a < floor:
        return False, (f"held-out AUC {a:.3f} < {floor:.3f} ({source}): the judge cannot tell true from corrupted pairs, "
                       "so nothing is scored or filtered with it"), meta
    return True, f"held-out AUC {a:.3f} >= {floor:.3f} ({source})", meta


# ---- exports: the file of each format, and the formats a run asked for ----------------------------------

FILE_NAMES = {"llava": "llava.json", "shikra": "shikra.jsonl", "parquet": "data.parquet"}
FORMATS_FILE = "formats.json"  # the formats the last run was asked for: what dataset_exports_complete expects on disk


# ---- what every asset check uses (the checks live beside their stage: genixer_assets/<stage>_checks.py) ----
#
# Two kinds, told apart by the first word of each description and by the severity of a miss:
#
# - **Guard** (blocking, ERROR): the output is broken or unusable; a failure stops every asset downstream.
# - **Aim** (not blocking, WARN): a quality target the run may miss (the paper's figures, issue 16's aims);
#   a miss is reported as a warning, the run goes on, and the catalog shows a warning, not a failure.
#
# One guard may end neither passed nor ERROR: `*_not_worse_than_raw` with no oracle and no filled review sheet is
# "not measured", a failed result with WARN severity (Dagster blocks only on ERROR): a warning, never a pass.
# Every guard has a test that breaks its asset's output and sees it fail (tests/test_checks_fail.py, BREAK_TESTS).

AIM = dg.AssetCheckSeverity.WARN  # a missed aim: a warning, the run goes on
GUARD = dg.AssetCheckSeverity.ERROR  # a failed guard: blocking, the assets downstream do not run


def check_result(passed: bool, problems: list[str], severity: dg.AssetCheckSeverity = GUARD, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=severity,
                               description=None if passed else f"{len(problems)} problems; first: {problems[0]}" if problems else None,
                               metadata={"problems": len(problems), "first_problems": "\n".join(problems[:10]) or "none", **metadata})


def aim_result(passed: bool, metadata: dict) -> dg.AssetCheckResult:
    """The result of an aim: a miss is a warning (the check is not blocking)."""
    return dg.AssetCheckResult(passed=bool(passed), severity=AIM, metadata=metadata)


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_partition_keys(context, partitions_def: dg.PartitionsDefinition) -> list[str]:
    """The partitions a check looks at: the run's partition (a check runs in its asset's partitioned
    run), the run's partition range, or, in a run without a partition (the check launched on its
    own), every partition of the asset."""
    if context is not None and context.has_partition_key:
        return [context.partition_key]
    if context is not None and context.has_partition_key_range:
        return list(context.partition_keys)
    return partition_keys(partitions_def, context.instance if context is not None else None)


def partition_tables(settings: GenixerSettings, name: str, keys: list[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """{key: table} of the partitions on disk, and a problem for each one that is not."""
    tables, problems = {}, []
    for k in keys:
        if settings.table_path(name, k).exists():
            tables[k] = settings.read_table(name, k)
        else:
            problems.append(f"{name}[{k}] has not been materialised: {settings.table_path(name, k)} is missing")
    return tables, problems


def finite_weights(path: Path) -> list[str]:
    from safetensors import safe_open

    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        return [f"no safetensors weights in {path}"]
    bad = []
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            bad += [f"{f.name}:{k} has non-finite values" for k in st.keys() if not st.get_tensor(k).float().isfinite().all()]
    return bad


def weights_check(name: str):
    role = {"base_mllm": "base", "judge_mllm": "judge"}.get(name, name)

    @dg.asset_check(asset=name, name=f"{name}_weights_finite", blocking=True,
                    description="Guard: the weights the asset made or loaded (its role's checkpoint) exist and are finite.")
    def _check(settings: GenixerSettings, backend: MLLMBackend) -> dg.AssetCheckResult:
        path = Path(backend.checkpoint(role) or settings.model_dir(name))
        bad = finite_weights(path)
        return check_result(not bad, bad, path=str(path))

    return _check


NO_ORACLE = "no oracle: the collected data came from published files (no world); see generation_quality's review sample"


def not_measured() -> dg.AssetCheckResult:
    """An aim that needs the world's oracle, in a run without the world: not measured, a warning."""
    return aim_result(False, {"not_measured": NO_ORACLE})
