"""The built API reference renders the docstrings: no raw Sphinx markup, no internals."""
import html
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RAW_MARKUP = (':func:', ':class:', ':data:', ':mod:', ':meth:', ':attr:', ':exc:', 'Example::', ':param ', ':raises ',
              ':return:', ':ivar ')
OWN_MODULES = ('imgutils_facequal.ray',)
INTERNALS = ('bf16_blocks', 'products_in_bf16', 'intersection_area', 'open_onnx_session', 'choose_graph',
             'rewrite_onnx_graph')


@pytest.fixture(scope='module')
def api_page(tmp_path_factory):
    site = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(site)], cwd=ROOT,
                   check=True, capture_output=True, env={'NO_MKDOCS_2_WARNING': '1', 'PATH': ''})
    page = (site / 'api' / 'index.html').read_text(encoding='utf-8')
    return html.unescape(re.sub(r'<[^>]+>', ' ', page))


def test_no_raw_markup(api_page):
    assert {markup: api_page.count(markup) for markup in RAW_MARKUP if markup in api_page} == {}


def test_public_api_only(api_page):
    for name in ('classify_face_quality', 'detect_face_quality', 'load_face_quality_model',
                 'load_face_quality_detector', 'score_images', 'FaceQualityResult', 'export_onnx',
                 'evaluate_crop_robustness', 'register_detectors', 'ModelNotAvailableError'):
        assert name in api_page
    assert [name for name in INTERNALS if re.search(rf'\b{name}\b', api_page)] == []


def test_every_documented_name_imports_from_the_package():
    """Hook specifications are what a plugin implements; everything else a user imports (the Ray layer's
    names from `imgutils_facequal.ray`)."""
    import imgutils_facequal
    from imgutils_facequal.plugins import hookspecs
    page = (ROOT / 'docs' / 'api.md').read_text(encoding='utf-8')
    missing = []
    for module, members in re.findall(r'^::: (\S+)\n(?:    .*\n)*?      members:\n((?:        - \w+\n)+)', page, re.MULTILINE):
        # the Ray layer needs its extra, so its names import from its own module, never the package root
        home = (hookspecs if module.endswith('.hookspecs') else importlib.import_module(module)
                if module in OWN_MODULES else imgutils_facequal)
        missing += [name for name in re.findall(r'- (\w+)', members) if not hasattr(home, name)]
    assert 'classify_face_quality' in page and missing == []
