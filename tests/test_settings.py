"""One settings object: every entry point takes every scoring setting under the same name, and the provenance
records them under those names."""
import dataclasses
import inspect
import pickle

import pytest

from imgutils_facequal import (FaceLocator, ScoringSettings, detect_face_quality, load_face_quality_detector,
                               score_images)
from imgutils_facequal.cli import main
from imgutils_facequal.settings import SETTING_NAMES
from imgutils_facequal.store import make_provenance
from tests.support.fake_hub import solid_image

# a value other than the default for every setting, each one valid with the test models and detectors
OTHER_VALUES = dict(model_name='caformer_s36.head_crop', revision='main', backend='onnx', device='cpu',
                    precision='fp32', detector='face', conf_threshold=0.3, iou_threshold=0.6, detector_level='s',
                    detector_version='v1.4', detector_model_name=None, crop='face', margin=0.25,
                    head_detector='head', head_level='s', head_version='v0', head_infer_size=None,
                    head_localisation='paired')
# the settings of a loaded detector say what ran: the device as the backend resolved it
RESOLVED_DEVICE = 'CPUExecutionProvider'


def test_the_other_values_name_every_setting():
    assert set(OTHER_VALUES) == set(SETTING_NAMES)


@pytest.mark.parametrize('entry', [load_face_quality_detector, detect_face_quality, score_images, FaceLocator])
def test_every_entry_point_takes_every_setting_by_name(entry):
    signature = inspect.signature(entry)
    takes_options = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    assert takes_options and 'settings' in signature.parameters
    unknown = {'head_detector_options': {'level': 'n'}}
    arguments = {'image': solid_image((0, 0, 0), size=(64, 64))} if entry is detect_face_quality else \
        {'images': []} if entry is score_images else {}
    with pytest.raises(TypeError, match="'head_detector_options' is not a scoring setting"):
        entry(**arguments, **unknown)
    result = entry(**arguments, **OTHER_VALUES)  # a missing setting would raise TypeError here
    if entry is load_face_quality_detector:
        assert result.settings.as_dict() == {**OTHER_VALUES, 'device': RESOLVED_DEVICE}
    if entry is score_images:
        assert list(result) == []


@pytest.mark.extras  # ray
def test_the_ray_scorer_takes_every_setting_by_name():
    from imgutils_facequal.ray import FaceQualityScorer
    signature = inspect.signature(FaceQualityScorer.__init__)
    assert 'settings' in signature.parameters
    assert any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    scorer = FaceQualityScorer(**OTHER_VALUES)
    assert {name: scorer.provenance[name] for name in OTHER_VALUES} == {**OTHER_VALUES, 'device': RESOLVED_DEVICE}


def test_the_command_line_has_every_setting_under_its_name():
    for command in ('score', 'filter', 'crop'):
        params = {param.name for param in main.commands[command].params}
        assert set(SETTING_NAMES) <= params, (command, set(SETTING_NAMES) - params)
    options = {param.name: param.opts for param in main.commands['score'].params}
    assert options['head_infer_size'] == ['--head-infer-size'] and options['head_detector'] == ['--head-detector']
    assert options['model_name'] == ['--model', '--model-name']


def test_provenance_records_every_setting_under_its_name():
    faces = load_face_quality_detector(**OTHER_VALUES)
    recorded = make_provenance(faces, batch_size=4, workers=1)
    assert {name: recorded[name] for name in SETTING_NAMES} == {**OTHER_VALUES, 'device': RESOLVED_DEVICE}
    assert recorded['batch_size'] == 4 and recorded['workers'] == 1 and recorded['rows'] == 'per face'


def test_settings_are_frozen_picklable_and_checked():
    settings = ScoringSettings(head_localisation='heads', head_infer_size=320)
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.margin = 1.0
    for bad, message in (({'margin': -1}, 'margin must be a number'), ({'conf_threshold': float('nan')},
                                                                          'conf_threshold must be a number'),
                         ({'head_infer_size': 33}, 'multiple of 32'), ({'crop': 'body'}, 'crop must be one of'),
                         ({'head_localisation': 'heads', 'head_detector': None}, 'needs a head_detector')):
        with pytest.raises(ValueError, match=message):
            ScoringSettings(**bad)


def test_the_detector_and_locator_give_their_settings_back():
    faces = load_face_quality_detector(head_localisation='heads', head_infer_size=320, margin=1.0)
    assert faces.settings.crop == 'head'  # resolved from the model
    assert faces.locator.head_detector_options == {'infer_size': 320}
    assert load_face_quality_detector(settings=faces.settings).settings == faces.settings
    assert pickle.loads(pickle.dumps(faces)).settings == faces.settings
