"""The files LoRA trainers read beside a kept image: its caption with a face-quality tag, and waifuc's meta file.

kohya sd-scripts (and its GUIs) read ``x.txt`` beside ``x.png``: tags separated by ``", "``.
waifuc reads ``.x_meta.json`` beside ``x.png``: a JSON object whose ``filename`` names the
image (without it, waifuc's exporters name it ``untitled_N.png``).

`TrainingFiles` writes both for the copy of an image under the output folder:

* The caption gets the quality tag of the image's best face (`caption_tag`; by default
  ``{label} face quality``, such as ``good face quality``). When a caption exists, the
  policy decides: ``append`` (the default) or ``prepend`` the tag, ``skip`` (leave the
  caption as it is) or ``overwrite`` it with the tag alone. A caption that holds the tag
  already is left as it is, so a rerun changes nothing.
* The meta file is the existing one (if any) with ``filename`` and ``face_quality`` set;
  its other keys are kept.

Only the files under the output folder are written, whole or not at all
(`imgutils_facequal.atomic`), never over another file; the source's caption and meta file
are read, not changed. With ``mode='move'`` the source files go away (the new ones replace
them), so that happens only with ``edit_moved=True``.
"""
import json
import os
import re
from typing import List, Mapping, Optional, Sequence

from ..atomic import replace_file, write_new_file
from ..pipeline import ImageResult
from ..quality import QUALITY_ORDER
from ..store.schema import result_rows
from .placement import sidecar_name

__all__ = ['CAPTION_POLICIES', 'CAPTION_SEPARATOR', 'DEFAULT_CAPTION_TAG', 'WAIFUC_META', 'caption_tag',
           'captioned', 'waifuc_meta', 'TrainingFiles']

#: What happens to an existing caption: the tag after it, before it, no change, or the tag alone.
CAPTION_POLICIES = ('append', 'prepend', 'skip', 'overwrite')
#: Between tags, as kohya sd-scripts writes and reads them.
CAPTION_SEPARATOR = ', '
#: The tag of a class, unless set: ``{label}`` is the class and ``{quality}`` the quality value (0.000 to 1.000).
DEFAULT_CAPTION_TAG = '{label} face quality'
#: waifuc's meta file pattern (a sidecar pattern, see `imgutils_facequal.curate.find_sidecars`).
WAIFUC_META = '.{stem}_meta.json'

_FACE_KEYS = ('bbox', 'label', 'score', 'scores', 'quality', 'detection_score', 'head_bbox', 'crop_bbox')


def caption_tag(faces, tags: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The caption tag of an image: its best face's class in the tag text of that class (``tags``, else
    `DEFAULT_CAPTION_TAG`); ``None`` without faces or when the class's text is empty.

    >>> from imgutils_facequal import FaceQualityResult
    >>> face = FaceQualityResult((0, 0, 9, 9), 'good', 0.8, {'good': 0.8}, 0.71, 0.9, None, (0, 0, 9, 9))
    >>> caption_tag([face]), caption_tag([face], {'good': 'good face, q{quality}'})
    ('good face quality', 'good face, q0.710')
    """
    best = max(faces, key=lambda face: face.quality, default=None)
    if best is None:
        return None
    text = (tags or {}).get(best.label, DEFAULT_CAPTION_TAG)
    return text.format(label=best.label, quality=f'{best.quality:.3f}').strip() or None


def _tags(caption: str) -> List[str]:
    return [tag.strip() for tag in caption.split(',') if tag.strip()]


def captioned(caption: Optional[str], tag: str, policy: str = 'append') -> str:
    """The caption text with ``tag``, by ``policy`` (see `CAPTION_POLICIES`); a caption that holds the tag
    already, or an empty one, gives the same text again (or the tag alone).

    >>> captioned('1girl, solo', 'good face quality')
    '1girl, solo, good face quality'
    >>> captioned('1girl, solo\\n', 'good face quality', 'prepend')
    'good face quality, 1girl, solo'
    >>> captioned('1girl, good face quality', 'good face quality'), captioned(None, 'good face quality', 'skip')
    ('1girl, good face quality', 'good face quality')
    """
    if policy not in CAPTION_POLICIES:
        raise ValueError(f'policy must be one of {", ".join(CAPTION_POLICIES)}; got {policy!r}.')
    text = (caption or '').strip().strip(',').strip()
    if not text or policy == 'overwrite':
        return tag
    if policy == 'skip' or tag in _tags(text):
        return caption if caption is not None else text
    return f'{text}{CAPTION_SEPARATOR}{tag}' if policy == 'append' else f'{tag}{CAPTION_SEPARATOR}{text}'


def waifuc_meta(meta: Optional[dict], filename: str, result: ImageResult) -> dict:
    """waifuc's meta of an image: ``meta`` (its keys kept) with ``filename`` and ``face_quality`` (the best
    face's ``label`` and ``quality``, and every face as saved scores hold it) set."""
    rows = [row for row in result_rows(result) if row.get('label') is not None]
    best = max(rows, key=lambda row: row['quality'], default=None)
    return {**(meta or {}), 'filename': filename, 'face_quality': {
        'label': None if best is None else best['label'], 'quality': None if best is None else best['quality'],
        'faces': [{key: row.get(key) for key in _FACE_KEYS} for row in rows]}}


_NUMBER_LIST = re.compile(r'\[\s+([-0-9.e, \n]*?)\s+\]')


def _json(value) -> str:
    """JSON as people read it: indented, with a list of numbers (a box) on one line."""
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return _NUMBER_LIST.sub(lambda match: '[' + ', '.join(part.strip() for part in match.group(1).split(',')) + ']',
                            text) + '\n'


def _read_text(path: str) -> str:
    with open(path, 'r', encoding='utf-8', errors='surrogateescape') as file:
        return file.read()


def _read_meta(path: str) -> dict:
    try:
        meta = json.loads(_read_text(path))
    except ValueError as err:
        raise ValueError(f'{path} is not JSON ({err}); fix or remove it') from None
    if not isinstance(meta, dict):
        raise ValueError(f'{path} is not a JSON object, as waifuc writes; fix or remove it')
    return meta


class TrainingFiles:
    """Writes the caption and waifuc meta file of an image's copy under the output folder.

    :param caption_extension: The captions' extension (``.txt``, ``.caption``); ``None`` for no captions.
    :param tags: Tag text per class (see `caption_tag`); classes left out get `DEFAULT_CAPTION_TAG`.
    :param policy: What happens to an existing caption (see `CAPTION_POLICIES`).
    :param meta: Also write waifuc's ``.{stem}_meta.json``.
    :param mode: How the images are placed (``copy``, ``hardlink``, ``move``).
    :param edit_moved: With ``mode='move'``, allow it: the source's caption and meta file are then
        replaced by the new ones under the output folder.
    :raises ValueError: For ``mode='move'`` without ``edit_moved``, an unknown policy or a tag for no class.
    """

    def __init__(self, caption_extension: Optional[str] = '.txt', tags: Optional[Mapping[str, str]] = None,
                 policy: str = 'append', meta: bool = False, mode: str = 'copy', edit_moved: bool = False):
        if policy not in CAPTION_POLICIES:
            raise ValueError(f'policy must be one of {", ".join(CAPTION_POLICIES)}; got {policy!r}.')
        unknown = sorted(set(tags or {}) - set(QUALITY_ORDER))
        if unknown:
            raise ValueError(f'Caption tags for unknown classes {", ".join(unknown)}: the classes are '
                             f'{", ".join(QUALITY_ORDER)}.')
        if mode == 'move' and not edit_moved and (caption_extension or meta):
            raise ValueError('With --mode move the captions and meta files under --out are your own files, moved '
                             'there; writing the tags changes them. Add --edit-moved-files to do that, or copy.')
        if caption_extension is not None and not caption_extension.startswith('.'):
            caption_extension = '.' + caption_extension
        self.caption_extension, self.tags, self.policy = caption_extension, dict(tags or {}), policy
        self.meta, self.moving = meta, mode == 'move'

    def written_patterns(self) -> List[str]:
        """The sidecar patterns this writes: leave them out of the sidecars placed as they are."""
        return ([self.caption_extension] if self.caption_extension else []) + ([WAIFUC_META] if self.meta else [])

    def sidecars_to_place(self, sidecars: Sequence[str]) -> List[str]:
        """``sidecars`` without those this writes (told apart by the name they give a stem)."""
        written = {sidecar_name(pattern, 'x') for pattern in self.written_patterns()}
        return [pattern for pattern in sidecars if sidecar_name(pattern, 'x') not in written]

    def write(self, source: str, target: str, result: ImageResult) -> List[str]:
        """Write the caption and meta file of ``target``, the copy of ``source``; the problems, if any (the other
        file is still written)."""
        problems = []
        directory, name = os.path.split(target)
        stem = os.path.splitext(name)[0]
        source_stem = os.path.splitext(os.path.basename(source))[0]
        tag = caption_tag(result.faces, self.tags)
        for pattern in self.written_patterns():
            own = os.path.join(os.path.dirname(source), sidecar_name(pattern, source_stem))
            copy = os.path.join(directory, sidecar_name(pattern, stem))
            try:
                if pattern == WAIFUC_META:
                    self._write(own, copy, lambda found: _json(
                        waifuc_meta(None if found is None else _read_meta(found), name, result)))
                else:
                    self._write(own, copy, lambda found: self._caption(found, tag))
            except (OSError, ValueError) as err:
                problems.append(f'{copy} was not written: {err}')
        return problems

    def _caption(self, found: Optional[str], tag: Optional[str]) -> Optional[str]:
        caption = None if found is None else _read_text(found)
        if tag is None:
            return caption  # no faces, or no tag for this class: the caption as it is
        return captioned(caption, tag, self.policy)

    def _write(self, own: str, copy: str, content) -> str:
        """Write ``copy`` from the source's file ``own`` (or, without one, the copy's present text): the copy is
        replaced only when it is the file the text came from; a moved source's file goes once its copy is in."""
        if os.path.isfile(own):
            text = content(own)
            outcome = write_new_file(copy, text if text is not None else _read_text(own), durable=self.moving)
            if self.moving and os.path.exists(own):
                os.unlink(own)
            return outcome
        existing = copy if os.path.isfile(copy) else None
        text = content(existing)
        if text is None:
            return 'left'
        if existing is not None:
            if _read_text(existing) == text:
                return 'present'
            replace_file(copy, text)
            return 'placed'
        return write_new_file(copy, text)
