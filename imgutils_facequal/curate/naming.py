"""Names under an output folder that no two inputs share: ``x.png`` and ``x.jpg`` side by side,
``a/x.png`` and ``b/x.png`` from two roots."""
import os
from collections import defaultdict
from typing import Callable, Dict, List, Sequence

from ..pipeline import IMAGE_EXTENSIONS, InputImage
from ..store.paths import common_root

__all__ = ['output_stem', 'output_stems', 'output_paths', 'common_root']


def _image_stems(directory: str) -> Dict[str, int]:
    """How many image files of a folder share each stem (cached for the folder being walked)."""
    if directory in _stem_cache:
        return _stem_cache[directory]
    counts: Dict[str, int] = defaultdict(int)
    try:
        names = os.listdir(directory or '.')
    except OSError:
        names = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            counts[stem] += 1
    if len(_stem_cache) > 8:
        _stem_cache.clear()
    _stem_cache[directory] = counts
    return counts


_stem_cache: Dict[str, Dict[str, int]] = {}


def output_stem(image: InputImage) -> str:
    """The relative name, without extension, of the files made from one image.

    It is the image's relative path without its extension (``ep1/x`` for ``ep1/x.png``),
    unless another image with the same stem sits beside it (``x.png`` and ``x.jpg``): then
    the extension stays (``ep1/x.png``, ``ep1/x.jpg``), so the two never share an output.
    """
    relative = image.relative_path
    stem = os.path.splitext(relative)[0]
    if _image_stems(os.path.dirname(image.path)).get(os.path.basename(stem), 0) > 1:
        return relative
    return stem


def _unique(images: Sequence[InputImage], name: Callable[[InputImage], str], strip_ext: bool) -> Dict[str, str]:
    """``name`` of every image, then names that several images share made unique: by the
    extension (``x.png``, ``x.jpg``), then by the path from the folder above the roots
    (``a/x``, ``b/x``), then (never expected) by a number."""
    names = {image.path: name(image) for image in images}

    def keyed():
        groups: Dict[str, List[InputImage]] = defaultdict(list)
        for image in images:
            groups[os.path.normcase(names[image.path])].append(image)
        return [group for group in groups.values() if len(group) > 1]

    for _ in range(3):
        clashes = keyed()
        if not clashes:
            return names
        for group in clashes:
            extensions = {os.path.splitext(image.path)[1] for image in group}
            if strip_ext and len(extensions) == len(group):  # x.png and x.jpg: keep the extension
                for image in group:
                    names[image.path] += os.path.splitext(image.path)[1]
                continue
            # the same relative path under two roots: the path from the folder above them
            root = os.path.commonpath([os.path.dirname(os.path.abspath(image.path)) for image in group])
            for image in group:
                relative = os.path.relpath(os.path.abspath(image.path), root)
                had_ext = not strip_ext or names[image.path].endswith(os.path.splitext(image.path)[1])
                names[image.path] = relative if had_ext else os.path.splitext(relative)[0]
    seen: Dict[str, int] = defaultdict(int)
    for image in sorted(images, key=lambda image: (image.path, image.root)):
        key = os.path.normcase(names[image.path])
        seen[key] += 1
        if seen[key] > 1:
            stem, ext = (names[image.path], '') if strip_ext else os.path.splitext(names[image.path])
            names[image.path] = f'{stem}~{seen[key]}{ext}'
    return names


def output_stems(images: Sequence[InputImage]) -> Dict[str, str]:
    """`output_stem` of every image, made unique across the set: ``a/x.png`` and ``b/x.png``
    given as two roots become ``a/x`` and ``b/x``. Keyed by image path; the same for the same
    set of inputs, so a rerun names every output the same."""
    return _unique(images, output_stem, strip_ext=True)


def output_paths(images: Sequence[InputImage]) -> Dict[str, str]:
    """Relative paths under an output folder, one per image, unique across the set (see `output_stems`)."""
    return _unique(images, lambda image: image.relative_path, strip_ext=False)
