"""A continuous face-quality value in [0, 1], for ranking and thresholds.

The value is the expected class rank under the model's probabilities, scaled to [0, 1]:

    value = sum(p[c] * rank(c)) / (number of classes - 1)

with ``rank`` 0 for the worst class and ``number of classes - 1`` for the best. For the
published classes the ranks are ``poor`` 0, ``ok`` 1, ``good`` 2, ``excellent`` 3, so a
face that is surely ``excellent`` scores 1, surely ``poor`` 0, and a face split evenly
between ``good`` and ``excellent`` 0.833. Unlike the top probability, the value moves
smoothly between classes and orders faces within a class by how far they lean towards
the next one. Classes outside that vocabulary are ranked in the model's own order.
"""
from typing import Dict, List, Mapping, Optional, Sequence

__all__ = ['QUALITY_ORDER', 'quality_ranks', 'face_quality_value', 'quality_at_least', 'reaches']

#: The published classes, worst first.
QUALITY_ORDER = ('poor', 'ok', 'good', 'excellent')


def quality_ranks(classes: Sequence[str]) -> Dict[str, int]:
    """Rank of each class, 0 for the worst.

    The published vocabulary is ordered by `QUALITY_ORDER` whatever order the model
    lists it in; other class lists keep the model's order.

    >>> quality_ranks(['excellent', 'good', 'ok', 'poor'])
    {'excellent': 3, 'good': 2, 'ok': 1, 'poor': 0}
    """
    classes = list(classes)
    if set(classes) <= set(QUALITY_ORDER):
        ordered = [name for name in QUALITY_ORDER if name in classes]
    else:
        ordered = classes
    return {name: ordered.index(name) for name in classes}


def face_quality_value(scores: Mapping[str, float]) -> float:
    """The continuous quality value of ``{class: probability}`` (see the module docs).

    >>> face_quality_value({'poor': 0.0, 'ok': 0.0, 'good': 0.5, 'excellent': 0.5})
    0.8333333333333334
    >>> face_quality_value({'poor': 1.0, 'ok': 0.0, 'good': 0.0, 'excellent': 0.0})
    0.0
    """
    if len(scores) < 2:
        raise ValueError(f'A quality value needs at least two classes, got {dict(scores)!r}.')
    ranks = quality_ranks(list(scores))
    total = sum(scores.values())
    expected = sum(probability * ranks[name] for name, probability in scores.items()) / total
    return float(expected / (len(scores) - 1))


def quality_at_least(label: str, minimum: str, classes: List[str]) -> bool:
    """Whether class ``label`` ranks at or above class ``minimum``.

    >>> quality_at_least('good', 'ok', list(QUALITY_ORDER))
    True
    """
    ranks = quality_ranks(classes)
    if minimum not in ranks:
        raise ValueError(f'min_label {minimum!r} is not a class of this model; classes: {", ".join(classes)}.')
    return ranks[label] >= ranks[minimum]


def reaches(label: Optional[str], quality: Optional[float], classes: Sequence[str],
            min_label: Optional[str] = None, min_quality: Optional[float] = None) -> bool:
    """Whether a face of class ``label`` and quality value ``quality`` reaches class ``min_label``
    and value ``min_quality`` (``None``: no condition).

    >>> reaches('good', 0.62, QUALITY_ORDER, min_label='ok', min_quality=0.6)
    True

    :raises ValueError: When ``min_label`` is not one of ``classes``.
    :raises TypeError: When ``min_quality`` is not a number (a class goes in ``min_label``).
    """
    if min_quality is not None and (isinstance(min_quality, (str, bool)) or not isinstance(min_quality, (int, float))):
        raise TypeError(f'min_quality is the quality value in [0, 1], not {min_quality!r}; '
                        f'to keep a class or better, give min_label={min_quality!r}.')
    if min_label is not None and not quality_at_least(label, min_label, list(classes)):
        return False
    return min_quality is None or (quality is not None and quality >= min_quality)
