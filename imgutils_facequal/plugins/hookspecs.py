"""Hook specifications: what a plugin can give imgutils-facequal.

A plugin is a module or object with functions marked ``@hookimpl``, installed under the
``imgutils_facequal`` entry-point group. See the docs page "Writing a plugin".
"""
import pluggy

__all__ = ['hookspec', 'hookimpl', 'register_detectors', 'register_taggers']

hookspec = pluggy.HookspecMarker('imgutils_facequal')
hookimpl = pluggy.HookimplMarker('imgutils_facequal')


@hookspec
def register_detectors(register):
    """Register detectors: ``register(name, detect, description='', detect_batch=None)``, where ``detect(image, **options)`` takes a PIL image and returns ``[((x0, y0, x1, y1), label, score), ...]``, and the optional ``detect_batch(images, **options)`` takes a list of PIL images and returns one such list per image, each what ``detect`` returns for it."""


@hookspec
def register_taggers(register):
    """Register taggers: ``register(name, tag, description='')``, where ``tag(crops, **options)`` takes a list of PIL images and returns one result per crop."""
