"""The generators on the smoke preset: trained, saved, reloaded through the resource, and
generating; and a user's checkpoint directory loaded in place of the embedded base."""

import dagster as dg
import pytest
import torch

from genixer.decoding import Sampling, generate
from genixer.models.checkpoint import CheckpointError
from genixer.models.embedded import build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer.templates import GENERAL_INSTRUCTIONS, specific_instruction
from genixer_assets.definitions import defs
from resources import MLLMBackend
from resources.models import ModelRole
from tests.conftest import metadata_of


def _tensor_digests(tensors) -> set[str]:
    import hashlib

    return {hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest() for t in tensors}


@pytest.mark.parametrize("name", ["base_mllm", "genixer_l", "genixer_s"])
def test_model_trained_loss_fell_and_reloads(built, name):
    from safetensors.torch import load_file

    settings, results = built
    p = settings.get_preset()
    meta = metadata_of(results, name)
    want_steps = {"base_mllm": p.base_train.steps, "genixer_l": p.l_train.steps, "genixer_s": p.s_train[1].steps}[name]
    assert meta["steps"] == want_steps and meta["final_loss"] < meta["first_loss"]  # trained the preset's steps; the loss fell
    model, processor = MLLMBackend(device="cpu").load(settings.model_dir(name))
    assert not model.training and sum(t.numel() for t in model.parameters()) == meta["parameters"]
    # the reloaded model holds exactly the saved tensors (the file's key names differ from the loaded modules')
    saved = {k: v for f in settings.model_dir(name).glob("*.safetensors") for k, v in load_file(str(f)).items()}
    assert saved and _tensor_digests(saved.values()) == _tensor_digests(model.state_dict().values())
    img = settings.read_table("world_scenes").image_path.iloc[0]
    prompt = [f"{GENERAL_INSTRUCTIONS[0]} {specific_instruction('common_vqa')}"]
    out = generate(model, processor, [img], prompt, Sampling(max_new_tokens=12))
    again, processor2 = MLLMBackend(device="cpu").load(settings.model_dir(name))
    assert len(out) == 1 and len(out[0]) == 1 and out == generate(again, processor2, [img], prompt, Sampling(max_new_tokens=12))


def test_training_loss_falls(built):
    settings, results = built
    for name in ("base_mllm", "genixer_l", "genixer_s"):
        meta = metadata_of(results, name)
        assert meta["final_loss"] < 0.8 * meta["first_loss"], (name, meta["first_loss"], meta["final_loss"])


def test_generator_evaluation_tables(built):
    settings, results = built
    for name, tasks in (("genixer_l", {"common_vqa", "adv_vqa", "mc_vqa", "md"}), ("genixer_s", {"rec", "reg", "pointqa", "qca", "rd"})):
        ev = settings.read_table(f"{name}_eval")
        assert set(ev[ev["mode"] == "type_specific"].requested_task) == tasks
        assert (ev[ev["mode"] == "type_agnostic"].requested_task == "").all()
        assert set(ev.oracle) <= {"correct", "incorrect", "unparseable"}
        assert (ev[~ev.parsed].parse_error != "").all()  # nothing unparsed without its reason
        meta = metadata_of(results, name)
        assert meta["parse_rate"] == pytest.approx(ev.parsed.mean())
    checks = {c.check_name: c.passed for r in results for c in r.get_asset_check_evaluations()}
    assert checks["genixer_l_parse_rate"] and checks["genixer_s_parse_rate"]  # blocking, at the smoke threshold
    assert checks["base_mllm_weights_finite"] and checks["genixer_l_weights_finite"]


def test_base_mllm_accuracy_is_reported_per_task(built, tmp_path):
    """The check's figures read back against base_mllm_eval (the blind prior it recomputes against the prior_correct
    column base_mllm wrote row by row); its verdict on copies of that table whose margin the test sets: the blind
    prior's own answers (margin 0: a miss) and every answer right (a pass, the prior being under 90%)."""
    import shutil

    from genixer_assets.generators_checks import base_mllm_above_chance
    from resources import GenixerSettings

    settings, results = built
    ev = settings.read_table("base_mllm_eval")
    assert len(ev) and set(ev.task) >= {"common_vqa", "rec"}
    assert metadata_of(results, "base_mllm")["heldout_accuracy"] == pytest.approx(ev.correct.mean())
    check = next(c for r in results for c in r.get_asset_check_evaluations() if c.check_name == "base_mllm_above_chance")
    meta = {k: v.value for k, v in check.metadata.items()}
    blind = float(ev.prior_correct.mean())
    assert meta["accuracy"] == pytest.approx(ev.correct.mean()) and meta["blind_prior"] == pytest.approx(blind) and blind < 0.9
    assert meta["margin"] == pytest.approx(ev.correct.mean() - blind)

    mine = GenixerSettings(preset=settings.preset, data_dir=str(tmp_path))  # the built root stays as it is
    for name in ("collected_datasets", "world_scenes"):
        shutil.copy(settings.table_path(name), mine.table_path(name))
    verdicts = {}
    for label, correct in (("the prior's answers", ev.prior_correct), ("all right", True)):
        ev.assign(correct=correct).to_parquet(mine.table_path("base_mllm_eval"), index=False)
        verdicts[label] = base_mllm_above_chance(dg.build_asset_check_context(resources={"settings": mine})).passed
    assert verdicts == {"the prior's answers": False, "all right": True}


def test_user_checkpoint_is_loaded_through_the_resource(built, tmp_path):
    """A tiny random LLaVA saved with save_pretrained stands in for a user's LLaVA-1.5 directory."""
    import shutil

    from genixer.oracle_eval import evaluate_solver
    from genixer.schema import read_samples
    from genixer.world import Scene
    from resources import GenixerSettings

    built_settings, _ = built  # a copy of base_mllm's inputs: the shared smoke graph's base_mllm and its eval stay as they are
    settings = GenixerSettings(preset=built_settings.preset, data_dir=str(tmp_path / "data"))
    for name in ("world_scenes.parquet", "collected_datasets.parquet"):
        shutil.copy(built_settings.path("tables", name), settings.path("tables", name))
    shared_eval = built_settings.table_path("base_mllm_eval").read_bytes()
    tok = build_tokenizer(["What colour is the circle? red Describe the image."])
    model, processor = build_embedded_mllm(tok)
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    backend = MLLMBackend(device="cpu", base=ModelRole(checkpoint=str(tmp_path / "llava")))
    res = dg.materialize(list(defs.assets), selection=["base_mllm"], resources={"settings": settings, "backend": backend})
    meta = metadata_of([res], "base_mllm")
    assert meta["source"] == str(tmp_path / "llava") and "steps" not in meta  # evaluated, not trained
    assert not any(settings.model_dir("base_mllm").iterdir())  # nothing trained or saved in base_mllm's place
    # the evaluation is the checkpoint's: its answers are what the user's model, loaded through the resource, says
    ev = settings.read_table("base_mllm_eval")
    assert meta["heldout_accuracy"] == pytest.approx(ev.correct.mean())
    samples = read_samples(settings.table_path("collected_datasets")).set_index("sample_id").loc[ev.sample_id].reset_index()
    scenes = {r.image_id: Scene.from_json(r.scene) for r in settings.read_table("world_scenes").itertuples()}
    again = evaluate_solver(*backend.load(backend.checkpoint("base"), "base"), samples.to_dict("records"), scenes)  # same samples, same batches
    assert again.answer.tolist() == ev.answer.tolist()
    assert built_settings.table_path("base_mllm_eval").read_bytes() == shared_eval


@pytest.mark.parametrize("make,match", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "missing config.json"),
])
def test_bad_checkpoint_directory_is_a_clear_error(tmp_path, make, match):
    path = make(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=match):
        MLLMBackend(device="cpu").load(path)


def test_base_mllm_with_the_patch_label_pre_stage_keeps_its_tower_frozen(built, tmp_path):
    """The demo's path (smoke's preset keeps the contrastive one): chosen through run config."""
    from safetensors.torch import load_file

    import shutil

    from resources import GenixerSettings

    built_settings, _ = built  # a copy of base_mllm's inputs: the shared smoke graph's base_mllm stays as it is
    settings = GenixerSettings(preset=built_settings.preset, data_dir=str(tmp_path))
    for name in ("world_scenes.parquet", "collected_datasets.parquet", "instruction_templates.json"):
        shutil.copy(built_settings.path("tables", name), settings.path("tables", name))
    cfg = {"vision_objective": "patch_labels", "freeze_vision_tower": True, "steps": 4}
    res = dg.materialize(list(defs.assets), selection=["base_mllm"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                         run_config={"ops": {"base_mllm": {"config": cfg}}})
    meta = metadata_of([res], "base_mllm")
    assert meta["vision_objective"] == "patch_labels" and meta["vision_pretrain_steps"] > 0 and meta["steps"] == 4
    assert all(0 <= meta[f"vision_heldout_{k}_accuracy"] <= 1 for k in ("colour", "shape", "size"))
    tower = load_file(str(settings.model_dir("base_mllm_vision") / "patch_labels" / "model.safetensors"))
    model, _ = MLLMBackend(device="cpu").load(settings.model_dir("base_mllm"))
    ours = model.model.vision_tower.state_dict()
    assert tower and all(torch.equal(ours[k], v) for k, v in tower.items())  # frozen through base training, as in LLaVA


def test_generator_fine_tune_replays_the_solver_data(built, tmp_path):
    """Replay shares chosen through run config: the shares are in the metadata and every pool was trained on."""
    import shutil

    from resources import GenixerSettings

    built_settings, _ = built  # a copy of genixer_l's inputs: the shared smoke graph's genixer_l stays as it is
    settings = GenixerSettings(preset=built_settings.preset, data_dir=str(tmp_path))
    for name in ("world_scenes.parquet", "collected_datasets.parquet", "instruction_templates.json", "templated_instructions.parquet"):
        shutil.copy(built_settings.path("tables", name), settings.path("tables", name))
    shutil.copytree(built_settings.model_dir("base_mllm"), settings.model_dir("base_mllm"), dirs_exist_ok=True)
    cfg = {"replay_solver_share": 0.3, "replay_caption_share": 0.2, "steps": 12}
    res = dg.materialize(list(defs.assets), selection=["genixer_l"], resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                         run_config={"ops": {"genixer_l": {"config": cfg}}})
    meta = metadata_of([res], "genixer_l")
    assert meta["batch_shares"] == {"instructions": 0.5, "replay_solver": 0.3, "replay_captions": 0.2} and meta["steps"] == 12
    groups = set(meta["final_loss_by_group"])
    assert "replay:caption" in groups and any(g.startswith("replay:") and g != "replay:caption" for g in groups)
    assert groups & {"common_vqa", "adv_vqa", "mc_vqa", "md"}  # the instruction records, under their own tasks


def test_a_roles_training_settings_and_a_runs_are_one_class_with_one_lora_rule():
    """A model role's training settings (the backend resource) and a run's config reach the TrainConfig through the same
    TrainOverrides, the role's first: LoRA of rank k has alpha 2k (LoraSpec.for_rank) on the role's targets; rank 0 trains
    all weights; the automatic LoRA of a large start model follows the same rule."""
    from genixer.training import LoraSpec, TrainConfig
    from resources import TrainOverrides

    assert LoraSpec.for_rank(8) == LoraSpec(rank=8, alpha=16) and LoraSpec.for_rank(4, ["q_proj"]).target_modules == ["q_proj"]
    backend = MLLMBackend(genixer_l=ModelRole(train_batch_size=2, grad_accum=4, mixed_precision="bf16", lora_rank=16,
                                              lora_targets=["q_proj", "v_proj"]), judge=ModelRole(lora_rank=0))
    preset = TrainConfig(steps=10, batch_size=32, lora=LoraSpec(rank=4, alpha=8))
    cfg = backend.train_config("genixer_l", preset)
    assert (cfg.batch_size, cfg.grad_accum, cfg.mixed_precision, cfg.steps) == (2, 4, "bf16", 10)
    assert cfg.lora == LoraSpec(rank=16, alpha=32, target_modules=["q_proj", "v_proj"])
    assert backend.train_config("judge", preset).lora is None  # rank 0: all weights
    assert backend.train_config("base", preset) == preset  # nothing set: the preset's
    assert TrainOverrides(lora_rank=8, steps=3).apply(cfg).lora == LoraSpec(rank=8, alpha=16)  # the run's, after the role's
    assert backend.auto_lora("base") == LoraSpec(rank=16, alpha=32) and backend.auto_lora("genixer_l") is None
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        TrainOverrides(mixed_precision="fp8").apply(preset)


def test_train_overrides_reach_the_training_config():
    """Every training knob a run config can set lands in the TrainConfig the asset trains with; unset ones keep the
    preset's; an unknown loss weighting is refused by Dagster's config schema, before any step runs."""
    from genixer.training import TrainConfig
    from resources import TrainOverrides

    preset = TrainConfig(steps=850, lr=2e-3, batch_size=32, warmup_steps=50)
    cfg = TrainOverrides(lr=3e-4, warmup_steps=20, loss_per="sample", group_by_length=8).apply(preset)
    assert (cfg.lr, cfg.warmup_steps, cfg.loss_per, cfg.group_by_length) == (3e-4, 20, "sample", 8)
    assert (cfg.steps, cfg.batch_size, cfg.freeze_vision_tower) == (850, 32, False)
    assert TrainOverrides().apply(preset) == preset
    with pytest.raises(dg.DagsterInvalidConfigError, match="loss_per not in enum type LossPer got record"):
        dg.materialize(list(defs.assets), selection=["judge_mllm"],
                       run_config={"ops": {"judge_mllm": {"config": {"loss_per": "record"}}}},
                       resources={"settings": dg.ResourceDefinition.none_resource(), "backend": MLLMBackend(device="cpu")})
