"""What every backend's classifier is: a loaded model that knows its source, device and precision.

A backend subclasses `FaceQualityClassifier` and implements what differs: how the
model is opened (``__init__``), how a preprocessed batch runs (``_forward``) and, where it
is not the repository's pillow stages, how images are preprocessed. Everything else
(probabilities, scores, batching, defaults, pickling) is shared.
"""
import itertools
import os
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
)

from ..caching import cached
from ..errors import ModelNotAvailableError, ModelOutputError
from ..graphs.check import probabilities_from_output
from ..hub import read_json_file
from ..images import check_stages, create_stage_transform, images_to_batch
from ..models import ModelSource

if TYPE_CHECKING:  # annotations only: numpy is imported on first use
    import numpy as np

__all__ = ['FaceQualityClassifier', 'open_classifier', 'PRECISIONS', 'CPU_BATCH_SIZE', 'GPU_BATCH_SIZE',
           'CPU_WORKERS', 'GPU_WORKERS', 'top_class']

#: ``fp32`` (default) or ``bf16``, the opt-in some backends offer.
PRECISIONS = ('fp32', 'bf16')
#: Crops per forward pass on a CPU: caformer_s36 is compute-bound there, so larger batches
#: only cost memory (about 80 MB a crop).
CPU_BATCH_SIZE = 2
#: Crops per forward pass on a GPU, where batching is what makes it fast.
GPU_BATCH_SIZE = 32
#: Threads decoding, cropping and preprocessing ahead of a classifier on the CPU, whose own
#: threads already use the cores.
CPU_WORKERS = 2
#: The same for a classifier on a GPU, where the CPU work limits the rate.
GPU_WORKERS = 8


def top_class(scores: Dict[str, float]) -> Tuple[str, float]:
    """The most likely class of ``{class: probability}`` and its probability.

    >>> top_class({'poor': 0.1, 'ok': 0.2, 'good': 0.6, 'excellent': 0.1})
    ('good', 0.6)
    """
    label = max(scores, key=scores.__getitem__)
    return label, scores[label]


class FaceQualityClassifier:
    """A loaded face-quality classifier. Get one with `imgutils_facequal.load_face_quality_model`.

    It is cached and safe to share between threads. Attributes: ``source`` (where its files
    come from), ``model_name``, ``backend``, ``device``, ``precision`` and ``classes`` (the
    model's class names, in its own order).
    """

    #: The backend's name, as ``backend=`` takes it.
    backend: ClassVar[str] = ''
    #: The precisions the backend runs.
    precisions: ClassVar[Tuple[str, ...]] = ('fp32',)

    source: ModelSource
    device: str
    precision: str
    classes: List[str]

    @classmethod
    def device_key(cls, device: Optional[str]) -> str:
        """The device ``device`` means for this backend (``None``: the backend's default)."""
        return device or 'cpu'

    @classmethod
    def files_source(cls, source: ModelSource) -> ModelSource:
        """Where this backend reads the model's files for ``source`` (a local export, for ONNX)."""
        return source

    @property
    def model_name(self) -> str:
        return self.source.model_name

    @property
    def where(self) -> str:
        """The model and its location, for messages."""
        return f'Model {self.source.model_name!r} ({self.source.location})'

    @property
    def settings(self) -> Dict[str, Any]:
        """Plain, picklable keyword arguments that load this classifier again."""
        return {'model_name': self.source.model_name, 'revision': self.source.revision, 'backend': self.backend,
                'device': self.device, 'precision': self.precision}

    def __reduce__(self):  # unpickled (in another process, say) through the cache of that process
        return open_classifier, (type(self), self.source, self.device, self.precision)

    def __repr__(self) -> str:
        return (f'<{type(self).__name__} {self.source.model_name!r} backend={self.backend!r} device={self.device!r} '
                f'precision={self.precision!r}>')

    @property
    def runs_on_gpu(self) -> bool:
        """Whether forward passes run on a GPU."""
        return str(self.device).startswith('cuda')

    @property
    def default_batch_size(self) -> int:
        """`GPU_BATCH_SIZE` on a GPU, else `CPU_BATCH_SIZE`."""
        return GPU_BATCH_SIZE if self.runs_on_gpu else CPU_BATCH_SIZE

    @property
    def default_workers(self) -> int:
        """Threads that prepare images ahead of this classifier in the folder pipeline: `GPU_WORKERS`
        (at most one per core) on a GPU; on a CPU `CPU_WORKERS`, or one where there are two cores or
        fewer (there the workers only decode, and a second one only takes a core from the models)."""
        cores = os.cpu_count() or 1
        if self.runs_on_gpu:
            return min(GPU_WORKERS, cores)
        return 1 if cores <= 2 else CPU_WORKERS

    @property
    def preprocesses_in_workers(self) -> bool:
        """Whether preprocessing may run in worker threads beside the forward pass."""
        return True

    def _read_stages(self) -> None:
        """The repository's preprocessing stages, as a pillow transform."""
        preprocessor = read_json_file(self.source, 'preprocessor_config.json')
        self.stages = preprocessor.get('stages') if isinstance(preprocessor, dict) else None
        self.transform = create_stage_transform(self.stages, self.where)

    def _check_loaded(self, input_size: Optional[Sequence[int]] = None, images: int = 1) -> None:
        """Refuse a model that cannot give probabilities per class: run once on ``images`` plain images."""
        from PIL import Image
        import numpy as np
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ModelNotAvailableError(
                f'{self.where} has the classes {self.classes}: a face-quality model needs two or more classes, each '
                f'named once. Fix the class list of the repository (model.onnx metadata, config.json or meta.json).')
        if self.stages is not None:
            check_stages(self.stages, self.where, input_size)
        probabilities = self.predict(self.preprocess([Image.new('RGB', (64, 64), (128, 128, 128))] * images))
        if not np.isfinite(probabilities).all():
            raise ModelNotAvailableError(
                f'{self.where} returns {probabilities.tolist()} for a plain grey image: not probabilities. The model '
                f'file or its preprocessing is broken; download it again or use another revision.')

    def preprocess(self, images: Sequence) -> Any:
        """Decoded RGB images to the model's input batch, through the repository's stages."""
        return images_to_batch(list(images), self.transform)

    def _forward(self, batch) -> Any:
        """The model's raw output for a preprocessed batch."""
        raise NotImplementedError

    def predict(self, batch) -> 'np.ndarray':
        """One forward pass over a preprocessed batch; probabilities ``[n, n_classes]``."""
        output = self._forward(batch)
        if output.ndim != 2 or output.shape[1] != len(self.classes):
            raise ModelNotAvailableError(
                f'{self.where} returned shape {tuple(output.shape)}, but has {len(self.classes)} classes '
                f'{self.classes}. The model file and the class list do not belong together.'
            )
        return probabilities_from_output(output)

    def scores_of(self, probabilities) -> List[Dict[str, float]]:
        """Rows of probabilities as ``{class: probability}``, in the model's class order.

        :raises ModelOutputError: When a row is not finite (NaN or infinite).
        """
        import numpy as np
        bad = [index for index, row in enumerate(probabilities) if not np.isfinite(row).all()]
        if bad:
            raise ModelOutputError(f'{self.where} gave no probabilities (NaN or infinite values) for the '
                                   f'image{"s" if len(bad) > 1 else ""} at {bad} of its batch.')
        return [dict(zip(self.classes, map(float, row))) for row in probabilities]

    def scores(self, images: Sequence) -> List[Dict[str, float]]:
        """Class probabilities for decoded RGB images, in one forward pass."""
        return self.scores_of(self.predict(self.preprocess(images)))

    def scores_in_batches(self, images: Iterable, batch_size: Optional[int] = None) -> List[Dict[str, float]]:
        """Class probabilities for decoded RGB images, ``batch_size`` (default `default_batch_size`)
        per forward pass. ``images`` is taken a batch at a time: a generator of crops holds one
        batch of them at once."""
        size = batch_size or self.default_batch_size
        iterator, scores = iter(images), []
        while True:
            batch = list(itertools.islice(iterator, size))
            if not batch:
                return scores
            scores.extend(self.scores(batch))


@cached(per_process=True)
def open_classifier(backend_class, source: ModelSource, device: str, precision: str) -> FaceQualityClassifier:
    """The cached classifier of ``backend_class`` for a source, a device key and a precision.

    Loaded once, however many threads ask at once, and cached per process: a forked child
    loads its own, and the parent's stay untouched (freeing them in the child would wait
    forever on the thread pools of their sessions, which the child does not have).
    """
    return backend_class(source, device, precision)
