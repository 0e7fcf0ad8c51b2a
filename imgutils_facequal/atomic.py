"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every file the package writes goes through here. The temporary file is created with the
mode an ordinary ``open`` would give it (``0o666`` less the user's umask), so what we write
follows the umask, and it is hidden (``.name.XXXX.partial``), so readers of the folder
skip it. Two ways to finish:

* `replace_file`: the new file replaces whatever has the name (records we own: the saved
  scores, their provenance, a report page);
* `write_new_file`: the file gets the name only if no file has it (the user's images,
  crops, captions): never an overwrite, even between two processes.
"""
import errno
import filecmp
import os
import secrets
from contextlib import contextmanager
from typing import Callable, Iterator, Union

__all__ = ['replace_file', 'write_new_file', 'staging_file', 'same_content', 'NO_HARD_LINKS']

#: The ``errno`` values with which a file system says it has no hard links.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP,
                           getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP)})

Content = Union[str, bytes, Callable[[str], None]]


@contextmanager
def staging_file(target: str) -> Iterator[str]:
    """A new, empty, hidden file beside ``target`` for the caller to fill; removed on the way out unless it was
    renamed. Its name is short enough for any name ``target`` can have."""
    directory = os.path.dirname(os.path.abspath(target))
    name = os.path.basename(target)[:100]
    while len(os.fsencode(name)) > 100:  # bytes, not characters: a name of 255 bytes has far fewer of those
        name = name[:-1]
    prefix = '.' + name
    while True:
        path = os.path.join(directory, f'{prefix}.{secrets.token_hex(4)}.partial')
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
            break
        except FileExistsError:
            continue
    try:
        yield path
    finally:
        if os.path.lexists(path):
            os.unlink(path)


def _fill(path: str, content: Content, durable: bool) -> None:
    if callable(content):
        content(path)
    else:
        data = content.encode('utf-8', errors='surrogateescape') if isinstance(content, str) else content
        with open(path, 'wb') as file:
            file.write(data)
    if durable:
        with open(path, 'rb+') as file:
            os.fsync(file.fileno())


def replace_file(path: str, content: Content, durable: bool = False) -> None:
    """Write ``content`` to ``path``, replacing what is there.

    ``content`` is text (UTF-8, lone surrogates as their bytes), bytes, or a function that
    writes the whole file to the path it is given. Readers see the old file or the new one,
    never a part of it; a failed write (a full disk) leaves the old file as it was and no
    temporary file behind.

    :param durable: Flush the data to disk before the rename.
    :raises OSError: When the file cannot be written.
    """
    with staging_file(path) as staging:
        _fill(staging, content, durable)
        os.replace(staging, path)


def same_content(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second) or filecmp.cmp(first, second, shallow=False)
    except OSError:
        return False


def _publish(staging: str, target: str) -> None:
    """Give the finished file ``staging`` the name ``target``, never replacing a file there."""
    try:
        os.link(staging, target)  # fails if the name is taken, between processes too
    except FileExistsError:
        raise
    except (OSError, AttributeError, NotImplementedError) as err:
        if isinstance(err, OSError) and err.errno not in NO_HARD_LINKS:
            raise
        # no hard links here: claim the name exclusively, then replace only that claim
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(staging, target)
        return
    os.unlink(staging)


def write_new_file(target: str, content: Content, durable: bool = False) -> str:
    """Create ``target`` with ``content`` (as for `replace_file`), never replacing a file.

    Only a finished file gets the real name, and only if no file has it. If ``target``
    exists with the same bytes, nothing changes.

    :param durable: Flush the file to disk before it gets its name (when the caller will
        delete the only other copy).
    :return: ``'placed'``, or ``'present'`` when ``target`` already held the same bytes.
    :raises FileExistsError: When ``target`` exists with other bytes; it is left as it was.
    :raises OSError: When writing fails (a full disk); nothing is left behind.
    """
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    with staging_file(target) as staging:
        _fill(staging, content, durable)
        try:
            _publish(staging, target)
        except FileExistsError:
            if same_content(staging, target):
                return 'present'
            raise FileExistsError(errno.EEXIST, f'{target} exists with other content; not overwriting it '
                                                f'(move it away, or choose another output folder)', target) from None
        return 'placed'
