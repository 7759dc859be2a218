"""The run configs in examples/ are valid: resources build, every role's settings are accepted, and each op's
config is accepted by the config class of the asset it names (a typo in a field or an asset name fails)."""

from pathlib import Path

import pytest

from genixer_assets.demo import config_class, from_config
from resources.models import ROLES

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_paper_setup_is_a_valid_run_config():
    resources, run_config, exclude = from_config(EXAMPLES / "paper_setup.yaml")
    backend = resources["backend"]
    assert exclude == ("world_scenes",) and resources["settings"].preset == "paper"
    for role in ROLES:
        backend.role(role)  # dtype / mixed_precision values checked
    assert backend.checkpoint("base").endswith("llava-1.5-7b-hf") and backend.checkpoint("judge").endswith("fuyu-8b")
    assert backend.role("region_clip").weights.endswith(".safetensors") and backend.dtype == "bfloat16"
    assert backend.role("genixer_l").lora_rank == 16 and backend.role("genixer_l").gradient_checkpointing
    for asset, body in run_config["ops"].items():  # from_config built each one; here: the values read back
        assert config_class(asset)(**body["config"]).model_dump(exclude_unset=True) == body["config"]


def test_a_wrong_field_or_asset_is_caught(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, match in [("resources:\n  backend:\n    config:\n      base: {chekpoint: /m}\n", r"backend.config.base: unknown field\(s\) \['chekpoint'\]"),
                        ("resources:\n  backend:\n    config: {devize: cpu}\n", r"unknown field\(s\) \['devize'\]"),
                        ("ops:\n  genixer_l:\n    config: {stepz: 3}\n", r"ops.genixer_l.config: unknown field\(s\) \['stepz'\]"),
                        ("ops:\n  genixer_q:\n    config: {steps: 3}\n", "ops.genixer_q: no asset of that name"),
                        ("ops:\n  genixer_l:\n    config: {steps: many}\n", "steps")]:
        bad.write_text(text)
        with pytest.raises(Exception, match=match):
            from_config(bad)
    bad.write_text("opz: {}\n")
    with pytest.raises(ValueError, match="unknown top-level keys"):
        from_config(bad)


def test_the_scripts_run_as_modules_from_the_repo_root():
    """examples/, bench/ and research/ are run as modules from the repository root (no sys.path.insert): the example
    prints its usage without an argument, the bench and research modules import, and the Makefile's bench targets
    call them with -m."""
    import subprocess
    import sys

    root = EXAMPLES.parent
    run = subprocess.run([sys.executable, "-m", "examples.tiny_world_free"], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "python -m examples.tiny_world_free /tmp/tiny" in run.stderr, run.stderr[-2000:]
    modules = ["bench.run", "bench.train", "bench.sources", "research.solver_probes", "research.judge_probes",
               "research.tower_readout", "research.answer_correction"]
    imported = subprocess.run([sys.executable, "-c", "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]", *modules],
                              cwd=root, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    makefile = (root / "Makefile").read_text()
    for target, module in (("bench", "bench.run"), ("bench-train", "bench.train"), ("bench-sources", "bench.sources")):
        assert f"{target}: install\n\t$(PY) -m {module}\n" in makefile
