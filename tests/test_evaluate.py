"""The crop-robustness tool measures what the card measures."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from imgutils_facequal.evaluate import (
    DEFAULT_SETTINGS, CropSetting, classification_metrics, crop_draws, evaluate_crop_robustness, parse_settings,
    read_hf_dataset, read_labelled_folder, setting_crop_boxes,
)
from imgutils_facequal.geometry import random_margin_crop_box
from tests.support.cli import run
from tests.support.synthetic_eval import CONTENT_REPO, FRAMING_REPO, write_synthetic_set


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    directory = tmp_path_factory.mktemp('synthetic')
    write_synthetic_set(str(directory))
    return directory


@pytest.fixture(scope='module')
def report(synthetic):
    data = read_labelled_folder(str(synthetic), str(synthetic / 'labels.csv'))
    return evaluate_crop_robustness(data, models=[FRAMING_REPO, CONTENT_REPO], seed=0, batch_size=16, progress=False)


def test_the_shortcut_collapses_and_the_content_reader_holds(report):
    assert [s.name for s in report.settings] == ['full', 'loose_4x', 'loose_2x', 'loose_1x', 'loose_0.5x',
                                                 'loose_0.25x', 'head_only']
    assert report.chance == 0.25 and report.images_evaluated == 48
    framing = {r.setting: r for r in report.results if r.model == FRAMING_REPO}
    content = {r.setting: r for r in report.results if r.model == CONTENT_REPO}
    assert framing['full'].macro_f1 >= 0.95
    assert framing['head_only'].macro_f1 <= report.chance + 0.05
    assert framing['head_only'].delta_macro_f1 <= -0.8
    margins = [s.max_margin for s in report.settings[1:]]
    assert margins == sorted(margins, reverse=True)
    framing_curve = [framing[s.name].macro_f1 for s in report.settings]
    assert framing_curve[1] < framing_curve[0] and framing_curve[-1] <= framing_curve[1]
    for setting in report.settings:
        assert content[setting.name].macro_f1 >= content['full'].macro_f1 - 0.05
        assert content[setting.name].n == framing[setting.name].n == 48
    # the shortcut predicts `excellent` for every tight crop: the card's per-class pattern
    assert framing['head_only'].per_class_f1['poor'] == 0.0 and framing['head_only'].per_class_f1['excellent'] > 0


def test_metrics_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    classes = ['poor', 'ok', 'good', 'excellent']
    rng = np.random.default_rng(3)
    for trial in range(20):
        size = int(rng.integers(1, 60))
        y_true = list(rng.choice(classes, size=size, p=[0.4, 0.3, 0.2, 0.1]))
        y_pred = list(rng.choice(classes if trial % 3 else classes[:2], size=size))
        ours = classification_metrics(y_true, y_pred, classes)
        assert ours['accuracy'] == pytest.approx(accuracy_score(y_true, y_pred))
        assert ours['macro_f1'] == pytest.approx(f1_score(y_true, y_pred, labels=classes, average='macro',
                                                          zero_division=0))
        per_class = f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
        assert [ours['per_class_f1'][c] for c in classes] == pytest.approx(list(per_class))
        assert ours['confusion'] == confusion_matrix(y_true, y_pred, labels=classes).tolist()


def test_report_metrics_equal_scikit_learn_on_its_own_predictions(synthetic):
    from sklearn.metrics import f1_score
    data = read_labelled_folder(str(synthetic), str(synthetic / 'labels.csv'))
    report = evaluate_crop_robustness(data, models=[FRAMING_REPO], settings=parse_settings('loose_2x'),
                                      seed=4, progress=False)
    result = report.results[0]
    confusion = np.array(result.confusion)
    y_true = [report.classes[i] for i in range(4) for j in range(4) for _ in range(confusion[i, j])]
    y_pred = [report.classes[j] for i in range(4) for j in range(4) for _ in range(confusion[i, j])]
    assert result.macro_f1 == pytest.approx(f1_score(y_true, y_pred, labels=report.classes, average='macro',
                                                     zero_division=0))


head_boxes = st.tuples(st.floats(-50, 600), st.floats(-50, 600), st.floats(0, 300), st.floats(0, 300)).map(
    lambda v: (v[0], v[1], v[0] + v[2], v[1] + v[3]))


@hypothesis_settings(max_examples=300, deadline=None)
@given(head=head_boxes, size=st.tuples(st.integers(1, 800), st.integers(1, 800)),
       draws=st.tuples(*[st.floats(0, 1)] * 4), margin=st.one_of(st.none(), st.floats(0, 8)))
def test_every_crop_holds_the_head_and_lies_in_the_image(head, size, draws, margin):
    x0, y0, x1, y1 = random_margin_crop_box(head, margin, size, draws)
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    inside = (max(head[0], 0), max(head[1], 0), min(head[2], size[0]), min(head[3], size[1]))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        assert x0 <= inside[0] and y0 <= inside[1] and x1 >= inside[2] and y1 >= inside[3]


@hypothesis_settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), index=st.integers(0, 10 ** 6))
def test_same_seed_same_crops_and_paired_settings(seed, index):
    draws = crop_draws(seed, index)
    assert draws == crop_draws(seed, index)
    head, size = (10000.0, 12000.0, 10060.0, 12080.0), (100000, 100000)
    boxes = dict(zip([s.name for s in DEFAULT_SETTINGS], setting_crop_boxes(head, size, DEFAULT_SETTINGS, draws)))
    assert boxes['full'] == (0, 0, 100000, 100000) and boxes['head_only'] == (10000, 12000, 10060, 12080)
    one, two = boxes['loose_1x'], boxes['loose_2x']
    # far from the image edges, the 2x margins are twice the 1x margins (up to whole pixels)
    assert abs((head[0] - two[0]) - 2 * (head[0] - one[0])) <= 2
    assert abs((two[3] - head[3]) - 2 * (one[3] - head[3])) <= 2


def test_runs_are_reproducible_and_limit_keeps_the_crops(synthetic, report):
    data = read_labelled_folder(str(synthetic), str(synthetic / 'labels.csv'))
    again = evaluate_crop_robustness(data, models=[FRAMING_REPO, CONTENT_REPO], seed=0, batch_size=5, progress=False)
    assert again.to_dict() == report.to_dict()
    other_seed = evaluate_crop_robustness(data, models=[FRAMING_REPO], seed=1, progress=False)
    assert other_seed.result(FRAMING_REPO, 'loose_4x').confusion != report.result(FRAMING_REPO, 'loose_4x').confusion
    limited = evaluate_crop_robustness(data, models=[FRAMING_REPO], seed=0, limit=10, progress=False)
    assert limited.images_evaluated == 10


def test_custom_settings():
    parsed = parse_settings('full,loose_1x,tight=0.1,whole=full')
    assert parsed == [CropSetting('full', None), CropSetting('loose_1x', 1.0), CropSetting('tight', 0.1),
                      CropSetting('whole', None)]
    for bad in ('nonsense', 'x=-1', ''):
        with pytest.raises(ValueError):
            parse_settings(bad)


def test_markdown_json_and_plot(report, tmp_path):
    markdown = report.to_markdown()
    assert '| model | crop setting | margin × head | macro_f1 | accuracy | Δ macro_f1 vs full |' in markdown
    assert f'| {FRAMING_REPO} | head_only | 0 |' in markdown
    assert '4-class chance line: 0.25' in markdown and '48 from the data set' in markdown
    paths = report.save(str(tmp_path / 'out'))
    saved = json.loads(open(paths['report.json']).read())
    assert saved['chance_macro_f1'] == 0.25 and len(saved['results']) == 14
    assert all(len(r['confusion']) == 4 for r in saved['results'])
    assert open(paths['macro_f1.png'], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_hugging_face_dataset_gives_the_same_report(synthetic, report, tmp_path):
    import datasets
    from PIL import Image
    rows = [line.strip().split(',') for line in open(synthetic / 'labels.csv')][1:]
    names = ['poor', 'ok', 'good', 'excellent']
    table = datasets.Dataset.from_dict({
        'picture': [Image.open(synthetic / row[0]) for row in rows],
        'quality': [names.index(row[1]) for row in rows],
        'head': [[float(v) for v in row[2:]] for row in rows],
    }, features=datasets.Features({'picture': datasets.Image(), 'quality': datasets.ClassLabel(names=names),
                                   'head': datasets.Sequence(datasets.Value('float32'))}))
    table.save_to_disk(str(tmp_path / 'ds'))
    data = read_hf_dataset(str(tmp_path / 'ds'), image_column='picture', label_column='quality', head_column='head')
    assert [item.label for item in data] == [row[1] for row in rows]
    from_hf = evaluate_crop_robustness(data, models=[FRAMING_REPO, CONTENT_REPO], seed=0, progress=False)
    assert [(r.setting, r.macro_f1, r.confusion) for r in from_hf.results] == \
        [(r.setting, r.macro_f1, r.confusion) for r in report.results]


def test_head_boxes_from_the_detector_when_the_data_has_none(tmp_path):
    from tests.support.fake_hub import CLASS_COLOURS, draw_scene
    (tmp_path / 'frames').mkdir()
    lines = ['image,label']
    for index in range(3):
        image, faces = draw_scene((256, 256), heads=[(index, 1, CLASS_COLOURS['good'])])
        image.save(tmp_path / 'frames' / f'{index}.png')
        lines.append(f'{index}.png,good')
    (tmp_path / 'labels.csv').write_text('\n'.join(lines) + '\n')
    (tmp_path / 'frames' / 'black.png').write_bytes(b'')
    with open(tmp_path / 'labels.csv', 'a') as f:
        f.write('black.png,poor\n')
    data = read_labelled_folder(str(tmp_path / 'frames'), str(tmp_path / 'labels.csv'))
    result = evaluate_crop_robustness(data, models=[CONTENT_REPO], settings=parse_settings('head_only'),
                                      progress=False)
    assert result.head_boxes_from == {"the 'head' detector": 3}
    assert [name for name, _ in result.skipped] == ['black.png']
    assert "3 from the 'head' detector" in result.to_markdown()


def test_eval_crops_command(synthetic, tmp_path):
    out = tmp_path / 'report'
    result = run('eval-crops', '--images', synthetic, '--labels', synthetic / 'labels.csv', '--model', FRAMING_REPO,
                 '--model', CONTENT_REPO, '--limit', '20', '--settings', 'full,loose_1x,head_only', '--out', out)
    assert result.returncode == 0, result.stderr
    assert f'| {FRAMING_REPO} | head_only | 0 |' in result.stdout
    assert sorted(os.listdir(out)) == ['macro_f1.png', 'report.json', 'report.md']
    usage = run('eval-crops', '--model', FRAMING_REPO)
    assert usage.returncode == 2 and '--images and --labels, or --dataset' in usage.stderr
