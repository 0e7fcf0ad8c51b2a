"""The docstring examples of the package run as tests.

Every module whose docstrings hold an example that runs (not marked ``# doctest: +SKIP``,
as the examples that need a model or files are, and not only an import) is found in the
source, so a new module's examples run without being listed here; each must run every
example it holds and fail none.
"""
import ast
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'imgutils_facequal'


def _examples(path: Path) -> list:
    """The examples in the docstrings of a source file that doctest runs (not skipped)."""
    parser = doctest.DocTestParser()
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                found += [example for example in parser.get_examples(docstring)
                          if not example.options.get(doctest.SKIP)]
    return found


def _modules_with_examples() -> dict:
    """``{module: examples}`` for each module with an example beyond its imports."""
    modules = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        examples = _examples(path)
        if any(not example.source.startswith(('from ', 'import ')) for example in examples):
            parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = len(examples)
    return modules


MODULES = _modules_with_examples()


def test_the_examples_of_the_plain_helpers_are_found():
    assert {'imgutils_facequal.geometry', 'imgutils_facequal.quality', 'imgutils_facequal.models',
            'imgutils_facequal.pipeline', 'imgutils_facequal.plugins'} <= set(MODULES)


@pytest.mark.parametrize('name', sorted(MODULES))
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted >= MODULES[name]  # every example in the source ran, none hidden from doctest
