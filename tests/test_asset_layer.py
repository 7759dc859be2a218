"""The asset layer's layout rules, read from the code: the groups the UI shows say what they hold; no asset module
imports another (they share through genixer_assets/common.py and partitions.py and name their upstream by key);
nothing imports a `_private` name across modules; no `sys.path.insert` outside tests."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSET_MODULES = ("collection", "instructions", "generators", "corpus_generation", "filtering", "exports", "data_quality",
                 "retraining", "benchmarks", "loop")
SHARED = ("common", "partitions", "k8s")  # what the asset modules and their checks may import from genixer_assets

GROUPS = {
    "collection": {"world_scenes", "collected_datasets", "held_back_datasets", "benchmark_sets", "corpus_shards", "image_corpus"},
    "instructions": {"instruction_templates", "templated_instructions"},
    "generators": {"base_mllm", "genixer_l", "genixer_s"},
    "corpus_generation": {"raw_generations_l", "raw_generations_s"},
    "filtering": {"judge_mllm", "region_clip_model", "scored_generations_l", "scored_generations_s", "genixer_vqa", "genixer_rec"},
    "exports": {"dataset_exports"},
    "data_quality": {"generation_quality"},
    "retraining_and_benchmarks": {"retrained_models", "benchmark_predictions", "benchmark_scores"},
    "report": {"paper_report"},
    "loop": {"loop_evaluation", "loop_queries", "loop_generator", "loop_generations", "loop_models", "loop_scores", "loop_report"},
}


def _imports(path: Path):
    """(module, name) of every `from module import name` in a file (at any depth), and the plain `import x` modules."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                yield node.module, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None


def test_the_asset_groups_say_what_they_hold():
    from genixer_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert groups == GROUPS


def test_no_asset_module_imports_another():
    stage_modules = [*ASSET_MODULES, *(f"{m}_checks" for m in ASSET_MODULES if (ROOT / f"genixer_assets/{m}_checks.py").exists())]
    bad = []
    for name in stage_modules + list(SHARED):
        path = ROOT / "genixer_assets" / f"{name}.py"
        for module, imported in _imports(path):
            target = f"{module}.{imported}" if module == "genixer_assets" else module
            if target.startswith("genixer_assets.") and target.split(".")[1] not in SHARED:
                bad.append(f"{path.name}: {target}")
    assert not bad, bad


def test_nothing_imports_a_private_name_across_modules():
    files = [*(ROOT / "genixer_assets").glob("*.py"), *(ROOT / "bench").glob("*.py"), *(ROOT / "research").glob("*.py"),
             *(ROOT / "resources").glob("*.py"), *(ROOT / "examples").glob("*.py")]
    assert len(files) > 20
    bad = [f"{f.relative_to(ROOT)}: from {m} import {n}" for f in files for m, n in _imports(f)
           if n and n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_no_sys_path_insert_outside_tests():
    """Scripts run as modules (`python -m bench.run`, `python -m research.solver_probes`, `python -m
    examples.tiny_world_free`) from the repository root, which is on the path then."""
    skip = {"tests", "data", "history", "logs", "schedules", "storage"}  # tests, and the data root and instance folders
    dirs = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in skip]
    files = [*ROOT.glob("*.py"), *(f for d in dirs for f in d.rglob("*.py"))]
    offenders = [str(f.relative_to(ROOT)) for f in files if "sys.path.insert" in f.read_text()]
    assert not offenders, offenders
