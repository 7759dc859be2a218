"""The shared reader machinery: boxes at the image edge, and the sample a record becomes."""

import pytest

from genixer.sources.common import EDGE_SLACK_PX, Context, ImageRef, Reject

IMAGE = ImageRef(image_id="a.jpg", path="/x/a.jpg", width=100, height=50)


def _rec(box):
    ctx = Context("test", None)
    return ctx.sample("rec", [("Which region does this describe: a cup?", "[0,0,1,1]")], IMAGE, 7, "f.json", boxes=[box])


def test_a_box_rounded_just_past_the_edge_is_moved_onto_it():
    s = _rec([-1.5, -0.5, 100 + EDGE_SLACK_PX, 51])
    assert s["boxes"] == [[0.0, 0.0, 100.0, 50.0]]
    assert s["sample_id"] == "test:7:rec" and s["source"] == "test:f.json" and s["record_id"] == "7"


@pytest.mark.parametrize("box", [[-3, 0, 10, 10], [0, 0, 10, 53], [20, 5, 10, 10]])
def test_a_box_further_out_or_inverted_quarantines_the_record(box):
    with pytest.raises(Reject, match="not inside the 100x50 image"):
        _rec(box)
