"""The HTML report, opened in a real headless Chromium over the DevTools protocol (the ``browser`` fixture)."""
import base64
import io
import json
import os
import time
from collections import Counter

import pytest
from PIL import Image

from imgutils_facequal import write_report
from imgutils_facequal.store.formats import read_file
from tests.support.cli import read_jsonl, run, scene

PAGE_FINDINGS = '''JSON.stringify({
  images: Array.from(document.querySelectorAll('section.class img')).map(i => ({
    src: i.getAttribute('src').slice(0, 60), complete: i.complete, width: i.naturalWidth})),
  frames: Array.from(document.querySelectorAll('#groups img')).map(i => ({complete: i.complete, width: i.naturalWidth})),
  counts: Object.fromEntries(Array.from(document.querySelectorAll('[data-count]'))
                             .map(e => [e.dataset.count, Number(e.textContent)])),
  sections: Array.from(document.querySelectorAll('section.class')).map(s => ({
    name: s.dataset.class, shown: s.querySelectorAll('figure').length, total: Number(s.dataset.total),
    heading: s.querySelector('h2').textContent,
    qualities: Array.from(s.querySelectorAll('figcaption a')).map(f => Number(f.textContent))})),
  thresholds: Object.fromEntries(Array.from(document.querySelectorAll('tr[data-threshold]'))
                                 .map(r => [r.dataset.threshold, Array.from(r.cells).slice(1).map(c => Number(c.textContent))])),
  gone: document.querySelectorAll('section.class .gone').length,
  framesGone: document.querySelectorAll('#groups .gone').length,
  links: Array.from(document.querySelectorAll('section.class .grid a')).map(a => a.href),
  groups: Array.from(document.querySelectorAll('.group')).map(g => g.querySelectorAll('figure').length),
  decided: Object.fromEntries(Array.from(document.querySelectorAll('[data-decided]'))
                              .map(e => [e.dataset.decided, Number(e.textContent)])),
  hover: (document.querySelector('section.class .grid img') || {}).title,
})'''


@pytest.fixture
def scored(tmp_path):
    """Twelve scored scenes, one frame without a face and one file that is no image."""
    root = tmp_path / 'frames'
    root.mkdir()
    for index in range(12):
        scene(index)[0].save(root / f'frame{index:02d}.png')
    Image.new('RGB', (200, 150)).save(root / 'black.png')
    (root / 'broken.png').write_bytes(b'not an image')
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=1)
    return root, scores


def expected_counts(scores):
    """What the page must show, counted straight from the file."""
    rows = read_jsonl(scores)
    faces = [row for row in rows if row.get('label')]
    images = {row['image'] for row in rows}
    counts = {'images': len(images), 'faces': len(faces), 'failed': len({r['image'] for r in rows if r['error']}),
              'with-faces': len({row['image'] for row in faces})}
    counts.update({f'class-{name}': count for name, count in Counter(row['label'] for row in faces).items()})
    return rows, faces, counts


def test_the_page_shows_every_face_and_the_counts_of_the_file(scored, tmp_path, browser):
    root, scores = scored
    out = tmp_path / 'report'
    result = run('report', scores, '-o', out, check_code=0)
    assert 'Wrote' in result.stderr
    rows, faces, counts = expected_counts(scores)
    seconds = browser.open(out / 'index.html')
    found = json.loads(browser.evaluate(PAGE_FINDINGS))
    browser.screenshot(tmp_path / 'report.png')
    assert seconds < 10
    assert len(found['images']) == len(faces) and found['gone'] == 0
    broken = [image for image in found['images'] if not image['complete'] or image['width'] == 0]
    assert broken == [] and all(image['src'].startswith('thumbs/') for image in found['images'])
    assert {key: found['counts'].get(key) for key in counts} == counts
    assert {section['name']: section['shown'] for section in found['sections']} == {
        key[len('class-'):]: value for key, value in counts.items() if key.startswith('class-')}
    for section in found['sections']:
        assert section['qualities'] == sorted(section['qualities'], reverse=True)  # best first
    good_or_better = {row['image'] for row in faces if row['label'] in ('good', 'excellent')}
    every_face_good = {image for image in {row['image'] for row in faces}
                       if all(r['label'] in ('good', 'excellent') for r in faces if r['image'] == image)}
    assert found['thresholds']['--min-label good'] == [len(good_or_better), len(every_face_good),
                                                         sum(row['label'] in ('good', 'excellent') for row in faces)]
    assert {link[len('file://'):] for link in found['links']} == {str(root / os.path.basename(row['image']))
                                                                  for row in faces}
    assert 'quality: ' in found['hover'] and 'crop_bbox: ' in found['hover']
    # scenes 0, 4 and 8 (1, 5, 9...) are the same frame: four groups of near-duplicates, each shown whole,
    # and the page keeps one of each
    assert found['groups'] == [3, 3, 3, 3] and all(frame['complete'] and frame['width'] for frame in found['frames'])
    assert found['decided'] == {'kept': 4, 'rejected': 10, 'failed': 1, 'no-face': 1, 'face-filters': 0, 'below': 0,
                                'duplicates': 8, 'kept-by-hand': 0, 'rejected-by-hand': 0}
    screenshot = Image.open(tmp_path / 'report.png')
    assert screenshot.size[0] == 1280
    assert len(screenshot.convert('RGB').resize((64, 64)).getcolors(64 * 64)) > 50  # not a blank page


def test_a_large_run_gives_a_page_that_opens_fast_and_decides_on_every_image(scored, tmp_path, browser):
    """100,000 images (links to the scored frames, one face each) show at most per_class faces a class,
    and the controls decide on all of them at once."""
    root, scores = scored
    faces = [row for row in read_file(str(scores)).rows if row.get('label')]
    links = tmp_path / 'many'
    links.mkdir()
    many = []
    for number in range(100_000):
        row = faces[number % len(faces)]
        path = links / f'{number:06d}.png'
        os.symlink(row['image'], path)
        many.append(dict(row, image=str(path), face=0, faces=1, quality=row['quality'] * (1 - number * 1e-7)))
    out = tmp_path / 'big-report'
    started = time.perf_counter()
    written = write_report(many, str(out), per_class=50)
    assert time.perf_counter() - started < 60
    assert written['faces'] == 100_000 and written['shown'] == 4 * 50 and written['unreadable'] == {}
    assert os.path.getsize(out / 'index.html') < 6_000_000  # the faces of every image, for the controls
    assert browser.open(out / 'index.html') < 5
    found = json.loads(browser.evaluate(PAGE_FINDINGS))
    assert len(found['images']) == 200 and all(image['complete'] and image['width'] > 0 for image in found['images'])
    assert [section['shown'] for section in found['sections']] == [50, 50, 50, 50]
    assert sum(section['total'] for section in found['sections']) == 100_000
    assert found['counts']['images'] == found['counts']['faces'] == 100_000
    # the hashes of the scored frames repeat: a few huge groups, of which the page keeps one image each
    assert found['decided']['kept'] == len(written['groups']) and found['decided']['duplicates'] > 99_000
    milliseconds = browser.evaluate('''(() => {
      const started = performance.now();
      for (const [id, value] of [['dedup', false], ['min-label', 'good']]) {
        const control = document.getElementById(id);
        if (control.type === 'checkbox') control.checked = value; else control.value = value;
        control.dispatchEvent(new Event('input'));
      }
      return performance.now() - started;
    })()''')
    found = json.loads(browser.evaluate(PAGE_FINDINGS))
    assert found['decided']['kept'] == sum(row['label'] in ('good', 'excellent') for row in many)
    assert milliseconds < 1000


def test_images_gone_since_scoring_are_shown_as_such(scored, tmp_path, browser):
    root, scores = scored
    (root / 'frame03.png').unlink()
    out = tmp_path / 'report'
    result = run('report', scores, '-o', out, check_code=1)
    assert 'frame03.png' in result.stderr
    browser.open(out / 'index.html')
    found = json.loads(browser.evaluate(PAGE_FINDINGS))
    gone = sum(1 for row in read_jsonl(scores) if row['image'].endswith('frame03.png'))
    assert found['gone'] == gone and all(image['width'] > 0 for image in found['images'])
    assert found['framesGone'] == 1  # its group shows it as gone too


def test_embedded_thumbnails_and_the_report_folder(scored, tmp_path):
    root, scores = scored
    out = tmp_path / 'one-file'
    written = write_report(read_file(str(scores)).rows, str(out), embed=True, per_class=3)
    assert os.listdir(out) == ['index.html'] and written['shown'] == 12
    page = (out / 'index.html').read_text()
    for data in page.split('src="data:image/jpeg;base64,')[1:]:
        assert Image.open(io.BytesIO(base64.b64decode(data.split('"')[0]))).size[0] <= 128
    # a rerun replaces the report; a folder of other files is refused
    frames = sum(len(group) for group in written['groups'])  # each image of a group of near-duplicates, whole
    assert frames == 12
    run('report', scores, '-o', out, '--per-class', '2', check_code=0)
    assert len(os.listdir(out / 'thumbs')) == 8 + frames
    run('report', scores, '-o', out, '--per-class', '1', '--dedup-distance', '0', check_code=0)
    assert len(os.listdir(out / 'thumbs')) == 4 + frames  # thumbnails the page no longer shows are removed
    result = run('report', scores, '-o', root, check_code=2)
    assert 'holds no earlier report' in result.stderr
    assert run('report', tmp_path / 'nothing.jsonl', '-o', tmp_path / 'r', check_code=2).stderr.count('score') >= 1


def test_relative_paths_are_read_from_the_folder_score_ran_in(tmp_path):
    """Scores of relative paths, reported from another folder: thumbnails and links find the images, as
    `filter` does (the provenance's working_dir)."""
    import re
    import urllib.parse
    (tmp_path / 'frames').mkdir()
    for index in range(3):
        scene(index)[0].save(tmp_path / 'frames' / f'frame{index}.png')
    run('score', 'frames', '-o', 'scores.jsonl', '-q', cwd=tmp_path, check_code=0)
    assert all(not os.path.isabs(row['image']) for row in read_jsonl(tmp_path / 'scores.jsonl'))
    elsewhere, out = tmp_path / 'elsewhere', tmp_path / 'report'
    elsewhere.mkdir()
    result = run('report', tmp_path / 'scores.jsonl', '-o', out, cwd=elsewhere, check_code=0)
    assert 'could not be read' not in result.stderr and len(os.listdir(out / 'thumbs')) >= 3
    links = {urllib.parse.unquote(href) for href in re.findall(r'<a href="([^"]+\.png)"', (out / 'index.html').read_text())}
    assert links and all((out / link).resolve().is_file() for link in links), links
