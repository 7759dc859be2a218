"""The instructions stage's checks: the two-level templates and the generators' training records."""

import json

import dagster as dg

from genixer.datasource import validate_phrasings
from genixer.schema import read_samples
from genixer.tasks import TASKS
from genixer.templates import ParseError, parse_generation, validate_general
from genixer_assets.common import check_result
from resources import GenixerSettings


@dg.asset_check(asset="instruction_templates", blocking=True,
                description="Guard: at least 40 distinct general instructions, none empty or with a placeholder; a specific "
                            "instruction for every task; every question phrasing of a known kind, with the placeholders its kind needs.")
def instruction_templates_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    t = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    problems = []
    try:
        validate_general(t["general"])
        validate_phrasings(t["phrasings"])
    except ValueError as e:
        problems.append(str(e))
    if len(set(t["general"])) < 40:
        problems.append(f"only {len(set(t['general']))} distinct general instructions (< 40)")
    problems += [f"no specific instruction for {k}" for k in TASKS if k not in t["specific"]]
    return check_result(not problems, problems, general=len(t["general"]))


@dg.asset_check(asset="templated_instructions", blocking=True,
                description="Guard: every record's prompt and target are non-empty, and its target parses ('Question: .. Answer: ..') "
                            "back to exactly its sample's turns in collected_datasets.")
def templated_instructions_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = settings.read_table("templated_instructions")
    samples = read_samples(settings.table_path("collected_datasets")).set_index("sample_id")
    problems = []
    for r in df.itertuples():
        if not r.prompt.strip() or not r.target.strip():
            problems.append(f"{r.record_id}: empty prompt or target")
            continue
        try:
            turns = parse_generation(r.target)
        except ParseError as e:
            problems.append(f"{r.record_id}: {e}")
            continue
        want = [dict(t) for t in samples.loc[r.sample_id, "turns"]]
        if turns != want:
            problems.append(f"{r.record_id}: target does not parse back to its sample")
    return check_result(not problems, problems, records=len(df), general_only_share=float(df.general_only.mean()))
