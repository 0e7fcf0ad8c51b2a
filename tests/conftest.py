"""Test set-up: an offline Hugging Face cache holding tiny models in the published layout.

The environment is set before anything imports huggingface_hub (which reads it once), so
every test runs the real ``hf_hub_download`` against files the tests wrote themselves,
with no network.
"""
import os
import shutil
import tempfile

_HUB_ROOT = tempfile.mkdtemp(prefix='facequal-hub-')
os.environ['HF_HOME'] = os.path.join(_HUB_ROOT, 'home')
os.environ['HF_HUB_CACHE'] = os.path.join(_HUB_ROOT, 'hub')
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['HF_HUB_DISABLE_TELEMETRY'] = '1'
os.environ.pop('HF_TOKEN', None)
os.environ.pop('HF_ENDPOINT', None)
os.environ['ONNX_MODE'] = 'cpu'
os.environ['IMGUTILS_FACEQUAL_HOME'] = os.path.join(_HUB_ROOT, 'facequal-home')
# Tests load no installed plugin; the plugin test opts in for its own subprocess.
os.environ['IMGUTILS_FACEQUAL_PLUGINS'] = ''

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# CI replays the same examples every run (a failure there is reproducible); local runs explore.
hypothesis_settings.register_profile('ci', derandomize=True, deadline=None)
if os.environ.get('CI'):
    hypothesis_settings.load_profile('ci')

from tests.support.fake_hub import (  # noqa: E402
    FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO, QUALITY_CLASSES, classifier_repo_files, face_detector_files,
    head_detector_files, write_repo,
)

HEAD_CROP_REPO = 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop'
BASELINE_REPO = 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36'

TEST_REPOS = {
    HEAD_CROP_REPO: classifier_repo_files(),
    BASELINE_REPO: classifier_repo_files(),
    'test-org/logits-config-classes': classifier_repo_files(softmax=False, metadata_classes=False),
    'test-org/meta-classes-only': classifier_repo_files(metadata_classes=False, config_classes=False),
    'test-org/reversed-classes': classifier_repo_files(classes=list(reversed(QUALITY_CLASSES))),
    'test-org/no-onnx': classifier_repo_files(with_onnx=False),
    FACE_DETECTOR_REPO: face_detector_files(),
    HEAD_DETECTOR_REPO: head_detector_files(),
}


#: Test modules that need an extra (torch, openvino, eval, parquet, ray or docs) throughout. Tests that use
#: the ``timm_repos`` fixture (torch models) are marked too; the rest run on a plain ``pip install .``.
EXTRAS_MODULES = {'test_precision', 'test_export_rewrites', 'test_openvino_backend', 'test_ray', 'test_evaluate',
                  'test_docs', 'test_api_reference', 'test_store', 'test_report', 'test_curate', 'test_detectors',
                  'test_tabular', 'test_batched_detection'}


def pytest_ignore_collect(collection_path, config):
    """With ``-m 'not extras'`` the modules that need extras are not even imported (they import torch, say)."""
    if 'not extras' in (config.option.markexpr or '') and collection_path.stem in EXTRAS_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if 'timm_repos' in item.fixturenames or item.module.__name__.rsplit('.', 1)[-1] in EXTRAS_MODULES:
            item.add_marker(pytest.mark.extras)


def pytest_sessionstart(session):
    from tests.support.synthetic_eval import eval_repos
    for repo_id, files in {**TEST_REPOS, **eval_repos()}.items():
        write_repo(os.environ['HF_HUB_CACHE'], repo_id, files)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HUB_ROOT, ignore_errors=True)


@pytest.fixture(scope='session')
def hub_cache_dir():
    return os.environ['HF_HUB_CACHE']


TIMM_REPO = 'test-org/timm-face-quality'
TIMM_NO_ONNX_REPO = 'test-org/timm-face-quality-no-onnx'
TIMM_BROKEN_EXPORT_REPO = 'test-org/timm-face-quality-trace-mismatch'
TIMM_CAFORMER_NO_ONNX_REPO = 'test-org/timm-face-quality-caformer-no-onnx'
TIMM_CAFORMER_REPO = 'test-org/timm-face-quality-caformer'


@pytest.fixture(scope='session')
def timm_repos(hub_cache_dir):
    """Repositories of small random timm models for the transformers path (built once, on demand)."""
    from tests.support.timm_repos import timm_repo_files
    write_repo(hub_cache_dir, TIMM_REPO, timm_repo_files(seed=1))
    write_repo(hub_cache_dir, TIMM_NO_ONNX_REPO, timm_repo_files(seed=2, with_onnx=False))
    write_repo(hub_cache_dir, TIMM_BROKEN_EXPORT_REPO, timm_repo_files(seed=3, with_onnx=False, trace_mismatch=True))
    write_repo(hub_cache_dir, TIMM_CAFORMER_NO_ONNX_REPO, timm_repo_files('test_caformer', seed=4, with_onnx=False))
    write_repo(hub_cache_dir, TIMM_CAFORMER_REPO, timm_repo_files('test_caformer', seed=5))
    return {'with_onnx': TIMM_REPO, 'no_onnx': TIMM_NO_ONNX_REPO, 'broken_export': TIMM_BROKEN_EXPORT_REPO,
            'caformer_no_onnx': TIMM_CAFORMER_NO_ONNX_REPO, 'caformer': TIMM_CAFORMER_REPO}


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium over the DevTools protocol (`tests.support.browser.Chromium`), closed after the test."""
    from tests.support.browser import Chromium
    chromium = Chromium(tmp_path / 'chromium-profile')
    yield chromium
    chromium.close()
