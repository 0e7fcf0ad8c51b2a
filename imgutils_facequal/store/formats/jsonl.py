"""JSON Lines: one nested row a line, appended as a run goes; the provenance in ``<file>.meta.json``.

File names that are not valid UTF-8 are kept exactly, as ``\\udcXX`` escapes.
"""
import json
import re
from typing import List, Sequence, Tuple

from ..schema import checked_rows

__all__ = ['NAME', 'EXTENSIONS', 'APPENDS', 'read', 'header', 'encode']

NAME = 'jsonl'
EXTENSIONS = ('.jsonl',)
APPENDS = True
_LONE_SURROGATE = re.compile('[\udc80-\udcff]')


def read(path: str, text: str) -> Tuple[List[dict], bool]:
    """The rows of ``text`` (the file's), and whether its end was torn (a line without its line end)."""
    torn = bool(text) and not text.endswith('\n')
    lines = text.split('\n')  # '\n' only: U+2028, U+0085 or \x1c inside a name are no line ends here

    def rows():
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row['image'], row['faces']
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f'{path!r} line {number} is not a jsonl row of imgutils-facequal ({err}).') from err
            yield number, row

    return checked_rows(path, rows()), torn


def header(classes: Sequence[str], per_image: bool) -> str:
    return ''


def _line(row: dict) -> str:
    # a name that is not UTF-8 holds lone surrogates (os.fsdecode): written as \udcXX escapes, read back as they were
    text = json.dumps(row, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: '\\u%04x' % ord(match.group()), text) + '\n'


def encode(rows: Sequence[dict], classes: Sequence[str], per_image: bool) -> str:
    return ''.join(_line(row) for row in rows)
