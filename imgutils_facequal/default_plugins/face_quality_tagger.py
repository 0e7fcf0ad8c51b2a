"""The face-quality classifier, as the ``face_quality`` tagger."""
from ..hookspecs import hookimpl


def tag_face_quality(crops, model_name=None, revision=None, backend='onnx', device=None):
    """``{class: probability}`` for each crop, all crops in one forward pass."""
    from ..backends import load_face_quality_model
    from ..models import DEFAULT_MODEL
    if not crops:
        return []
    model = load_face_quality_model(model_name or DEFAULT_MODEL, revision=revision, backend=backend, device=device)
    return model.scores(list(crops))


@hookimpl
def register_taggers(register):
    register('face_quality', tag_face_quality,
             'Face quality class probabilities (poor, ok, good, excellent) from the face-quality classifier')
