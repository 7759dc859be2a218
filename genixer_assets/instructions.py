"""Step (ii): two-level instruction templates and the generators' training records."""


import json
from dataclasses import replace
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer.datasource import default_phrasings, validate_phrasings
from genixer.schema import read_samples
from genixer.tasks import TASKS
from genixer.templates import GENERAL_INSTRUCTIONS, build_records, specific_instruction, validate_general
from genixer_assets.common import md_table, table_meta
from resources import GenixerSettings


class TemplatesConfig(dg.Config):
    templates_file: Optional[str] = Field(
        None, description="JSON file with 'general' (list of instructions) and/or 'phrasings' "
        "(question kind -> list of phrasings); replaces the built-in lists, validated at load")


@dg.asset(group_name="instructions", kinds={"python", "json"})
def instruction_templates(config: TemplatesConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """The two-level templates: general instructions (the official code's list of 58
    phrasings), the specific instruction of each task ("This is a Common VQA task."), and the
    question phrasings per kind (the REC `<expr>` / REG `<objs>` templates)."""
    general, phrasings = GENERAL_INSTRUCTIONS, default_phrasings()
    if config.templates_file:
        user = json.loads(open(config.templates_file).read())
        general = user.get("general", general)
        phrasings = user.get("phrasings", phrasings)
    general = validate_general(general)
    validate_phrasings(phrasings)  # a phrasing missing its placeholder is rejected here
    out = {
        "general": list(general),
        "specific": {t: specific_instruction(t) for t in TASKS},
        "phrasings": {k: list(v) for k, v in phrasings.items()},
    }
    path = settings.path("tables", "instruction_templates.json")
    path.write_text(json.dumps(out, indent=1))
    return dg.MaterializeResult(metadata={
        "general_instructions": len(general),
        "question_phrasings": sum(len(v) for v in phrasings.values()),
        "specific": dg.MetadataValue.md(pd.DataFrame(out["specific"].items(), columns=["task", "specific instruction"]).to_markdown(index=False)),
        "general_sample": dg.MetadataValue.md("\n".join(f"- {g}" for g in general[:8])),
        "path": dg.MetadataValue.path(str(path)),
    })


class RecordsConfig(dg.Config):
    controlling_constant: Optional[float] = Field(
        None, description="share of records carrying only the general instruction (default: preset)")
    seed: Optional[int] = Field(None, description="sampling seed (default: preset)")


@dg.asset(group_name="instructions", kinds={"python", "parquet"}, deps=["collected_datasets", "instruction_templates"])
def templated_instructions(config: RecordsConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """Training records for Genixer_L (general tasks at ratios 0.2/0.2/0.5/0.2) and Genixer_S
    (grounding tasks in two phases): prompt = image + general [+ specific] instruction,
    target = `Question: <q> Answer: <a>`."""
    p = settings.get_preset()
    rcfg = replace(p.records, **{k: v for k, v in config.model_dump().items() if v is not None})
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    samples = read_samples(settings.table_path("collected_datasets")).to_dict("records")
    df = pd.DataFrame(build_records(samples, tuple(templates["general"]), rcfg))
    path = settings.table_path("templated_instructions")
    df.to_parquet(path, index=False)
    counts = df.groupby(["generator", "phase", "task"]).agg(records=("record_id", "size"), general_only=("general_only", "mean")).reset_index()
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "records": len(df),
        "controlling_constant": rcfg.controlling_constant,
        "realised_general_only_share": float(df.general_only.mean()),
        "by_generator_phase_task": dg.MetadataValue.md(counts.to_markdown(index=False, floatfmt=".2f")),
        "preview": md_table(df[["record_id", "prompt", "target"]], 6),
        "path": dg.MetadataValue.path(str(path)),
    })
