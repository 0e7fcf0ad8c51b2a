"""The Gradio demo: its prediction through Gradio's own processing, its page in headless Chromium, and the
message without Gradio."""
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from imgutils_facequal import ScoringSettings, build_demo, detect_face_quality, launch_demo
from tests.support.cli import run, scene, start_process
from tests.support.fake_hub import classifier_repo_files, write_local_dir

pytestmark = pytest.mark.extras

SHOTS = Path('/tmp/demo-shots')


@pytest.fixture
def gradio_temp(tmp_path, monkeypatch):
    """Gradio's cache of uploads and outputs, inside the test's folder."""
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    monkeypatch.setenv('GRADIO_ANALYTICS_ENABLED', 'False')
    return tmp_path / 'gradio'


def _rows(output):
    table = output[1]['value']
    return [dict(zip(table['headers'], row)) for row in table['data']]


def test_prediction_boxes_and_scores_every_face(tmp_path, gradio_temp):
    image, expected = scene(1)
    image.save(tmp_path / 'scene.png')
    demo = build_demo(ScoringSettings(crop='face', margin=0))
    output = demo(str(tmp_path / 'scene.png'), 'caformer_s36.head_crop', '', 0.25, 0.7, api_name='predict')
    faces = detect_face_quality(image, crop='face', margin=0, conf_threshold=0.25, iou_threshold=0.7)
    assert len(faces) == len(expected) == 3 and output[2] == '3 faces found.'
    assert [(row['face'], row['box'], row['class']) for row in _rows(output)] == \
        [(index, ', '.join(map(str, face.bbox)), face.label) for index, face in enumerate(faces, 1)]
    assert [row['good'] for row in _rows(output)] == [round(face.scores['good'], 4) for face in faces]
    drawn = Image.open(output[0]).convert('RGB')
    assert drawn.size == image.size and drawn.tobytes() != image.tobytes()
    for face in faces:  # each face boxed in its class's colour, its inside left as it was
        x0, y0, x1, y1 = face.bbox
        assert drawn.getpixel((x0 + 8, y0 + 8)) == image.getpixel((x0 + 8, y0 + 8))
        assert drawn.getpixel((x0, (y0 + y1) // 2)) != image.getpixel((x0, (y0 + y1) // 2))
    assert str(gradio_temp) in output[0]


def test_thresholds_and_a_local_folder_take_effect(tmp_path, gradio_temp):
    image, _ = scene(1)
    image.save(tmp_path / 'scene.png')
    demo = build_demo()
    assert demo(str(tmp_path / 'scene.png'), 'caformer_s36.head_crop', '', 1.0, 0.7,
                api_name='predict')[2] == 'No face found.'
    folder = write_local_dir(str(tmp_path / 'my-model'), classifier_repo_files())
    from_folder = demo(str(tmp_path / 'scene.png'), 'caformer_s36.head_crop', folder, 0.25, 0.7, api_name='predict')
    assert _rows(from_folder) and [row['class'] for row in _rows(from_folder)] == \
        [row['class'] for row in _rows(demo(str(tmp_path / 'scene.png'), 'caformer_s36.head_crop', '', 0.25, 0.7,
                                            api_name='predict'))]
    import gradio
    with pytest.raises(gradio.Error, match='no-such-model'):
        demo(str(tmp_path / 'scene.png'), 'caformer_s36.head_crop', str(tmp_path / 'no-such-model'), 0.25, 0.7,
             api_name='predict')


def test_settings_are_the_pages_starting_values(gradio_temp):
    demo = build_demo(ScoringSettings(model_name='caformer_s36', conf_threshold=0.4))
    values = {component.label: component.value for component in demo.blocks.values()
              if getattr(component, 'label', None) and hasattr(component, 'value')}
    assert values['Model'] == 'caformer_s36'
    assert values['Detector confidence threshold'] == 0.4 and values['Detector IoU threshold'] == 0.7


def test_without_gradio_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'gradio', None)
    with pytest.raises(ImportError, match=r"pip install 'imgutils-facequal\[demo\]'"):
        build_demo()
    result = run('demo', check_code=3)
    assert "pip install 'imgutils-facequal[demo]'" in result.stderr


def _free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _wait_for(browser, expression, what, seconds=30):
    deadline = time.time() + seconds
    while not browser.evaluate(expression):
        assert time.time() < deadline, f'the page never showed {what}'
        time.sleep(0.2)


def test_served_page_takes_an_upload_and_shows_the_faces(tmp_path, gradio_temp, browser):
    image, _ = scene(1)
    upload = tmp_path / 'upload.png'
    image.resize((512, 512), Image.NEAREST).save(upload)
    port = _free_port()
    demo = launch_demo(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        assert demo.local_url.startswith(f'http://127.0.0.1:{port}') and demo.share_url is None
        browser.call('Network.enable')
        browser.open(demo.local_url)
        _wait_for(browser, "!!document.querySelector('#facequal-input input[type=file]')", 'its file input')
        root = browser.call('DOM.getDocument', depth=-1, pierce=True)['root']['nodeId']
        node = browser.call('DOM.querySelector', nodeId=root, selector='#facequal-input input[type=file]')['nodeId']
        browser.call('DOM.setFileInputFiles', nodeId=node, files=[str(upload)])
        _wait_for(browser, "!!document.querySelector('#facequal-input img')", 'the uploaded image')
        browser.evaluate("document.querySelector('#facequal-submit').click()")
        _wait_for(browser, "!!document.querySelector('#facequal-output img') && "
                           "document.querySelector('#facequal-output img').complete", 'the drawing')
        _wait_for(browser, "document.querySelector('#facequal-found').innerText.includes('faces found')",
                  'the number of faces')
        table = browser.evaluate("document.querySelector('#facequal-table').innerText")
        assert 'excellent' in table and 'quality' in table
        requested = {event['params']['request']['url'].split('?')[0] for event in browser.events
                     if event.get('method') == 'Network.requestWillBeSent'}
        assert requested and [url for url in requested if not url.startswith((demo.local_url, 'data:', 'blob:'))] == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(SHOTS / 'demo.png')
        assert Image.open(SHOTS / 'demo.png').size[0] >= 1000
    finally:
        demo.close()


@pytest.mark.skipif(os.name == 'nt', reason='Ctrl-C as a POSIX signal')
def test_demo_command_serves_the_settings_and_stops_on_ctrl_c(tmp_path):
    """The console script in a real process: its scoring options are the page's starting values; Ctrl-C (the
    way to stop a server) ends it cleanly."""
    run('demo', '--conf-threshold', '2', check_code=2)
    port = _free_port()
    process = start_process('demo', '--port', port, '--conf-threshold', '0.4', '--model-name', 'caformer_s36',
                            env={**os.environ, 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio')})
    try:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                config = json.load(no_proxy.open(f'http://127.0.0.1:{port}/config', timeout=5))
                break
            except OSError:
                assert time.time() < deadline, 'the demo did not start'
                time.sleep(0.3)
        values = {item['props'].get('label'): item['props'].get('value') for item in config['components']}
        assert values['Detector confidence threshold'] == 0.4 and values['Model'] == 'caformer_s36'
    finally:
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1].decode()
    assert process.returncode == 0 and 'Demo stopped.' in stderr and 'Traceback' not in stderr, stderr
