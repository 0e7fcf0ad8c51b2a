"""Putting files in place without ever losing or half-writing one.

`place_file` is the one file operation under filtering: it never replaces an existing file
(the name is claimed with a hard link, which fails if it exists, so two runs into one
folder cannot overwrite each other's files), and a copy is written under a temporary name
in the destination folder first (`imgutils_facequal.atomic.write_new_file`), so a full disk
or a kill leaves no partial file under the real name. What commits a move is the removal of
its source, which only one process can do: of two runs moving one file into two folders at
once, the one that finds the source already removed takes back the copy it made, so the file
ends in one place.
"""
import bisect
import errno
import os
import re
import shutil
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..atomic import NO_HARD_LINKS, same_content, staging_file, write_new_file

__all__ = ['DEFAULT_SIDECARS', 'MODES', 'MANIFEST_SEPARATORS', 'SourceGone', 'SourceKept', 'place_file',
           'write_new_file', 'find_sidecars', 'sidecar_name', 'check_new_file', 'write_manifest']

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
#: What ends each path in a manifest: a line, or a NUL byte (for names that hold a line break).
MANIFEST_SEPARATORS = {'lines': '\n', 'nul': '\0'}


class SourceGone(FileNotFoundError):
    """The file to move was gone when its turn came: another run moved it meanwhile."""


class SourceKept(OSError):
    """The file is in place, but its source could not be removed (a read-only folder): it is in both places.

    :ivar target: Where it is now.
    :ivar outcome: ``'placed'`` or ``'present'``, as `place_file` would have returned.
    """

    def __init__(self, source: str, target: str, outcome: str, err: OSError):
        super().__init__(err.errno, f'{source} could not be removed ({err.strerror or err}), so it is in both '
                                    f'places; make its folder writable and run again to finish the move, or remove '
                                    f'it yourself', source)
        self.target, self.outcome = target, outcome


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


def _real_file(path: str) -> str:
    """The file a symbolic link names (the path itself when it is none): what lands in an output
    folder, so that no link lands there to dangle."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _same_name(first: str, second: str) -> bool:
    """Whether two paths name one entry of one folder (not two names of one file)."""
    try:
        return (os.path.samefile(os.path.dirname(os.path.abspath(first)), os.path.dirname(os.path.abspath(second)))
                and os.path.basename(first).lower() == os.path.basename(second).lower()
                and os.path.samefile(first, second))
    except OSError:
        return False


def _put(source: str, target: str, mode: str) -> str:
    """Hard-link ``source`` to ``target``, or (``move`` across file systems) copy it there durably."""
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    try:
        _hard_link(source, target)
    except FileExistsError:
        if not same_content(source, target):
            raise FileExistsError(errno.EEXIST, f'{target} exists with other content than {source}; not overwriting '
                                                f'it (move it away, or choose another output folder)',
                                  target) from None
        return 'present'
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        if mode == 'hardlink':
            raise OSError(err.errno, f'cannot hard-link {source} to {target}: {err.strerror} '
                                     f'(hard links need one filesystem; use --mode copy)', source) from None
        return write_new_file(target, _copy(source), durable=True)
    return 'placed'


def place_file(source: str, target: str, mode: str = 'copy') -> str:
    """Copy, hard-link or move ``source`` to ``target``, never replacing a file and never
    leaving a partial one.

    * ``copy``: written under a temporary name in the target's folder, then given its name
      with a hard link, which fails if the name is taken (so two processes cannot
      overwrite each other); a failed copy (a full disk) is removed.
    * ``hardlink``: ``os.link``, which never replaces a file.
    * ``move``: a hard link, then the source is removed; across filesystems (or where
      there are no hard links) a durable copy as above, then the source is removed. Of two
      runs moving one source at once, the one whose removal finds it gone takes back what it
      put in place and gets `SourceGone`: the file is in one place.

    A symbolic link stands for its real file: the real file is copied or hard-linked (a
    moved link is removed, its real file stays), so no link lands in the target's folder.

    :return: ``'placed'``, or ``'present'`` when ``target`` already is this file or holds
        the same bytes (a rerun); then a move is finished: the source is removed.
    :raises FileExistsError: When ``target`` exists with other content; both stay as they are.
    :raises SourceGone: When a source to move no longer exists.
    :raises SourceKept: When a move put the file in place but could not remove the source.
    :raises OSError: When the source cannot be read or the target cannot be written.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
    if mode == 'copy':
        return write_new_file(target, _copy(_real_file(source)))
    if mode == 'hardlink':
        return _put(_real_file(source), target, mode)
    real = _real_file(source)
    try:
        outcome = _put(real, target, mode)
    except FileNotFoundError:
        if os.path.lexists(source):
            raise
        raise SourceGone(errno.ENOENT, f'{source} was moved away meanwhile (by another run?)', source) from None
    if _same_name(source, target):
        return outcome  # moved onto itself: nothing to remove
    try:
        os.unlink(source)  # the commit: only one process removes a file
    except FileNotFoundError:
        if outcome == 'present':  # the same file, put at this very target by another run: it is in place
            return outcome
        os.unlink(target)  # another run moved it meanwhile: take back what this one put here (a name of the same bytes)
        raise SourceGone(errno.ENOENT, f'{source} was moved away meanwhile (by another run?)', source) from None
    except OSError as err:
        raise SourceKept(source, target, outcome, err) from None
    return outcome


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


def check_new_file(path: str) -> None:
    """Check, before anything else is done, that a new file (a manifest) can be written at ``path``:
    no file has the name (it is never overwritten), and its folder takes a file.

    :raises FileExistsError: When the name is taken.
    :raises OSError: When the folder cannot be made or written to; the message names the path.
    """
    if os.path.lexists(path):
        raise FileExistsError(f'{path} exists; it is never overwritten: remove it, or name another file.')
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with staging_file(path):
            pass
    except OSError as err:  # no errno given: a FileExistsError here (a file where a folder should be) is no taken name
        raise OSError(f'cannot write {path}: {err.strerror or err}'
                      + (f' ({err.filename})' if err.filename and err.filename != path else '')) from None


def write_manifest(path: str, lines: Iterable[str], separator: str = '\n') -> None:
    """Write each path followed by ``separator`` (a line break, or ``'\\0'`` for names that hold one)
    to the new file ``path``, at once; never over an existing file.

    :raises FileExistsError: When ``path`` exists.
    :raises ValueError: When a path holds a line break and ``separator`` is one.
    """
    lines = list(lines)
    for line in lines:
        if separator == '\n' and ('\n' in line or '\r' in line):
            raise ValueError(f'{line!r} holds a line break, which a manifest of one path a line cannot hold; '
                             f'write a NUL-separated one (--manifest-format nul).')
    write_new_file(path, ''.join(f'{line}{separator}' for line in lines))
