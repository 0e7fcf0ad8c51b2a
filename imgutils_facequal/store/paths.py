"""Image paths as saved scores hold them, and the key that tells two spellings of one image apart.

Saved scores write ``/`` between folders on every system. Windows reads ``/`` as a separator
too, so scores made on Windows are read on Linux and macOS, and the other way round; paths
relative to the folder a run was made in (``score frames/ -o scores.jsonl``, run from the
folder above ``frames``) keep naming the same files wherever that folder is moved, where
absolute paths (``C:/data/frames/a.png``, ``/data/frames/a.png``) name one machine's files.

A name that is not valid UTF-8 is read by Python with each odd byte as a lone surrogate
(``os.fsdecode``). JSON Lines and CSV keep those as they are; where text must be valid
Unicode (Parquet, Ray's datasets), `text_path` writes each such byte as a NUL and two hex
digits, which no file name can hold, and `path_from_text` reads it back.
"""
import os
import re

__all__ = ['stored_path', 'local_path', 'image_key', 'common_root', 'saved_path_here', 'text_path', 'path_from_text']


def stored_path(path: str, sep: str = os.sep) -> str:
    """``path`` as saved scores hold it: ``/`` between folders.

    >>> stored_path('frames\\\\ep1\\\\0001.png', sep='\\\\')
    'frames/ep1/0001.png'
    """
    return path if sep == '/' else path.replace(sep, '/')


_SURROGATE = re.compile('[\udc80-\udcff]')
_ESCAPED = re.compile('\0([0-9a-f]{2})')


def text_path(path: str) -> str:
    """``path`` as valid Unicode text: each byte that is not UTF-8 (a lone surrogate) as NUL and two hex digits.

    >>> text_path('frames/caf\\udce9.png')
    'frames/caf\\x00e9.png'
    """
    return _SURROGATE.sub(lambda match: '\0%02x' % (ord(match.group()) - 0xdc00), path)


def path_from_text(text: str) -> str:
    """The path `text_path` wrote, its odd bytes as lone surrogates again.

    >>> path_from_text(text_path('frames/caf\\udce9.png')) == 'frames/caf\\udce9.png'
    True
    """
    return _ESCAPED.sub(lambda match: chr(0xdc00 + int(match.group(1), 16)), text) if '\0' in text else text


def local_path(stored: str, sep: str = os.sep) -> str:
    """A saved path as this system spells it.

    >>> local_path('frames/ep1/0001.png', sep='\\\\')
    'frames\\\\ep1\\\\0001.png'
    """
    return stored if sep == '/' else stored.replace('/', sep)


#: Ids that name no file (a Hugging Face dataset's rows, ``hf://DATASET/SPLIT/ROW``) begin so.
ID_SCHEMES = ('hf://',)


def image_key(path: str) -> str:
    """What tells images apart, across runs as within one: the real path (links resolved, ``./`` and
    ``..`` gone, relative paths from the current folder), case-folded where the file system is; an id
    of `ID_SCHEMES` as it is.

    >>> image_key('hf://frames/train/12')
    'hf://frames/train/12'
    """
    if path.startswith(ID_SCHEMES):
        return path
    return os.path.normcase(os.path.realpath(local_path(path)))


def common_root(paths) -> str:
    """The deepest folder holding every path (relative when every path is): relative output paths
    are taken from it, so ``frames/a.png`` and ``frames/ep2/b.png`` go to ``a.png`` and ``ep2/b.png``.
    It is found from the absolute paths, so paths that share no first folder (``frames/a.png``,
    ``../other/b.png``) or hold ``..`` still lie below it.

    >>> common_root(['frames/a.png', 'frames/ep2/b.png']).replace(os.sep, '/')
    'frames'
    >>> common_root(['frames/a.png', '../other/b.png']) == os.path.relpath(os.path.dirname(os.getcwd()))
    True
    """
    paths = list(paths)
    if not paths:
        return '.'
    folders = [os.path.dirname(os.path.abspath(path)) for path in paths]
    try:
        root = os.path.commonpath(folders)
    except ValueError:  # paths on different drives
        return folders[0]
    if any(os.path.isabs(path) for path in paths):
        return root
    try:
        return os.path.relpath(root)
    except ValueError:  # the current folder is on another drive
        return root


def saved_path_here(stored: str, working_dir=None) -> str:
    """Where a path of saved scores is from the current folder: a relative path names a file from
    the folder the run was made in (``working_dir``, as the provenance records it), wherever the
    scores are read from. Without a recorded folder, or one that does not exist here (the scores
    came from another machine), relative paths are read from the current folder.

    >>> saved_path_here('frames/a.png', os.getcwd()).replace(os.sep, '/')
    'frames/a.png'
    >>> saved_path_here('/data/a.png', '/elsewhere')
    '/data/a.png'
    """
    path = local_path(stored)
    if os.path.isabs(path) or not working_dir or not os.path.isdir(working_dir):
        return path
    here = os.getcwd()
    if os.path.normcase(os.path.abspath(working_dir)) == os.path.normcase(here):
        return path
    full = os.path.join(working_dir, path)
    try:
        return os.path.relpath(full, here)
    except ValueError:  # another drive
        return os.path.abspath(full)
