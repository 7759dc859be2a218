"""The data source chosen once from what was collected: the world's or the collected data's, one interface."""

import random

import pandas as pd
import pytest

from genixer.datasource import choose, from_world, holdout_images
from genixer.sources import negatives as collected_negatives
from genixer.sources.collected import CollectedSource, caption_records as collected_captions
from genixer.task_form import task_by_form
from genixer.world import Scene, WorldConfig, annotate_images, build_split
from genixer.world.captions import caption_records
from genixer.world.negatives import verification_records
from genixer.world.oracle import task_of
from genixer.world.source import WorldSource


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    images = build_split("collect", 30, tmp_path_factory.mktemp("world"), WorldConfig(image_size=64, max_objects=3), base_seed=2)
    corpus = build_split("corpus", 4, tmp_path_factory.mktemp("corpus"), WorldConfig(image_size=64, max_objects=3), base_seed=2)
    return pd.DataFrame(images + corpus), annotate_images(images, seed=1)


def test_the_world_is_chosen_from_the_collected_samples(world):
    scenes, samples = world
    src = choose(pd.DataFrame(samples), scenes, None, 5)
    assert isinstance(src, WorldSource) and src.name == "shapes_world" and from_world(pd.DataFrame(samples))
    assert list(src.collect_images.image_id) == list(scenes[scenes.split == "collect"].image_id)
    assert src.heldout == holdout_images(src.collect_images.image_id, 5) and len(src.heldout) == 5
    assert src.task_of is task_of and src.patch_labels is not None and src.oracle is not None
    with pytest.raises(ValueError, match="world_scenes"):
        choose(pd.DataFrame(samples), None, None, 5)


def test_the_world_source_gives_what_the_world_modules_make(world):
    scenes, samples = world
    src = choose(pd.DataFrame(samples), scenes, None, 5)
    by_id = {r.image_id: Scene.from_json(r.scene) for r in scenes.itertuples()}
    assert src.judge_records(samples, 3) == verification_records(samples, random.Random(3), by_id)
    ids = set(sorted(src.collect_images.image_id)[:4])
    records, where = src.captions(samples, ids)
    assert records == caption_records(scenes[scenes.image_id.isin(ids)].to_dict("records")) and where == "world scene graphs"
    # the oracle handle sees every split: a corpus sample is checked against its own scene
    corpus_id = scenes[scenes.split == "corpus"].image_id.iloc[0]
    assert src.oracle.check({"task": "common_vqa", "turns": [{"question": "How many objects are there?",
                                                                "answer": str(len(by_id[corpus_id].objects))}],
                             "image_id": corpus_id}).ok
    assert src.judge_generation("no question here", {"scene": None})["oracle"] == "unparseable"


def test_published_data_gets_the_collected_source(world):
    _, samples = world
    collected = pd.DataFrame(samples).assign(source="vqav2:questions.json")
    src = choose(collected, None, None, 100)
    assert isinstance(src, CollectedSource) and src.name == "collected" and not from_world(collected)
    assert src.oracle is None and src.patch_labels is None and src.task_of is task_by_form
    assert len(src.heldout) == 30 // 5  # at most a fifth of the images
    recs = [dict(s) for s in samples]
    assert src.judge_records(recs, 3) == collected_negatives.verification_records(
        recs, random.Random(3), collected_negatives.build_pool(recs))
    assert src.captions(recs, {s["image_id"] for s in recs})[0] == collected_captions(recs, reading=src.rec_reading)
    row = src.judge_generation("Question: What colour is the circle? Answer: red", {})
    assert row["oracle"] == "unchecked" and row["task_of"] == "common_vqa"


def test_region_candidates_are_the_ones_negative_pairs_used(world):
    from genixer.region_clip import sample_candidates
    from genixer.world.regions import WORLD_REC_READING, scene_candidates

    scenes, samples = world
    src = choose(pd.DataFrame(samples), scenes, None, 5)
    collect = scenes[scenes.split == "collect"]
    assert src.rec_reading is WORLD_REC_READING
    assert src.region_candidates([]) == scene_candidates(collect[collect.image_id.isin(src.heldout)])
    published = choose(pd.DataFrame(samples).assign(source="refcoco:refs.json"), None, None, 100)
    held = [s for s in samples if s["image_id"] in published.heldout]
    assert published.rec_reading is WORLD_REC_READING
    assert published.region_candidates(held) == sample_candidates([s for s in held if s["task"] in ("rec", "reg")],
                                                                   reading=WORLD_REC_READING)
    assert published.region_candidates(held)  # the world's REC samples, read as published ones
