"""Image paths as saved scores hold them, and the key that tells two spellings of one image apart.

Saved scores write ``/`` between folders on every system. Windows reads ``/`` as a separator
too, so scores made on Windows are read on Linux and macOS, and the other way round; paths
relative to the folder a run was made in (``score frames/ -o scores.jsonl``, run from the
folder above ``frames``) keep naming the same files wherever that folder is moved, where
absolute paths (``C:/data/frames/a.png``, ``/data/frames/a.png``) name one machine's files.
"""
import os

__all__ = ['stored_path', 'local_path', 'image_key', 'common_root']


def stored_path(path: str, sep: str = os.sep) -> str:
    """``path`` as saved scores hold it: ``/`` between folders.

    >>> stored_path('frames\\\\ep1\\\\0001.png', sep='\\\\')
    'frames/ep1/0001.png'
    """
    return path if sep == '/' else path.replace(sep, '/')


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

    >>> common_root(['frames/a.png', 'frames/ep2/b.png']).replace(os.sep, '/')
    'frames'
    """
    paths = list(paths)
    if not paths:
        return '.'
    if all(not os.path.isabs(path) for path in paths):
        folders = [os.path.normpath(os.path.dirname(path) or '.') for path in paths]
    else:
        folders = [os.path.dirname(os.path.abspath(path)) for path in paths]
    try:
        return os.path.commonpath(folders) or '.'
    except ValueError:  # paths on different drives
        return folders[0]
