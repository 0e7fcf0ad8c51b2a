"""The face-quality classifier, as the ``face_quality`` tagger."""
from ...backends import load_face_quality_model
from ...models import DEFAULT_MODEL
from ..hookspecs import hookimpl


def tag_face_quality(crops, model_name=None, revision=None, backend='onnx', device=None, precision='fp32'):
    """``{class: probability}`` for each crop, the model's default batch size per forward pass."""
    if not crops:
        return []
    model = load_face_quality_model(model_name or DEFAULT_MODEL, revision=revision, backend=backend, device=device,
                                    precision=precision)
    return model.scores_in_batches(crops)


@hookimpl
def register_taggers(register):
    register('face_quality', tag_face_quality,
             'Face quality class probabilities (poor, ok, good, excellent) from the face-quality classifier')
