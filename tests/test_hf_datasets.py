"""Hugging Face ``datasets``: `face_quality_map` under ``Dataset.map`` (two processes), and ``score --hf-dataset``
on a saved dataset and on Parquet files in the hub layout, resuming like a folder run.

The datasets are built here from the test scenes; the models are the test hub's.
"""
import io
import json
import os
import re
import shlex
import sys

import pytest

from imgutils_facequal import detect_face_quality
from imgutils_facequal.errors import BackendNotAvailableError
from imgutils_facequal.hf_datasets import IMAGE_LEVEL_COLUMNS, HFImages, face_quality_map, map_columns
from tests.support.cli import read_jsonl, run, scene
from tests.support.fake_hub import QUALITY_CLASSES
from tests.test_docs import ROOT, example_folder, python_blocks  # noqa: F401 - the docs' example folder fixture

pytestmark = pytest.mark.extras  # the datasets package

SETTINGS = dict(crop='face', margin=0.0)


def scenes(count):
    return [scene(index)[0] for index in range(count)]


def dataset_of(images, **columns):
    import datasets
    return datasets.Dataset.from_dict({'image': images, **columns},
                                      features=datasets.Features({'image': datasets.Image(),
                                                                  **{name: datasets.Value('string')
                                                                     for name in columns}}))


def test_map_takes_bytes_and_paths_and_keeps_a_bad_image_as_an_error(tmp_path):
    image = scenes(1)[0]
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    image.save(tmp_path / 'on-disk.png')
    batch = {'image': [{'bytes': buffer.getvalue(), 'path': None}, {'bytes': b'not an image', 'path': 'bad.png'},
                       str(tmp_path / 'on-disk.png')]}
    out = face_quality_map(**SETTINGS)(batch)
    assert set(out) == set(map_columns(QUALITY_CLASSES))
    assert out['faces'][0] == out['faces'][2] == len(detect_face_quality(image, **SETTINGS))
    assert out['faces'][1] is None and 'bad.png' in out['error'][1] and 'Cannot read image' in out['error'][1]
    assert all(out[name][1] == [] for name in map_columns(QUALITY_CLASSES) if name not in IMAGE_LEVEL_COLUMNS)
    assert out['label'][0] == out['label'][2]


def test_map_refuses_to_replace_a_column_of_the_dataset():
    with pytest.raises(ValueError, match='columns label already'):
        face_quality_map(**SETTINGS)({'image': scenes(1), 'label': ['good']})
    with pytest.raises(KeyError, match="image_column"):
        face_quality_map(image_column='picture', **SETTINGS)({'image': scenes(1)})


def _rows_by_image(path):
    found = {}
    for row in read_jsonl(path):
        found.setdefault(row['image'], []).append(row)
    return found


def test_score_a_saved_dataset_resumes_like_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = scenes(4)
    dataset_of(images).save_to_disk('saved')
    run('score', '--hf-dataset', 'saved', '-o', 'scores.jsonl', *_options(), '-q', check_code=0)
    rows = _rows_by_image('scores.jsonl')
    assert list(rows) == [f'hf://saved/train/{index}' for index in range(4)]
    for image, (_, found) in zip(images, sorted(rows.items())):
        assert [row['label'] for row in found] == [face.label for face in detect_face_quality(image, **SETTINGS)]
    kept = [line for line in open('scores.jsonl') if json.loads(line)['image'] != 'hf://saved/train/2']
    open('scores.jsonl', 'w').writelines(kept)
    again = run('score', '--hf-dataset', './saved/', '-o', 'scores.jsonl', *_options(), check_code=0)
    assert 'Done: 1 image' in again.stderr and '3 images skipped' in again.stderr
    assert _rows_by_image('scores.jsonl').keys() == rows.keys()


def test_score_parquet_files_in_the_hub_layout(tmp_path):
    images = scenes(3)
    hub = tmp_path / 'hub'
    (hub / 'data').mkdir(parents=True)
    dataset_of(images[:1]).to_parquet(str(hub / 'data' / 'train-00000-of-00001.parquet'))
    dataset_of(images[1:]).to_parquet(str(hub / 'data' / 'test-00000-of-00001.parquet'))
    out = tmp_path / 'test.jsonl'
    run('score', '--hf-dataset', hub, '--split', 'test', '-o', out, *_options(), '-q', check_code=0)
    rows = _rows_by_image(out)
    assert list(rows) == [f'hf://{hub.as_posix()}/test/{index}' for index in range(2)]
    assert [row['label'] for row in rows[f'hf://{hub.as_posix()}/test/1']] == \
        [face.label for face in detect_face_quality(images[2], **SETTINGS)]


def test_score_says_what_is_missing(tmp_path):
    import datasets
    datasets.DatasetDict({'train': dataset_of(scenes(1))}).save_to_disk(str(tmp_path / 'dict'))
    no_split = run('score', '--hf-dataset', tmp_path / 'dict', '--split', 'test', check_code=2)
    assert "no split 'test'" in no_split.stderr and 'train' in no_split.stderr
    no_column = run('score', '--hf-dataset', tmp_path / 'dict', '--image-column', 'picture', check_code=2)
    assert "no column 'picture'" in no_column.stderr and '--image-column' in no_column.stderr
    not_cached = run('score', '--hf-dataset', 'nobody/no-such-dataset', check_code=2)
    assert 'nobody/no-such-dataset' in not_cached.stderr and 'HF_HUB_OFFLINE' in not_cached.stderr
    both = run('score', tmp_path, '--hf-dataset', tmp_path / 'dict', check_code=2)
    assert 'does not go with PATHS' in both.stderr


def test_without_datasets_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'datasets', None)  # as if it were not installed
    with pytest.raises(BackendNotAvailableError, match=r"imgutils-facequal\[datasets\]"):
        HFImages(str(tmp_path))


def _options():
    return ['--crop', 'face', '--margin', '0']


def test_each_ranked_process_takes_its_own_gpu_once(monkeypatch):
    from imgutils_facequal import hf_datasets
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,7')
    monkeypatch.setattr(hf_datasets, '_pinned', {})
    assert hf_datasets.gpu_count() == 2
    assert hf_datasets._pin_to_gpu(3) == '7'  # rank 3 of two visible GPUs: the second
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '7'
    assert hf_datasets._pin_to_gpu(0) == '7'  # once per process: its sessions are on that GPU already
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    monkeypatch.setattr(hf_datasets, '_pinned', {})
    assert hf_datasets.gpu_count() == 0 and hf_datasets._pin_to_gpu(1) is None  # a CPU: the rank changes nothing


def test_map_in_two_processes_gives_the_columns_of_detect_face_quality(example_folder, capsys):
    """docs/datasets.md, run: ``Dataset.map`` with ``num_proc=2`` gives, per image, what `detect_face_quality`
    gives; the page shows what it prints; its commands score what it saved, with the ids it describes."""
    page = (ROOT / 'docs' / 'datasets.md').read_text(encoding='utf-8')
    namespace = {}
    for block in python_blocks(ROOT / 'docs' / 'datasets.md'):
        exec(compile(block, 'datasets.md', 'exec'), namespace)
    printed = capsys.readouterr().out
    assert printed == re.search(r'```text\n(.*?)```', page, re.DOTALL).group(1)

    scored, images = namespace['scored'], namespace['images']
    assert 'num_proc=2' in page and len(scored) == len(images) == 3
    assert scored.column_names == ['image', 'name'] + map_columns(QUALITY_CLASSES)
    assert scored['name'] == list(images)  # one row per image: aligned
    for image, row in zip(images.values(), scored.remove_columns('image')):
        expected = detect_face_quality(image)
        assert row['faces'] == len(expected) >= 2
        assert (row['width'], row['height'], row['error']) == (*image.size, None)
        assert row['label'] == [face.label for face in expected]
        assert row['quality'] == pytest.approx([face.quality for face in expected], abs=1e-6)
        assert [list(box) for box in zip(row['x0'], row['y0'], row['x1'], row['y1'])] == \
            [list(face.bbox) for face in expected]
        assert row['p_good'] == pytest.approx([face.scores['good'] for face in expected], abs=1e-6)
        assert [list(box) for box in zip(row['crop_x0'], row['crop_y0'], row['crop_x1'], row['crop_y1'])] == \
            [list(face.crop_bbox) for face in expected]
        assert row['head_x0'] == pytest.approx([face.head_bbox[0] for face in expected], abs=0.01)

    commands = [line for block in re.findall(r'```bash\n(.*?)```', page, re.DOTALL) for line in block.splitlines()]
    assert len(commands) == 2
    for command in commands:
        program, *args = shlex.split(command)
        assert program == 'imgutils-facequal'
        run(*args, '-q', check_code=0)
    rows = _rows_by_image('scores.jsonl')
    assert list(rows) == [f'hf://frames-dataset/train/{index}' for index in range(3)]
    assert [[row['label'] for row in found] for found in rows.values()] == scored['label']
    assert [row['label'] for row in read_jsonl('parquet-scores.jsonl')] == \
        [row['label'] for row in read_jsonl('scores.jsonl')]
