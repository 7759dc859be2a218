"""The training loop for large models: two processes (accelerate launch, gloo on CPU), gradient
checkpointing, bf16 on CPU, fp16 refused on CPU. The single-process behaviour is tests/test_training.py's."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genixer import training
from genixer.models.checkpoint import load_model
from genixer.training import LoraSpec, TrainConfig, train
from genixer.training.loop import _steps_for
from tests import _ddp_train_script as script

torch.set_num_threads(1)
SCRIPT = Path(script.__file__)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_imgs")
    script.write_images(root)
    return root


@pytest.fixture(scope="module")
def records(root):
    return script.make_records(root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(root: Path, out_dir: Path, report: Path, tmp: Path, **cfg) -> list[dict]:
    """The script under `accelerate launch` with two processes on CPU. `--multi_gpu` is what makes accelerate
    start the processes through torchrun (`--cpu` alone starts one process, expecting mpirun), and
    ACCELERATE_USE_CPU=1 makes each process join a gloo group on the CPU instead of looking for CUDA."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp / "hf"),  # no accelerate config file of the machine's user
           "PYTHONPATH": str(SCRIPT.parents[1])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           str(SCRIPT), str(root), str(out_dir), str(report), json.dumps(cfg)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [json.loads(Path(f"{report}.rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="needs torch.distributed with gloo")
def test_two_processes_at_b_follow_one_process_at_2b(root, tmp_path):
    """2 ranks x batch 2 (interrupted after 4 of 8 steps, then resumed) against 1 process x batch 4,
    both with 2 micro-batches per step (targets of one token count here; unequal ones in the next test). The
    two runs compute the same thing: they differ only by float32 summation order (gradients all-reduced per
    rank vs one batch), measured at 7e-8 relative; rtol 1e-4 leaves room for other BLAS builds and is still far
    below what a batch of other records changes (5e-3 relative, median, at the initial weights); the draws are
    compared exactly."""
    cfg = {"steps": 8, "grad_accum": 2, "checkpoint_every": 2}
    out = tmp_path / "ddp"
    first = _launch(root, out, tmp_path / "first", tmp_path, batch_size=2, stop_after=4, **cfg)
    for r, rep in enumerate(first):
        assert (rep["rank"], rep["num_processes"], rep["backend"]) == (r, 2, "gloo")
    assert first[0]["checkpoint_writes"] == [2, 4] and first[1]["checkpoint_writes"] == []  # main process only
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]  # no final model: interrupted
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["model.safetensors", "trainer_state.pt"]

    second = _launch(root, out, tmp_path / "second", tmp_path, batch_size=2, **cfg)  # resumes at step 4
    assert second[0]["checkpoint_writes"] == [6] and second[1]["checkpoint_writes"] == []
    assert [rep["final_saves"] for rep in second] == [1, 0]
    assert not (out / "checkpoint").exists()

    one = script.run(root, tmp_path / "one", batch_size=4, **cfg)

    # Every rank returns the same result and holds the same weights, the resumed ones included.
    for key in ("losses", "tokens_seen", "group_curves", "weights"):
        assert second[0][key] == second[1][key], key
    assert second[0]["losses"][:4] == first[0]["losses"]
    # Each rank drew its own half of the global batch one process draws at batch 4, before and after resuming.
    draws = [first[r]["draws"] + second[r]["draws"] for r in range(2)]
    assert len(draws[0]) == len(one["draws"]) == 8 * 2
    assert draws[0] != draws[1]
    assert [a + b for a, b in zip(*draws)] == one["draws"]
    assert second[0]["tokens_seen"] == one["tokens_seen"]
    two_losses, one_losses = np.array(second[0]["losses"]), np.array(one["losses"])
    assert np.allclose(two_losses, one_losses, rtol=1e-4, atol=0), np.abs(two_losses / one_losses - 1).max()
    assert one_losses[-1] < one_losses[0]
    for g, curve in one["group_curves"].items():
        assert np.allclose(np.array(second[0]["group_curves"][g]), np.array(curve), rtol=1e-4)

    # The one final model (written by rank 0) loads and equals one process's, up to the same rounding
    # (measured: 4e-6 after 8 steps; Adam turns rounding in near-zero gradients into updates of up to lr=1e-3
    # per step, so 1e-4 and not tighter).
    diff = _model_diff(out, tmp_path / "one")
    assert diff < 1e-4, diff


def _model_diff(a: Path, b: Path) -> float:
    model_a, _ = load_model(a, device="cpu")
    model_b, _ = load_model(b, device="cpu")
    pairs = zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True)
    return max((x - y).abs().max().item() for x, y in pairs)


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="needs torch.distributed with gloo")
@pytest.mark.parametrize("loss_per", ["token", "sample"])
def test_two_processes_follow_one_with_answers_of_unequal_length(root, tmp_path, loss_per):
    """Answers of 4 to 14 target tokens (with EOS): 2 ranks x batch 2 against 1 process x batch 4, 2 micro-batches
    per step. The step's loss is normalised by the global batch's target tokens (records, for "sample"), counted across
    ranks and micro-batches, so both runs log the same losses (measured: 1e-7 relative) and end with the same
    weights (4e-6 / 1.3e-5). Before, each rank and micro-batch took its own token mean: 2 x 2 trained on another
    loss than 1 x 4, the token losses 1.6e-3 relative apart, the weights 9e-3. ("sample" was already equal:
    every half-batch holds the same number of records.)"""
    cfg = {"steps": 6, "grad_accum": 2, "lr": 3e-3, "loss_per": loss_per, "varied_targets": True}
    two = _launch(root, tmp_path / "ddp", tmp_path / "rep", tmp_path, batch_size=2, **cfg)
    one = script.run(root, tmp_path / "one", batch_size=4, **cfg)
    assert [a + b for a, b in zip(two[0]["draws"], two[1]["draws"])] == one["draws"]
    # The ranks' halves of the micro-batches really hold different numbers of target tokens.
    n = np.array(one["target_lengths"])
    assert n.min() == 4 and n.max() == 14
    halves = [[int(n[d].sum()) for d in rep["draws"]] for rep in two]
    assert sum(a != b for a, b in zip(*halves)) >= len(halves[0]) // 2, halves

    assert two[0]["losses"] == two[1]["losses"] and two[0]["weights"] == two[1]["weights"]
    two_losses, one_losses = np.array(two[0]["losses"]), np.array(one["losses"])
    assert np.allclose(two_losses, one_losses, rtol=1e-5, atol=0), np.abs(two_losses / one_losses - 1).max()
    assert one_losses[-1] < one_losses[0]
    diff = _model_diff(tmp_path / "ddp", tmp_path / "one")
    assert diff < 1e-4, diff


def test_micro_batches_follow_one_batch_with_answers_of_unequal_length(root, tmp_path):
    """The same in one process: batch 2 x 2 micro-batches against batch 4 (the same draws). Each micro-batch's
    summed token loss is divided by the step's token count, not averaged as the micro-batches' own means."""
    cfg = {"steps": 6, "lr": 3e-3, "varied_targets": True}
    accum = script.run(root, tmp_path / "accum", batch_size=2, grad_accum=2, **cfg)
    one = script.run(root, tmp_path / "one", batch_size=4, **cfg)
    assert [a + b for a, b in zip(accum["draws"][::2], accum["draws"][1::2])] == one["draws"]
    assert np.allclose(accum["losses"], one["losses"], rtol=1e-5, atol=0)
    diff = _model_diff(tmp_path / "accum", tmp_path / "one")
    assert diff < 1e-4, diff


def _layer_calls(model) -> list[int]:
    """Runs of a module inside a decoder layer: a checkpointed layer runs it again in backward. (Counted on
    its forward: forward hooks do not fire when transformers' checkpointing recomputes a layer.)"""
    calls, mlp = [0], model.model.language_model.layers[0].mlp
    forward = mlp.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    mlp.forward = counted
    return calls


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_same_losses(records, tmp_path, lora):
    """Checkpointing recomputes each decoder layer in backward (twice the layer calls) and changes no loss,
    LoRA included (the adapters behind frozen embeddings still get gradients: non-reentrant checkpointing)."""
    runs = []
    for gc in (False, True):
        model, processor = script.build(records)
        calls = _layer_calls(model)
        cfg = TrainConfig(steps=4, batch_size=4, grad_accum=2, lr=1e-2 if lora else 3e-3, gradient_checkpointing=gc,
                          lora=LoraSpec(rank=4, alpha=8) if lora else None)
        res = train(model, processor, records, cfg, tmp_path / str(gc))
        runs.append((res.losses, calls[0]))
    (plain, plain_calls), (ckpt, ckpt_calls) = runs
    assert ckpt_calls == 2 * plain_calls == 2 * 4 * 2
    assert ckpt == pytest.approx(plain, rel=1e-5)
    assert ckpt[-1] < ckpt[0]
    loaded, _ = load_model(tmp_path / "True", device="cpu")
    assert not any(getattr(m, "gradient_checkpointing", False) for m in loaded.modules())


def test_bf16_on_cpu(records, tmp_path):
    """bf16 autocast on CPU: finite losses near fp32's (but not equal: autocast is really on); the weights
    stay in the model's dtype (fp32 master weights, or bf16 for a model loaded in bf16)."""
    losses = {}
    for name, precision, dtype in [("fp32", "no", torch.float32), ("amp", "bf16", torch.float32),
                                   ("bf16", "bf16", torch.bfloat16)]:
        model, processor = script.build(records)
        model.to(dtype)
        cfg = TrainConfig(steps=3, batch_size=4, lr=3e-3, mixed_precision=precision, gradient_checkpointing=True)
        losses[name] = train(model, processor, records, cfg, tmp_path / name).losses
        assert all(np.isfinite(losses[name]))
        weights = load_file(tmp_path / name / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {dtype}, name
    assert losses["amp"] != losses["fp32"]
    assert losses["amp"] == pytest.approx(losses["fp32"], rel=5e-2)


def test_fp16_on_cpu_and_unknown_precision_are_clear_errors(records, tmp_path):
    # accelerate itself would run "fp16" on CPU as plain fp32 (no autocast, no grad scaler), silently.
    model, processor = script.build(records)
    with pytest.raises(ValueError, match="fp16.*needs a GPU"):
        train(model, processor, records, TrainConfig(steps=1, batch_size=2, mixed_precision="fp16"), tmp_path)
    with pytest.raises(ValueError, match="mixed_precision must be"):
        train(model, processor, records, TrainConfig(steps=1, batch_size=2, mixed_precision="fp32"), tmp_path)
    res = train(model, processor, records, TrainConfig(steps=1, batch_size=2), tmp_path)  # the state recovers
    assert res.steps == 1


def test_launch_that_accelerate_does_not_see_is_refused(records, tmp_path, monkeypatch):
    """torchrun's WORLD_SIZE=2 while accelerate runs alone (launched without ACCELERATE_USE_CPU on a machine
    without GPU): every process would train on the same batches and write the same files."""
    model, processor = script.build(records)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="ACCELERATE_USE_CPU"):
        train(model, processor, records, TrainConfig(steps=1, batch_size=2), tmp_path)


def test_epochs_count_the_global_batch():
    cfg = TrainConfig(steps=None, epochs=1, batch_size=4, grad_accum=2)
    assert _steps_for(cfg, 64) == 8 and _steps_for(cfg, 64, 2) == 4
    assert training.TrainConfig().gradient_checkpointing is False
