"""Deciding in the report, in headless Chromium over the DevTools protocol: the controls decide on every
image as `imgutils_facequal.curate.Thresholds` does, a click on a face flips its image, and the saved
decisions.json gives `filter --decisions` exactly the set the page shows."""
import base64
import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from imgutils_facequal.curate import DEFAULT_DEDUP_DISTANCE, Thresholds, read_decisions, select_images
from imgutils_facequal.store import read_scores, scored_images
from imgutils_facequal.store.paths import stored_path
from tests.support.cli import run
from tests.support.fake_hub import CLASS_COLOURS, draw_scene

pytestmark = pytest.mark.extras

SHOTS = Path(tempfile.gettempdir()) / 'report-shots'  # to look at: the page opened, and after the clicks

#: The page's verdict on each image it shows, its live counts, and the paths of the images it shows.
PAGE_STATE = '''JSON.stringify({
  figures: Array.from(document.querySelectorAll('figure[data-image]')).map(f => ({
    image: f.dataset.image, decision: f.dataset.decision, why: f.querySelector('.why').textContent,
    inGroup: !!f.closest('.group')})),
  counts: Object.fromEntries(Array.from(document.querySelectorAll('[data-decided]'))
                             .map(e => [e.dataset.decided, Number(e.textContent)])),
  paths: JSON.parse(document.getElementById('decide-data').textContent).paths,
  groups: Array.from(document.querySelectorAll('.group')).map(g => Array.from(g.querySelectorAll('figure'))
                                                              .map(f => f.dataset.image)),
})'''

#: Set the controls as a person would (the value, then the input event the page listens to).
SET_CONTROLS = '''(values => {
  for (const [id, value] of Object.entries(values)) {
    const control = document.getElementById(id);
    if (control.type === 'checkbox') control.checked = value; else control.value = value;
    control.dispatchEvent(new Event('input', {bubbles: true}));
  }
  return document.body.dataset.updates;
})(%s)'''


def _controls(thresholds: Thresholds) -> dict:
    """The page's control values that give these thresholds."""
    def text(value):
        return '' if value is None else str(value)
    return {'min-label': thresholds.min_label or '', 'min-quality': str(thresholds.min_quality or 0),
            'min-face-size': text(thresholds.min_face_size), 'max-faces': text(thresholds.max_faces),
            'min-detection-score': text(thresholds.min_detection_score), 'every-face': thresholds.every_face,
            'dedup': thresholds.dedup_distance is not None}


def _half_covered(image, box):
    """Black out the right half of a face: the detector is half as sure of it, its crop darker."""
    ImageDraw.Draw(image).rectangle(((box[0] + box[2]) // 2, box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0))


@pytest.fixture
def scenes(tmp_path):
    """Frames of a few shots: near-identical frames (one shot, colours a little off), large and small
    faces, a crowded frame, a face the detector is unsure of, a frame without faces and a broken file."""
    colours = CLASS_COLOURS
    root = tmp_path / 'frames'
    root.mkdir()
    shot = [(0, 0, colours['good']), (2, 2, colours['ok'])]
    for number, shift in enumerate((0, 25, 50)):  # one shot, three frames
        good = tuple(max(channel - shift, 0) if channel > 200 else channel + shift for channel in colours['good'])
        draw_scene((256, 256), heads=[(0, 0, good), shot[1]])[0].save(root / f'shot1-{number}.png')
    draw_scene((512, 512), heads=[(1, 1, colours['excellent'])])[0].save(root / 'close-up.png')
    draw_scene((512, 512), heads=[(2, 0, colours['good'])], bare_faces=[(0, 6, colours['ok'])])[0].save(
        root / 'close-up-2.png')
    draw_scene((256, 256), heads=[(0, 0, colours['good']), (2, 0, colours['excellent']), (0, 2, colours['ok'])],
               bare_faces=[(7, 7, colours['good'])])[0].save(root / 'crowd.png')
    unsure, expected = draw_scene((256, 256), heads=[(3, 3, colours['excellent'])],
                                  bare_faces=[(1, 1, colours['good'])])
    _half_covered(unsure, expected[0][0])
    unsure.save(root / 'unsure.png')
    draw_scene((256, 256), heads=[(1, 0, colours['poor'])], bare_faces=[(5, 5, colours['ok'])])[0].save(
        root / 'poor.png')
    Image.new('RGB', (256, 256)).save(root / 'empty.png')
    (root / 'broken.png').write_bytes(b'not an image')
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=1)
    return root, scores


def _page_kept(state) -> set:
    """The stored paths of the images the page shows as kept."""
    return {state['paths'][figure['image']] for figure in state['figures'] if figure['decision'].startswith('kept')}


def _viewport_shot(browser, path):
    """What a person sees now (the window, scrolled as it is), as PNG."""
    path.write_bytes(base64.b64decode(browser.call('Page.captureScreenshot', format='png')['data']))


def _click(browser, selector):
    """A real click (mouse pressed and released over the element's centre), as a person gives it."""
    box = json.loads(browser.evaluate(f'''(() => {{
      const element = document.querySelector({json.dumps(selector)});
      element.scrollIntoView({{block: 'center'}});
      const r = element.getBoundingClientRect();
      return JSON.stringify({{x: r.x + r.width / 2, y: r.y + r.height / 2}});
    }})()'''))
    for kind in ('mousePressed', 'mouseReleased'):
        browser.call('Input.dispatchMouseEvent', type=kind, x=box['x'], y=box['y'], button='left', clickCount=1)


def _open_decisions(browser, path):
    """Choose a file in the page's "open decisions.json" (as a person would in the file dialog); the page's answer."""
    document = browser.call('DOM.getDocument')['root']['nodeId']
    node = browser.call('DOM.querySelector', nodeId=document, selector='#open-decisions')['nodeId']
    browser.evaluate('document.getElementById("decide-message").textContent = ""')
    browser.call('DOM.setFileInputFiles', files=[str(path)], nodeId=node)
    deadline = time.time() + 10
    while not browser.evaluate('document.getElementById("decide-message").textContent'):
        assert time.time() < deadline, 'the page did not answer'
        time.sleep(0.05)
    return browser.evaluate('document.getElementById("decide-message").textContent')


def test_the_page_decides_as_python_does_and_filter_applies_what_was_clicked(scenes, tmp_path, browser):
    root, scores = scenes
    SHOTS.mkdir(exist_ok=True)
    out = tmp_path / 'report'
    run('report', scores, '-o', out, check_code=0)
    results = scored_images(read_scores(str(scores)).rows)
    paths = [stored_path(result.image.path) for result in results]
    assert any(getattr(result, 'phash', None) for result in results)
    browser.call('Runtime.enable')  # so that an error in the page's script is an event to find
    browser.open(out / 'index.html')
    state = json.loads(browser.evaluate(PAGE_STATE))
    # every image with a face is on the page, so its verdict can be read off
    assert set(state['paths'].values()) == {path for path, result in zip(paths, results)
                                            if result.error is None and result.faces}
    shot = {str(image) for image, path in enumerate(paths) if '/shot1-' in path}
    assert [set(group) for group in state['groups']] == [shot]  # one shot's frames, and nothing else
    browser.screenshot(SHOTS / 'decide-opened.png')

    near = DEFAULT_DEDUP_DISTANCE  # the report's default: near-duplicates are on when the page opens
    cases = [Thresholds(), Thresholds(min_label='good'), Thresholds(min_quality=0.5, every_face=True),
             Thresholds(min_face_size=40), Thresholds(min_label='ok', max_faces=2),
             Thresholds(min_detection_score=0.9), Thresholds(min_label='ok', every_face=True, dedup_distance=near),
             Thresholds(min_label='good', min_detection_score=0.6), Thresholds(min_quality=0.3, min_detection_score=0.5),
             Thresholds(min_label='good', min_face_size=20, max_faces=3, dedup_distance=near)]
    for thresholds in cases:
        browser.evaluate(SET_CONTROLS % json.dumps(_controls(thresholds)))
        state = json.loads(browser.evaluate(PAGE_STATE))
        selection = select_images(results, thresholds)
        expected = {path for path, kept in zip(paths, selection.kept) if kept}
        assert _page_kept(state) == expected, thresholds
        assert state['counts']['kept'] == len(expected), thresholds
        assert state['counts']['rejected'] == len(results) - len(expected)
        assert state['counts']['duplicates'] == len(selection.duplicate_of), thresholds
        assert state['counts']['failed'] == 1 and state['counts']['no-face'] == 1
        saved = json.loads(browser.evaluate('JSON.stringify(reportDecisions())'))
        assert saved['thresholds'] == thresholds.to_dict()

    # the last case stays: near-duplicates on; click a kept face (reject it) and a near-duplicate (keep it)
    state = json.loads(browser.evaluate(PAGE_STATE))
    kept_before = _page_kept(state)
    group = state['groups'][0]
    kept_in_group = [image for image in group if state['paths'][image] in kept_before]
    assert len(kept_in_group) == 1 and group[0] == kept_in_group[0]  # the kept image first
    duplicate = group[1]
    assert next(figure['why'] for figure in state['figures'] if figure['image'] == duplicate) == 'near-duplicate'
    other_kept = next(figure['image'] for figure in state['figures']
                      if figure['decision'] == 'kept' and figure['image'] not in group)
    _click(browser, f'section.class figure[data-image="{other_kept}"] .face')
    _click(browser, f'.group figure[data-image="{duplicate}"] .face')
    state = json.loads(browser.evaluate(PAGE_STATE))
    clicked = {state['paths'][other_kept]: 'reject', state['paths'][duplicate]: 'keep'}
    wanted = (kept_before - {state['paths'][other_kept]}) | {state['paths'][duplicate]}
    assert _page_kept(state) == wanted
    decisions_of = {figure['image']: figure['decision'] for figure in state['figures']}
    assert decisions_of[other_kept] == 'rejected by hand' and decisions_of[duplicate] == 'kept by hand'
    assert state['counts']['kept-by-hand'] == 1 and state['counts']['rejected-by-hand'] == 1
    assert set(state['groups'][0][:2]) == {group[0], duplicate}  # the kept images first
    browser.evaluate('document.querySelector("#groups").scrollIntoView({block: "start"}); window.scrollBy(0, -130)')
    _viewport_shot(browser, SHOTS / 'decide-clicked.png')
    browser.evaluate('window.scrollTo(0, 0)')

    downloads = tmp_path / 'downloads'
    downloads.mkdir()
    browser.call('Browser.setDownloadBehavior', behavior='allow', downloadPath=str(downloads))
    _click(browser, '#save')
    target = downloads / 'decisions.json'
    deadline = time.time() + 10
    while not target.exists():
        assert time.time() < deadline, f'no download: {os.listdir(downloads)}'
        time.sleep(0.05)
    saved = json.loads(target.read_text(encoding='utf-8'))
    assert saved['kind'] == 'imgutils-facequal decisions' and saved['version'] == 1
    assert saved['overrides'] == clicked and saved['scores']['images'] == len(results)
    assert saved['thresholds'] == cases[-1].to_dict()

    decisions = read_decisions(str(target))
    assert decisions.overrides == clicked

    assert [event for event in browser.events if event.get('method') == 'Runtime.exceptionThrown'] == []

    # opened again, the page takes the file back: the same controls, overrides and kept set
    browser.open(out / 'index.html')
    assert _page_kept(json.loads(browser.evaluate(PAGE_STATE))) != wanted
    assert 'Opened decisions.json: 2 overrides.' == _open_decisions(browser, target)
    assert _page_kept(json.loads(browser.evaluate(PAGE_STATE))) == wanted
    assert json.loads(browser.evaluate('JSON.stringify(reportDecisions())')) == saved
    other = tmp_path / 'other.json'
    other.write_text(json.dumps(dict(saved, scores={'fingerprint': '0' * 16, 'images': 3}, overrides={})))
    assert 'other.json was decided on other scores' in _open_decisions(browser, other)
    assert _page_kept(json.loads(browser.evaluate(PAGE_STATE))) == wanted  # nothing changed
    train = tmp_path / 'train'
    result = run('filter', '--scores', scores, '--decisions', target, '--out', train, check_code=0)
    assert 'broken.png' in result.stderr  # failed when scored: never kept, named, and no failure of filter's
    placed = {os.path.relpath(os.path.join(folder, name), train)
              for folder, _, names in os.walk(train) for name in names}
    assert placed == {os.path.basename(path) for path in wanted}


def test_a_hostile_path_stays_text(tmp_path, browser):
    """Image paths that look like markup or script end no element early and run nothing."""
    frame, _ = draw_scene((256, 256), heads=[(0, 0, CLASS_COLOURS['good'])])
    root = tmp_path / 'frames'
    root.mkdir()
    names = ['</script><script>document.title="owned"</script>.png', '<img src=x onerror=alert(1)>&amp;.png']
    for name in names:  # a "/" in a name is a folder
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        frame.save(root / name)
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=0)
    out = tmp_path / 'report'
    run('report', scores, '-o', out, check_code=0)
    page = (out / 'index.html').read_text(encoding='utf-8')
    assert '</script><script>' not in page and '<img src=x' not in page
    browser.open(out / 'index.html')
    assert browser.evaluate('document.title') != 'owned'
    state = json.loads(browser.evaluate(PAGE_STATE))
    assert sorted(os.path.relpath(path, root) for path in state['paths'].values()) == sorted(names)
    assert state['counts']['kept'] == 1 and state['counts']['duplicates'] == 1  # one frame twice
    rejected = next(figure['image'] for figure in state['figures'] if figure['decision'] == 'rejected')
    _click(browser, f'section.class figure[data-image="{rejected}"] .face')
    decisions = tmp_path / 'decisions.json'
    decisions.write_text(browser.evaluate('JSON.stringify(reportDecisions())'), encoding='utf-8')
    assert read_decisions(str(decisions)).overrides == {state['paths'][rejected]: 'keep'}
    result = run('filter', '--scores', scores, '--decisions', decisions, '--out', tmp_path / 'train', check_code=0)
    assert sorted(os.path.relpath(os.path.join(folder, name), tmp_path / 'train')
                  for folder, _, files in os.walk(tmp_path / 'train') for name in files) == sorted(names), result.stderr
