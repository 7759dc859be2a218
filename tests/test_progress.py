"""Long loops report progress: log lines (count, rate, time left) off a terminal, a tqdm bar on one."""

import logging

from genixer.progress import progress


def test_progress_logs_count_rate_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="genixer.progress")
    for _ in progress(range(40), desc="generate genixer_l", unit="req", every=0):
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "genixer.progress"]
    assert lines and lines[-1].startswith("generate genixer_l: 40/40 (100%)")
    assert all("elapsed" in line and "left" in line for line in lines)
    assert "req/s" in lines[-1] or "s/req" in lines[-1]


def test_progress_is_throttled(caplog):
    caplog.set_level(logging.INFO, logger="genixer.progress")
    bar = progress(total=1000, desc="train x", unit="step", every=3600)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "genixer.progress"]
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("train x: 1000/1000")


def test_training_reports_its_steps(caplog, tmp_path):
    from genixer.models.embedded import EmbeddedSize, build_embedded_mllm
    from genixer.models.tokenizer import build_tokenizer
    from genixer.training import TrainConfig, train
    from tests.sources.helpers import write_image

    caplog.set_level(logging.INFO, logger="genixer.progress")
    img = write_image(tmp_path / "a.png", (32, 32), (200, 30, 30))
    tok = build_tokenizer(["What colour is it? red"])
    model, processor = build_embedded_mllm(tok, EmbeddedSize())
    records = [{"image_path": str(img), "prompt": "What colour is it?", "target": "red"}] * 4
    train(model, processor, records, TrainConfig(steps=3, batch_size=2), tmp_path / "out")
    lines = [r.getMessage() for r in caplog.records if r.name == "genixer.progress"]
    assert lines and lines[-1].startswith("train out: 3/3 (100%)") and "loss=" in lines[-1]
