"""The face-quality classifier, as the ``face_quality`` tagger."""
from ..hookspecs import hookimpl


def tag_face_quality(crops, model_name=None, revision=None, backend='onnx', device=None, precision='fp32'):
    """``{class: probability}`` for each crop, the model's default batch size per forward pass
    (2 on a CPU, where larger batches only cost memory; 32 on a GPU)."""
    from ..backends import default_batch_size, load_face_quality_model
    from ..models import DEFAULT_MODEL
    if not crops:
        return []
    model = load_face_quality_model(model_name or DEFAULT_MODEL, revision=revision, backend=backend, device=device,
                                    precision=precision)
    crops = list(crops)
    size = default_batch_size(model)
    return [scores for start in range(0, len(crops), size) for scores in model.scores(crops[start:start + size])]


@hookimpl
def register_taggers(register):
    register('face_quality', tag_face_quality,
             'Face quality class probabilities (poor, ok, good, excellent) from the face-quality classifier')
