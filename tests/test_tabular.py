"""Tabular outputs that load straight into pandas and datasets, per-image summaries, and runs split in shards."""
import json
import os

import pytest

from tests.support.cli import read_jsonl, run, scene


@pytest.fixture
def frames(tmp_path):
    root = tmp_path / 'frames'
    (root / 'part2').mkdir(parents=True)
    for index in range(12):
        scene(index)[0].save(root / ('part2' if index % 3 == 0 else '') / f'{index:02d}.png')
    (root / 'broken.png').write_bytes(b'not an image')
    return root


def test_jsonl_csv_and_parquet_load_into_pandas_and_datasets(frames, tmp_path):
    import datasets
    import pandas
    outputs = {}
    for fmt in ('jsonl', 'csv', 'parquet'):
        outputs[fmt] = tmp_path / f'scores.{fmt}'
        run('score', frames, '-o', outputs[fmt], check_code=1)  # 1: broken.png has its error row
    frames_read = {'jsonl': pandas.read_json(outputs['jsonl'], lines=True), 'csv': pandas.read_csv(outputs['csv']),
                   'parquet': pandas.read_parquet(outputs['parquet'])}
    rows = len(read_jsonl(outputs['jsonl']))
    for fmt, frame in frames_read.items():
        assert len(frame) == rows and frame['image'].nunique() == 13, fmt
        assert frame['error'].notna().sum() == 1, fmt
    quality = sorted(frames_read['jsonl']['quality'].dropna())
    assert sorted(frames_read['csv']['quality'].dropna()) == pytest.approx(quality)
    assert sorted(frames_read['parquet']['quality'].dropna()) == pytest.approx(quality, abs=1e-6)
    for fmt, builder in (('jsonl', 'json'), ('csv', 'csv'), ('parquet', 'parquet')):
        loaded = datasets.load_dataset(builder, data_files=str(outputs[fmt]), split='train')
        assert len(loaded) == rows and 'quality' in loaded.column_names, fmt


def test_parquet_output_resumes_and_carries_its_provenance(frames, tmp_path):
    import pyarrow.parquet as pq
    output = tmp_path / 'scores.parquet'
    run('score', frames, '-o', output, check_code=1)
    first = pq.read_table(output)
    metadata = json.loads(first.schema.metadata[b'imgutils_facequal'])
    assert metadata['model_name'] == 'caformer_s36.head_crop' and metadata['crop'] == 'head'
    again = run('score', frames, '-o', output, check_code=1)  # only broken.png is tried again
    assert '12 images skipped' in again.stderr
    second = pq.read_table(output)
    assert second.num_rows == first.num_rows and not os.path.exists(str(output) + '.parts')
    assert str(first.schema.field('face').type) == 'int32' and str(first.schema.field('p_good').type) == 'float'


@pytest.mark.parametrize('fmt', ['jsonl', 'csv', 'parquet'])
def test_per_image_summary(frames, tmp_path, fmt):
    import pandas
    output = tmp_path / f'images.{fmt}'
    run('score', frames, '-o', output, '--per-image', check_code=1)
    table = {'jsonl': lambda: pandas.read_json(output, lines=True), 'csv': lambda: pandas.read_csv(output),
             'parquet': lambda: pandas.read_parquet(output)}[fmt]()
    assert len(table) == 13 and table['image'].is_unique
    faces = read_jsonl_faces(frames, tmp_path)
    for _, row in table.dropna(subset=['best_quality']).iterrows():
        qualities = faces[row['image']]
        assert row['faces'] == len(qualities)
        assert row['best_quality'] == pytest.approx(max(qualities), abs=1e-6)
        assert row['worst_quality'] == pytest.approx(min(qualities), abs=1e-6)
        assert row['mean_quality'] == pytest.approx(sum(qualities) / len(qualities), abs=1e-6)


def read_jsonl_faces(frames, tmp_path):
    output = tmp_path / 'faces-reference.jsonl'
    if not output.exists():
        run('score', frames, '-o', output, check_code=1)
    faces = {}
    for row in read_jsonl(output):
        if row.get('quality') is not None:
            faces.setdefault(row['image'], []).append(row['quality'])
    return faces


def same_spelling(row):
    """A row with its image by real path, and its error (which quotes the path as given) as whether there is one."""
    return {**row, 'image': os.path.realpath(row['image']), 'error': bool(row['error'])}


def test_shards_split_a_run_with_no_overlap_and_no_gap(frames, tmp_path):
    whole = tmp_path / 'whole.jsonl'
    run('score', frames, '-o', whole, check_code=1)
    shard_rows = []
    for index in (1, 2, 3):
        output = tmp_path / f'shard{index}.jsonl'
        # each job spells the input its own way: the shares do not move
        spelled = str(frames) if index != 2 else os.path.relpath(frames)
        result = run('score', spelled, '-o', output, '--shard', f'{index}/3', check_code=None)
        assert result.returncode in (0, 1)
        shard_rows += [same_spelling(row) for row in read_jsonl(output)]
    whole_rows = [same_spelling(row) for row in read_jsonl(whole)]
    key = lambda row: (row['image'], row['face'] if row['face'] is not None else -1)  # noqa: E731
    assert sorted(shard_rows, key=key) == sorted(whole_rows, key=key)
    assert 'I runs from 1 to N' in run('score', frames, '--shard', '4/3', check_code=2).stderr


def test_files_from_a_list(frames, tmp_path):
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# two frames\n{frames / "01.png"}\n\n{frames / "part2" / "00.png"}\n')
    output = tmp_path / 'scores.jsonl'
    run('score', '--files-from', listing, '-o', output, check_code=0)
    assert {row['image'] for row in read_jsonl(output)} == {str(frames / '01.png'), str(frames / 'part2' / '00.png')}


def test_progress_lines_without_a_terminal(tmp_path):
    root = tmp_path / 'many'
    root.mkdir()
    image = scene(1)[0]
    for index in range(400):
        image.save(root / f'{index:03d}.png')
    result = run('score', root, '--log-interval', '1', '--workers', '1', '--batch-size', '1', check_code=0)
    lines = [line for line in result.stderr.splitlines() if line.startswith('progress: ')]
    assert lines and all('images/s' in line and 'min left' in line for line in lines)
    assert run('score', root / '000.png', '-q', check_code=0).stderr == ''


def test_plugins_as_json():
    result = run('plugins', '--json', check_code=0)
    listing = json.loads(result.stdout)
    assert {item['name'] for item in listing['detectors']} >= {'face', 'head'}
    assert [item['name'] for item in listing['taggers']] == ['face_quality']
    assert listing['plugins'][0].startswith('imgutils_facequal.plugins.builtin')


def test_shell_completion_script():
    result = run(env={'_IMGUTILS_FACEQUAL_COMPLETE': 'bash_source'})
    assert '_imgutils_facequal_completion' in result.stdout
