"""Every named preset is consistent: its world can be rendered, its budgets fit its data, and it builds
an embedded model whose image tokens fit the language model's positions."""

import pytest

from genixer.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_budgets_fit_its_data(name):
    p = get_preset(name)
    assert p.name == name
    assert 0 < p.val_images < p.n_collect and p.min_per_task <= p.n_collect * p.collect_per_image
    assert p.n_shards <= p.n_corpus
    patches = (p.mllm.image_size // p.mllm.patch_size) ** 2
    assert patches < p.mllm.max_position_embeddings // 2
    for cfg in (p.base_train, p.l_train, *p.s_train, p.judge_train, p.clip_train, p.retrain):
        assert cfg.steps > 0 and cfg.warmup_steps < cfg.steps and cfg.batch_size > 0


def test_long_is_the_demo_with_more_compute():
    """`long` differs from `demo` only in data and training budgets: same model sizes, benchmarks
    and recipes (the world's look is not a preset's), so its report reads as quality against compute."""
    demo, long = get_preset("demo"), get_preset("long")
    assert long.mllm == demo.mllm and long.judge == demo.judge and long.clip == demo.clip
    assert (long.n_bench, long.n_heldout, long.val_images) == (demo.n_bench, demo.n_heldout, demo.val_images)
    assert long.retrain_seeds == demo.retrain_seeds and long.l_replay == demo.l_replay and long.judge_lambda == demo.judge_lambda
    assert long.n_collect == 2 * demo.n_collect and long.n_corpus == 2 * demo.n_corpus
    for a, b in ((long.base_train, demo.base_train), (long.l_train, demo.l_train), (long.judge_train, demo.judge_train),
                 (long.s_train[1], demo.s_train[1]), (long.vision_pretrain, demo.vision_pretrain)):
        assert a.steps > b.steps and a.lr == b.lr and a.batch_size == b.batch_size
