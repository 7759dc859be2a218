"""The one box-format module: conventions, text format, parsing and IoU."""

import itertools

import pytest

from genixer.boxes import (
    CONVENTIONS,
    BoxFormatError,
    box_to_text,
    boxes_to_text,
    convert,
    find_box_groups,
    from_xyxy,
    inside,
    iou,
    parse_boxes,
    parse_point,
    point_to_text,
    to_xyxy,
)

SIZES = [(128, 128), (128, 96), (96, 128)]
# pixel xyxy boxes valid in every size above (x1 <= 96, y1 <= 96)
PIXEL_BOXES = [(0.0, 0.0, 96.0, 96.0), (10.0, 20.0, 30.0, 45.0), (33.5, 7.25, 90.0, 61.0), (1.0, 1.0, 2.0, 2.0)]


def _tol(*convs):
    # int1000 rounds to integers: at most 0.5/1000 of the side, i.e. 0.064 px on 128 px
    return 0.1 if "int1000" in convs else 1e-9


@pytest.mark.parametrize("wh", SIZES)
@pytest.mark.parametrize("src,dst", list(itertools.product(CONVENTIONS, CONVENTIONS)))
def test_convert_every_pair_round_trips(wh, src, dst):
    w, h = wh
    for px in PIXEL_BOXES:
        b_src = from_xyxy(px, src, w, h)
        b_dst = convert(b_src, src, dst, w, h)
        # the converted box lands on the same pixels ...
        assert to_xyxy(b_dst, dst, w, h) == pytest.approx(px, abs=_tol(src, dst))
        # ... and converting back reproduces the source representation
        back = convert(b_dst, dst, src, w, h)
        assert to_xyxy(back, src, w, h) == pytest.approx(px, abs=_tol(src, dst))
        if src != "int1000" and dst != "int1000":
            assert back == pytest.approx(b_src, abs=1e-9)


def test_conventions_hand_worked():
    w, h = 128, 96
    px = (32, 24, 96, 72)
    assert from_xyxy(px, "xywh", w, h) == pytest.approx((32, 24, 64, 48))
    assert from_xyxy(px, "norm", w, h) == pytest.approx((0.25, 0.25, 0.75, 0.75))
    assert from_xyxy(px, "int1000", w, h) == (250, 250, 750, 750)
    assert all(isinstance(v, int) for v in from_xyxy((10, 10, 50, 50), "int1000", w, h))
    assert from_xyxy((10, 10, 50, 50), "int1000", w, h) == (78, 104, 391, 521)
    assert to_xyxy((32, 24, 64, 48), "xywh", w, h) == pytest.approx(px)


def test_norm_pad_matches_expand2square_by_hand():
    # Shikra's expand2square pastes a 128x96 image into a 128x128 square at (0, (128-96)//2) = (0, 16).
    w, h = 128, 96
    px = (32, 24, 96, 72)
    # in the padded square: x unchanged, y + 16; then / 128
    expected = (32 / 128, (24 + 16) / 128, 96 / 128, (72 + 16) / 128)
    assert expected == (0.25, 0.3125, 0.75, 0.6875)
    assert from_xyxy(px, "norm_pad", w, h) == pytest.approx(expected)
    assert to_xyxy(expected, "norm_pad", w, h) == pytest.approx(px)
    # portrait: pasted at ((128-96)//2, 0) = (16, 0)
    px2 = (24, 32, 72, 96)
    assert from_xyxy(px2, "norm_pad", 96, 128) == pytest.approx((40 / 128, 32 / 128, 88 / 128, 96 / 128))


@pytest.mark.parametrize("wh", [(128, 96), (96, 128)])
def test_norm_pad_differs_from_norm_on_non_square(wh):
    w, h = wh
    px = (10, 20, 30, 45)
    a, b = from_xyxy(px, "norm", w, h), from_xyxy(px, "norm_pad", w, h)
    assert max(abs(x - y) for x, y in zip(a, b)) > 0.05


def test_norm_pad_equals_norm_on_square():
    px = (10, 20, 30, 45)
    assert from_xyxy(px, "norm_pad", 128, 128) == pytest.approx(from_xyxy(px, "norm", 128, 128))


def test_unknown_convention_raises():
    with pytest.raises(ValueError, match="unknown box convention"):
        to_xyxy((0, 0, 1, 1), "yolo", 10, 10)
    with pytest.raises(ValueError, match="unknown box convention"):
        from_xyxy((0, 0, 1, 1), "yolo", 10, 10)


def test_box_to_text_three_decimals():
    assert box_to_text((16, 24, 80, 72), 128, 96) == "[0.125,0.250,0.625,0.750]"
    # 1/128=0.0078 1/96=0.0104 7/128=0.0547 7/96=0.0729
    assert box_to_text((1, 1, 7, 7), 128, 96) == "[0.008,0.010,0.055,0.073]"
    # normalised by each side separately: same pixels, transposed image
    assert box_to_text((1, 1, 7, 7), 96, 128) == "[0.010,0.008,0.073,0.055]"


def test_boxes_to_text_semicolon():
    text = boxes_to_text([(16, 24, 80, 72), (0, 0, 128, 96)], 128, 96)
    assert text == "[0.125,0.250,0.625,0.750;0.000,0.000,1.000,1.000]"
    assert boxes_to_text([(16, 24, 80, 72)], 128, 96) == box_to_text((16, 24, 80, 72), 128, 96)
    assert find_box_groups(f"The circle {text} and the square [0.1,0.2,0.3,0.4].") == [text, "[0.1,0.2,0.3,0.4]"]


def test_point_text_and_parse():
    assert point_to_text((32, 48), 128, 96) == "[0.250,0.500]"
    assert parse_point("[0.250,0.500]", 128, 96) == pytest.approx((32, 48))
    with pytest.raises(BoxFormatError):
        parse_point("[0.2,1.5]", 128, 96)
    with pytest.raises(BoxFormatError):
        parse_point("[0.2,0.3,0.4]", 128, 96)


@pytest.mark.parametrize("wh", SIZES)
def test_parse_boxes_inverts_boxes_to_text_within_1px(wh):
    w, h = wh
    boxes = [(3, 5, 40, 41), (50.5, 12.2, 77.7, 90.1), (0, 0, 96, 96)]
    parsed = parse_boxes(boxes_to_text(boxes, w, h), w, h)
    assert len(parsed) == 3
    for got, want in zip(parsed, boxes):
        assert got == pytest.approx(want, abs=1.0)
    (one,) = parse_boxes(box_to_text(boxes[1], w, h), w, h)
    assert one == pytest.approx(boxes[1], abs=1.0)


def test_parse_boxes_tolerates_spaces():
    assert parse_boxes(" [0.1, 0.2 ,0.3,0.4 ; 0.5,0.5,1,1] ", 100, 200) == [
        pytest.approx((10, 40, 30, 80)), pytest.approx((50, 100, 100, 200))]


@pytest.mark.parametrize("text", [
    "", "0.1,0.2,0.3,0.4", "[0.1,0.2,0.3]", "[0.1,0.2,0.3,0.4,0.5]", "[a,b,c,d]", "(0.1,0.2,0.3,0.4)",
    "[0.1,0.2,0.3,0.4", "[-0.1,0.2,0.3,0.4]", "[0.1,0.2,0.3,0.4;]", "[0.1;0.2;0.3;0.4]",
])
def test_parse_boxes_malformed(text):
    with pytest.raises(BoxFormatError):
        parse_boxes(text, 128, 96)


@pytest.mark.parametrize("text", ["[0.5,0.2,0.1,0.4]", "[0.1,0.4,0.3,0.2]", "[0.3,0.3,0.3,0.5]",
                                  "[0.1,0.1,0.2,0.2;0.5,0.2,0.1,0.4]"])
def test_parse_boxes_inverted_or_empty(text):
    with pytest.raises(BoxFormatError, match="inverted"):
        parse_boxes(text, 128, 96)


@pytest.mark.parametrize("text", ["[0.1,0.2,1.3,0.4]", "[0.1,0.2,0.3,2]", "[0.1,0.1,0.2,0.2;0.1,0.2,0.3,1.001]"])
def test_parse_boxes_coordinate_above_one(text):
    with pytest.raises(BoxFormatError, match="outside"):
        parse_boxes(text, 128, 96)


def test_box_format_error_is_value_error():
    assert issubclass(BoxFormatError, ValueError)


def test_iou_hand_worked():
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == pytest.approx(1.0)
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)  # inter 1, union 4+4-1
    assert iou((0, 0, 4, 4), (0, 0, 2, 2)) == pytest.approx(0.25)  # contained: 4/16
    assert iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # touching edges
    assert iou((0, 0, 2, 2), (5, 5, 6, 6)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)  # half-width shift
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == iou((0, 0, 1, 1), (0, 0, 1, 1))
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # degenerate: no division by zero


def test_inside():
    assert inside((0, 0, 128, 96), 128, 96)
    assert not inside((0, 0, 129, 96), 128, 96)
    assert not inside((-1, 0, 10, 10), 128, 96)
    assert not inside((10, 10, 10, 20), 128, 96)  # empty
