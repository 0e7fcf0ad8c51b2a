"""A visual report of saved scores: one static HTML page to look at before choosing a threshold.

`write_report` reads the rows of a ``score`` run (no model) and writes ``index.html``
with, per class, a grid of face crops cut from each face's ``crop_bbox``, best quality
first; a histogram of the quality value; the faces per class; and the threshold table of
`imgutils_facequal.threshold_table`. Each thumbnail links to its source image and shows
its row's values on hover. The page opens from disk with no server and no network: the
thumbnails are small JPEG files in ``thumbs/`` beside it (or embedded in the page), and
each class shows at most ``per_class`` faces, spread evenly over its quality range, so a
run of 100,000 images gives a page of a few hundred thumbnails that opens in seconds.
"""
import base64
import hashlib
import html
import io
import json
import os
import urllib.parse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .atomic import replace_file
from .curate import ThresholdTable, common_root, scored_images, table_of
from .errors import ImageLoadError
from .images import load_rgb_image
from .quality import QUALITY_ORDER

__all__ = ['write_report', 'DEFAULT_PER_CLASS', 'REPORT_MARKER']

#: Faces shown per class by default.
DEFAULT_PER_CLASS = 120
#: The ``generator`` meta tag of the page; a folder holding a page with it is a report that may be rewritten.
REPORT_MARKER = 'imgutils-facequal report'

_COLOURS = {'poor': '#d9534f', 'ok': '#f0ad4e', 'good': '#4fa3d1', 'excellent': '#4cae4c'}
_BINS = 20

_STYLE = '''
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; font-size: .9em; } table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .15em .5em; text-align: right; font-size: .85em; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
.overview { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
.grid figure { margin: 0; width: %(size)dpx; text-align: center; font-size: 11px; color: #444; }
.grid img, .grid .gone { width: %(size)dpx; height: %(size)dpx; object-fit: contain; background: #ddd;
  display: block; border: 2px solid transparent; } .grid a:hover img { border-color: #333; }
.grid .gone { display: flex; align-items: center; justify-content: center; color: #a00; font-size: 11px; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: middle; }
'''


def _link(path: str, out_dir: str) -> str:
    target = os.path.abspath(path)
    try:
        relative = os.path.relpath(target, os.path.abspath(out_dir))
    except ValueError:  # another drive
        return 'file://' + urllib.parse.quote(target.replace(os.sep, '/'))
    return urllib.parse.quote(relative.replace(os.sep, '/'))


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


def _thumbnails(jobs: Dict[str, List[Tuple[str, Tuple[int, int, int, int]]]], size: int, folder: Optional[str],
                workers: int) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """Cut the crops of each image (decoded once) as JPEG thumbnails; ``(written, {image: error})``."""
    written: Dict[str, bytes] = {}
    errors: Dict[str, str] = {}

    def one(image: str):
        try:
            decoded = load_rgb_image(image)
        except ImageLoadError as err:
            return image, None, str(err)
        out = {}
        for key, box in jobs[image]:
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


def _histogram(values: Sequence[float], labels: Sequence[str]) -> str:
    """An inline SVG histogram of quality values, each bar stacked by class."""
    counts = [defaultdict(int) for _ in range(_BINS)]
    for value, label in zip(values, labels):
        counts[min(int(value * _BINS), _BINS - 1)][label] += 1
    peak = max((sum(bin_.values()) for bin_ in counts), default=0) or 1
    width, height, bar = 360, 150, 360 / _BINS
    parts = [f'<svg id="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
             f'role="img" aria-label="histogram of the quality value">']
    for number, bin_ in enumerate(counts):
        y = height
        for label in [name for name in QUALITY_ORDER if name in bin_] + sorted(set(bin_) - set(QUALITY_ORDER)):
            tall = bin_[label] / peak * (height - 10)
            y -= tall
            parts.append(f'<rect x="{number * bar + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{tall:.1f}" '
                         f'fill="{_COLOURS.get(label, "#888")}"><title>{number / _BINS:.2f} to '
                         f'{(number + 1) / _BINS:.2f}: {bin_[label]} {html.escape(label)}</title></rect>')
        total = sum(bin_.values())
        if total:
            parts.append(f'<text x="{number * bar + bar / 2:.1f}" y="{y - 2:.1f}" font-size="9" '
                         f'text-anchor="middle">{total}</text>')
    parts.append(f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#333"/>')
    for tick in range(0, 11, 2):
        x = tick / 10 * width
        parts.append(f'<text x="{min(max(x, 8), width - 8):.1f}" y="{height + 14}" font-size="10" '
                     f'text-anchor="middle">{tick / 10:.1f}</text>')
    parts.append(f'<text x="{width / 2}" y="{height + 28}" font-size="10" text-anchor="middle">quality value</text>')
    parts.append('</svg>')
    return ''.join(parts)


def _tables(table: ThresholdTable, failed: int) -> str:
    rows = [f'<tr><td>images</td><td data-count="images">{table.images}</td></tr>',
            f'<tr><td>with faces</td><td data-count="with-faces">{table.with_faces}</td></tr>',
            f'<tr><td>faces</td><td data-count="faces">{table.faces}</td></tr>',
            f'<tr><td>failed when scored</td><td data-count="failed">{failed}</td></tr>']
    for name, count in reversed(list(table.per_class.items())):
        rows.append(f'<tr><td><span class="swatch" style="background:{_COLOURS.get(name, "#888")}"></span>'
                    f'{html.escape(name)} faces</td><td data-count="class-{html.escape(name)}">{count}</td></tr>')
    counts = '<table id="counts"><tr><th>in the file</th><th>count</th></tr>' + ''.join(rows) + '</table>'
    lines = ['<table id="thresholds"><tr><th>keep with</th><th>images (best face)</th><th>images (every face)</th>'
             '<th>faces</th></tr>']
    for row in table.rows:
        value = row.value if row.option == 'min_quality' else f'{row.value:.2f}'
        option = '--' + row.option.replace('_', '-')
        lines.append(f'<tr data-threshold="{option} {html.escape(str(value))}"><td><code>{option} '
                     f'{html.escape(str(value))}</code></td><td>{row.images}</td><td>{row.images_every_face}</td>'
                     f'<td>{row.faces}</td></tr>')
    lines.append('</table>')
    return counts, ''.join(lines)


def write_report(rows, out_dir: str, per_class: int = DEFAULT_PER_CLASS, thumb_size: int = 128,
                 embed: bool = False, title: Optional[str] = None, provenance: Optional[Dict[str, Any]] = None,
                 workers: Optional[int] = None) -> Dict[str, Any]:
    """Write a static HTML report of saved scores to ``out_dir``; no model is loaded.

    :param rows: Nested rows (`imgutils_facequal.rows.read_rows`) or a DataFrame of them.
    :param out_dir: The report folder: ``index.html`` and ``thumbs/``. A new or empty
        folder, or one holding an earlier report (whose page and thumbnails are replaced).
    :param per_class: Faces shown per class at most, spread evenly over its quality range.
    :param thumb_size: Thumbnail size in pixels (the longer side).
    :param embed: Put the thumbnails in the page itself (one file to send), not in ``thumbs/``.
    :param title: The page title; default the number of images.
    :param provenance: What produced the rows (`imgutils_facequal.rows.read_provenance`),
        shown in the header.
    :param workers: Threads cutting thumbnails (default: the CPU count).
    :return: ``{'page': path of index.html, 'shown': faces shown, 'faces': faces in the rows,
        'unreadable': {image: reason}}`` for sampled images that could not be read any more.
    :raises FileExistsError: When ``out_dir`` holds other files than an earlier report.

    Example:

        >>> from imgutils_facequal import write_report
        >>> from imgutils_facequal.rows import read_rows
        >>> write_report(read_rows('scores.jsonl'), 'report/')['page']  # doctest: +SKIP
        'report/index.html'
    """
    if per_class < 1 or thumb_size < 8:
        raise ValueError(f'per_class must be at least 1 and thumb_size at least 8; got {per_class}, {thumb_size}.')
    _check_folder(out_dir)
    results = scored_images(rows)
    table = table_of(results)
    faces = [(result, index, face) for result in results if result.error is None
             for index, face in enumerate(result.faces)]
    by_class: Dict[str, list] = defaultdict(list)
    for item in faces:
        by_class[item[2].label].append(item)
    classes = list(reversed(list(table.per_class)))  # best first
    classes += sorted(set(by_class) - set(classes))
    shown: Dict[str, list] = {}
    jobs: Dict[str, List[Tuple[str, Tuple[int, int, int, int]]]] = defaultdict(list)
    for name in classes:
        ordered = sorted(by_class.get(name, []), key=lambda item: (-item[2].quality, item[0].image.path, item[1]))
        shown[name] = []
        for result, index, face in _sample(ordered, per_class):
            digest = hashlib.sha1(f'{result.image.path}\0{index}\0{face.crop_bbox}'.encode('utf-8',
                                                                                             'surrogateescape'))
            key = digest.hexdigest()[:20] + '.jpg'
            jobs[result.image.path].append((key, tuple(face.crop_bbox)))
            shown[name].append((result, index, face, key))

    os.makedirs(out_dir, exist_ok=True)
    thumbs_dir = None if embed else os.path.join(out_dir, 'thumbs')
    if thumbs_dir is not None:
        os.makedirs(thumbs_dir, exist_ok=True)
    written, unreadable = _thumbnails(jobs, thumb_size, thumbs_dir, workers or os.cpu_count() or 2)
    if thumbs_dir is not None:  # thumbnails of an earlier report that this one does not show
        for name in os.listdir(thumbs_dir):
            if name.endswith('.jpg') and name not in written:
                os.unlink(os.path.join(thumbs_dir, name))

    counts, thresholds = _tables(table, table.failed)
    root = common_root([result.image.path for result in results])
    heading = title or f'Face quality of {table.images} images'
    meta = [f'{table.images} images under {html.escape(root)}, {table.faces} faces']
    if provenance:
        meta.append('model {model} ({backend}, {precision}), detector {detector}, crop {crop}, margin {margin}'.format(
            **{key: html.escape(str(provenance.get(key))) for key in
               ('model', 'backend', 'precision', 'detector', 'crop', 'margin')}))
    sections = []
    for name in classes:
        items = shown[name]
        total = len(by_class.get(name, []))
        figures = []
        for result, index, face, key in items:
            hover = html.escape(_hover(result, index, face))
            link = html.escape(_link(result.image.path, out_dir))
            if key in written:
                source = (f'data:image/jpeg;base64,{base64.b64encode(written[key]).decode("ascii")}' if embed
                          else f'thumbs/{key}')
                picture = f'<img src="{source}" alt="{html.escape(name)} {face.quality:.3f}" title="{hover}">'
            else:
                reason = unreadable.get(result.image.path, 'not readable')
                picture = f'<div class="gone" title="{hover}\n{html.escape(reason)}">image gone</div>'
            figures.append(f'<figure><a href="{link}">{picture}</a><figcaption>{face.quality:.3f}</figcaption>'
                           f'</figure>')
        note = (f'showing {len(items)} of {total}, spread evenly from the best to the worst; best first'
                if len(items) < total else 'all, best first' if total else 'none')
        sections.append(f'<section class="class" data-class="{html.escape(name)}" data-shown="{len(items)}" '
                        f'data-total="{total}"><h2><span class="swatch" style="background:'
                        f'{_COLOURS.get(name, "#888")}"></span>{html.escape(name)}: {total} faces '
                        f'<span class="meta">({note})</span></h2>'
                        f'<div class="grid">{"".join(figures)}</div></section>')
    if unreadable:
        sections.append('<section id="unreadable"><h2>Images that could not be read now</h2><ul>'
                        + ''.join(f'<li>{html.escape(path)}: {html.escape(reason)}</li>'
                                  for path, reason in list(unreadable.items())[:200]) + '</ul></section>')
    failed = [result for result in results if result.error is not None]
    if failed:
        sections.append('<section id="failed"><h2>Images that failed when scored</h2><ul>'
                        + ''.join(f'<li>{html.escape(result.image.path)}: {html.escape(result.error)}</li>'
                                  for result in failed[:200])
                        + (f'<li>... and {len(failed) - 200} more</li>' if len(failed) > 200 else '')
                        + '</ul></section>')
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="{REPORT_MARKER}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(heading)}</title><style>{_STYLE % {"size": thumb_size}}</style></head><body>'
            f'<h1>{html.escape(heading)}</h1><p class="meta">{"<br>".join(meta)}</p>'
            f'<div class="overview"><div><h2>Quality value</h2>'
            f'{_histogram([f.quality for _, _, f in faces], [f.label for _, _, f in faces])}</div>'
            f'<div><h2>Counts</h2>{counts}</div><div><h2>What each threshold keeps</h2>{thresholds}</div></div>'
            f'<p class="meta">Hover over a face for its row; click it for the source image.</p>'
            f'{"".join(sections)}</body></html>\n')
    index = os.path.join(out_dir, 'index.html')
    replace_file(index, page)
    return {'page': index, 'shown': sum(len(items) for items in shown.values()), 'faces': len(faces),
            'unreadable': unreadable}
