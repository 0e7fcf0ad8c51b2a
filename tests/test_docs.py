"""Every ```python block of the docs and the README runs against the test models.

Blocks fenced ```py are illustrations that need what tests cannot have (a published
model's weights): they are shown, not run. Keep them few.

Blocks of one page run in order in one namespace, in a folder holding the files the
examples name (face.png, faces/a.png, faces/b.png, not-an-image.txt, frame.png, and the
synthetic labelled set in labelled/).
"""
import re
from pathlib import Path

import pytest

from tests.support.fake_hub import CLASS_COLOURS, draw_scene, solid_image
from tests.support.synthetic_eval import CONTENT_REPO, FRAMING_REPO, write_synthetic_set

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / 'docs').glob('*.md')) + [ROOT / 'README.md']
BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


def python_blocks(page: Path):
    return BLOCK.findall(page.read_text(encoding='utf-8'))


@pytest.fixture
def example_folder(tmp_path, monkeypatch):
    solid_image(CLASS_COLOURS['good']).save(tmp_path / 'face.png')
    (tmp_path / 'faces').mkdir()
    solid_image(CLASS_COLOURS['poor']).save(tmp_path / 'faces' / 'a.png')
    solid_image(CLASS_COLOURS['excellent']).save(tmp_path / 'faces' / 'b.png')
    (tmp_path / 'not-an-image.txt').write_text('hello')
    frame, _ = draw_scene((384, 256), heads=[(0, 0, CLASS_COLOURS['good']), (2, 1, CLASS_COLOURS['excellent'])],
                          bare_faces=[(5, 0, CLASS_COLOURS['poor'])])
    frame.save(tmp_path / 'frame.png')
    write_synthetic_set(str(tmp_path / 'labelled'))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_there_are_examples():
    assert python_blocks(ROOT / 'docs' / 'getting-started.md')


@pytest.mark.parametrize('page', [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page, example_folder, capsys):
    namespace = {'__name__': f'docs_{page.stem}'}
    for number, block in enumerate(python_blocks(page)):
        code = compile(block, f'{page.name}[block {number}]', 'exec')
        exec(code, namespace)
    if page.name == 'detect-then-score.md':
        assert (example_folder / 'frame-quality.png').exists()
        assert capsys.readouterr().out.count('quality') == 3  # three faces in frame.png
    if page.name == 'getting-started.md':
        assert capsys.readouterr().out.startswith('good ')  # face.png is blue: `good` in the test model


def test_synthetic_report_is_current(tmp_path):
    """The table on the crop-robustness page is what the tool prints for the synthetic set."""
    from imgutils_facequal import evaluate_crop_robustness, read_labelled_folder
    write_synthetic_set(str(tmp_path))
    report = evaluate_crop_robustness(read_labelled_folder(str(tmp_path), str(tmp_path / 'labels.csv')),
                                      models=[FRAMING_REPO, CONTENT_REPO], seed=0, progress=False)
    page = (ROOT / 'docs' / 'eval-crops.md').read_text(encoding='utf-8')
    shown = page.split('<!-- synthetic-report')[1].split('-->', 1)[1].split('<!-- /synthetic-report -->')[0]
    assert shown.strip() == report.to_markdown().strip()
