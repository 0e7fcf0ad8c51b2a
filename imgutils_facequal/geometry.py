"""Pure geometry for head-crop-aware preprocessing: boxes, margins, crops.

Boxes are ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive, as imgutils' detectors
return them. Image sizes are ``(width, height)``. Nothing here touches an image, so every
rule can be checked on numbers alone.

**Margins.** A margin is a multiple of the box's own size, per side: the left and right
margins are ``margin x box width``, the top and bottom margins ``margin x box height``.
This is how the head-crop model's training crops were drawn (each side's margin uniform
in ``[0, max_margin x head size]``), so ``margin=0`` is the head box itself and
``margin=1`` a crop three times the head's width and height, before clamping to the image.

**Face to head.** A face detection covers the face (roughly brows to chin); the head
adds hair above and around it. A face is paired with the smallest ``head`` detection
that contains at least `HEAD_CONTAINMENT` of the face's area; without one, the
head box is the face box expanded by `FACE_TO_HEAD_EXPANSION`.
"""
import math
from typing import List, Optional, Sequence, Tuple

__all__ = [
    'Box',
    'FACE_TO_HEAD_EXPANSION',
    'HEAD_CONTAINMENT',
    'normalize_box',
    'box_area',
    'intersection_area',
    'clamp_box',
    'clip_box',
    'expand_box',
    'face_to_head_box',
    'pair_faces_with_heads',
    'crop_box',
    'random_margin_crop_box',
]

Box = Tuple[float, float, float, float]

#: Face box to head box when no head detection contains the face: multiples of the face's
#: width (left, right) and height (top, bottom) added on each side.
FACE_TO_HEAD_EXPANSION = {'left': 0.25, 'top': 0.5, 'right': 0.25, 'bottom': 0.1}

#: Share of a face box's area that must lie inside a head box for the two to be paired.
HEAD_CONTAINMENT = 0.8


def normalize_box(box: Sequence[float]) -> Box:
    """The box with its corners in order (an inverted box is flipped).

    :raises ValueError: When the box does not have four finite numbers.

    >>> normalize_box((10, 20, 4, 8))
    (4.0, 8.0, 10.0, 20.0)
    """
    if len(box) != 4:
        raise ValueError(f'A box is (x0, y0, x1, y1), got {tuple(box)!r}.')
    x0, y0, x1, y1 = (float(value) for value in box)
    if not all(math.isfinite(value) for value in (x0, y0, x1, y1)):
        raise ValueError(f'A box needs finite coordinates, got {tuple(box)!r}.')
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def box_area(box: Sequence[float]) -> float:
    """Area of a box; 0 for an empty one.

    >>> box_area((0, 0, 4, 5))
    20.0
    """
    x0, y0, x1, y1 = normalize_box(box)
    return (x1 - x0) * (y1 - y0)


def intersection_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Area shared by two boxes.

    >>> intersection_area((0, 0, 4, 4), (2, 2, 10, 10))
    4.0
    """
    ax0, ay0, ax1, ay1 = normalize_box(a)
    bx0, by0, bx1, by1 = normalize_box(b)
    return max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))


def _check_size(image_size: Sequence[int]) -> Tuple[int, int]:
    width, height = (int(value) for value in image_size)
    if width < 1 or height < 1:
        raise ValueError(f'An image size is (width, height) of at least 1 x 1, got {tuple(image_size)!r}.')
    return width, height


def clamp_box(box: Sequence[float], image_size: Sequence[int]) -> Box:
    """The box cut to the image. A box wholly outside collapses onto the nearest edge.

    >>> clamp_box((-5, 10, 50, 200), (40, 100))
    (0.0, 10.0, 40.0, 100.0)
    """
    width, height = _check_size(image_size)
    x0, y0, x1, y1 = normalize_box(box)
    return (min(max(x0, 0.0), float(width)), min(max(y0, 0.0), float(height)),
            min(max(x1, 0.0), float(width)), min(max(y1, 0.0), float(height)))


def clip_box(box: Sequence[float], image_size: Sequence[int]) -> Optional[Box]:
    """The part of a box inside the image, or ``None`` when no area of it is (a box wholly outside, or one
    that is a line or a point).

    Unlike `clamp_box`, a box that does not overlap the image is no box at all: a detection there
    has no pixels to score.

    >>> clip_box((-5, 10, 50, 200), (40, 100))
    (0.0, 10.0, 40.0, 100.0)
    >>> clip_box((50, 10, 80, 20), (40, 100)) is None
    True
    """
    x0, y0, x1, y1 = clamp_box(box, image_size)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def expand_box(box: Sequence[float], left: float, top: float, right: float, bottom: float) -> Box:
    """Grow a box on each side by a multiple of its own width (left, right) or height (top, bottom).

    >>> expand_box((10, 10, 20, 30), left=0.5, top=0.25, right=0.5, bottom=0)
    (5.0, 5.0, 25.0, 30.0)
    """
    x0, y0, x1, y1 = normalize_box(box)
    width, height = x1 - x0, y1 - y0
    return x0 - left * width, y0 - top * height, x1 + right * width, y1 + bottom * height


def face_to_head_box(face_box: Sequence[float]) -> Box:
    """A head box estimated from a face box alone (see `FACE_TO_HEAD_EXPANSION`).

    >>> face_to_head_box((100, 100, 140, 150))
    (90.0, 75.0, 150.0, 155.0)
    """
    return expand_box(face_box, **FACE_TO_HEAD_EXPANSION)


def pair_faces_with_heads(face_boxes: Sequence[Sequence[float]],
                          head_boxes: Sequence[Sequence[float]],
                          containment: float = HEAD_CONTAINMENT) -> List[Optional[int]]:
    """For each face, the index of the smallest head box holding ``containment`` of its area.

    ``None`` where no head qualifies. An empty face box is held by a head that contains its
    point. Several faces may share one head.

    >>> pair_faces_with_heads([(10, 10, 20, 20), (200, 200, 210, 210)], [(0, 0, 100, 100), (5, 5, 30, 30)])
    [1, None]
    """
    pairs: List[Optional[int]] = []
    for face in face_boxes:
        face = normalize_box(face)
        face_size = box_area(face)
        best, best_area = None, math.inf
        for index, head in enumerate(head_boxes):
            head = normalize_box(head)
            if face_size > 0:
                held = intersection_area(face, head) / face_size >= containment
            else:
                held = head[0] <= face[0] <= head[2] and head[1] <= face[1] <= head[3]
            if held and box_area(head) < best_area:
                best, best_area = index, box_area(head)
        pairs.append(best)
    return pairs


def crop_box(box: Sequence[float], margin: float, image_size: Sequence[int]) -> Tuple[int, int, int, int]:
    """The integer crop for a box plus ``margin`` per side, clamped to the image.

    Each side's margin is ``margin`` times the box's width (left, right) or height (top,
    bottom). The result lies inside the image, is at least one pixel wide and high, and
    contains the part of the box that is inside the image (rounded outwards to whole pixels).
    A box bigger than the image gives the whole image.

    :raises ValueError: When ``margin`` is negative or not finite, or the image size is empty.

    >>> crop_box((100, 100, 140, 150), 0.5, (640, 480))
    (80, 75, 160, 175)
    >>> crop_box((100, 100, 140, 150), 0.5, (120, 480))
    (80, 75, 120, 175)
    >>> crop_box((-50, -50, 1000, 1000), 0.5, (640, 480))
    (0, 0, 640, 480)
    """
    if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f'margin is a multiple of the box size per side, 0 or more; got {margin!r}.')
    width, height = _check_size(image_size)
    expanded = expand_box(box, margin, margin, margin, margin)
    x0, y0, x1, y1 = clamp_box(expanded, (width, height))
    left, top = int(math.floor(x0)), int(math.floor(y0))
    right, bottom = int(math.ceil(x1)), int(math.ceil(y1))
    if right <= left:
        left, right = (left, left + 1) if left < width else (width - 1, width)
    if bottom <= top:
        top, bottom = (top, top + 1) if top < height else (height - 1, height)
    return left, top, right, bottom


def random_margin_crop_box(head_box: Sequence[float], max_margin: Optional[float], image_size: Sequence[int],
                           draws: Sequence[float]) -> Tuple[int, int, int, int]:
    """The model card's crop-robustness crop: the head box plus a random margin per side.

    Each side's margin is ``draw x max_margin x head_dim``, where ``draws`` are four numbers
    in [0, 1] (left, top, right, bottom; uniform draws in the protocol) and ``head_dim`` is
    the head's width for the left and right sides and its height for the top and bottom.
    The crop is clamped to the image and rounded outwards to whole pixels, so it always
    contains the part of the head box inside the image. ``max_margin=0`` gives the head box
    itself (``head_only``); ``max_margin=None`` gives the whole frame (``full``).

    Using the same ``draws`` for every ``max_margin`` pairs the settings: a ``loose_2x`` crop
    has, before clamping, exactly twice the margins of the ``loose_1x`` crop of that image.

    >>> random_margin_crop_box((100, 100, 140, 150), 1.0, (640, 480), (0.5, 0.2, 0.0, 1.0))
    (80, 90, 140, 200)
    >>> random_margin_crop_box((100, 100, 140, 150), 0.0, (640, 480), (0.5, 0.2, 0.0, 1.0))
    (100, 100, 140, 150)
    >>> random_margin_crop_box((100, 100, 140, 150), None, (640, 480), (0.5, 0.2, 0.0, 1.0))
    (0, 0, 640, 480)
    """
    width, height = _check_size(image_size)
    if max_margin is None:
        return 0, 0, width, height
    if len(draws) != 4 or not all(0.0 <= float(d) <= 1.0 for d in draws):
        raise ValueError(f'draws are four numbers in [0, 1] (left, top, right, bottom); got {tuple(draws)!r}.')
    if not isinstance(max_margin, (int, float)) or not math.isfinite(max_margin) or max_margin < 0:
        raise ValueError(f'max_margin is a multiple of the head size, 0 or more; got {max_margin!r}.')
    left, top, right, bottom = (float(d) * max_margin for d in draws)
    expanded = expand_box(head_box, left, top, right, bottom)
    x0, y0, x1, y1 = clamp_box(expanded, (width, height))
    box = (int(math.floor(x0)), int(math.floor(y0)), int(math.ceil(x1)), int(math.ceil(y1)))
    if box[2] <= box[0] or box[3] <= box[1]:  # a head box with no area inside the image
        return crop_box(box, 0, (width, height))
    return box
