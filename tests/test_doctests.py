"""The docstring examples of the modules that need no model run as tests."""
import doctest
import importlib

import pytest

MODULES = ['geometry', 'quality', 'models', 'plugins', 'classify', 'detect', 'evaluate', 'export', 'home', 'scoring',
           'backends', 'backends.base', 'graphs.check', 'graphs.onnx_rewrites']


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f'imgutils_facequal.{name}')
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name in ('geometry', 'quality', 'models', 'plugins', 'evaluate', 'home', 'backends.base', 'graphs.check',
                'graphs.onnx_rewrites'):
        assert result.attempted > 0
