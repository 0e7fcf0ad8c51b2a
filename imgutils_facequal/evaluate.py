"""The model card's crop-robustness analysis, for any classifier this package loads.

The card's finding: a face-quality classifier can score well by reading how much of the
frame the head fills, because the labels come from the face's size in the original frame
(``face_geo_mean``). It measures that by cropping each labelled test image ever tighter
around its head box and watching macro-F1:

* ``full``: the original frame;
* ``loose_4x`` ... ``loose_0.25x``: a random crop holding the whole head box, each side's
  margin uniform in ``[0, max_margin x head_dim]`` (``head_dim`` is the head's width for
  the left and right sides and its height for the top and bottom), clamped to the image;
* ``head_only``: exactly the head box.

Each image gets its own four uniform draws from ``numpy.random.default_rng([seed, index])``,
shared by every setting and every model: the settings are paired (before clamping, a
``loose_2x`` crop has twice the margins of the ``loose_1x`` crop of the same image), the
models see identical crops, and a run is reproduced exactly from its seed, whatever
``limit`` or image order.
"""
import csv
import json
import math
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .backends import DEFAULT_BACKEND, load_face_quality_model, top_class
from .errors import BackendNotAvailableError, ImageLoadError, install_hint
from .geometry import box_area, random_margin_crop_box
from .images import load_rgb_image
from .models import DEFAULT_MODEL
from .plugins import get_detector

__all__ = [
    'CropSetting',
    'DEFAULT_SETTINGS',
    'parse_settings',
    'LabelledImage',
    'read_labelled_folder',
    'read_hf_dataset',
    'crop_draws',
    'setting_crop_boxes',
    'classification_metrics',
    'SettingResult',
    'CropRobustnessReport',
    'evaluate_crop_robustness',
]


@dataclass(frozen=True)
class CropSetting:
    """A crop setting: ``max_margin`` times the head size per side, ``None`` for the whole frame."""
    name: str
    max_margin: Optional[float]


DEFAULT_SETTINGS: Tuple[CropSetting, ...] = (
    CropSetting('full', None),
    CropSetting('loose_4x', 4.0),
    CropSetting('loose_2x', 2.0),
    CropSetting('loose_1x', 1.0),
    CropSetting('loose_0.5x', 0.5),
    CropSetting('loose_0.25x', 0.25),
    CropSetting('head_only', 0.0),
)


def parse_settings(text: str) -> List[CropSetting]:
    """Settings from text: ``full,loose_2x,head_only`` (the card's names) or ``name=margin``.

    >>> for setting in parse_settings('full,loose_1x,tight=0.1'):
    ...     print(setting.name, setting.max_margin)
    full None
    loose_1x 1.0
    tight 0.1
    """
    known = {setting.name: setting for setting in DEFAULT_SETTINGS}
    settings = []
    for item in filter(None, (part.strip() for part in text.split(','))):
        name, _, margin = item.partition('=')
        if margin:
            value = None if margin.strip().lower() in ('full', 'none') else float(margin)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f'Crop setting {item!r}: the margin is a number, 0 or more.')
            settings.append(CropSetting(name.strip(), value))
        elif name in known:
            settings.append(known[name])
        else:
            raise ValueError(f'Unknown crop setting {name!r}: use one of {", ".join(known)} or name=margin.')
    if not settings:
        raise ValueError('No crop settings given.')
    return settings


@dataclass
class LabelledImage:
    """One evaluation image: the image (or a function that loads it), its label and head box."""
    image: Any
    label: str
    head_bbox: Optional[Tuple[float, float, float, float]]
    name: str

    def load(self):
        return load_rgb_image(self.image() if callable(self.image) else self.image)


def _head_from_row(row: Dict[str, Any], head_column: Optional[str], head_columns: Optional[Sequence[str]],
                   where: str) -> Optional[Tuple[float, ...]]:
    value = row.get(head_column) if head_column else None
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else None
    if value is None and head_columns and all(row.get(column) not in (None, '') for column in head_columns):
        value = [row[column] for column in head_columns]
    if value is None:
        return None
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4:
        raise ValueError(f'{where}: the head box {value!r} is not (x0, y0, x1, y1).')
    return box


def read_labelled_folder(images_dir: str, labels_path: str, image_column: str = 'image',
                         label_column: str = 'label', head_column: Optional[str] = 'head_bbox',
                         head_columns: Optional[Sequence[str]] = ('head_x0', 'head_y0', 'head_x1', 'head_y1'),
                         ) -> List[LabelledImage]:
    """A folder of images with a CSV or JSON Lines file of labels and head boxes.

    Each row names an image (relative to ``images_dir``), its label and, optionally, its
    head box: a ``head_bbox`` value ``[x0, y0, x1, y1]`` (a JSON list in CSV) or four
    ``head_x0 ... head_y1`` columns. Images without a head box get one from the ``head``
    detector at evaluation time.
    """
    rows: List[Dict[str, Any]] = []
    with open(labels_path, 'r', encoding='utf-8', newline='') as f:
        if labels_path.lower().endswith(('.jsonl', '.json')):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = list(csv.DictReader(f))
    items = []
    for number, row in enumerate(rows, start=1):
        where = f'{labels_path} row {number}'
        if image_column not in row or label_column not in row:
            raise ValueError(f'{where}: needs the columns {image_column!r} and {label_column!r} '
                             f'(found {", ".join(row)}); set the column names with the options.')
        path = os.path.join(images_dir, str(row[image_column]))
        items.append(LabelledImage(path, str(row[label_column]), _head_from_row(row, head_column, head_columns, where),
                                   str(row[image_column])))
    return items


def read_hf_dataset(path_or_name: str, split: str = 'test', image_column: str = 'image', label_column: str = 'label',
                    head_column: Optional[str] = 'head_bbox', head_columns: Optional[Sequence[str]] = None,
                    revision: Optional[str] = None) -> List[LabelledImage]:
    """A Hugging Face ``datasets`` data set: a local folder (``save_to_disk``) or a hub name.

    Integer labels of a ``ClassLabel`` column are turned into their names. Images are read
    one at a time during the evaluation. Needs the ``eval`` extra.
    """
    try:
        import datasets
    except ImportError as err:
        raise BackendNotAvailableError(
            f"Reading a Hugging Face data set needs the datasets package: {install_hint('eval')}"
        ) from err
    if os.path.isdir(path_or_name) and os.path.exists(os.path.join(path_or_name, 'dataset_info.json')):
        dataset = datasets.load_from_disk(path_or_name)
    elif os.path.isdir(path_or_name) and os.path.exists(os.path.join(path_or_name, 'dataset_dict.json')):
        dataset = datasets.load_from_disk(path_or_name)[split]
    else:
        dataset = datasets.load_dataset(path_or_name, split=split, revision=revision)
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(f'Data set {path_or_name!r} has no column {column!r} (it has '
                             f'{", ".join(dataset.column_names)}); set the column names with the options.')
    label_feature = dataset.features[label_column]
    names = getattr(label_feature, 'names', None)
    metadata = dataset.remove_columns([image_column])
    items = []
    for index, row in enumerate(metadata):
        label = names[row[label_column]] if names is not None else str(row[label_column])
        head = _head_from_row(row, head_column, head_columns, f'{path_or_name} row {index}')
        items.append(LabelledImage(_RowImage(dataset, index, image_column), label, head, f'{split}[{index}]'))
    return items


class _RowImage:
    """Loads one row's image from a data set on demand."""

    def __init__(self, dataset, index: int, column: str):
        self.dataset, self.index, self.column = dataset, index, column

    def __call__(self):
        return self.dataset[self.index][self.column]


def crop_draws(seed: int, index: int) -> Tuple[float, float, float, float]:
    """The four uniform draws (left, top, right, bottom) of image ``index`` under ``seed``."""
    import numpy as np
    return tuple(float(value) for value in np.random.default_rng([seed, index]).uniform(0.0, 1.0, 4))


def setting_crop_boxes(head_bbox: Sequence[float], image_size: Sequence[int], settings: Sequence[CropSetting],
                       draws: Sequence[float]) -> List[Tuple[int, int, int, int]]:
    """The crop box of every setting for one image, all from the same draws."""
    return [random_margin_crop_box(head_bbox, setting.max_margin, image_size, draws) for setting in settings]


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 over ``classes`` (a class never seen nor predicted scores 0),
    per-class F1, and the confusion matrix (rows: true class, columns: predicted)."""
    index = {name: i for i, name in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for truth, prediction in zip(y_true, y_pred):
        confusion[index[truth]][index[prediction]] += 1
    per_class = {}
    for name, i in index.items():
        true_positive = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        actual = sum(confusion[i])
        per_class[name] = 0.0 if predicted + actual == 0 else 2.0 * true_positive / (predicted + actual)
    total = len(y_true)
    return {
        'n': total,
        'accuracy': sum(confusion[i][i] for i in range(len(classes))) / total if total else 0.0,
        'macro_f1': sum(per_class.values()) / len(classes),
        'per_class_f1': per_class,
        'confusion': confusion,
    }


@dataclass
class SettingResult:
    """The figures of one model under one crop setting."""
    model: str
    setting: str
    max_margin: Optional[float]
    n: int
    accuracy: float
    macro_f1: float
    delta_macro_f1: Optional[float]
    per_class_f1: Dict[str, float]
    confusion: List[List[int]]


@dataclass
class CropRobustnessReport:
    """Every figure of a crop-robustness run, with the card's table, JSON and a plot."""
    models: List[str]
    classes: List[str]
    settings: List[CropSetting]
    seed: int
    images_evaluated: int
    head_boxes_from: Dict[str, int]
    skipped: List[Tuple[str, str]]
    results: List[SettingResult] = field(default_factory=list)

    @property
    def chance(self) -> float:
        """The chance line: 1 / number of classes."""
        return 1.0 / len(self.classes)

    def result(self, model: str, setting: str) -> SettingResult:
        return next(r for r in self.results if r.model == model and r.setting == setting)

    def to_dict(self) -> dict:
        return {
            'models': self.models, 'classes': self.classes, 'seed': self.seed,
            'settings': [asdict(setting) for setting in self.settings],
            'images_evaluated': self.images_evaluated, 'head_boxes_from': self.head_boxes_from,
            'skipped': [{'image': name, 'reason': reason} for name, reason in self.skipped],
            'chance_macro_f1': self.chance,
            'results': [asdict(result) for result in self.results],
        }

    def to_markdown(self) -> str:
        """The card's table (one row per model and setting), per-class F1, and the notes."""
        several = len(self.models) > 1
        head = (['model'] if several else []) + ['crop setting', 'margin × head', 'macro_f1', 'accuracy',
                                                 'Δ macro_f1 vs full']
        lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for result in self.results:
            margin = '—' if result.max_margin is None else f'{result.max_margin:g}'
            delta = '—' if result.delta_macro_f1 is None or result.setting == 'full' else f'{result.delta_macro_f1:+.3f}'
            cells = ([result.model] if several else []) + [result.setting, margin, f'{result.macro_f1:.4f}',
                                                           f'{result.accuracy:.4f}', delta]
            lines.append('| ' + ' | '.join(cells) + ' |')
        lines += ['', f'{len(self.classes)}-class chance line: {self.chance:.2f}. '
                      f'{self.images_evaluated} images, seed {self.seed}. Head boxes: '
                  + ', '.join(f'{count} from {source}' for source, count in self.head_boxes_from.items())
                  + (f'; {len(self.skipped)} images skipped' if self.skipped else '') + '.', '']
        per_class_head = (['model'] if several else []) + ['crop setting'] + [f'F1 {name}' for name in self.classes]
        lines += ['| ' + ' | '.join(per_class_head) + ' |', '|' + '---|' * len(per_class_head)]
        for result in self.results:
            cells = ([result.model] if several else []) + [result.setting] + [
                f'{result.per_class_f1[name]:.3f}' for name in self.classes]
            lines.append('| ' + ' | '.join(cells) + ' |')
        return '\n'.join(lines) + '\n'

    def plot(self, path: str) -> str:
        """Macro-F1 against crop setting, one line per model, with the chance line (PNG)."""
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
        labels = [s.name if s.max_margin is None else f'{s.name}\n({s.max_margin:g}×)' for s in self.settings]
        for model in self.models:
            values = [self.result(model, setting.name).macro_f1 for setting in self.settings]
            axes.plot(range(len(values)), values, marker='o', label=model)
        axes.axhline(self.chance, color='grey', linestyle='--', label=f'chance ({self.chance:.2f})')
        axes.set_xticks(range(len(labels)), labels, fontsize=8)
        axes.set_ylim(0, 1.02)
        axes.set_ylabel('macro-F1')
        axes.set_xlabel('crop setting (margin × head size, tighter to the right)')
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        return path

    def save(self, directory: str) -> Dict[str, str]:
        """Write ``report.md``, ``report.json`` and, when matplotlib (the ``eval`` extra) is installed,
        ``macro_f1.png``; returns the paths written."""
        os.makedirs(directory, exist_ok=True)
        paths = {name: os.path.join(directory, name) for name in ('report.md', 'report.json', 'macro_f1.png')}
        with open(paths['report.md'], 'w', encoding='utf-8') as f:
            f.write(self.to_markdown())
        with open(paths['report.json'], 'w', encoding='utf-8') as f:
            json.dump(self.to_dict(), f, indent=2)
        if can_plot():
            self.plot(paths['macro_f1.png'])
        else:
            del paths['macro_f1.png']
        return paths


def can_plot() -> bool:
    """Whether matplotlib (the ``eval`` extra) is installed, so reports can draw their plot."""
    import importlib.util
    return importlib.util.find_spec('matplotlib') is not None


def _largest_head(image, head_detector: str):
    detections = get_detector(head_detector)(image)
    return max((bbox for bbox, _, _ in detections), key=box_area, default=None)


def evaluate_crop_robustness(dataset: Sequence[LabelledImage], models: Sequence[str] = (DEFAULT_MODEL,),
                             settings: Sequence[CropSetting] = DEFAULT_SETTINGS, seed: int = 0,
                             batch_size: Optional[int] = None, limit: Optional[int] = None,
                             backend: str = DEFAULT_BACKEND, device: Optional[str] = None, head_detector: str = 'head',
                             progress: Optional[bool] = None) -> CropRobustnessReport:
    """Run the card's crop-robustness protocol (see the module docs) on labelled images.

    :param dataset: Labelled images (`read_labelled_folder`, `read_hf_dataset`).
    :param models: Model names; several models are scored on identical crops.
    :param settings: Crop settings, the card's seven by default.
    :param seed: Seed of the per-image crop draws.
    :param batch_size: Crops per forward pass (default: 2 on a CPU, 32 on a GPU).
    :param limit: Evaluate only the first ``limit`` images (same crops as in a full run).
    :param head_detector: Detector for images without a head box (largest head found).
    :param progress: Show a progress bar (default: when stderr is a terminal).
    """
    settings = list(settings)
    if len({setting.name for setting in settings}) != len(settings):
        raise ValueError('Crop setting names must be unique.')
    loaded = [load_face_quality_model(name, backend=backend, device=device) for name in models]
    batch_size = batch_size or loaded[0].default_batch_size
    classes = list(loaded[0].classes)
    for name, model in zip(models, loaded):
        if sorted(model.classes) != sorted(classes):
            raise ValueError(f'Model {name!r} has classes {model.classes}, not {classes}: models compared in one '
                             f'run need the same classes.')
    items = list(dataset)[:limit] if limit is not None else list(dataset)
    truths: Dict[str, List[str]] = {setting.name: [] for setting in settings}
    predictions = {(model, setting.name): [] for model in models for setting in settings}
    head_sources: Counter = Counter()
    skipped: List[Tuple[str, str]] = []
    pending: List[Tuple[str, str, Any]] = []

    def score(batch: List[Tuple[str, str, Any]]) -> None:
        crops = [crop for _, _, crop in batch]
        for name, model in zip(models, loaded):
            for (setting, _, _), scores in zip(batch, model.scores(crops)):
                predictions[(name, setting)].append(top_class(scores)[0])
        for setting, label, _ in batch:
            truths[setting].append(label)

    bar = None
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm
        bar = tqdm(total=len(items), unit='img', desc='eval-crops', file=sys.stderr)
    evaluated = 0
    for index, item in enumerate(items):
        if bar is not None:
            bar.update(1)
        if item.label not in classes:
            raise ValueError(f'Image {item.name!r} has label {item.label!r}, which is not a class of the model '
                             f'({", ".join(classes)}).')
        try:
            image = item.load()
        except Exception as err:
            skipped.append((item.name, f'cannot read it: {err}'))
            continue
        head = item.head_bbox
        if head is None:
            head = _largest_head(image, head_detector)
            if head is None:
                skipped.append((item.name, f'no head box in the data and the {head_detector!r} detector found none'))
                continue
            head_sources[f'the {head_detector!r} detector'] += 1
        else:
            head_sources['the data set'] += 1
        boxes = setting_crop_boxes(head, image.size, settings, crop_draws(seed, index))
        pending.extend((setting.name, item.label, image.crop(box)) for setting, box in zip(settings, boxes))
        evaluated += 1
        while len(pending) >= batch_size:
            score(pending[:batch_size])
            del pending[:batch_size]
    for start in range(0, len(pending), batch_size):
        score(pending[start:start + batch_size])
    if bar is not None:
        bar.close()
    if not evaluated:
        reasons = '; '.join(f'{name}: {reason}' for name, reason in skipped[:5])
        raise ImageLoadError(f'None of the {len(items)} labelled images could be evaluated ({reasons}'
                             f'{"; ..." if len(skipped) > 5 else ""}), so there is no macro-F1 to report. Check the '
                             f'image paths and head boxes.')

    report = CropRobustnessReport(models=list(models), classes=classes, settings=settings, seed=seed,
                                  images_evaluated=evaluated, head_boxes_from=dict(head_sources), skipped=skipped)
    for name in models:
        baseline = None
        for setting in settings:
            metrics = classification_metrics(truths[setting.name], predictions[(name, setting.name)], classes)
            if setting.name == 'full':
                baseline = metrics['macro_f1']
            report.results.append(SettingResult(
                model=name, setting=setting.name, max_margin=setting.max_margin, n=metrics['n'],
                accuracy=metrics['accuracy'], macro_f1=metrics['macro_f1'], delta_macro_f1=None,
                per_class_f1=metrics['per_class_f1'], confusion=metrics['confusion']))
        for result in report.results:
            if result.model == name and baseline is not None:
                result.delta_macro_f1 = result.macro_f1 - baseline
    return report
