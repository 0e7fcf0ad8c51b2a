"""The one rule for "this image is complete", for resuming a run and for reading saved scores.

Every face row carries ``face`` (its index) and ``faces`` (how many the image has). An image
is complete when its rows hold every index from 0 to ``faces - 1``, or a row with ``faces``
0 (per-image rows: one row without an error), wherever those rows are: in one file or split
over several shards, once or repeated. An image with no complete rows and an error row
failed, and a resume scores it again; one with neither was cut short by an interrupt, and
its rows are dropped.
"""
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Sequence, Set, Tuple

from .paths import image_key

__all__ = ['COMPLETE', 'FAILED', 'INCOMPLETE', 'ImageRows', 'image_rows', 'complete_images']

COMPLETE, FAILED, INCOMPLETE = 'complete', 'failed', 'incomplete'


class ImageRows(NamedTuple):
    """An image's state, and the rows that count: one per face, in face order (a complete image), its
    first error row (a failed one), or none."""
    state: str
    rows: List[dict]


def _state(found: List[dict], per_image: bool) -> ImageRows:
    scored = [row for row in found if not row.get('error')]
    if per_image and scored:
        return ImageRows(COMPLETE, scored[:1])
    expected = next((row.get('faces') for row in scored if row.get('faces') is not None), None)
    if expected == 0:
        return ImageRows(COMPLETE, [next(row for row in scored if row.get('faces') == 0)])
    if expected:
        faces: Dict[int, dict] = {}
        for row in scored:
            if row.get('faces') == expected and row.get('face') is not None:
                faces.setdefault(row['face'], row)
        if len(faces) == expected and set(faces) == set(range(expected)):
            return ImageRows(COMPLETE, [faces[index] for index in range(expected)])
    errors = [row for row in found if row.get('error')]
    return ImageRows(FAILED, errors[:1]) if errors else ImageRows(INCOMPLETE, [])


def image_rows(rows: Sequence[dict], per_image: bool = False,
               key: Callable[[str], str] = image_key) -> Dict[str, ImageRows]:
    """Each image's state and counted rows, by ``key`` (default the real path,
    `imgutils_facequal.store.paths.image_key`; ``str`` for ids that are no paths), in order of first row."""
    grouped: Dict[str, List[dict]] = OrderedDict()
    keys: Dict[str, str] = {}
    for row in rows:
        image = row['image']
        if image not in keys:
            keys[image] = key(image)
        grouped.setdefault(keys[image], []).append(row)
    return OrderedDict((image, _state(found, per_image)) for image, found in grouped.items())


def complete_images(rows: Sequence[dict], per_image: bool = False,
                    key: Callable[[str], str] = image_key) -> Tuple[Set[str], List[dict]]:
    """The complete images (by ``key``, as for `image_rows`), and their counted rows, in order; failed and
    incomplete images are left out."""
    states = image_rows(rows, per_image, key)
    done = {image for image, found in states.items() if found.state == COMPLETE}
    return done, [row for found in states.values() if found.state == COMPLETE for row in found.rows]
