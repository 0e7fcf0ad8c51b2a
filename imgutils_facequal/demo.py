"""A Gradio demo, in imgutils' style: drop in a picture, see every face boxed and labelled with its quality.

The page takes an uploaded or pasted image, a model (a registered one from the list, or a
local folder laid out like a published repository) and the face detector's confidence and
IoU thresholds; it shows the picture with each face boxed and labelled (its class and that
class's probability, drawn by `imgutils_facequal.visualize_face_quality`) and a table of
every face's class probabilities and quality value. Everything else comes from the
`imgutils_facequal.ScoringSettings` it is given.

Gradio comes with the ``demo`` extra (``pip install 'imgutils-facequal[demo]'``). The demo
runs offline from the Hugging Face cache, sends Gradio no analytics, its page loads nothing
from the internet, and it makes no share link: it serves this machine only unless told
``server_name='0.0.0.0'``.

Example:

    >>> from imgutils_facequal import launch_demo
    >>> launch_demo()  # doctest: +SKIP
    * Running on local URL:  http://127.0.0.1:7860
"""
import os
from typing import Any, List, Optional, Tuple

from .errors import FaceQualityError
from .models import list_face_quality_models
from .scoring import load_face_quality_detector
from .settings import ScoringSettings
from .visualize import visualize_face_quality
from .wording import plural

__all__ = ['build_demo', 'launch_demo', 'predict_faces', 'DEMO_INSTALL_HINT']

#: What to install when Gradio is missing.
DEMO_INSTALL_HINT = "pip install 'imgutils-facequal[demo]'"
#: The slider values when the settings leave the detector's thresholds unset: imgutils' own defaults.
DEFAULT_CONF_THRESHOLD, DEFAULT_IOU_THRESHOLD = 0.25, 0.7


def _gradio():
    """Gradio, imported with its analytics off; a clear message when it is not installed."""
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f'The demo needs Gradio, which is not installed: {DEMO_INSTALL_HINT}') from err
    return gradio


def predict_faces(image, model_name: str, folder: Optional[str] = None, conf_threshold: Optional[float] = None,
                  iou_threshold: Optional[float] = None, settings: Optional[ScoringSettings] = None
                  ) -> Tuple[Any, List[str], List[List[Any]]]:
    """Score every face of ``image``: what the demo's button does, without Gradio.

    :param image: Anything imgutils' ``ImageTyping`` accepts.
    :param model_name: A registered model name or hub repo id; ``folder``, when given, wins.
    :param folder: A local model directory (``model.onnx``, ``preprocessor_config.json``...).
    :param conf_threshold: The detector's confidence threshold.
    :param iou_threshold: The detector's NMS IoU threshold.
    :param settings: The other settings; default the defaults.
    :return: ``(drawing, headers, rows)``: the image with the faces drawn, and one row per face
        (its number, box, class, each class's probability and the quality value).
    """
    chosen = (folder or '').strip() or model_name
    settings = ScoringSettings.merged(settings, model_name=chosen, conf_threshold=conf_threshold,
                                      iou_threshold=iou_threshold)
    faces = load_face_quality_detector(settings=settings).detect(image)
    drawing = visualize_face_quality(image, faces)
    classes = list(faces[0].scores) if faces else []
    headers = ['face', 'box', 'class', *classes, 'quality']
    rows = [[index, ', '.join(map(str, face.bbox)), face.label, *(round(face.scores[name], 4) for name in classes),
             round(face.quality, 4)] for index, face in enumerate(faces, 1)]
    return drawing, headers, rows


def build_demo(settings: Optional[ScoringSettings] = None, title: str = 'Anime face quality'):
    """The demo's page, a ``gradio.Blocks`` not yet launched (see `launch_demo`).

    :param settings: The scoring settings; the model and the detector's thresholds are the
        page's starting values, the rest hold for every prediction.
    :param title: The page's title.
    :raises ImportError: When Gradio is not installed (the message says what to install).
    """
    gr = _gradio()
    settings = settings or ScoringSettings()
    models = list_face_quality_models()
    conf = settings.conf_threshold if settings.conf_threshold is not None else DEFAULT_CONF_THRESHOLD
    iou = settings.iou_threshold if settings.iou_threshold is not None else DEFAULT_IOU_THRESHOLD

    def predict(image, model_name, folder, conf_threshold, iou_threshold):
        if image is None:
            raise gr.Error('Upload or paste an image first.')
        try:
            drawing, headers, rows = predict_faces(image, model_name, folder, conf_threshold, iou_threshold, settings)
        except (FaceQualityError, ValueError, OSError) as err:
            raise gr.Error(str(err)) from err
        found = f'{plural(len(rows), "face")} found.' if rows else 'No face found.'
        return drawing, gr.Dataframe(value=rows, headers=headers), found

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.HTML(f'<h2 style="text-align: center;">{title}</h2>')
        gr.Markdown('Each face is found by the detector, cropped as the model was trained, and scored '
                    '`poor`, `ok`, `good` or `excellent`. Powered by `imgutils-facequal` and `dghs-imgutils`.')
        with gr.Row():
            with gr.Column():
                image = gr.Image(type='pil', label='Original Image', sources=['upload', 'clipboard'],
                                 elem_id='facequal-input')
                with gr.Row():
                    model = gr.Dropdown(models, value=settings.model_name if settings.model_name in models else None,
                                        allow_custom_value=True, label='Model', elem_id='facequal-model')
                    folder = gr.Textbox(label='Or a local model folder', elem_id='facequal-folder',
                                        value='' if settings.model_name in models else settings.model_name,
                                        placeholder='/path/to/model (model.onnx, preprocessor_config.json...)')
                with gr.Row():
                    conf_slider = gr.Slider(0.0, 1.0, conf, step=0.01, label='Detector confidence threshold')
                    iou_slider = gr.Slider(0.0, 1.0, iou, step=0.01, label='Detector IoU threshold')
                submit = gr.Button(value='Submit', variant='primary', elem_id='facequal-submit')
            with gr.Column():
                drawing = gr.Image(type='pil', label='Faces', format='png', interactive=False,
                                   buttons=['download', 'fullscreen'], elem_id='facequal-output')
        found = gr.Markdown(elem_id='facequal-found')
        table = gr.Dataframe(label='Class probabilities per face', interactive=False, elem_id='facequal-table')
        submit.click(predict, inputs=[image, model, folder, conf_slider, iou_slider], outputs=[drawing, table, found],
                     api_name='predict')
    demo.predict_faces = predict  # the page's own prediction function, for callers that test or script it
    return demo


def launch_demo(settings: Optional[ScoringSettings] = None, server_name: str = '127.0.0.1',
                server_port: Optional[int] = None, **launch_options):
    """Build the demo (see `build_demo`) and serve it; blocks until stopped unless ``prevent_thread_lock=True``.

    :param settings: The scoring settings (see `build_demo`).
    :param server_name: Where to listen: this machine only by default; ``0.0.0.0`` for others.
    :param server_port: The port; default Gradio's (7860, or the next free one).
    :param launch_options: More options of ``gradio.Blocks.launch`` (``prevent_thread_lock``,
        ``inbrowser``...). No share link is ever made.
    :return: The launched ``gradio.Blocks``, once ``launch`` returns: its ``local_url`` is the
        page's address, its ``close()`` stops the server.
    :raises ImportError: When Gradio is not installed (the message says what to install).

    Example:

        >>> from imgutils_facequal import ScoringSettings, launch_demo
        >>> launch_demo(ScoringSettings(conf_threshold=0.3), server_port=7861)  # doctest: +SKIP
    """
    demo = build_demo(settings)
    launch_options['share'] = False
    demo.launch(server_name=server_name, server_port=server_port, **launch_options)
    return demo
