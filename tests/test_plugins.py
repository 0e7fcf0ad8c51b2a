"""The plugin system: built-ins registered like external plugins, entry points, the env switch."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from imgutils_facequal import list_detectors, list_plugins, list_taggers
from imgutils_facequal.plugins import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, PLUGINS_ENV

PLUGIN_MODULE = textwrap.dedent('''
    """A third-party plugin, as someone would publish it."""
    import numpy as np
    from imgutils_facequal import hookimpl


    def whole_image(image, **options):
        width, height = image.size
        return [((0, 0, width, height), 'whole', 0.99)]


    def mean_brightness(crops, **options):
        return [float(np.asarray(crop, dtype=np.float32).mean() / 255) for crop in crops]


    @hookimpl
    def register_detectors(register):
        register('whole_image', whole_image, 'the whole image as one face')


    @hookimpl
    def register_taggers(register):
        register('mean_brightness', mean_brightness, 'mean pixel value in [0, 1]')
''')

CHECK = textwrap.dedent('''
    import json
    from PIL import Image
    from imgutils_facequal import detect_face_quality, list_detectors, list_taggers, tag_faces

    detectors = {item['name']: item['plugin'] for item in list_detectors()}
    taggers = {item['name']: item['plugin'] for item in list_taggers()}
    report = {'detectors': detectors, 'taggers': taggers}
    if 'whole_image' in detectors:
        image = Image.new('RGB', (60, 40), (20, 20, 230))
        faces = detect_face_quality(image, detector='whole_image', crop='face', margin=0)
        report['faces'] = [[list(face.bbox), face.label] for face in faces]
        tagged = tag_faces(image, detector='whole_image', crop='face', margin=0,
                           taggers=['face_quality', 'mean_brightness'])
        report['tags'] = [sorted(item.tags) for item in tagged]
        report['brightness'] = tagged[0].tags['mean_brightness']
    print(json.dumps(report))
''')


@pytest.fixture(scope='module')
def installed_plugin(tmp_path_factory):
    """A distribution installed the way pip leaves one: a module plus a .dist-info with entry points."""
    site = tmp_path_factory.mktemp('site')
    (site / 'facequal_test_plugin.py').write_text(PLUGIN_MODULE)
    info = site / 'facequal_test_plugin-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: facequal-test-plugin\nVersion: 1.0\n')
    (info / 'entry_points.txt').write_text(f'[{ENTRY_POINT_GROUP}]\nfacequal_test = facequal_test_plugin\n')
    (info / 'RECORD').write_text('')
    return site


def run_check(site, plugins_env):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + sys.path))
    if plugins_env is None:
        env.pop(PLUGINS_ENV, None)
    else:
        env[PLUGINS_ENV] = plugins_env
    result = subprocess.run([sys.executable, '-c', CHECK], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('plugins_env', [None, 'facequal-test-plugin'])
def test_installed_plugin_adds_a_detector_and_a_tagger(installed_plugin, plugins_env):
    report = run_check(installed_plugin, plugins_env)
    assert report['detectors']['whole_image'] == 'facequal_test'
    assert report['taggers']['mean_brightness'] == 'facequal_test'
    assert report['detectors']['face'] == 'imgutils_facequal.plugins.builtin.imgutils_detectors'
    assert report['faces'] == [[[0, 0, 60, 40], 'good']]  # the blue frame, scored by the test model
    assert report['tags'] == [['face_quality', 'mean_brightness']]
    assert report['brightness'] == pytest.approx((20 + 20 + 230) / 3 / 255, abs=1e-3)


def test_environment_variable_keeps_plugins_out(installed_plugin):
    report = run_check(installed_plugin, '')
    assert 'whole_image' not in report['detectors']
    assert set(report['detectors']) == {'face', 'head'}
    assert set(report['taggers']) == {'face_quality'}


def test_unknown_plugin_named_in_the_environment(installed_plugin):
    env = dict(os.environ, PYTHONPATH=str(installed_plugin), **{PLUGINS_ENV: 'no-such-plugin'})
    result = subprocess.run([sys.executable, '-c', 'import imgutils_facequal as f; f.list_detectors()'],
                            env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'no-such-plugin' in result.stderr and PLUGINS_ENV in result.stderr


def test_built_in_plugins_are_ordinary_plugins():
    assert list_plugins()[:2] == list(DEFAULT_PLUGINS)
    detectors = {item['name']: item for item in list_detectors()}
    assert detectors['face']['plugin'] == DEFAULT_PLUGINS[0]
    assert 'anime_face_detection' in detectors['face']['description']
    assert [(item['name'], item['plugin']) for item in list_taggers()] == [('face_quality', DEFAULT_PLUGINS[1])]


def test_test_session_loads_no_installed_plugin():
    assert os.environ[PLUGINS_ENV] == ''
    assert list_plugins() == list(DEFAULT_PLUGINS)


def test_duplicate_names_are_refused(installed_plugin):
    code = textwrap.dedent('''
        from imgutils_facequal import hookimpl
        from imgutils_facequal.plugins import get_plugin_manager, get_detectors

        class Clash:
            @hookimpl
            def register_detectors(self, register):
                register('face', lambda image: [])

        get_plugin_manager().register(Clash(), name='clash')
        get_detectors()
    ''')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Plugin 'clash' registers detector 'face'" in result.stderr
