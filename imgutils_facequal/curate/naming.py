"""Names under an output folder that no two inputs share: ``x.png`` and ``x.jpg`` side by side,
``a/x.png`` and ``b/x.png`` from two roots; names built from data (a class label) made safe, and
kept short enough for any file system; and the check that a name stays inside its folder."""
import hashlib
import os
import re
from collections import defaultdict
from typing import Callable, Dict, List, Sequence

from ..pipeline import IMAGE_EXTENSIONS, InputImage
from ..store.paths import common_root

__all__ = ['output_stem', 'output_stems', 'output_paths', 'common_root', 'safe_name', 'fit_name', 'crop_name',
           'target_in', 'MAX_NAME_BYTES']


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


#: The longest file name (one part of a path) common file systems take, in bytes.
MAX_NAME_BYTES = 255
# separators, control characters and what Windows refuses in a name
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_name(text) -> str:
    """``text`` (a class label, any data) as one part of a file name: path separators, control
    characters and the characters Windows refuses become ``_``, and so does a name of dots alone.

    >>> safe_name('good'), safe_name('../../up'), safe_name('a/b\\\\c:d'), safe_name('..')
    ('good', '.._.._up', 'a_b_c_d', '_')
    """
    name = _UNSAFE.sub('_', str(text)).rstrip(' .')  # Windows drops trailing dots and spaces
    return name if name.strip('.') else '_'


def _bytes(text: str) -> int:
    return len(os.fsencode(text))


def _cut(text: str, limit: int) -> str:
    """The longest beginning of ``text`` of at most ``limit`` bytes, never cutting a character."""
    kept, size = [], 0
    for char in text:
        size += _bytes(char)
        if size > limit:
            break
        kept.append(char)
    return ''.join(kept)


def fit_name(head: str, tail: str = '', room: int = 0) -> str:
    """``head + tail`` as a file name of at most `MAX_NAME_BYTES` less ``room`` bytes (for an
    extension): when it is longer, ``head`` is cut and a short hash of the whole name follows it,
    so two long names that differ only at their end still differ; ``tail`` (a face's index,
    label and quality) stays whole.

    >>> fit_name('x', '_0_good_0.900', room=5)
    'x_0_good_0.900'
    >>> name = fit_name('a' * 300, '_0_good_0.900', room=5)
    >>> len(name.encode()), name.endswith('_0_good_0.900'), name != fit_name('a' * 299 + 'b', '_0_good_0.900', room=5)
    (250, True, True)
    """
    limit = MAX_NAME_BYTES - room
    if _bytes(head + tail) <= limit:
        return head + tail
    digest = '~' + hashlib.sha1(os.fsencode(head + tail)).hexdigest()[:8]
    if _bytes(tail) + len(digest) >= limit:  # the tail alone is too long: cut the whole name
        tail, head = '', head + tail
    return _cut(head, limit - len(digest) - _bytes(tail)) + digest + tail


def crop_name(stem: str, index: int, label=None, quality=None, room: int = len('.json')) -> str:
    """The relative name, without extension, of a face's crop: ``{stem}_{index}``, and with a
    label ``{stem}_{index}_{label}_{quality:.3f}``; the label made safe (`safe_name`) and the
    name short enough for any file system (`fit_name`, ``room`` left for the extension).

    >>> crop_name('ep1/x', 0, 'good', 0.9).replace(os.sep, '/')
    'ep1/x_0_good_0.900'
    >>> crop_name('x', 2)
    'x_2'
    >>> crop_name('x', 1, '../../etc', 0.5)
    'x_1_.._.._etc_0.500'
    """
    folder, base = os.path.split(stem)
    tail = f'_{index}' if label is None else f'_{index}_{safe_name(label)}_{float(quality):.3f}'
    return os.path.join(folder, fit_name(base, tail, room))


def target_in(folder: str, relative: str) -> str:
    """``folder/relative``, checked to lie inside ``folder``.

    >>> target_in('out', 'ep1/x.png').replace(os.sep, '/')
    'out/ep1/x.png'
    >>> target_in('out', '../x.png')
    Traceback (most recent call last):
    ...
    ValueError: '../x.png' would be written outside out; nothing was written. ...

    :raises ValueError: When it would not (an absolute path, ``..``); the message names both.
    """
    target = os.path.join(folder, relative)
    base = os.path.normcase(os.path.abspath(folder)).rstrip(os.sep) + os.sep
    if os.path.isabs(relative) or not os.path.normcase(os.path.abspath(target)).startswith(base):
        raise ValueError(f'{relative!r} would be written outside {folder}; nothing was written. Such a name comes '
                         f'from paths in the scores that leave their folders (..): score again from the folder '
                         f'above the images, or report this.')
    return target
