import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgutils_facequal.geometry import (
    FACE_TO_HEAD_EXPANSION, box_area, clamp_box, crop_box, expand_box, face_to_head_box, intersection_area,
    normalize_box, pair_faces_with_heads,
)

coordinate = st.floats(min_value=-2000, max_value=4000, allow_nan=False, allow_infinity=False)
boxes = st.tuples(coordinate, coordinate, coordinate, coordinate)
image_sizes = st.tuples(st.integers(1, 3000), st.integers(1, 3000))
margins = st.floats(min_value=0, max_value=8, allow_nan=False)


def inside_part(box, size):
    x0, y0, x1, y1 = normalize_box(box)
    return max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])


@settings(max_examples=400, deadline=None)
@given(box=boxes, margin=margins, size=image_sizes)
def test_crop_is_inside_the_image_not_empty_and_holds_the_visible_head(box, margin, size):
    left, top, right, bottom = crop_box(box, margin, size)
    assert all(isinstance(value, int) for value in (left, top, right, bottom))
    assert 0 <= left < right <= size[0]
    assert 0 <= top < bottom <= size[1]
    x0, y0, x1, y1 = inside_part(box, size)
    if x0 < x1 and y0 < y1:  # some of the head is in the image: all of that part is in the crop
        assert left <= x0 and top <= y0 and right >= x1 and bottom >= y1


@settings(max_examples=300, deadline=None)
@given(x=st.floats(0, 500), y=st.floats(0, 500), width=st.floats(1, 200), height=st.floats(1, 200),
       margin=margins)
def test_margins_scale_with_the_head_per_side(x, y, width, height, margin):
    big_image = (int(x + width * (1 + 2 * margin) + 2 * width * margin + 10),
                 int(y + height * (1 + 2 * margin) + 2 * height * margin + 10))
    shifted = (x + width * margin + 1, y + height * margin + 1,
               x + width * margin + 1 + width, y + height * margin + 1 + height)
    left, top, right, bottom = crop_box(shifted, margin, big_image)
    width, height = shifted[2] - shifted[0], shifted[3] - shifted[1]  # as the floats came out
    # Unclamped: width * (1 + 2 margin) wide and height * (1 + 2 margin) high, up to outward rounding.
    slack = 1e-6  # float rounding of the box corners themselves
    assert width * (1 + 2 * margin) - slack <= right - left <= width * (1 + 2 * margin) + 2
    assert height * (1 + 2 * margin) - slack <= bottom - top <= height * (1 + 2 * margin) + 2
    assert left <= shifted[0] - width * margin + slack and right >= shifted[2] + width * margin - slack


def test_margin_zero_is_the_head_box():
    assert crop_box((10, 20, 50, 80), 0, (100, 100)) == (10, 20, 50, 80)
    assert crop_box((10.4, 20.6, 49.2, 79.9), 0, (100, 100)) == (10, 20, 50, 80)


def test_odd_boxes():
    size = (100, 80)
    assert crop_box((50, 40, 30, 10), 0, size) == (30, 10, 50, 40)  # inverted
    assert crop_box((20, 20, 20, 20), 0, size) == (20, 20, 21, 21)  # empty
    assert crop_box((20, 20, 20, 20), 2.0, size) == (20, 20, 21, 21)  # empty stays a point
    assert crop_box((-500, -500, 2000, 2000), 0.5, size) == (0, 0, 100, 80)  # bigger than the image
    assert crop_box((300, 300, 400, 400), 0.5, size) == (99, 79, 100, 80)  # outside: nearest pixel
    assert crop_box((-40, 10, -20, 30), 0, size) == (0, 10, 1, 30)  # left of the image


@pytest.mark.parametrize('margin', [-0.1, math.nan, math.inf, '1'])
def test_bad_margins(margin):
    with pytest.raises(ValueError, match='margin'):
        crop_box((0, 0, 10, 10), margin, (100, 100))


@pytest.mark.parametrize('box', [(0, 0, 1), (0, 0, math.nan, 4), (0, 0, math.inf, 1)])
def test_bad_boxes(box):
    with pytest.raises(ValueError, match='box'):
        normalize_box(box)


def test_bad_image_size():
    with pytest.raises(ValueError, match='image size'):
        crop_box((0, 0, 10, 10), 0.5, (0, 10))


def test_areas_and_clamping():
    assert box_area((5, 5, 1, 1)) == 16
    assert intersection_area((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert clamp_box((-10, -10, 5, 500), (40, 30)) == (0, 0, 5, 30)
    assert expand_box((0, 0, 10, 20), 1, 0.5, 0, 0) == (-10, -10, 10, 20)


def test_face_to_head_expansion_is_documented():
    face = (100, 100, 140, 150)
    head = face_to_head_box(face)
    assert head == (100 - 40 * FACE_TO_HEAD_EXPANSION['left'], 100 - 50 * FACE_TO_HEAD_EXPANSION['top'],
                    140 + 40 * FACE_TO_HEAD_EXPANSION['right'], 150 + 50 * FACE_TO_HEAD_EXPANSION['bottom'])
    assert intersection_area(face, head) == box_area(face)


def test_pairing_prefers_the_smallest_containing_head():
    faces = [(10, 10, 20, 20), (60, 60, 70, 70), (95, 95, 105, 105), (300, 300, 300, 300)]
    heads = [(0, 0, 100, 100), (5, 5, 30, 30), (50, 50, 80, 80), (290, 290, 310, 310)]
    # the third face is only a quarter inside any head: not paired
    assert pair_faces_with_heads(faces, heads) == [1, 2, None, 3]
    assert pair_faces_with_heads(faces, []) == [None] * 4


@settings(max_examples=200, deadline=None)
@given(face=boxes, heads=st.lists(boxes, max_size=5))
def test_paired_heads_hold_the_face(face, heads):
    (index,) = pair_faces_with_heads([face], heads)
    if index is not None and box_area(face) > 0:
        assert intersection_area(face, heads[index]) >= 0.8 * box_area(face) - 1e-6
