"""Putting files in place without ever losing or half-writing one.

`place_file` is the one file operation under filtering: it never replaces an existing file
(the name is claimed with a hard link, which fails if it exists, so two runs into one
folder cannot overwrite each other's files), and a copy is written under a temporary name
in the destination folder first (`imgutils_facequal.atomic.write_new_file`), so a full disk
or a kill leaves no partial file under the real name.
"""
import bisect
import errno
import os
import re
import shutil
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..atomic import NO_HARD_LINKS, replace_file, same_content, write_new_file

__all__ = ['DEFAULT_SIDECARS', 'MODES', 'place_file', 'write_new_file', 'find_sidecars', 'sidecar_name',
           'write_manifest']

#: Files that travel with an image. In a pattern ``{stem}`` is the image's name without its
#: extension, ``{name}`` its whole file name (gallery-dl's ``x.jpg.json``) and ``{size}`` a
#: ``WIDTHxHEIGHT`` (kohya's latent caches, ``x_1024x1024_sdxl.npz``); a pattern with none of
#: them is an extension (``.txt`` means ``{stem}.txt``). The defaults: captions (``x.txt``,
#: ``x.caption``), metadata (``x.json``, gallery-dl's ``x.jpg.json``), kohya sd-scripts'
#: latent caches (``x.npz``, ``x_WxH_sd.npz``, ``x_WxH_sdxl.npz``), and last waifuc's
#: metadata file (``.x_meta.json``).
DEFAULT_SIDECARS = ('.txt', '.caption', '.json', '{name}.json', '.npz', '{stem}_{size}_sd.npz',
                    '{stem}_{size}_sdxl.npz', '.{stem}_meta.json')
#: How `place_file` puts a file in place.
MODES = ('copy', 'hardlink', 'move')


def _hard_link(source: str, target: str) -> None:
    link = getattr(os, 'link', None)
    if link is None:  # a Python built without hard links
        raise OSError(errno.ENOTSUP, 'this system has no hard links', source)
    link(source, target)


def _copy(source: str):
    def write(temp: str) -> None:
        shutil.copyfile(source, temp)
        shutil.copystat(source, temp)
    return write


def place_file(source: str, target: str, mode: str = 'copy') -> str:
    """Copy, hard-link or move ``source`` to ``target``, never replacing a file and never
    leaving a partial one.

    * ``copy``: written under a temporary name in the target's folder, then given its name
      with a hard link, which fails if the name is taken (so two processes cannot
      overwrite each other); a failed copy (a full disk) is removed.
    * ``hardlink``: ``os.link``, which never replaces a file.
    * ``move``: a hard link, then the source is removed; across filesystems (or where
      there are no hard links) a durable copy as above, then the source is removed.

    :return: ``'placed'``, or ``'present'`` when ``target`` already is this file or holds
        the same bytes (a rerun); then a moved source is left where it is, unless the
        target is the same file (a move cut short between link and unlink).
    :raises FileExistsError: When ``target`` exists with other content; both stay as they are.
    :raises OSError: When the source cannot be read or the target cannot be written.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
    if mode == 'copy':
        return write_new_file(target, _copy(source))
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    try:
        _hard_link(source, target)
    except FileExistsError:
        if not same_content(source, target):
            raise FileExistsError(errno.EEXIST, f'{target} exists with other content than {source}; not overwriting '
                                                f'it (move it away, or choose another output folder)',
                                  target) from None
        if mode == 'move' and os.path.samefile(source, target):
            os.unlink(source)
        return 'present'
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        if mode == 'hardlink':
            raise OSError(err.errno, f'cannot hard-link {source} to {target}: {err.strerror} '
                                     f'(hard links need one filesystem; use --mode copy)', source) from None
        outcome = write_new_file(target, _copy(source), durable=True)
        if outcome == 'placed':
            os.unlink(source)
        return outcome
    if mode == 'move':
        os.unlink(source)
    return 'placed'


def sidecar_name(pattern: str, stem: str, name: Optional[str] = None) -> str:
    """The name of an image's sidecar: ``pattern`` with ``{stem}`` (and ``{name}``, the image's file name,
    default ``stem``) filled in, or ``stem + pattern``.

    >>> sidecar_name('.txt', 'x'), sidecar_name('{name}.json', 'x', 'x.jpg'), sidecar_name('.{stem}_meta.json', 'x')
    ('x.txt', 'x.jpg.json', '.x_meta.json')
    """
    if '{stem}' not in pattern and '{name}' not in pattern:
        return stem + pattern
    return pattern.replace('{stem}', stem).replace('{name}', stem if name is None else name)


_SIZE = re.compile(r'[0-9]+x[0-9]+')
#: How long a folder's listing serves ``{size}`` patterns, in seconds: while the folder is unchanged, and
#: after it changed (a move out of it, a file written into it). Listing a folder of 100,000 images once
#: per image would take hours; a cache file written into it less than a second before it is looked for
#: can be missed.
_LISTING_SECONDS, _CHANGED_LISTING_SECONDS = 30.0, 1.0
_listings: Dict[str, Tuple[float, int, List[str]]] = {}
_listings_lock = threading.Lock()


def _names(directory: str) -> List[str]:
    """The sorted file names of a folder, listed again when it changed (at most once a second) or every
    `_LISTING_SECONDS`."""
    key = os.path.abspath(directory)
    now = time.monotonic()
    try:
        changed = os.stat(key).st_mtime_ns
    except OSError:
        return []
    with _listings_lock:
        found = _listings.get(key)
        if found is None or now - found[0] > (_LISTING_SECONDS if found[1] == changed else _CHANGED_LISTING_SECONDS):
            try:
                names = sorted(os.listdir(key))
            except OSError:
                names = []
            if len(_listings) > 64:
                _listings.clear()
            found = _listings[key] = (now, changed, names)
    return found[2]


def _size_matches(directory: str, pattern: str) -> List[Tuple[str, str]]:
    """The files of a ``{size}`` pattern (already holding the stem and name), with the size each was found with."""
    before, _, after = pattern.partition('{size}')
    names = _names(directory or '.')
    found = []
    for index in range(bisect.bisect_left(names, before), len(names)):
        name = names[index]
        if not name.startswith(before):
            break
        size = name[len(before):len(name) - len(after)] if name.endswith(after) else ''
        if len(name) > len(before) + len(after) and _SIZE.fullmatch(size):
            found.append((os.path.join(directory, name), size))
    return found


def find_sidecars(image: str, sidecars: Sequence[str] = DEFAULT_SIDECARS) -> List[Tuple[str, str]]:
    """The sidecar files of an image that exist, as ``(path, pattern)`` pairs.

    ``x.jpg`` has ``x.txt``, ``x.caption``, ``x.json``, ``x.jpg.json``, ``x.npz``,
    ``x_1024x1024_sdxl.npz`` (any size) and waifuc's ``.x_meta.json`` by default (see
    `DEFAULT_SIDECARS`). The pattern of a ``{name}`` or ``{size}`` match is that file's own,
    in ``{stem}`` (``{stem}.jpg.json``, ``{stem}_1024x1024_sdxl.npz``), so `sidecar_name`
    of another stem names its copy beside a renamed image.
    """
    directory, name = os.path.split(image)
    stem, extension = os.path.splitext(name)
    found, seen = [], set()
    for pattern in sidecars:
        # a {name} is the image's stem and extension, so a renamed copy keeps the extension after its new stem
        own = pattern.replace('{name}', '{stem}' + extension) if '{stem}' in pattern or '{name}' in pattern \
            else '{stem}' + pattern
        if '{size}' in own:
            matches = [(path, own.replace('{size}', size))
                       for path, size in _size_matches(directory, own.replace('{stem}', stem))]
        else:
            matches = [(os.path.join(directory, own.replace('{stem}', stem)), own if '{name}' in pattern else pattern)]
        for path, matched in matches:
            if path != image and path not in seen and os.path.isfile(path):
                seen.add(path)
                found.append((path, matched))
    return found


def write_manifest(path: str, lines: Iterable[str]) -> None:
    """Write one path per line to ``path`` at once (a temporary file renamed over it when complete)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    replace_file(path, ''.join(f'{line}\n' for line in lines))
