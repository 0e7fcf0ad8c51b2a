"""Files written whole or not at all: a temporary file beside the target, then a rename over it."""
import os
import tempfile
from typing import Union

__all__ = ['replace_file']


def replace_file(path: str, data: Union[str, bytes], durable: bool = False) -> None:
    """Write ``data`` (text is UTF-8, lone surrogates as their bytes) to ``path``, replacing what is there.

    Readers see the old file or the new one, never a part of it; a failed write (a full disk)
    leaves the old file as it was and no temporary file behind.

    :param durable: Flush the data to disk before the rename.
    :raises OSError: When the file cannot be written.
    """
    if isinstance(data, str):
        data = data.encode('utf-8', errors='surrogateescape')
    handle, staging = tempfile.mkstemp(prefix=f'.{os.path.basename(path)[:100]}.', suffix='.partial',
                                       dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(staging, path)
    finally:
        if os.path.lexists(staging):
            os.unlink(staging)
