"""The vision pre-stages: per-patch labels from the scene graph, training, and loading into LLaVA (and the contrastive one)."""

import numpy as np
import pytest
import torch

from genixer.finetune import init_vision_tower, vision_pretrain
from genixer.models.embedded import EmbeddedSize, build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer.training import TrainConfig
from genixer.world import WorldConfig, build_split
from genixer.world.patch_labels import HEADS, PATCH_LABELS, patch_labels
from genixer.world.captions import caption_records
from genixer.world.scene import Obj, Scene

SIZE = EmbeddedSize(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=128,
                    text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64, vision_act="gelu")


def test_labels_follow_the_boxes():
    # 128 x 96 image, 4 x 4 grid: patch centres at x = 16, 48, 80, 112 and y = 12, 36, 60, 84
    scene = Scene("s", 128, 96, "plain", 0, [Obj("star", "blue", "large", (0, 0, 60, 40)), Obj("circle", "red", "small", (100, 70, 120, 90))])
    lab = patch_labels(scene, 4)
    colour = lab["colour"].reshape(4, 4)
    blue, red = HEADS["colour"].index("blue"), HEADS["colour"].index("red")
    assert (colour[:2, :2] == blue).all()  # rows y=12,36 < 40; cols x=16,48 < 60
    assert colour[3, 3] == red and colour[2, 3] == 0  # y=84 inside 70..90, y=60 not
    assert (colour > 0).sum() == 5
    assert lab["shape"].reshape(4, 4)[0, 0] == HEADS["shape"].index("star")
    assert lab["size"].reshape(4, 4)[3, 3] == HEADS["size"].index("small")
    box = lab["box"].reshape(4, 4, 4)
    np.testing.assert_allclose(box[0, 0], [0, 0, 60 / 128, 40 / 96], rtol=1e-6)
    assert np.isnan(box[2, 2]).all()


def test_an_object_smaller_than_a_patch_keeps_one_patch():
    scene = Scene("s", 64, 64, "plain", 0, [Obj("square", "green", "small", (2, 2, 6, 6))])  # centre (4, 4), no patch centre inside
    lab = patch_labels(scene, 4)
    assert (lab["colour"] > 0).sum() == 1 and lab["colour"][0] == HEADS["colour"].index("green")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return build_split("collect", 48, root, WorldConfig(image_size=64, max_objects=3))


def test_pretrain_learns_and_loads_into_llava(images, tmp_path):
    cfg = TrainConfig(steps=60, lr=3e-3, batch_size=16, warmup_steps=5)
    res, scores = vision_pretrain(images[:40], SIZE, cfg, tmp_path / "tower", "patch_labels", images[40:],
                                  patch_labels=PATCH_LABELS)
    assert np.mean(res.losses[-10:]) < 0.7 * np.mean(res.losses[:5])
    assert set(scores) == {"colour_accuracy", "shape_accuracy", "size_accuracy", "box_l1"}
    assert all(0 <= v <= 1 for v in scores.values())
    assert (tmp_path / "tower" / "config.json").is_file() and (tmp_path / "tower" / "model.safetensors").is_file()
    llava, _ = build_embedded_mllm(build_tokenizer(["a b"]), SIZE)
    init_vision_tower(llava, tmp_path / "tower")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "tower" / "model.safetensors"))
    ours = llava.model.vision_tower.state_dict()
    assert saved and all(torch.equal(ours[k], v) for k, v in saved.items())


def test_unknown_objective_is_refused(images, tmp_path):
    with pytest.raises(ValueError, match="unknown vision pre-stage objective 'masks'"):
        vision_pretrain(images, SIZE, TrainConfig(steps=1), tmp_path, "masks")


def test_contrastive_objective_still_initialises_the_tower(images, tmp_path):
    res, scores = vision_pretrain(images, SIZE, TrainConfig(steps=4, lr=1e-3, batch_size=8), tmp_path / "clip", "contrastive",
                                  captions=caption_records(images))
    assert res.steps == 4 and scores == {}
    llava, _ = build_embedded_mllm(build_tokenizer(["a b"]), SIZE)
    before = llava.model.vision_tower.embeddings.patch_embedding.weight.clone()
    init_vision_tower(llava, tmp_path / "clip")  # open_clip layout: mapped by vision_tower_from_open_clip
    from genixer.region_clip import load_region_clip

    clip = load_region_clip(tmp_path / "clip")[0]
    after = llava.model.vision_tower.embeddings.patch_embedding.weight
    assert torch.equal(after, clip.visual.conv1.weight) and not torch.equal(after, before)


def test_each_objective_needs_what_the_data_source_gives(images, tmp_path):
    with pytest.raises(ValueError, match="labeller"):
        vision_pretrain(images, SIZE, TrainConfig(steps=1), tmp_path / "t", "patch_labels")  # no labeller: no scene graphs
    with pytest.raises(ValueError, match="captions"):
        vision_pretrain(images, SIZE, TrainConfig(steps=1), tmp_path / "c", "contrastive")
