"""A world-free run this machine can do in about a minute: published-format files and tiny checkpoints.

    .venv/bin/python -m examples.tiny_world_free /tmp/tiny            # writes data, checkpoints and /tmp/tiny/run.yaml
    .venv/bin/python -m genixer_assets.demo --config /tmp/tiny/run.yaml

It writes small releases in the published formats (VQAv2, A-OKVQA, RefCOCO; benchmarks VQAv2 val, POPE,
A-OKVQA val, RefCOCO testA), a folder of unlabeled images, and tiny random checkpoints of the real
architectures in their standard layouts (LLaVA-1.5 as the base the generators are fine-tuned from, Fuyu as
the judge, open_clip ViT-L-14 scaled down as the region CLIP, Qwen2-VL as the retraining start point), then
the run config that points the graph at them. The run config also sets the run's data root,
/tmp/tiny/data (resources.settings.config.data_dir), which wins over GENIXER_DATA_DIR (the demo's first line
says so); remove data_dir from run.yaml to use GENIXER_DATA_DIR. The models are random: the run shows the
plumbing, not quality. The release writers are the test suite's fixtures (tests/), so this runs from a clone of
the repo, as a module from its root (`-m examples.tiny_world_free`: the root is then on the import path).
"""

import sys
from pathlib import Path


def build(root: str | Path) -> dict:
    """Write everything under `root`; returns the run config (also written to root/run.yaml)."""
    import yaml

    from genixer.models.tiny import save_tiny_fuyu, save_tiny_llava, save_tiny_open_clip, save_tiny_qwen2_vl
    from tests.sources.helpers import write_image
    from tests.test_assets_worldfree import aokvqa_release, benchmark_sources, refcoco_release, vqav2_release

    root = Path(root).resolve()
    # held-out images are the last in sort order: the 3 A-OKVQA images, then RefCOCO 9107-9109 (54 REC + REG pairs to calibrate on)
    sources = [vqav2_release(root / "vqa", n_images=15), aokvqa_release(root / "aok", n_images=3),
               refcoco_release(root / "ref", n_images=10, first_id=9100)]
    bench = benchmark_sources(root)
    corpus = root / "corpus"
    for i in range(8):
        write_image(corpus / f"sub{i % 2}" / f"img_{i:03d}.png", (80, 64), [(200, 30, 30), (30, 180, 30), (30, 30, 200)][i % 3])
    ck = root / "checkpoints"
    save_tiny_llava(ck / "llava", hub_layout=True)
    save_tiny_fuyu(ck / "fuyu")
    save_tiny_open_clip(ck / "clip")
    save_tiny_qwen2_vl(ck / "qwen")
    config = {
        "resources": {
            # the data root: this, not GENIXER_DATA_DIR (a run config's data_dir wins; the demo's first line says so)
            "settings": {"config": {"preset": "smoke", "data_dir": str(root / "data")}},
            "backend": {"config": {
                "device": "cpu",
                "base": {"checkpoint": str(ck / "llava")},
                "judge": {"checkpoint": str(ck / "fuyu"), "batch_size": 8},
                "region_clip": {"checkpoint": str(ck / "clip")},
                "retraining": {"checkpoint": str(ck / "qwen"), "lora_rank": 8, "gradient_checkpointing": True, "grad_accum": 2,
                               "mixed_precision": "bf16", "batch_size": 4},
            }},
        },
        "ops": {
            "collected_datasets": {"config": {"sources": sources}},
            "benchmark_sets": {"config": {"sources": bench}},
            "corpus_shards": {"config": {"kind": "folder", "path": str(corpus), "shard_size": 4}},
            "genixer_l": {"config": {"steps": 150}},  # the tiny LLaVA needs more than the smoke preset's 80 to write the format
            # the random judge is at chance: its gate (judge_mllm_beats_chance, by default the chance bound) is turned off
            "judge_mllm": {"config": {"min_heldout_auc": 0.0}},
            "region_clip_model": {"config": {"min_calibration_pairs": 10}},
        },
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build(sys.argv[1])
    run_yaml = Path(sys.argv[1]).resolve() / "run.yaml"
    print(f"wrote {run_yaml} (its data root: {run_yaml.parent / 'data'}, whatever GENIXER_DATA_DIR says)\n"
          f"next: .venv/bin/python -m genixer_assets.demo --config {run_yaml}")
