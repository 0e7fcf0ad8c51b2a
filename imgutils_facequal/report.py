"""A visual report of saved scores: one static HTML page to look at before choosing a threshold.

`write_report` reads the rows of a ``score`` run (no model) and writes ``index.html``
with, per class, a grid of face crops cut from each face's ``crop_bbox``, best quality
first; a histogram of the quality value; the faces per class; and the threshold table of
`imgutils_facequal.threshold_table`. Each thumbnail links to its source image and shows
its row's values on hover. The page opens from disk with no server and no network: the
thumbnails are small JPEG files in ``thumbs/`` beside it (or embedded in the page), and
each class shows at most ``per_class`` faces, spread evenly over its quality range, so a
run of 100,000 images gives a page of a few hundred thumbnails that opens in seconds.
The page is also where to decide. Its controls (the class, the quality value, the face
filters, every face, near-duplicates: `imgutils_facequal.curate.Thresholds`) work on every
image of the scores, not only on the faces shown: the page holds, per image, its faces'
class rank, quality value, size and detector confidence, and its group of near-duplicates
(`imgutils_facequal.curate.dedup`, computed here from the ``phash`` column). A click on a
face flips its image between kept and rejected; a button saves ``decisions.json``, which
``filter --decisions`` applies (`imgutils_facequal.curate.decisions`). The page's markup,
style and script are ``templates/report.html``, ``report.css`` and ``report.js``.
"""
import base64
import hashlib
import html
import io
import json
import math
import os
import re
import sys
import urllib.parse
from array import array
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from string import Template
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .atomic import replace_file
from .caching import cached
from .curate import ThresholdTable, table_of
from .curate.decisions import scores_fingerprint
from .curate.dedup import DEFAULT_DEDUP_DISTANCE, duplicate_groups
from .curate.selection import Thresholds, face_size
from .store import scored_images
from .store.paths import saved_path_here, stored_path
from .errors import ImageLoadError
from .images import load_rgb_image
from .quality import QUALITY_ORDER
from .wording import plural

__all__ = ['write_report', 'DEFAULT_PER_CLASS', 'REPORT_MARKER']

#: Faces shown per class by default.
DEFAULT_PER_CLASS = 120
#: Groups of near-duplicates shown at most (the largest first), and images shown of each.
GROUPS_SHOWN = 30
MEMBERS_SHOWN = 10
#: The ``generator`` meta tag of the page; a folder holding a page with it is a report that may be rewritten.
REPORT_MARKER = 'imgutils-facequal report'

_COLOURS = {'poor': '#d9534f', 'ok': '#f0ad4e', 'good': '#4fa3d1', 'excellent': '#4cae4c'}
_BINS = 20


class _Markup(str):
    """Markup a template part made: filled into another part as it is, not escaped."""


@cached(per_process=False)
def _template_parts() -> Dict[str, Template]:
    """The parts of ``templates/report.html`` by name, ``style`` (``templates/report.css``) and
    ``script`` (``templates/report.js``, taken as it is)."""
    folder = resources.files(__package__) / 'templates'
    pieces = re.split(r'^<!-- part: (\w+) -->\n', (folder / 'report.html').read_text(encoding='utf-8'),
                      flags=re.MULTILINE)
    parts = {name: Template(body.rstrip('\n')) for name, body in zip(pieces[1::2], pieces[2::2])}
    parts['style'] = Template((folder / 'report.css').read_text(encoding='utf-8'))
    parts['script'] = Template((folder / 'report.js').read_text(encoding='utf-8').replace('$', '$$'))
    return parts


def _fill(part: str, **values: Any) -> _Markup:
    """The template part ``part`` filled with ``values``, each escaped for HTML unless it is `_Markup`."""
    return _Markup(_template_parts()[part].substitute(
        {key: value if isinstance(value, _Markup) else html.escape(str(value)) for key, value in values.items()}))


def _joined(parts: Iterable[_Markup]) -> _Markup:
    return _Markup('\n'.join(parts))


def _link(path: str, out_dir: str) -> str:
    target = os.path.abspath(path)
    try:
        relative = os.path.relpath(target, os.path.abspath(out_dir))
    except ValueError:  # another drive
        return 'file://' + urllib.parse.quote(os.fsencode(target.replace(os.sep, '/')))
    return urllib.parse.quote(os.fsencode(relative.replace(os.sep, '/')))  # the name's bytes, UTF-8 or not


def _sample(items: list, cap: int) -> list:
    """At most ``cap`` items, spread evenly over the list (its first and last kept)."""
    if len(items) <= cap:
        return items
    if cap == 1:
        return items[:1]
    return [items[round(index * (len(items) - 1) / (cap - 1))] for index in range(cap)]


def _hover(result, index, face) -> str:
    values = {'image': result.image.path, 'face': index, 'label': face.label, 'score': round(face.score, 4),
              'quality': round(face.quality, 4), 'scores': {k: round(v, 4) for k, v in face.scores.items()},
              'bbox': list(face.bbox), 'crop_bbox': list(face.crop_bbox),
              'detection_score': None if face.detection_score is None else round(face.detection_score, 4)}
    return '\n'.join(f'{key}: {json.dumps(value)}' for key, value in values.items())


def _thumbnails(jobs: Dict[str, Dict[str, Optional[Tuple[int, int, int, int]]]], size: int, folder: Optional[str],
                workers: int, working_dir: Optional[str] = None) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """Cut the crops ``{key: box}`` of each image (decoded once; box ``None``: the whole image) as JPEG
    thumbnails, a relative path read from ``working_dir``, where the scores were made; ``(written, {image:
    error})``."""
    written: Dict[str, bytes] = {}
    errors: Dict[str, str] = {}

    def one(image: str):
        try:
            decoded = load_rgb_image(saved_path_here(image, working_dir))
        except ImageLoadError as err:
            return image, None, str(err)
        out = {}
        for key, box in jobs[image].items():
            if box is None:  # the whole frame (near-duplicate groups)
                crop = decoded.copy()
            elif not (0 <= box[0] < box[2] <= decoded.width and 0 <= box[1] < box[3] <= decoded.height):
                continue  # a box this image does not hold (it changed since): that face shows as gone
            else:
                crop = decoded.crop(box)
            crop.thumbnail((size, size))
            buffer = io.BytesIO()
            crop.save(buffer, format='JPEG', quality=85)
            out[key] = buffer.getvalue()
        return image, out, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for image, out, error in pool.map(one, list(jobs)):
            if error is not None:
                errors[image] = error
                continue
            for key, data in out.items():
                if folder is not None:
                    replace_file(os.path.join(folder, key), data)
                written[key] = data
    return written, errors


def _check_folder(out_dir: str) -> None:
    """A report goes to a new or empty folder, or replaces an earlier report; never over other files."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not a folder; choose another report folder.')
    if not os.listdir(out_dir):
        return
    index = os.path.join(out_dir, 'index.html')
    if os.path.isfile(index):
        with open(index, 'r', encoding='utf-8', errors='replace') as file:
            if REPORT_MARKER in file.read(2048):
                return
    raise FileExistsError(f'{out_dir} is not empty and holds no earlier report; choose an empty or new folder '
                          f'(a report replaces only its own index.html and thumbs/).')


def _histogram(values: Sequence[float], labels: Sequence[str]) -> _Markup:
    """An inline SVG histogram of quality values, each bar stacked by class."""
    counts = [defaultdict(int) for _ in range(_BINS)]
    for value, label in zip(values, labels):
        counts[min(int(value * _BINS), _BINS - 1)][label] += 1
    peak = max((sum(bin_.values()) for bin_ in counts), default=0) or 1
    width, height, bar = 360, 150, 360 / _BINS
    bars = []
    for number, bin_ in enumerate(counts):
        y = height
        for label in [name for name in QUALITY_ORDER if name in bin_] + sorted(set(bin_) - set(QUALITY_ORDER)):
            tall = bin_[label] / peak * (height - 10)
            y -= tall
            bars.append(_fill('bar', x=f'{number * bar + 1:.1f}', y=f'{y:.1f}', width=f'{bar - 2:.1f}',
                              height=f'{tall:.1f}', colour=_COLOURS.get(label, '#888'), low=f'{number / _BINS:.2f}',
                              high=f'{(number + 1) / _BINS:.2f}', count=bin_[label], label=label))
        total = sum(bin_.values())
        if total:
            bars.append(_fill('bar_total', x=f'{number * bar + bar / 2:.1f}', y=f'{y - 2:.1f}', total=total))
    ticks = [_fill('tick', x=f'{min(max(tick / 10 * width, 8), width - 8):.1f}', y=height + 14,
                   tick=f'{tick / 10:.1f}') for tick in range(0, 11, 2)]
    return _fill('histogram', width=width, height=height, svg_height=height + 30, bars=_joined(bars),
                 ticks=_joined(ticks), middle=width / 2, caption_y=height + 28)


def _tables(table: ThresholdTable, failed: int) -> Tuple[_Markup, _Markup]:
    """The page's two tables, ``(counts, thresholds)``.

    ``counts`` holds the images, the images with faces, the faces and the images that failed
    when scored (``failed``), then the faces of each class, in the model's order. ``thresholds``
    holds a row per option and value of ``table``: the images whose best face it keeps, the
    images whose every face it keeps, and the faces it keeps.
    """
    classes = [_fill('class_count', colour=_COLOURS.get(name, '#888'), name=name, count=count)
               for name, count in table.per_class.items()]
    counts = _fill('counts', images=table.images, with_faces=table.with_faces, faces=table.faces, failed=failed,
                   classes=_joined(classes))
    rows = [_fill('threshold', option='--' + row.option.replace('_', '-'),
                  value=row.value if row.option == 'min_label' else f'{row.value:.2f}', images=row.images,
                  images_every_face=row.images_every_face, faces=row.faces) for row in table.rows]
    return counts, _fill('thresholds', rows=_joined(rows))


def _picture(key: str, written: Dict[str, bytes], embed: bool, part: str, hover: str, **values: Any) -> _Markup:
    """A thumbnail (``part``: a face or a frame), or "image gone" when it could not be cut."""
    if key not in written:
        return _fill('gone', hover=hover)
    source = (f'data:image/jpeg;base64,{base64.b64encode(written[key]).decode("ascii")}' if embed
              else f'thumbs/{key}')
    return _fill(part, source=source, hover=hover, **values)


def _section(name: str, items: list, total: int, written: Dict[str, bytes], unreadable: Dict[str, str],
             embed: bool, link: Callable[[str], str]) -> _Markup:
    """A class's grid of thumbnails, each linked to its image; one that could not be cut is shown as gone."""
    figures = []
    for number, result, index, face, key in items:
        hover = _hover(result, index, face)
        if key not in written:
            hover = f'{hover}\n{unreadable.get(result.image.path, "not readable")}'
        picture = _picture(key, written, embed, 'thumbnail', hover, name=name, quality=f'{face.quality:.3f}')
        figures.append(_fill('figure', image=number, link=link(result.image.path), picture=picture,
                             quality=f'{face.quality:.3f}'))
    note = (f'showing {len(items)} of {total}, spread evenly from the best to the worst; best first'
            if len(items) < total else 'all, best first' if total else 'none')
    return _fill('class', name=name, shown=len(items), total=total, colour=_COLOURS.get(name, '#888'), note=note,
                 faces_text=plural(total, 'face'), figures=_joined(figures))


def _best_face(result) -> Optional[int]:
    """The index of an image's face with the highest quality value (``None`` without faces)."""
    qualities = [(face.quality if face.quality is not None else -1.0, -index) for index, face in
                 enumerate(result.faces)]
    return -max(qualities)[1] if qualities else None


def _groups_section(groups: List[List[int]], shown: List[Tuple[List[int], List[int]]], results: list,
                    keys: Dict[int, str], written: Dict[str, bytes], unreadable: Dict[str, str], embed: bool,
                    link: Callable[[str], str], distance: int) -> _Markup:
    """The groups of near-duplicates, the largest first (``shown``: `_shown_groups`), each image as a whole
    frame; the page's script puts the one kept first as the controls change."""
    parts = []
    for number, (group, members) in enumerate(shown):
        figures = []
        for image in members:
            result = results[image]
            best = _best_face(result)
            quality = '' if best is None else f'{result.faces[best].quality:.3f}'
            hover = '\n'.join(f'{key}: {json.dumps(value)}' for key, value in (
                ('image', result.image.path), ('faces', len(result.faces)), ('best quality', quality or None),
                ('phash', getattr(result, 'phash', None))))
            if keys[image] not in written:
                hover = f'{hover}\n{unreadable.get(result.image.path, "not readable")}'
            figures.append(_fill('figure', image=image, link=link(result.image.path),
                                 picture=_picture(keys[image], written, embed, 'frame', hover),
                                 quality=quality or 'no face'))
        more = f', {len(members)} shown (best faces first)' if len(members) < len(group) else ''
        parts.append(_fill('group', number=number, members=len(group), more=more, figures=_joined(figures)))
    note = (f'the {len(shown)} largest shown' if len(shown) < len(groups) else 'all shown') if groups else 'none'
    images = sum(len(group) for group in groups)
    groups_text = f'{plural(len(groups), "group")} holding {plural(images, "image")}'
    return _fill('groups', groups_text=groups_text, distance=distance, note=note, groups=_joined(parts))


def _shown_groups(groups: List[List[int]], results: list) -> List[Tuple[List[int], List[int]]]:
    """``(group, members shown)`` of the groups the page shows: the largest (first in file order on a tie),
    and of each the images whose best face is best (so the image kept is almost always among them)."""
    largest = sorted(groups, key=lambda group: (-len(group), group[0]))[:GROUPS_SHOWN]
    shown = []
    for group in largest:
        def best_quality(image):
            best = _best_face(results[image])
            return -1.0 if best is None else results[image].faces[best].quality or 0.0
        members = sorted(sorted(group, key=best_quality, reverse=True)[:MEMBERS_SHOWN])
        shown.append((group, members))
    return shown


def _script_json(value: Any) -> _Markup:
    r"""``value`` as JSON to put inside a ``<script>`` element: "<", ">" and "&" are written as
    ``\u003c``-style escapes (only strings can hold them), so no ``</script>`` or ``<!--`` in a path
    ends the element early, and the page's JSON.parse reads the same text."""
    text = json.dumps(value, separators=(',', ':'), allow_nan=False)
    return _Markup(text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026'))


def _column(kind: str, values: Sequence[Any]) -> str:
    """Numbers as base64 of their little-endian bytes (``array`` type ``kind``; ``None`` as NaN):
    a float keeps every bit, in 8 bytes where JSON takes up to 20 characters."""
    column = array(kind, [math.nan if value is None else value for value in values])
    if sys.byteorder == 'big':
        column.byteswap()
    return base64.b64encode(column.tobytes()).decode('ascii')


def _decide_data(results: list, classes: List[str], groups: List[List[int]], dedup_distance: Optional[int],
                 shown_images: Iterable[int], fingerprint: str) -> Dict[str, Any]:
    """What the page's script decides on: every image's faces, in file order, as columns.

    ``faces`` is the number of faces of each image (-1 for an image that failed when scored,
    int32); ``rank`` (the class, 0 the worst of ``classes``, int8), ``quality``, ``size``
    (`face_size`) and ``detection`` (float64, NaN for none) hold one value per face, the
    faces of one image after another; each column is `_column`'s base64. The values are the
    rows' own, every bit kept, so the page decides as `imgutils_facequal.curate.Thresholds`
    does. ``paths`` names the images the page shows, whose overrides are saved under the
    path the rows hold.
    """
    ranks = {name: number for number, name in enumerate(classes)}
    counts: List[int] = []
    rank: List[int] = []
    quality: List[Optional[float]] = []
    size: List[float] = []
    detection: List[Optional[float]] = []
    for result in results:
        if result.error is not None:
            counts.append(-1)
            continue
        counts.append(len(result.faces))
        for face in result.faces:
            rank.append(ranks[face.label])
            quality.append(face.quality)
            size.append(face_size(face))
            detection.append(face.detection_score)
    return {'classes': classes, 'fingerprint': fingerprint, 'dedupDistance': dedup_distance,
            'thresholds': Thresholds(dedup_distance=dedup_distance if groups else None).to_dict(),
            'faces': _column('i', counts), 'rank': _column('b', rank), 'quality': _column('d', quality),
            'size': _column('d', size), 'detection': _column('d', detection), 'groups': groups,
            'paths': {str(image): stored_path(results[image].image.path) for image in sorted(set(shown_images))}}


def _decide(classes: List[str], images: int, dedup_distance: Optional[int], hashed: int) -> _Markup:
    """The controls and the live counts (filled in by the page's script)."""
    if dedup_distance is None:
        note, title = 'no hashes in the scores', 'score again to record perceptual hashes (the phash column)'
    else:
        note = f'within {dedup_distance} bits'
        title = (f'{hashed} of {images} images have a hash; report --dedup-distance sets the distance'
                 if hashed < images else 'report --dedup-distance sets the distance')
    options = [_fill('label_option', name=name) for name in reversed(classes)]
    return _fill('decide', label_options=_joined(options), images=images, dedup_note=note, dedup_title=title)


def _problems(section_id: str, heading: str, problems: Iterable[Tuple[str, str]], more: int = 0) -> _Markup:
    """A section listing ``(path, reason)`` pairs, and how many more there are."""
    items = [_fill('problem', path=path, reason=reason) for path, reason in problems]
    if more > 0:
        items.append(_fill('more', count=more))
    return _fill('problems', id=section_id, heading=heading, items=_joined(items))


def _thumbnail_key(*parts: Any) -> str:
    digest = hashlib.sha1('\0'.join(map(str, parts)).encode('utf-8', 'surrogateescape'))
    return digest.hexdigest()[:20] + '.jpg'


def write_report(rows, out_dir: str, per_class: int = DEFAULT_PER_CLASS, thumb_size: int = 128,
                 embed: bool = False, title: Optional[str] = None, provenance: Optional[Dict[str, Any]] = None,
                 workers: Optional[int] = None,
                 dedup_distance: Optional[int] = DEFAULT_DEDUP_DISTANCE) -> Dict[str, Any]:
    """Write a static HTML report of saved scores to ``out_dir``; no model is loaded.

    :param rows: Nested rows (`imgutils_facequal.store.read_scores`) or a DataFrame of them.
    :param out_dir: The report folder: ``index.html`` and ``thumbs/``. A new or empty
        folder, or one holding an earlier report (whose page and thumbnails are replaced).
    :param per_class: Faces shown per class at most, spread evenly over its quality range.
    :param thumb_size: Thumbnail size in pixels (the longer side).
    :param embed: Put the thumbnails in the page itself (one file to send), not in ``thumbs/``.
    :param title: The page title; default the number of images.
    :param provenance: What produced the rows (`imgutils_facequal.store.read_scores` gives it),
        shown in the header; its ``working_dir`` is where relative paths are read from, as
        ``filter`` reads them, wherever the report is made.
    :param workers: Threads cutting thumbnails (default: the CPU count).
    :param dedup_distance: Images whose perceptual hashes (the ``phash`` column) lie within
        this many bits are near-duplicates (`imgutils_facequal.curate.dedup`); the page shows
        the groups and can keep the best of each. ``None``, or rows without hashes: no groups.
    :return: ``{'page': path of index.html, 'shown': faces shown, 'faces': faces in the rows,
        'groups': groups of near-duplicates, 'unreadable': {image: reason}}`` for shown images
        that could not be read any more.
    :raises FileExistsError: When ``out_dir`` holds other files than an earlier report.

    Example:

        >>> from imgutils_facequal import write_report
        >>> from imgutils_facequal import read_scores
        >>> write_report(read_scores('scores.jsonl').rows, 'report/')['page']  # doctest: +SKIP
        'report/index.html'
    """
    if per_class < 1 or thumb_size < 8:
        raise ValueError(f'per_class must be at least 1 and thumb_size at least 8; got {per_class}, {thumb_size}.')
    _check_folder(out_dir)
    results = scored_images(rows)
    table = table_of(results)
    faces = [(number, result, index, face) for number, result in enumerate(results) if result.error is None
             for index, face in enumerate(result.faces)]
    by_class: Dict[str, list] = defaultdict(list)
    for item in faces:
        by_class[item[3].label].append(item)
    classes = list(table.per_class)  # the model's order, as the summary and the threshold table have it
    classes += sorted(set(by_class) - set(classes))
    shown: Dict[str, list] = {}
    jobs: Dict[str, Dict[str, Optional[Tuple[int, int, int, int]]]] = defaultdict(dict)
    for name in classes:
        ordered = sorted(by_class.get(name, []), key=lambda item: (-item[3].quality, item[1].image.path, item[2]))
        shown[name] = []
        for number, result, index, face in _sample(ordered, per_class):
            key = _thumbnail_key(result.image.path, index, face.crop_bbox)
            jobs[result.image.path][key] = tuple(face.crop_bbox)
            shown[name].append((number, result, index, face, key))

    hashes = [getattr(result, 'phash', None) if result.error is None else None for result in results]
    hashed = sum(1 for value in hashes if value is not None)
    if dedup_distance is not None and hashed:
        groups = duplicate_groups(hashes, dedup_distance)
    else:
        groups, dedup_distance = [], None
    frame_keys: Dict[int, str] = {}
    shown_groups = _shown_groups(groups, results)
    for _, members in shown_groups:
        for image in members:
            frame_keys[image] = _thumbnail_key(results[image].image.path, 'frame')
            jobs[results[image].image.path][frame_keys[image]] = None

    os.makedirs(out_dir, exist_ok=True)
    thumbs_dir = None if embed else os.path.join(out_dir, 'thumbs')
    if thumbs_dir is not None:
        os.makedirs(thumbs_dir, exist_ok=True)
    working_dir = (provenance or {}).get('working_dir')  # relative paths name files from where score ran
    written, unreadable = _thumbnails(jobs, thumb_size, thumbs_dir, workers or os.cpu_count() or 2, working_dir)
    if thumbs_dir is not None:  # thumbnails of an earlier report that this one does not show
        for name in os.listdir(thumbs_dir):
            if name.endswith('.jpg') and name not in written:
                os.unlink(os.path.join(thumbs_dir, name))

    counts, thresholds = _tables(table, table.failed)
    root = results[0].image.root if results else '.'  # scored_images' common_root of every image
    heading = title or f'Face quality of {table.images} images'

    def link(path: str) -> str:
        return _link(saved_path_here(path, working_dir), out_dir)
    sections = [_section(name, shown[name], len(by_class.get(name, [])), written, unreadable, embed, link)
                for name in classes]
    if groups:
        sections.insert(0, _groups_section(groups, shown_groups, results, frame_keys, written, unreadable, embed,
                                           link, dedup_distance))
    if unreadable:
        sections.append(_problems('unreadable', 'Images that could not be read now', list(unreadable.items())[:200]))
    failed = [result for result in results if result.error is not None]
    if failed:
        sections.append(_problems('failed', 'Images that failed when scored',
                                  [(result.image.path, result.error) for result in failed[:200]], len(failed) - 200))
    provenance_line = _fill('provenance', **{key: provenance.get(key) for key in (
        'model_name', 'backend', 'precision', 'detector', 'crop', 'margin')}) if provenance else _Markup('')
    worst_first = list(table.per_class)
    shown_images = [item[0] for items in shown.values() for item in items] + list(frame_keys)
    data = _decide_data(results, worst_first, groups, dedup_distance, shown_images, scores_fingerprint(results))
    page = _fill('page', generator=REPORT_MARKER, heading=heading,
                 style=_Markup(_template_parts()['style'].substitute(size=int(thumb_size))),
                 summary=f'{plural(table.images, "image")} under {root}, {plural(table.faces, "face")}',
                 provenance=provenance_line,
                 decide=_decide(worst_first, table.images, dedup_distance, hashed),
                 histogram=_histogram([f.quality for *_, f in faces], [f.label for *_, f in faces]),
                 counts=counts, thresholds=thresholds, sections=_joined(sections),
                 data=_fill('data', json=_script_json(data)),
                 script=_Markup(_template_parts()['script'].substitute())) + '\n'
    index = os.path.join(out_dir, 'index.html')
    replace_file(index, page)
    return {'page': index, 'shown': sum(len(items) for items in shown.values()), 'faces': len(faces),
            'groups': groups, 'unreadable': unreadable}
