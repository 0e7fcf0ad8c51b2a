"""Scoring on Ray Data, on a real local cluster: the same rows as in process, nothing lost, nothing twice.

One cluster serves every test (``num_cpus=4`` logical CPUs on two physical cores: enough
for two one-CPU actors and Ray's read tasks), with one logical GPU for the GPU test. The
failure mode of a bad plan is a hang, so every test has a hard timeout.
"""
import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from imgutils_facequal import InputImage, load_face_quality_detector, score_images_with
from imgutils_facequal.ray import (
    ACTOR_KEY, FaceQualityScorer, check_cpu_headroom, completed_ids, read_hf_parquet, read_image_folder,
    read_image_webdataset, score_dataset,
)
from imgutils_facequal.store import PROVENANCE_KEY, nested_row, read_provenance, result_rows
from imgutils_facequal.store.formats import read_file
from tests.support.cli import run, run_process
from tests.support.fake_hub import CLASS_COLOURS, draw_scene, solid_image

pytestmark = pytest.mark.timeout(240)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def cluster():
    """A local Ray cluster for the session: 4 logical CPUs, 1 logical GPU; its address for subprocesses."""
    # the workers inherit this environment: the offline test hub, and the tests package importable
    os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')]))
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def scene(index):
    colours = [CLASS_COLOURS[name] for name in ('poor', 'ok', 'good', 'excellent')]
    heads = [(index % 4, 0, colours[index % 4]), (1, 2, colours[(index + 1) % 4])]
    bare = [(6, 6, colours[(index + 2) % 4])] if index % 2 else []
    return draw_scene((256, 256), heads=heads, bare_faces=bare)[0]


@pytest.fixture
def frames(tmp_path):
    """Twelve scenes in two folders and a frame without a face; paths as `find_images` gives them."""
    root = tmp_path / 'frames'
    (root / 'episode2').mkdir(parents=True)
    for index in range(12):
        scene(index).save(root / ('episode2' if index >= 6 else '') / f'frame{index:02d}.png')
    solid_image((0, 0, 0), size=(200, 150)).save(root / 'black.jpg')
    return str(root)


def rows_of(dataset):
    """Every row of a dataset of the output schema, nested as `result_rows` gives them."""
    tables = ray.get(dataset.to_arrow_refs())
    if not tables:
        return []
    flat = pa.concat_tables(tables).to_pylist()
    classes = [name[2:] for name in tables[0].column_names if name.startswith('p_')]
    return [nested_row(row, classes) for row in flat]


def in_process_rows(paths):
    faces = load_face_quality_detector()
    rows = []
    for result in score_images_with(faces, [InputImage(path) for path in paths]):
        rows.extend(result_rows(result))
    return rows


def by_face(rows):
    return {(row['image'], row['face']): row for row in rows}


def assert_same_rows(actual, expected):
    actual, expected = by_face(actual), by_face(expected)
    assert sorted(actual) == sorted(expected)
    for key, row in expected.items():
        other = actual[key]
        for name, value in row.items():
            if name == 'scores':
                assert other['scores'].keys() == value.keys()
                for label, probability in value.items():
                    assert abs(other['scores'][label] - probability) < 1e-6, (key, label)
            elif isinstance(value, float):
                assert abs(other[name] - value) < 1e-6, (key, name)
            elif name == 'head_bbox' and value is not None:
                assert [abs(a - b) < 1e-2 for a, b in zip(other[name], value)] == [True] * 4, (key, name)
            else:
                assert other[name] == value, (key, name)


def image_paths(root):
    from imgutils_facequal import find_images
    return [item.path for item in find_images([root])]


def test_same_rows_as_the_in_process_pipeline(cluster, frames):
    paths = image_paths(frames)
    rows = rows_of(score_dataset(read_image_folder([frames]), actors=2, images_per_call=4))
    expected = in_process_rows(paths)
    assert len({row['image'] for row in expected}) == 13 and sum(1 for row in expected if row['faces']) > 20
    assert_same_rows(rows, expected)


def test_broken_and_missing_files_give_one_error_row_each(cluster, frames, tmp_path):
    broken = os.path.join(frames, 'broken.png')
    with open(broken, 'wb') as file:
        file.write(b'\x89PNG\r\n\x1a\n this is no image')
    missing = str(tmp_path / 'gone' / 'missing.png')  # a listed file gone before it was read: null bytes
    gone = ray.data.from_arrow(pa.table({'path': [missing], 'bytes': pa.array([None], type=pa.binary())}))
    rows = rows_of(score_dataset(read_image_folder([frames]).union(gone), images_per_call=3))
    errors = [row for row in rows if row.get('error')]
    assert sorted(row['image'] for row in errors) == sorted([broken, missing])
    for row in errors:
        assert row['image'] in row['error'] and row['faces'] is None
    assert {row['image'] for row in rows} == set(image_paths(frames)) | {missing}


def test_schema_is_one_for_error_and_no_face_batches_and_parquet_round_trips(cluster, tmp_path):
    scorer = FaceQualityScorer()
    empty = io.BytesIO()
    solid_image((0, 0, 0), size=(64, 48)).save(empty, format='PNG')
    errors = scorer(pa.table({'path': ['a.png', 'b.png'], 'bytes': [b'not an image', None], 'split': ['x', 'y']}))
    no_faces = scorer(pa.table({'path': ['c.png'], 'bytes': [empty.getvalue()], 'split': ['z']}))
    assert errors.schema.equals(no_faces.schema)
    assert errors.column('split').to_pylist() == ['x', 'y'] and errors.num_rows == 2
    assert no_faces.column('faces').to_pylist() == [0]
    assert errors.schema.field('face').type == pa.int32() and errors.schema.field('p_good').type == pa.float32()
    assert not any(pa.types.is_list(field.type) for field in errors.schema)
    ray.data.from_arrow([errors, no_faces]).write_parquet(str(tmp_path / 'out'))
    shards = sorted(str(path) for path in (tmp_path / 'out').glob('*.parquet'))
    rows = [row for shard in shards for row in read_file(shard).rows]
    assert sorted(row['image'] for row in rows) == ['a.png', 'b.png', 'c.png']
    assert {row['image']: row['faces'] for row in rows}['c.png'] == 0
    assert read_provenance(shards[0])['model_name'] == scorer.provenance['model_name']
    # a rerun scores the images that failed again: their error rows leave the shards, which stay readable
    assert completed_ids(str(tmp_path / 'out')) == {'c.png'}
    assert [row['image'] for shard in shards for row in read_file(shard).rows] == ['c.png']
    assert read_provenance(shards[0])['model_name'] == scorer.provenance['model_name']


def actors_of(dataset):
    """The actor record of every block a dataset's scorers returned."""
    return [actor for table in ray.get(dataset.to_arrow_refs())
            for actor in json.loads(table.schema.metadata[ACTOR_KEY])]


def test_the_model_loads_once_per_actor(cluster, frames):
    actors = actors_of(score_dataset(read_image_folder([frames]), actors=2, images_per_call=1))
    assert len(actors) >= 4  # many blocks (Ray gathers the outputs of a task's calls into one)
    pids = Counter(actor['pid'] for actor in actors)
    assert 1 <= len(pids) <= 2
    assert {actor['scorers_built_in_process'] for actor in actors} == {1}
    assert {actor['threads'] for actor in actors} == {1}


class DyingScorer(FaceQualityScorer):
    """Exits its process, once (a marker file says it did), when it meets a chosen image."""

    def __init__(self, die_on, marker, **settings):
        super().__init__(**settings)
        self.die_on, self.marker = die_on, marker

    def __call__(self, batch):
        if self.die_on in batch.column('path').to_pylist() and not os.path.exists(self.marker):
            open(self.marker, 'w').close()
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_mid_run_still_gives_complete_output_without_duplicates(cluster, frames, tmp_path):
    paths = image_paths(frames)
    marker = str(tmp_path / 'died')
    output = str(tmp_path / 'out')
    score_dataset(read_image_folder([frames]), actors=2, images_per_call=2, scorer=DyingScorer,
                  die_on=paths[5], marker=marker).write_parquet(output)
    assert os.path.exists(marker)
    rows = [row for shard in sorted(os.listdir(output)) for row in read_file(os.path.join(output, shard)).rows]
    assert Counter((row['image'], row['face']) for row in rows).most_common(1)[0][1] == 1
    assert_same_rows(rows, in_process_rows(paths))


def test_folder_hf_parquet_and_webdataset_give_the_same_ids(cluster, frames, tmp_path):
    import datasets
    paths = image_paths(frames)
    contents = {path: open(path, 'rb').read() for path in paths}
    hf = datasets.Dataset.from_dict(
        {'image': [{'bytes': data, 'path': path} for path, data in contents.items()],
         'caption': [f'caption of {os.path.basename(path)}' for path in paths]},
        features=datasets.Features({'image': datasets.Image(), 'caption': datasets.Value('string')}))
    hf.to_parquet(str(tmp_path / 'train.parquet'))
    with tarfile.open(tmp_path / 'shard-000000.tar', 'w') as tar:
        for path in sorted(paths):
            info = tarfile.TarInfo(path)
            info.size = len(contents[path])
            tar.addfile(info, io.BytesIO(contents[path]))

    def ids(dataset):
        return sorted(row['image'] for row in rows_of(dataset))

    from_folder = ids(score_dataset(read_image_folder([frames])))
    from_parquet = pa.concat_tables(ray.get(score_dataset(read_hf_parquet(str(tmp_path / 'train.parquet')))
                                            .to_arrow_refs())).to_pylist()
    from_tar = ids(score_dataset(read_image_webdataset(str(tmp_path / 'shard-000000.tar'))))
    assert from_folder == sorted(row['image'] for row in from_parquet) == from_tar
    assert len(set(from_folder)) == len(paths)
    assert {row['image']: row['caption'] for row in from_parquet}[paths[0]] == hf[0]['caption']


def test_the_cpu_headroom_check_refuses_a_plan_that_would_hang(cluster, frames):
    check_cpu_headroom(3, 1)  # three of four CPUs: one left to the read tasks
    with pytest.raises(ValueError, match='would hang'):
        check_cpu_headroom(4, 1)
    with pytest.raises(ValueError, match='would hang'):
        score_dataset(read_image_folder([frames]), actors=2, cpus_per_actor=2)
    with pytest.raises(ValueError, match='would hang'):
        check_cpu_headroom(2, 1, cluster_cpus=2.5)


def test_gpus_per_actor_reach_the_actors_as_cuda_visible_devices(cluster, frames, tmp_path):
    output = tmp_path / 'out'
    result = run('score', frames, '--ray', cluster, '--actors', '2', '--gpus-per-actor', '0.5', '-o', output)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = sorted(output.glob('*.parquet'))
    actors = [actor for shard in shards for actor in json.loads(pq.read_schema(shard).metadata[ACTOR_KEY])]
    assert actors and {actor['cuda_visible_devices'] for actor in actors} == {'0'}
    assert {actor['resources'].get('GPU') for actor in actors} == {0.5}
    assert PROVENANCE_KEY in pq.read_schema(shards[0]).metadata


class SessionReportingScorer(FaceQualityScorer):
    """Adds a column saying how many threads each ONNX session of the actor runs."""

    def __call__(self, batch):
        from imgutils_facequal.plugins.builtin.imgutils_detectors import DEFAULT_THRESHOLDS, FACE_REPO, HEAD_REPO
        from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
        opened = yolo_session.cache_info().currsize  # before the look-ups below: sessions the scoring opened
        seen = {'classifier': self.faces.classifier.session.get_session_options().intra_op_num_threads,
                'detector sessions opened': opened}
        for name, repo, model in (('face', FACE_REPO, 'face_detect_v1.4_s'), ('head', HEAD_REPO, 'head_detect_v2.0_s')):
            session = yolo_session(repo, model, DEFAULT_THRESHOLDS[repo]).session
            seen[name] = session.get_session_options().intra_op_num_threads
        out = super().__call__(batch)
        return out.append_column('sessions', pa.array([json.dumps(seen)] * out.num_rows, type=pa.string()))


def test_every_onnx_session_of_an_actor_runs_the_threads_it_asked_for(cluster, frames):
    assert os.cpu_count() != 1  # one thread per actor must differ from imgutils' thread per core
    rows = pa.concat_tables(ray.get(score_dataset(read_image_folder([frames]), actors=2, cpus_per_actor=1,
                                                  scorer=SessionReportingScorer).to_arrow_refs())).to_pylist()
    seen = {row['sessions'] for row in rows}
    assert [json.loads(text) for text in seen] == [{'classifier': 1, 'detector sessions opened': 2, 'face': 1,
                                                    'head': 1}] * len(seen)


def test_the_command_writes_whole_shards_exits_1_on_error_rows_and_a_rerun_scores_only_the_rest(cluster, frames,
                                                                                                tmp_path):
    with open(os.path.join(frames, 'broken.png'), 'wb') as file:
        file.write(b'no image at all')
    output = tmp_path / 'scores'
    first = run('score', frames, '--ray', cluster, '--actors', '2', '-o', output)
    assert first.returncode == 1, first.stderr[-3000:]
    assert 'Done: 14 images' in first.stderr and 'failed: 1' in first.stderr
    assert not list(output.glob('.*.tmp'))
    shards = sorted(output.glob('*.parquet'))
    assert read_provenance(str(shards[0]))['model_name'] == 'caformer_s36.head_crop'
    # where the run was made, which the actors cannot know: relative paths are read from there
    assert read_provenance(str(shards[0]))['working_dir'] == os.getcwd()
    assert read_provenance(str(shards[0]))['roots'] == [os.path.abspath(frames)]
    rows = [row for shard in shards for row in read_file(str(shard)).rows]
    assert_same_rows([row for row in rows if not row.get('error')],
                     in_process_rows([path for path in image_paths(frames) if not path.endswith('broken.png')]))

    scene(20).save(os.path.join(frames, 'episode2', 'frame20.png'))
    second = run('score', frames, '--ray', cluster, '-o', output)  # the new image, and the failed one again
    assert second.returncode == 1, second.stderr[-3000:]  # broken.png is still broken
    assert 'Done: 2 images ' in second.stderr and '13 images skipped' in second.stderr
    new = sorted(set(output.glob('*.parquet')) - set(shards))
    assert {row['image'] for shard in new for row in read_file(str(shard)).rows} == {
        os.path.join(frames, 'broken.png'), os.path.join(frames, 'episode2', 'frame20.png')}
    everything = [row['image'] for shard in output.glob('*.parquet') for row in read_file(str(shard)).rows
                  if row.get('error')]
    assert everything == [os.path.join(frames, 'broken.png')]  # its error row once, not once per run


def test_a_model_that_cannot_be_had_fails_the_run_at_once_with_exit_code_3(cluster, frames, tmp_path):
    # in a process of its own: a driver that connects to the cluster by its address (the other tests of the
    # command run in this process, whose driver is connected already)
    result = run_process('score', frames, '--ray', cluster, '--model', 'test-org/no-onnx', '-o', tmp_path / 'out',
                         timeout=200)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Error: the actors could not start' in result.stderr and 'model.onnx' in result.stderr
    assert not list((tmp_path / 'out').glob('*.parquet'))


class FailingScorer(FaceQualityScorer):
    """Raises when it meets a chosen image, as a bug or a bad node would."""

    def __init__(self, fail_on, **settings):
        super().__init__(**settings)
        self.fail_on = fail_on

    def __call__(self, batch):
        if self.fail_on in batch.column('path').to_pylist():
            raise RuntimeError('injected failure')
        return super().__call__(batch)


# Last of the tests on the cluster: the actor of the run that fails stays alive (holding its CPU) until Ray Data lets
# it go, later; a plan of the tests after it would wait for that CPU.
def test_a_failure_part_way_then_a_rerun_gives_every_image_once_and_rescores_only_the_rest(cluster, frames,
                                                                                          tmp_path):
    paths = image_paths(frames)
    output = str(tmp_path / 'out')
    with pytest.raises(Exception, match='injected failure'):
        score_dataset(read_image_folder([frames]), actors=1, images_per_call=2, scorer=FailingScorer,
                      fail_on=paths[-1]).write_parquet(output)
    first = sorted(os.listdir(output))
    assert first, 'the failed run wrote no shard before the failure'
    done = completed_ids(output)
    assert 0 < len(done) < len(paths)
    with open(os.path.join(output, first[0]), 'rb') as file:
        torn = file.read()
    with open(os.path.join(output, 'torn.parquet'), 'wb') as file:  # a shard cut short by a kill
        file.write(torn[:len(torn) // 2])
    with pytest.warns(UserWarning, match='torn.parquet cannot be read'):
        assert completed_ids(output) == done
    assert os.path.exists(os.path.join(output, '.torn.parquet.incomplete'))

    score_dataset(read_image_folder([frames], skip=done), actors=1, images_per_call=2).write_parquet(output)
    new = sorted(set(os.listdir(output)) - set(first) - {'.torn.parquet.incomplete'})
    rescored = {row['image'] for shard in new for row in read_file(os.path.join(output, shard)).rows}
    assert rescored == set(paths) - done
    rows = [row for shard in sorted(os.listdir(output)) if shard.endswith('.parquet')
            for row in read_file(os.path.join(output, shard)).rows]
    assert Counter((row['image'], row['face']) for row in rows).most_common(1)[0][1] == 1
    assert_same_rows(rows, in_process_rows(paths))


def test_importing_the_package_does_not_import_ray():
    code = 'import sys, imgutils_facequal; print("ray" in sys.modules, "pyarrow" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ['False', 'False']
