"""Hugging Face ``datasets``: score a dataset's images with ``Dataset.map``, or read one for ``score``.

* `face_quality_map` gives a function for ``dataset.map(fn, batched=True, with_rank=True,
  num_proc=N)``. It adds one row of columns per image (the dataset stays aligned with its
  images): ``faces``, ``width``, ``height`` and ``error`` per image, and each face column of
  the saved scores' flat schema (`imgutils_facequal.store.schema.flat_columns`: ``x0`` ..
  ``y1``, ``label``, ``score``, ``quality``, ``detection_score``, ``p_<class>``, ``crop_*``,
  ``head_*``) as a list with one value per face, in the detector's order. Each process loads
  the model once; with several GPUs, rank ``r`` runs on GPU ``r % count``.
* `HFImages` opens a dataset saved with ``save_to_disk``, a folder of Parquet files in the
  hub's layout (``data/train-00000-of-00001.parquet``), or a hub name found in the Hugging
  Face cache, and hands its images to the pipeline one by one (``score --hf-dataset``). An
  image's id in the saved scores is ``hf://<dataset>/<split>/<row>``: the same row of the
  same dataset has the same id on every run, so a rerun resumes.

This module imports ``datasets`` only when a dataset is opened; it needs the ``datasets``
extra (or ``eval``).
"""
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from .caching import cached
from .errors import BackendNotAvailableError, InputNotFoundError, install_hint
from .pipeline import InputImage, score_images_with
from .scoring import FaceQualityDetector, load_face_quality_detector
from .settings import ScoringSettings
from .store.paths import stored_path
from .store.schema import flat_columns, flat_row, result_rows

__all__ = ['IMAGE_LEVEL_COLUMNS', 'FaceQualityMap', 'face_quality_map', 'map_columns', 'HFImages', 'HF_ID_PREFIX',
           'gpu_count']

#: The columns `face_quality_map` gives once per image; the others hold one value per face.
IMAGE_LEVEL_COLUMNS = ('faces', 'width', 'height', 'phash', 'error')
#: How the ids of a dataset's images begin in saved scores.
HF_ID_PREFIX = 'hf://'


def _datasets():
    try:
        import datasets
    except ImportError as err:
        raise BackendNotAvailableError(
            f"Reading a Hugging Face dataset needs the datasets package: {install_hint('datasets')}") from err
    return datasets


def map_columns(classes: Sequence[str]) -> List[str]:
    """The columns `face_quality_map` adds, in order, for a model's classes.

    >>> map_columns(['poor', 'good'])[:6]
    ['faces', 'width', 'height', 'phash', 'error', 'x0']
    """
    faces = [name for name in flat_columns(classes, with_head=True)
             if name not in ('image', 'face') and name not in IMAGE_LEVEL_COLUMNS]
    return list(IMAGE_LEVEL_COLUMNS) + faces


def gpu_count() -> int:
    """The CUDA devices this process may use: those ``CUDA_VISIBLE_DEVICES`` names, else those
    ``nvidia-smi -L`` lists (0 without a driver). Cheap: no torch, no CUDA context."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None:
        return len([device for device in visible.split(',') if device.strip() and device.strip() != '-1'])
    import shutil
    import subprocess
    if shutil.which('nvidia-smi') is None:
        return 0
    try:
        listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith('GPU ') for line in listed.splitlines())


_pinned: Dict[int, Optional[str]] = {}


def _pin_to_gpu(rank: int) -> Optional[str]:
    """Give this process GPU ``rank % count`` alone, once, before its first session opens: the ONNX
    classifier, imgutils' ONNX detectors and torch all take the first visible device, and only
    ``CUDA_VISIBLE_DEVICES`` moves all three. The GPU's name, or ``None`` on a CPU."""
    process = os.getpid()
    if process not in _pinned:
        count = gpu_count()
        chosen = None
        if count:
            visible = os.environ.get('CUDA_VISIBLE_DEVICES')
            devices = [device.strip() for device in visible.split(',') if device.strip()] if visible \
                else [str(index) for index in range(count)]
            chosen = os.environ['CUDA_VISIBLE_DEVICES'] = devices[rank % count]
        _pinned[process] = chosen
    return _pinned[process]


@cached(per_process=True)
def _detector(settings: ScoringSettings) -> FaceQualityDetector:
    return load_face_quality_detector(settings=settings)


def _detector_for(settings: ScoringSettings, rank: Optional[int]) -> FaceQualityDetector:
    """The detector of this process (a datasets worker, a fork, loads its own, once); a ranked worker on a
    machine with GPUs runs on GPU ``rank % count`` (``cuda:N`` asked for becomes that GPU)."""
    if rank is not None and (settings.device is None or settings.device.startswith('cuda')):
        if _pin_to_gpu(rank) is not None and settings.device is not None:
            settings = ScoringSettings.merged(settings, device='cuda')  # the one visible device
    return _detector(settings)


def _input(value: Any, name: str) -> InputImage:
    """An image of a batch (a PIL image, a ``{'bytes', 'path'}`` dict, bytes or a path) as the pipeline takes it."""
    if isinstance(value, dict):
        data, path = value.get('bytes'), value.get('path')
        if data is None and path:
            return InputImage(path)
        return InputImage(path or name, data=data)
    if isinstance(value, (str, os.PathLike)):
        return InputImage(os.fspath(value))
    return InputImage(name, data=value)  # bytes, or a decoded PIL image (the pipeline loads either)


class FaceQualityMap:
    """A function for ``Dataset.map(fn, batched=True, with_rank=True, num_proc=N)``; see `face_quality_map`.

    It pickles as its settings; each process loads the model once, on its first batch.
    """

    def __init__(self, image_column: str = 'image', settings: Optional[ScoringSettings] = None,
                 batch_size: Optional[int] = None, workers: Optional[int] = None, **options: Any):
        self.image_column = image_column
        self.settings = ScoringSettings.merged(settings, **options)
        self.batch_size, self.workers = batch_size, workers

    def __call__(self, batch: Dict[str, list], rank: Optional[int] = None) -> Dict[str, list]:
        if self.image_column not in batch:
            raise KeyError(f'The batch has no column {self.image_column!r} (it has {", ".join(batch)}); give '
                           f'face_quality_map(image_column=...) the column that holds the images.')
        faces = _detector_for(self.settings, rank)
        classes = faces.classifier.classes
        columns = map_columns(classes)
        taken = sorted(set(columns) & (set(batch) - {self.image_column}))
        if taken:
            raise ValueError(f'The dataset has columns {", ".join(taken)} already, which face_quality_map would '
                             f'replace: rename them first (dataset.rename_column).')
        images = [_input(value, f'{self.image_column}[{index}]')
                  for index, value in enumerate(batch[self.image_column])]
        out: Dict[str, list] = {name: [] for name in columns}
        for result in score_images_with(faces, images, batch_size=self.batch_size, workers=self.workers):
            flat = [flat_row(row, classes, with_head=True) for row in result_rows(result)]
            for name in IMAGE_LEVEL_COLUMNS:
                out[name].append(flat[0][name])
            scored = [row for row in flat if row['face'] is not None]
            for name in columns[len(IMAGE_LEVEL_COLUMNS):]:
                out[name].append([row[name] for row in scored])
        return out


def face_quality_map(image_column: str = 'image', settings: Optional[ScoringSettings] = None,
                     batch_size: Optional[int] = None, workers: Optional[int] = None,
                     **options: Any) -> FaceQualityMap:
    """A function that scores the faces of a dataset's images, for ``Dataset.map``.

    :param image_column: The column of the images: PIL images (an ``Image`` feature), ``{'bytes',
        'path'}`` dicts (``Image(decode=False)``), bytes or paths.
    :param settings: An `imgutils_facequal.ScoringSettings`; ``options`` (any of its fields) replace its fields.
    :param batch_size: Crops per forward pass (see `imgutils_facequal.score_images_with`).
    :param workers: Threads decoding ahead of the classifier.
    :return: A picklable callable ``fn(batch, rank=None)`` that returns the columns of `map_columns`:
        one value per image for ``faces``, ``width``, ``height`` and ``error`` (a failed image has its
        message there and no faces), a list with one value per face for the others. Each process
        loads the model once; with ``with_rank=True`` and several GPUs, rank ``r`` runs on GPU
        ``r % count`` (on a CPU the rank changes nothing).

    Example:

        >>> from imgutils_facequal.hf_datasets import face_quality_map
        >>> scored = dataset.map(face_quality_map(), batched=True, batch_size=32, with_rank=True,
        ...                      num_proc=2)  # doctest: +SKIP
        >>> scored[0]['faces'], scored[0]['label']  # doctest: +SKIP
        (2, ['good', 'poor'])
    """
    return FaceQualityMap(image_column, settings, batch_size, workers, **options)


def _is_saved(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, name)) for name in ('dataset_info.json', 'state.json'))


class HFImages:
    """The images of one split of a Hugging Face dataset, as the pipeline takes them.

    :param path_or_name: A folder written by ``save_to_disk`` (a dataset, or a dataset dict),
        a folder of data files in the hub's layout (``data/train-00000-of-00001.parquet``), or a
        hub name, read from the Hugging Face cache (with ``HF_HUB_OFFLINE=1``, only from there).
    :param split: The split (``train``, ``test``...).
    :param image_column: The column of the images.
    :raises BackendNotAvailableError: Without the ``datasets`` package.
    :raises InputNotFoundError: When the dataset, its split or its image column cannot be found.
    """

    def __init__(self, path_or_name: str, split: str = 'train', image_column: str = 'image'):
        self.name, self.split, self.image_column = path_or_name, split, image_column
        self.dataset = self._open()
        if image_column not in self.dataset.column_names:
            raise InputNotFoundError(
                f'Dataset {path_or_name!r} has no column {image_column!r} (it has '
                f'{", ".join(self.dataset.column_names)}); give the images\' column with --image-column.')
        datasets = _datasets()
        if isinstance(self.dataset.features[image_column], datasets.Image):  # bytes and paths, not decoded images
            self.dataset = self.dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset = self.dataset.select_columns([image_column])
        prefix = stored_path(os.path.normpath(path_or_name)) if os.path.isdir(path_or_name) else path_or_name
        self.prefix = f'{HF_ID_PREFIX}{prefix}/{split}/'

    def _open(self):
        datasets = _datasets()
        name, split = self.name, self.split
        if os.path.isdir(name) and (_is_saved(name) or os.path.exists(os.path.join(name, 'dataset_dict.json'))):
            loaded = datasets.load_from_disk(name)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise InputNotFoundError(f'Dataset {name!r} has no split {split!r} (it has '
                                             f'{", ".join(loaded)}); choose one with --split.')
                return loaded[split]
            return loaded
        try:
            return datasets.load_dataset(name, split=split)
        except ValueError as err:
            if 'split' in str(err).lower():
                raise InputNotFoundError(f'Dataset {name!r} has no split {split!r}: {err}. Choose one with '
                                         f'--split.') from err
            raise InputNotFoundError(f'Cannot read dataset {name!r}: {err}') from err
        except (FileNotFoundError, ConnectionError, OSError) as err:
            offline = os.environ.get('HF_HUB_OFFLINE', '').lower() in ('1', 'true', 'yes') or \
                os.environ.get('HF_DATASETS_OFFLINE', '').lower() in ('1', 'true', 'yes')
            hint = (' HF_HUB_OFFLINE is set, so only the Hugging Face cache is read: download it once with '
                    'network (datasets.load_dataset), or give a local folder.' if offline else
                    ' Give a folder written by save_to_disk, a folder of Parquet files, or a hub name.')
            raise InputNotFoundError(f'Cannot find dataset {name!r} (split {split!r}): {err}.{hint}') from err

    def __len__(self) -> int:
        return len(self.dataset)

    def ids(self) -> List[InputImage]:
        """Every row as an image without its data (the id alone): what a resume checks against the output."""
        return [InputImage(f'{self.prefix}{index}') for index in range(len(self.dataset))]

    def with_data(self, images: Iterable[InputImage]) -> Iterator[InputImage]:
        """The images of these ids with their bytes, read one at a time (an image stored by path only is read
        from that file)."""
        for image in images:
            index = int(image.path[len(self.prefix):])
            value = self.dataset[index][self.image_column]
            if isinstance(value, dict):
                data, path = value.get('bytes'), value.get('path')
                if data is None and path:
                    yield InputImage(image.path, data=_read_or_none(path, self.name))
                    continue
                value = data
            elif isinstance(value, (str, os.PathLike)):
                value = _read_or_none(os.fspath(value), self.name)
            yield InputImage(image.path, data=value if value is not None else b'')


def _read_or_none(path: str, dataset: str) -> Optional[bytes]:
    for candidate in (path, os.path.join(dataset, path)):
        if os.path.isfile(candidate):
            with open(candidate, 'rb') as file:
                return file.read()
    return None
