"""Hardening, models, plugins and the hub: a model is checked when it loads, one that cannot be had says why,
repository code and long first loads are announced, and a damaged cached rewrite is made again.

Each test names the item of the hardening issue it covers; each failed before its fix.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from imgutils_facequal import ModelNotAvailableError, load_face_quality_model
from tests.support.cli import run, run_process, write_scenes
from tests.support.fake_hub import (CLASS_COLOURS, classifier_repo_files, classifier_stages, solid_image,
                                    write_local_dir, write_repo)


@pytest.fixture
def frames(tmp_path):
    """Three scenes of two or three faces each."""
    return write_scenes(tmp_path / 'frames', 3)


# 8. NaN probabilities: a model that gives them is refused at load (an image that gives them fails alone:
# test_hardening_faults)
def test_a_model_that_gives_nan_is_refused_at_load(tmp_path):
    files = classifier_repo_files()
    stages = classifier_stages()
    stages[-1] = {'type': 'normalize', 'mean': [0.5, 0.5, 0.5], 'std': [0.0, 0.5, 0.5]}
    files['preprocessor_config.json'] = json.dumps({'stages': stages}).encode()
    with pytest.raises(ModelNotAvailableError, match='std of 0'):
        load_face_quality_model(write_local_dir(str(tmp_path / 'std0'), files))


# 10. classes that do not match the output
@pytest.mark.parametrize('classes, message', [(['poor', 'ok', 'good', 'good'], 'each named once'),
                                              (['poor', 'ok', 'good'], 'returned shape'),
                                              (['poor'], 'two or more classes')])
def test_classes_that_do_not_fit_the_model_are_refused(tmp_path, classes, message):
    files = classifier_repo_files()
    from onnx import load_from_string
    graph = load_from_string(files['model.onnx'])
    for entry in graph.metadata_props:
        if entry.key == 'classes':
            entry.value = json.dumps(classes)
    files['model.onnx'] = graph.SerializeToString()
    with pytest.raises(ModelNotAvailableError, match=message):
        load_face_quality_model(write_local_dir(str(tmp_path / 'bad'), files))


# 12. preprocessing stages are checked at load
@pytest.mark.parametrize('change, message', [
    (lambda stages: stages[0].update(size=100000), 'resizes to 100000'),
    (lambda stages: stages[1].update(size=[0, 0]), 'not a positive whole number'),
    (lambda stages: stages.pop(2), 'no to_tensor stage'),
])
def test_bad_preprocessing_stages_are_refused(tmp_path, change, message):
    files = classifier_repo_files()
    stages = classifier_stages()
    change(stages)
    files['preprocessor_config.json'] = json.dumps({'stages': stages}).encode()
    directory = write_local_dir(str(tmp_path / 'model'), files)
    with pytest.raises(ModelNotAvailableError, match=message):
        load_face_quality_model(directory)
    result = run('score', tmp_path, '--model', directory, check_code=3)
    assert message in result.stderr and 'Traceback' not in result.stderr


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path):
    files = classifier_repo_files()
    files['preprocessor_config.json'] = '\ufeff'.encode('utf-8') + files['preprocessor_config.json']
    model = load_face_quality_model(write_local_dir(str(tmp_path / 'bom'), files))
    assert model.stages == classifier_stages()


# 20 and 21. a hub that cannot be reached
#: The command, with huggingface_hub's waits between its retries of a refused connection cut to 10 ms (from 1, 2,
#: 4, 8 and 8 seconds): each of its retries still runs, and still meets a port where nothing listens.
SHORT_HUB_RETRY_WAITS = '''
import sys, time
import huggingface_hub.utils._http as http
assert http.time is time, 'huggingface_hub no longer waits with time.sleep in utils._http'
class ShortWaits:
    def __getattr__(self, name):
        return getattr(time, name)
    @staticmethod
    def sleep(seconds):
        time.sleep(min(seconds, 0.01))
http.time = ShortWaits()
sys.argv[0] = 'imgutils-facequal'
from imgutils_facequal.cli import main
main()
'''


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (one the system just handed out, then closed)."""
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_an_unreachable_hub_gives_a_clear_message(frames, tmp_path):
    cache = tmp_path / 'hub'
    write_repo(str(cache), 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop', classifier_repo_files())
    # in real processes: huggingface_hub reads these when it is imported
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE='0',
               HF_ENDPOINT=f'http://127.0.0.1:{closed_port()}', HF_HUB_ETAG_TIMEOUT='2', HF_HUB_DOWNLOAD_TIMEOUT='2')

    def command(*args):
        return subprocess.run([sys.executable, '-c', SHORT_HUB_RETRY_WAITS, *args], capture_output=True, text=True,
                              env=env, timeout=300, stdin=subprocess.DEVNULL)

    started = time.time()
    result = command('score', str(frames))
    assert result.returncode == 3, result.stderr[-2000:]
    assert 'could not be reached' in result.stderr and 'imgutils-facequal download' in result.stderr
    assert 'Traceback' not in result.stderr and result.stderr.count('\n') < 10
    download = command('download', '--no-detectors', 'someone/not-cached')
    assert download.returncode == 3 and 'could not be reached' in download.stderr
    assert 'Retrying in' in download.stderr  # huggingface_hub did retry (its own warnings): the hub was asked again
    detectors = command('download', 'caformer_s36.head_crop')
    assert detectors.returncode == 3 and 'could not be reached' in detectors.stderr
    assert 'has no' not in detectors.stderr
    assert time.time() - started < 240


# 22. backend='auto' offline, with the transformers files cached and no model.onnx, and no marker
def test_auto_falls_back_to_transformers_offline_without_a_marker(timm_repos, hub_cache_dir):
    from imgutils_facequal.backends.transformers import FaceQualityTransformersModel
    from tests.support.timm_repos import timm_repo_files
    write_repo(hub_cache_dir, 'test-org/timm-no-onnx-no-marker', timm_repo_files(seed=7, with_onnx=False),
               known_missing=())
    model = load_face_quality_model('test-org/timm-no-onnx-no-marker', backend='auto')
    assert isinstance(model, FaceQualityTransformersModel)


# 23. repository code runs with notice, and can be refused
def test_repository_code_is_announced_and_can_be_refused(timm_repos, monkeypatch, caplog):
    from imgutils_facequal import BackendNotAvailableError
    from tests.support.models import forget_loaded_models
    forget_loaded_models()
    monkeypatch.setenv('IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE', '0')
    with pytest.raises(BackendNotAvailableError, match='IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE=0 refuses'):
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
    monkeypatch.delenv('IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE')
    from imgutils_facequal.backends import transformers
    transformers._told_remote_code.clear()
    with caplog.at_level('WARNING', logger='imgutils_facequal'):
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
        forget_loaded_models()
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
    notices = [record for record in caplog.records if 'trust_remote_code' in record.getMessage()]
    assert len(notices) == 1


# 24. a plugin that fails to import
def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path):
    site = tmp_path / 'site'
    (site / 'broken_plugin-1.0.dist-info').mkdir(parents=True)
    (site / 'broken_plugin-1.0.dist-info' / 'METADATA').write_text('Metadata-Version: 2.1\nName: broken-plugin\n'
                                                                   'Version: 1.0\n')
    (site / 'broken_plugin-1.0.dist-info' / 'entry_points.txt').write_text(
        '[imgutils_facequal]\nbroken = broken_plugin\n')
    (site / 'broken_plugin.py').write_text('raise ImportError("a dependency is missing")\n')
    env = {key: value for key, value in os.environ.items() if key != 'IMGUTILS_FACEQUAL_PLUGINS'}
    env['PYTHONPATH'] = os.pathsep.join([str(site)] + sys.path)
    # in real processes: a process looks for plugins once, in the distributions on its path
    listed = run_process('plugins', env=env, timeout=120)
    assert listed.returncode == 0 and 'face_quality' in listed.stdout
    assert "Skipping the imgutils-facequal plugin 'broken'" in listed.stderr and 'a dependency is missing' in \
        listed.stderr
    named = run_process('plugins', env={**env, 'IMGUTILS_FACEQUAL_PLUGINS': 'broken-plugin'}, timeout=120)
    assert named.returncode != 0 and 'a dependency is missing' in named.stderr


# 28. small things: warnings about the model and the device
def test_warnings_are_one_line(frames, monkeypatch):
    from imgutils_facequal import scoring
    monkeypatch.setattr(scoring, '_warned_framing', set())  # it warns once a process: this run is a first one
    result = run('score', frames, '--model', 'caformer_s36', '--crop', 'head', check_code=0)
    warning = [line for line in result.stderr.splitlines() if 'framing-sensitive' in line]
    assert len(warning) == 1 and warning[0].startswith('Warning: ')
    assert 'warnings.warn' not in result.stderr


def test_device_cuda_without_a_gpu_says_so(frames):
    result = run('score', frames, '--device', 'cuda', check_code=0)
    assert 'the model runs on the CPU' in result.stderr


# 27. long first loads say what they do (and -q keeps them quiet)
def test_a_first_load_says_it_rewrites_the_graph(timm_repos, frames, tmp_path):
    from tests.support.models import forget_loaded_models

    def first_load(home, *args):
        """A run as a new process makes it: no model loaded yet, and a home without its rewrite."""
        forget_loaded_models()
        return run('score', frames, *args, env={'IMGUTILS_FACEQUAL_HOME': str(tmp_path / home)})

    loud = first_load('home', '--model', timm_repos['caformer'])
    assert loud.returncode == 0 and 'imgutils-facequal: Rewrote' in loud.stderr
    quiet = first_load('another-home', '--model', timm_repos['caformer'], '-q')
    assert quiet.returncode == 0 and quiet.stderr == ''
    # a graph with nothing to rewrite (the fake hub's small default) says nothing about rewriting
    plain = first_load('a-third-home')
    assert plain.returncode == 0 and 'Rewr' not in plain.stderr, plain.stderr
    forget_loaded_models()  # the models loaded from homes that go with tmp_path


# 11. a cached rewrite that was altered or cut short is made again from the original
def same_scores(first, second) -> bool:
    return len(first) == len(second) and max(abs(a[name] - b[name]) for a, b in zip(first, second) for name in a) < 1e-6


def test_a_damaged_cached_rewrite_is_made_again(timm_repos, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper
    from imgutils_facequal.graphs import cache as graph_cache
    from tests.support.models import forget_loaded_models
    monkeypatch.setenv('IMGUTILS_FACEQUAL_HOME', str(tmp_path))
    forget_loaded_models()
    repo = timm_repos['caformer']
    model = load_face_quality_model(repo)
    rewritten, record = model.run_path, os.path.join(os.path.dirname(model.run_path), 'rewrite.json')
    images = [solid_image(colour, size=(64, 64)) for colour in CLASS_COLOURS.values()]
    expected = model.scores(images)

    graph = onnx.load(rewritten)  # weights scaled: still a valid graph, with other answers
    for tensor in graph.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) == 2:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 3, tensor.name))
    onnx.save(graph, rewritten)
    assert graph_cache.cached_graph(model.onnx_path) is None  # its digest no longer matches
    forget_loaded_models()
    again = load_face_quality_model(repo)
    assert again.run_path == rewritten and same_scores(again.scores(images), expected)

    with open(rewritten, 'r+b') as file:  # cut short
        file.truncate(os.path.getsize(rewritten) // 2)
    forget_loaded_models()
    assert same_scores(load_face_quality_model(repo).scores(images), expected)

    with open(record, 'r+b') as file:  # its record cut short: made again once, then cached again
        file.truncate(10)
    forget_loaded_models()
    load_face_quality_model(repo)
    calls = []
    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', lambda *args: calls.append(args) or (_ for _ in ()).throw(
        AssertionError('rewrote again')))
    forget_loaded_models()
    assert load_face_quality_model(repo).run_path == rewritten and calls == []
