"""The report of a large run: how long it takes to build, to open in headless Chromium, and to answer
its controls.

    python -m benchmarks.report_large                 # 100,000 images
    python -m benchmarks.report_large --images 20000

The rows are drawn as a run over episode frames looks: 1 to 3 faces an image, of every size
from 8 to 300 px, quality values spread over [0, 1] with the class that goes with them,
detector confidences from 0.3 to 1, and perceptual hashes in shots of 1 to 40 frames
(`benchmarks.dedup.clustered_hashes`), so the page holds thousands of groups of
near-duplicates. Every image is a link to one of a few drawn frames (the thumbnails are cut
from real files). The figures: the seconds `write_report` takes, the page's size, the
seconds from navigation to the load event (the page's script has then read the data of
every image and decided once), and, for each control, the milliseconds from setting it to
the counts updated: in the page (``performance.now()`` around the input event, then to the
next frame painted) and as seen from outside over the DevTools protocol (the round trip).
Results go to ``benchmarks/results/report_large.{json,md}``.
"""
import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._results import machine, write_results
from benchmarks.dedup import clustered_hashes

CLASSES = ('poor', 'ok', 'good', 'excellent')

#: Each control's change, as a person makes it, and the value it goes back to.
CHANGES = [('min-label', 'good', ''), ('min-quality', '0.6', '0'), ('min-face-size', '32', ''),
           ('max-faces', '2', ''), ('min-detection-score', '0.5', ''), ('every-face', True, False),
           ('dedup', False, True)]

#: Set a control, then wait for the next frame: the milliseconds to the counts updated and to the frame.
TIMED_CHANGE = '''(async ([id, value]) => {
  const control = document.getElementById(id);
  const started = performance.now();
  if (control.type === 'checkbox') control.checked = value; else control.value = value;
  control.dispatchEvent(new Event('input', {bubbles: true}));
  const counted = performance.now();
  await new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));
  return JSON.stringify({update_ms: counted - started, frame_ms: performance.now() - started,
                         kept: Number(document.querySelector('[data-decided="kept"]').textContent)});
})(%s)'''


def drawn_rows(images: int, frames, seed: int = 0):
    """Rows of ``images`` images (links in ``frames``' folder to the drawn frames), with hashes."""
    rng = random.Random(seed)
    hashes, _ = clustered_hashes(images, seed)
    rows = []
    for number in range(images):
        path = frames[number]
        count = rng.choice((1, 1, 2, 3))
        for face in range(count):
            quality = rng.random()
            label = CLASSES[min(int(quality * 4), 3)]
            side = int(8 * (300 / 8) ** rng.random())
            x0, y0 = rng.randrange(0, 200), rng.randrange(0, 200)
            box = [x0, y0, x0 + side, y0 + int(side * rng.uniform(0.8, 1.25))]
            rows.append({'image': path, 'face': face, 'faces': count, 'width': 512, 'height': 512, 'bbox': box,
                         'label': label, 'score': 0.7, 'scores': {name: 0.25 for name in CLASSES},
                         'quality': quality, 'detection_score': rng.uniform(0.3, 1.0), 'head_bbox': None,
                         'crop_bbox': [max(v, 0) for v in box], 'error': None, 'phash': hashes[number]})
    return rows


def linked_frames(folder: Path, images: int, drawn: int = 24):
    """``images`` paths, links to ``drawn`` frames of faces of every class."""
    from tests.support.fake_hub import CLASS_COLOURS, draw_scene
    colours = list(CLASS_COLOURS.values())
    sources = []
    for index in range(drawn):
        frame, _ = draw_scene((512, 512), heads=[(index % 4, 0, colours[index % 4]),
                                                 (1, 2, colours[(index + 1) % 4])])
        source = folder / f'drawn-{index}.png'
        frame.save(source)
        sources.append(source)
    paths = []
    links = folder / 'frames'
    links.mkdir()
    for number in range(images):
        path = links / f'{number:06d}.png'
        os.symlink(sources[number % drawn], path)
        paths.append(str(path))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=100_000)
    parser.add_argument('--repeats', type=int, default=5, help='Times each control is moved there and back.')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results'))
    args = parser.parse_args()
    from imgutils_facequal import write_report
    from tests.support.browser import Chromium

    work = Path(tempfile.mkdtemp(prefix='report-large-'))
    rows = drawn_rows(args.images, linked_frames(work, args.images))
    load = os.getloadavg()[0]
    started = time.perf_counter()
    written = write_report(rows, str(work / 'report'))
    build = time.perf_counter() - started
    page = work / 'report' / 'index.html'
    browser = Chromium(work / 'profile')
    try:
        opens = [browser.open(page) for _ in range(3)]
        timings = {}
        for control, value, back in CHANGES:
            runs = []
            for _ in range(args.repeats):
                for setting in (value, back):
                    sent = time.perf_counter()
                    found = json.loads(browser.evaluate(TIMED_CHANGE % json.dumps([control, setting])))
                    found['round_trip_ms'] = (time.perf_counter() - sent) * 1000
                    runs.append(found)
            timings[control] = {key: statistics.median(run[key] for run in runs)
                                for key in ('update_ms', 'frame_ms', 'round_trip_ms')}
            timings[control]['max_frame_ms'] = max(run['frame_ms'] for run in runs)
            timings[control]['kept'] = runs[0]['kept']
    finally:
        browser.close()
    report = {'machine': machine(), 'load_average_at_start': round(load, 2), 'images': args.images,
              'rows': len(rows), 'faces': written['faces'], 'groups': len(written['groups']),
              'build_seconds': round(build, 2), 'page_bytes': os.path.getsize(page),
              'thumbnails': len(os.listdir(work / 'report' / 'thumbs')),
              'open_seconds': [round(value, 3) for value in opens], 'controls': timings}
    lines = [f'# The report of {args.images:,} images', '',
             f'{report["machine"]["cpu"]}, {report["machine"]["cpus"]} CPUs; load average {load:.1f} at the start.', '',
             f'- {len(rows):,} rows, {written["faces"]:,} faces, {len(written["groups"]):,} groups of near-duplicates',
             f'- built in {build:.1f} s; index.html {report["page_bytes"] / 1e6:.1f} MB, '
             f'{report["thumbnails"]} thumbnails',
             '- opened (navigation to load event, data read and decided once) in '
             + ', '.join(f'{value:.2f}' for value in opens) + ' s', '',
             '| control | counts updated (ms) | next frame (ms) | worst frame (ms) | DevTools round trip (ms) |',
             '|---|---:|---:|---:|---:|']
    for control, values in timings.items():
        lines.append(f'| {control} | {values["update_ms"]:.0f} | {values["frame_ms"]:.0f} | '
                     f'{values["max_frame_ms"]:.0f} | {values["round_trip_ms"]:.0f} |')
    write_results(args.out, 'report_large', report, '\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
