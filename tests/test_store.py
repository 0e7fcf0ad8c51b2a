"""The store of saved scores: one schema for every format, the readers and the resumable writer, the provenance."""
import json
import os

import pytest

from imgutils_facequal import find_images, load_face_quality_detector, score_images_with
from imgutils_facequal.store import (ScoresWriter, arrow_schema, flat_columns, flat_row, make_provenance, nested_row,
                                     read_provenance, read_scores, result_rows, rows_table)
from tests.support.fake_hub import CLASS_COLOURS, QUALITY_CLASSES, draw_scene, solid_image


@pytest.fixture
def results(tmp_path):
    colours = list(CLASS_COLOURS.values())
    for index in range(3):
        image, _ = draw_scene((256, 256), heads=[(index, 0, colours[index]), (2, 2, colours[index + 1])])
        image.save(tmp_path / f'{index}.png')
    solid_image((0, 0, 0), size=(90, 60)).save(tmp_path / 'empty.png')
    (tmp_path / 'broken.png').write_bytes(b'not an image')
    faces = load_face_quality_detector()
    return faces, list(score_images_with(faces, find_images([str(tmp_path)])))


def write(results, path, fmt):
    faces, scored = results
    with ScoresWriter(str(path), fmt) as out:
        out.start(faces.classifier.classes, make_provenance(faces))
        for result in scored:
            out.write(result)


def test_flat_and_nested_rows_round_trip(results):
    _, scored = results
    rows = [row for result in scored for row in result_rows(result)]
    kinds = {(row['faces'], row['error'] is None) for row in rows}
    assert kinds == {(2, True), (0, True), (None, False)}  # faces, an image without one, an unreadable one
    for row in rows:
        assert nested_row(flat_row(row, QUALITY_CLASSES, with_head=True), QUALITY_CLASSES) == row
    assert flat_columns(QUALITY_CLASSES)[-6:-5] == ['p_excellent']


def test_jsonl_csv_and_parquet_read_back_the_same_rows(results, tmp_path):
    import pyarrow.parquet as pq
    faces, scored = results
    rows = [row for result in scored for row in result_rows(result)]
    write(results, tmp_path / 'scores.jsonl', 'jsonl')
    write(results, tmp_path / 'scores.csv', 'csv')
    pq.write_table(rows_table(rows, QUALITY_CLASSES, make_provenance(faces)), tmp_path / 'scores.parquet')
    assert read_scores(str(tmp_path / 'scores.jsonl')).rows == rows
    from_csv = read_scores(str(tmp_path / 'scores.csv')).rows
    from_parquet = read_scores(str(tmp_path / 'scores.parquet')).rows
    for row, csv_row, parquet_row in zip(rows, from_csv, from_parquet, strict=True):
        assert csv_row == {**row, **({'head_bbox': None} if 'head_bbox' in row else {})}  # CSV keeps no head box
        assert parquet_row.keys() == row.keys()
        for key, value in row.items():
            if key == 'scores':
                assert parquet_row[key] == pytest.approx(value, abs=1e-6)
            elif isinstance(value, float) or key == 'head_bbox':
                assert parquet_row[key] == pytest.approx(value, abs=1e-5)
            else:
                assert parquet_row[key] == value


def test_parquet_schema_is_flat_and_typed(results):
    import pyarrow as pa
    faces, _ = results
    schema = arrow_schema(QUALITY_CLASSES, make_provenance(faces))
    assert not any(pa.types.is_list(field.type) or pa.types.is_struct(field.type) for field in schema)
    assert {str(schema.field(name).type) for name in ('face', 'faces', 'x0', 'crop_y1')} == {'int32'}
    assert {str(schema.field(name).type) for name in ('score', 'quality', 'p_poor', 'head_x0')} == {'float'}
    assert rows_table([], QUALITY_CLASSES).schema.equals(arrow_schema(QUALITY_CLASSES))  # an empty batch too


def test_provenance_names_the_model_its_commit_and_settings(results, tmp_path):
    import pyarrow.parquet as pq
    faces, _ = results
    recorded = make_provenance(faces)
    assert recorded['model_name'] == 'caformer_s36.head_crop' and recorded['backend'] == 'onnx'
    assert len(recorded['commit']) == 40 and recorded['crop'] == 'head' and recorded['margin'] == 0.5
    assert recorded['classes'] == QUALITY_CLASSES and recorded['detector'] == 'face'
    pq.write_table(rows_table([], QUALITY_CLASSES, recorded), tmp_path / 'empty.parquet')
    assert read_provenance(str(tmp_path / 'empty.parquet')) == json.loads(json.dumps(recorded))
    assert read_provenance(str(tmp_path / 'none.jsonl')) is None


def test_a_file_that_is_no_output_is_refused(tmp_path):
    (tmp_path / 'notes.jsonl').write_text('hello\n')
    with pytest.raises(ValueError, match='line 1 is not a jsonl row'):
        read_scores(str(tmp_path / 'notes.jsonl'))


# -- through the command line, in-process ------------------------------------------------------------------


def cli(*args, code=0, cwd=None):
    from click.testing import CliRunner
    from imgutils_facequal.cli import main
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, [str(arg) for arg in args])
    finally:
        os.chdir(previous)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == code, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    return result


@pytest.fixture
def frames(tmp_path):
    colours = list(CLASS_COLOURS.values())
    root = tmp_path / 'frames'
    root.mkdir()
    for index in range(4):
        image, _ = draw_scene((256, 256), heads=[(index, 0, colours[index]), (1, 2, colours[(index + 1) % 4])])
        image.save(root / f'{index}.png')
    return root


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def test_a_resume_survives_an_upgrade_and_an_output_of_0_1_0(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    cli('score', frames, '-o', output, '--head-localisation', 'paired')  # 0.1.0's only way
    meta = tmp_path / 'scores.jsonl.meta.json'
    recorded = json.loads(meta.read_text())
    rows = output.read_text()
    # what 0.1.0 wrote: other names, nested detector options, no head_localisation
    legacy = {key: value for key, value in {
        **recorded, 'version': '0.1.0', 'model': recorded['model_name'], 'detector_options': {},
        'head_detector_options': {}}.items()
        if key not in ('model_name', 'conf_threshold', 'iou_threshold', 'detector_level', 'head_level',
                       'detector_version', 'detector_model_name', 'head_version', 'head_infer_size',
                       'head_localisation', 'batch_size', 'workers')}
    for older in ({**recorded, 'version': '0.0.9', 'device': 'cuda', 'batch_size': 64, 'workers': 16}, legacy):
        meta.write_text(json.dumps(older))
        again = cli('score', frames, '-o', output, '--head-localisation', 'paired')
        assert 'Done: 0 images' in again.stderr and '4 images skipped, already in the output' in again.stderr
        assert output.read_text() == rows
    # an old output resumes with its own setting, never silently with today's default
    meta.write_text(json.dumps(legacy))
    refused = cli('score', frames, '-o', output, code=2)
    assert "head_localisation: 'paired' in the file, 'estimated' now" in refused.stderr
    refused = cli('score', frames, '-o', output, '--head-localisation', 'paired', '--head-infer-size', '320', code=2)
    assert "head_infer_size: None in the file, 320 now" in refused.stderr
    assert 'start a fresh output' in refused.stderr and output.read_text() == rows


def test_the_same_folder_spelled_three_ways_resumes_to_one_set_of_rows(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    cli('score', 'frames', '-o', output, cwd=tmp_path)
    rows = lines(output)
    for spelling in ('./frames', str(frames)):
        again = cli('score', spelling, '-o', output, cwd=tmp_path)
        assert '4 images skipped' in again.stderr
    assert lines(output) == rows and len({row['image'] for row in rows}) == 4


def test_shards_are_read_as_one_by_report_filter_and_crop(frames, tmp_path):
    shards = tmp_path / 'scores'
    shards.mkdir()
    cli('score', frames, '--shard', '1/2', '-o', shards / 'part-1.jsonl')
    cli('score', frames, '--shard', '2/2', '-o', shards / 'part-2.csv')
    cli('score', frames / '0.png', '-o', shards / 'again.jsonl')  # an image in two files counts once
    saved = read_scores(str(shards))
    assert len(saved.files) == 3 and saved.repeated == 1
    assert sorted({row['image'] for row in saved.rows}) == sorted(str(path) for path in frames.glob('*.png'))
    assert len(saved.rows) == 8  # two faces an image, once each
    table = cli('filter', '--scores', shards, '--thresholds').stdout
    assert table.startswith('4 images (4 with faces, 0 failed), 8 faces')
    assert cli('filter', '--scores', str(shards / 'part-*'), '--scores', shards / 'again.jsonl',
               '--thresholds').stdout == table
    cli('report', shards, '-o', tmp_path / 'report', '-q')
    assert (tmp_path / 'report' / 'index.html').is_file()
    kept = cli('filter', '--scores', shards, '--min-label', 'poor', '--out', tmp_path / 'train')
    assert 'Kept 4 of 4 images' in kept.stderr and sorted(p.name for p in (tmp_path / 'train').iterdir()) == [
        '0.png', '1.png', '2.png', '3.png']
    cli('crop', '--scores', shards, '--out', tmp_path / 'faces', '-q')
    assert len(list((tmp_path / 'faces').iterdir())) == 8


def test_shards_scored_with_other_settings_are_refused_naming_both(frames, tmp_path):
    shards = tmp_path / 'scores'
    shards.mkdir()
    cli('score', frames, '--shard', '1/2', '-o', shards / 'a.jsonl')
    cli('score', frames, '--shard', '2/2', '--margin', '1', '-o', shards / 'b.jsonl')
    refused = cli('report', shards, '-o', tmp_path / 'report', code=2)
    assert f'{shards / "a.jsonl"} and {shards / "b.jsonl"} were scored with other settings' in refused.stderr
    assert 'margin: 0.5 in the first, 1.0 in the second' in refused.stderr
    missing = cli('filter', '--scores', tmp_path / 'nothing*.jsonl', '--thresholds', code=2)
    assert 'does not exist' in missing.stderr


def test_a_per_image_output_is_refused_where_faces_are_needed(frames, tmp_path):
    output = tmp_path / 'images.jsonl'
    cli('score', frames, '--per-image', '-o', output)
    assert 'one row per image' in cli('report', output, '-o', tmp_path / 'report', code=2).stderr
    assert 'one row per image' in cli('filter', '--scores', output, '--thresholds', code=2).stderr


def test_what_the_commands_write_follows_the_umask(frames, tmp_path):
    previous = os.umask(0o027)
    try:
        cli('score', frames, '-o', tmp_path / 'scores.jsonl', '--visualize', tmp_path / 'drawn')
        cli('score', frames, '-o', tmp_path / 'scores.parquet')
        cli('crop', '--scores', tmp_path / 'scores.jsonl', '--out', tmp_path / 'faces', '--sidecar', '-q')
        cli('report', tmp_path / 'scores.jsonl', '-o', tmp_path / 'report', '-q')
    finally:
        os.umask(previous)
    written = [path for path in tmp_path.rglob('*') if path.is_file() and 'frames' not in path.parts]
    assert len(written) > 20
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {oct(0o640)}, \
        {str(path.relative_to(tmp_path)): oct(path.stat().st_mode & 0o777) for path in written}
