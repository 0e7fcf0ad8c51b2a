"""One schema for every output: nested rows, flat rows, Parquet, and reading them back."""
import json

import pytest

from imgutils_facequal import find_images, load_face_quality_detector, score_images_with
from imgutils_facequal.cli.records import open_output
from imgutils_facequal.rows import (arrow_schema, flat_columns, flat_row, nested_row, provenance, read_provenance,
                                    read_rows, result_rows, rows_table)
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
    out = open_output(str(path), fmt).start(faces.classifier.classes, provenance(faces))
    for result in scored:
        out.write(result)
    out.close(finished=True)


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
    pq.write_table(rows_table(rows, QUALITY_CLASSES, provenance(faces)), tmp_path / 'scores.parquet')
    assert read_rows(str(tmp_path / 'scores.jsonl')) == rows
    from_csv = read_rows(str(tmp_path / 'scores.csv'))
    from_parquet = read_rows(str(tmp_path / 'scores.parquet'))
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
    schema = arrow_schema(QUALITY_CLASSES, provenance(faces))
    assert not any(pa.types.is_list(field.type) or pa.types.is_struct(field.type) for field in schema)
    assert {str(schema.field(name).type) for name in ('face', 'faces', 'x0', 'crop_y1')} == {'int32'}
    assert {str(schema.field(name).type) for name in ('score', 'quality', 'p_poor', 'head_x0')} == {'float'}
    assert rows_table([], QUALITY_CLASSES).schema.equals(arrow_schema(QUALITY_CLASSES))  # an empty batch too


def test_provenance_names_the_model_its_commit_and_settings(results, tmp_path):
    import pyarrow.parquet as pq
    faces, _ = results
    recorded = provenance(faces)
    assert recorded['model'] == 'caformer_s36.head_crop' and recorded['backend'] == 'onnx'
    assert len(recorded['commit']) == 40 and recorded['crop'] == 'head' and recorded['margin'] == 0.5
    assert recorded['classes'] == QUALITY_CLASSES and recorded['detector'] == 'face'
    pq.write_table(rows_table([], QUALITY_CLASSES, recorded), tmp_path / 'empty.parquet')
    assert read_provenance(str(tmp_path / 'empty.parquet')) == json.loads(json.dumps(recorded))
    assert read_provenance(str(tmp_path / 'none.jsonl')) is None


def test_a_file_that_is_no_output_is_refused(tmp_path):
    (tmp_path / 'notes.jsonl').write_text('hello\n')
    with pytest.raises(ValueError, match='line 1 is not a jsonl row'):
        read_rows(str(tmp_path / 'notes.jsonl'))
