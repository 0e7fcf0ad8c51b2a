"""The one plugin manager, and the registries of detectors and taggers it fills.

Built-in plugins (``imgutils_facequal.plugins.builtin``) are registered exactly like
external ones. External plugins are loaded once, lazily, from the ``imgutils_facequal``
entry-point group. The environment variable ``IMGUTILS_FACEQUAL_PLUGINS`` restricts them:
unset, every installed plugin loads; set, only the comma-separated distributions it names
load (``IMGUTILS_FACEQUAL_PLUGINS=`` loads none). A plugin that fails to import, or whose
registration hook raises, is skipped with a warning that names it and the error; with the
variable naming plugins (chosen, not merely installed), either is an error.
"""
import importlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import pluggy

from ..caching import cached
from ..errors import DetectionError, FaceQualityError, PluginError
from . import hookspecs

__all__ = [
    'ENTRY_POINT_GROUP',
    'PLUGINS_ENV',
    'DEFAULT_PLUGINS',
    'Registered',
    'PluginError',
    'UnknownPluginNameError',
    'detector_options',
    'get_plugin_manager',
    'get_detectors',
    'get_detector',
    'get_tagger',
    'list_detectors',
    'list_taggers',
    'list_plugins',
    'register_plugin',
    'unregister_plugin',
]

ENTRY_POINT_GROUP = 'imgutils_facequal'
PLUGINS_ENV = 'IMGUTILS_FACEQUAL_PLUGINS'
DEFAULT_PLUGINS = (
    'imgutils_facequal.plugins.builtin.imgutils_detectors',
    'imgutils_facequal.plugins.builtin.face_quality_tagger',
)


class UnknownPluginNameError(PluginError):
    """No detector or tagger is registered under the name asked for (a usage error: the message lists them)."""


def detector_options(**options: Any) -> Dict[str, Any]:
    """Options for a detector, without those left at ``None`` (the detector's own defaults).

    >>> detector_options(conf_threshold=0.3, iou_threshold=None)
    {'conf_threshold': 0.3}
    """
    return {key: value for key, value in options.items() if value is not None}


@dataclass(frozen=True)
class Registered:
    """A detector or tagger, with the plugin that registered it.

    Calling a detector checks what it returns: a list of ``(bbox, label, score, ...)`` with
    four finite coordinates, ``x1 > x0``, ``y1 > y0`` and a finite score. A detector that raises,
    or returns anything else, gives a :class:`DetectionError` naming it (the package's own
    errors, such as a model that cannot be had, pass through as they are).

    A detector's `batch` detects several images at once: through the ``detect_batch`` its plugin
    registered, else one call per image.
    """
    name: str
    function: Callable[..., Any]
    plugin: str
    description: str = ''
    kind: str = 'detector'
    batch_function: Optional[Callable[..., Any]] = None

    def __call__(self, *args, **kwargs):
        if self.kind != 'detector':
            return self.function(*args, **kwargs)
        return _checked_detections(self, self._run(self.function, *args, **kwargs))

    def batch(self, images: Sequence[Any], **options: Any) -> List[list]:
        """One list of detections per image, in order, each checked as a single call's is.

        With the plugin's ``detect_batch`` its detections are those of ``detect`` on each
        image (the plugin's promise); without one, ``detect`` runs image by image.
        """
        if self.kind != 'detector':
            raise TypeError(f'{self.kind.capitalize()} {self.name!r} has no batch form: call it with every crop.')
        images = list(images)
        if self.batch_function is None or not images:
            return [self(image, **options) for image in images]
        results = self._run(self.batch_function, images, **options)
        if not isinstance(results, (list, tuple)) or len(results) != len(images):
            count = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
            raise DetectionError(f'Detector {self.name!r} (plugin {self.plugin!r}) returned {count} results from '
                                 f'detect_batch for {len(images)} images; detect_batch returns one list of '
                                 f'detections per image, in order.')
        return [_checked_detections(self, detections) for detections in results]

    def _run(self, function: Callable[..., Any], *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FaceQualityError:
            raise
        except Exception as err:
            raise DetectionError(f'Detector {self.name!r} (plugin {self.plugin!r}) failed: '
                                 f'{type(err).__name__}: {err}') from err


def _checked_detections(detector: 'Registered', detections) -> list:
    def refuse(reason):
        raise DetectionError(f'Detector {detector.name!r} (plugin {detector.plugin!r}) returned {reason}; a detector '
                             f'returns [((x0, y0, x1, y1), label, score), ...].')
    if not isinstance(detections, (list, tuple)):
        refuse(f'{type(detections).__name__} {detections!r:.80}')
    for detection in detections:
        try:
            bbox, _, score = detection[:3]
            x0, y0, x1, y1 = (float(value) for value in bbox)
            score = float(score)
        except (TypeError, ValueError) as err:
            refuse(f'{detection!r:.80} ({err})')
        if not all(math.isfinite(value) for value in (x0, y0, x1, y1, score)):
            refuse(f'a detection with a NaN or infinite value, {detection!r:.80}')
        if x1 <= x0 or y1 <= y0:
            refuse(f'an empty or inverted box, {detection!r:.80}')
    return list(detections)


def _installed_entry_points():
    from importlib.metadata import entry_points
    found = entry_points()
    return found.select(group=ENTRY_POINT_GROUP) if hasattr(found, 'select') else found.get(ENTRY_POINT_GROUP, [])


def _load_external_plugins(manager: pluggy.PluginManager) -> None:
    """Every installed plugin, skipping with a warning one that fails to import; with
    ``IMGUTILS_FACEQUAL_PLUGINS`` set, only the distributions it names, and a failure is an error."""
    allowed = os.environ.get(PLUGINS_ENV)
    if allowed is None:
        for entry_point in _installed_entry_points():
            if manager.get_plugin(entry_point.name) is not None:
                continue
            try:
                plugin = entry_point.load()
            except Exception as err:  # noqa: BLE001 - one broken plugin must not break every command
                warnings.warn(
                    f'Skipping the imgutils-facequal plugin {entry_point.name!r} ({entry_point.value}): it fails to '
                    f'import ({type(err).__name__}: {err}). Fix or uninstall it; name its distribution in '
                    f'{PLUGINS_ENV} to see the whole error.', RuntimeWarning, stacklevel=2)
                continue
            manager.register(plugin, name=entry_point.name)
        return
    from importlib.metadata import distribution
    for name in filter(None, (item.strip() for item in allowed.split(','))):
        try:
            entry_points = distribution(name).entry_points
        except Exception as err:
            raise PluginError(
                f'{PLUGINS_ENV} names {name!r}, which is not an installed distribution ({err}). '
                f'Install it or remove it from {PLUGINS_ENV}.'
            ) from err
        for entry_point in entry_points:
            if entry_point.group == ENTRY_POINT_GROUP and manager.get_plugin(entry_point.name) is None:
                manager.register(entry_point.load(), name=entry_point.name)


@cached(per_process=False)  # a forked child keeps the plugins registered at run time
def get_plugin_manager() -> pluggy.PluginManager:
    """The project's plugin manager, with built-in and external plugins loaded (once)."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        manager.register(importlib.import_module(module_name), name=module_name)
    _load_external_plugins(manager)
    return manager


def _collect(hook_name: str) -> Dict[str, Registered]:
    manager = get_plugin_manager()
    found: Dict[str, Registered] = {}
    hook = getattr(manager.hook, hook_name)
    kind = hook_name[len('register_'):-1]
    for implementation in hook.get_hookimpls():
        plugin_name = implementation.plugin_name
        added: Dict[str, Registered] = {}

        def register(name: str, function: Callable[..., Any], description: str = '',
                     detect_batch: Optional[Callable[..., Any]] = None, _plugin: str = plugin_name,
                     _added: Dict[str, Registered] = added) -> None:
            if name in found or name in _added:
                raise PluginError(
                    f'Plugin {_plugin!r} registers {kind} {name!r}, '
                    f'which plugin {(found.get(name) or _added[name]).plugin!r} already registered. Pick another name.'
                )
            if detect_batch is not None and kind != 'detector':
                raise PluginError(f'Plugin {_plugin!r} gives {kind} {name!r} a detect_batch; only detectors take one '
                                  f'(a tagger gets every crop of an image at once already).')
            _added[name] = Registered(name, function, _plugin, description, kind, detect_batch)

        try:
            implementation.function(register=register)
        except PluginError:
            raise
        except Exception as err:  # noqa: BLE001 - one broken plugin must not break every command
            _skip_broken_hook(plugin_name, hook_name, err)
            continue  # none of what it registered before it failed
        found.update(added)
    return found


def _skip_broken_hook(plugin_name: str, hook_name: str, err: Exception) -> None:
    """A plugin whose hook raises is skipped with a warning, as one that fails to import is; with
    ``IMGUTILS_FACEQUAL_PLUGINS`` naming plugins (chosen, not merely installed) it is an error."""
    what = f'its {hook_name} hook raised {type(err).__name__}: {err}'
    if os.environ.get(PLUGINS_ENV, '').strip():
        raise PluginError(f'The imgutils-facequal plugin {plugin_name!r} is broken: {what}. Fix or uninstall it, or '
                          f'leave it out of {PLUGINS_ENV}.') from err
    warnings.warn(f'Skipping the {hook_name[len("register_"):]} of the imgutils-facequal plugin {plugin_name!r}: '
                  f'{what}. Fix or uninstall it.',
                  RuntimeWarning, stacklevel=4)


@cached(per_process=False)
def _registry(hook_name: str) -> Dict[str, Registered]:
    return _collect(hook_name)


def get_detectors() -> Dict[str, Registered]:
    """Every registered detector, by name."""
    return dict(_registry('register_detectors'))


def _get(kind: str, hook_name: str, name: str) -> Registered:
    registry = _registry(hook_name)
    try:
        return registry[name]
    except KeyError:
        raise UnknownPluginNameError(
            f'Unknown {kind} {name!r}. Registered {kind}s: {", ".join(sorted(registry)) or "none"}. '
            f'A plugin can add one (see "Writing a plugin").'
        ) from None


def get_detector(name: str) -> Registered:
    """The detector registered as ``name``; the error lists the registered ones."""
    return _get('detector', 'register_detectors', name)


def get_tagger(name: str) -> Registered:
    """The tagger registered as ``name``; the error lists the registered ones."""
    return _get('tagger', 'register_taggers', name)


def _listing(hook_name: str) -> List[Dict[str, str]]:
    return [{'name': item.name, 'plugin': item.plugin, 'description': item.description}
            for item in _registry(hook_name).values()]


def list_detectors() -> List[Dict[str, str]]:
    """``[{'name', 'plugin', 'description'}, ...]`` for every registered detector.

    >>> from imgutils_facequal import list_detectors
    >>> face = list_detectors()[0]
    >>> face['name'], face['plugin']
    ('face', 'imgutils_facequal.plugins.builtin.imgutils_detectors')
    """
    return _listing('register_detectors')


def list_taggers() -> List[Dict[str, str]]:
    """``[{'name', 'plugin', 'description'}, ...]`` for every registered tagger.

    >>> from imgutils_facequal import list_taggers
    >>> tagger = list_taggers()[0]
    >>> tagger['name'], tagger['plugin']
    ('face_quality', 'imgutils_facequal.plugins.builtin.face_quality_tagger')
    """
    return _listing('register_taggers')


def list_plugins() -> List[str]:
    """Names of the loaded plugins in the order they were registered, built-in ones first."""
    return [name for name, plugin in get_plugin_manager().list_name_plugin() if plugin is not None]


def register_plugin(plugin: Any, name: Optional[str] = None) -> None:
    """Register a plugin object or module at run time, without packaging it.

    Handy in a notebook or a script; an installed plugin needs no call (entry points).

    :param plugin: A module or object with ``@hookimpl`` functions.
    :param name: The name it is listed under (defaults to pluggy's choice).
    """
    get_plugin_manager().register(plugin, name=name)
    _registry.cache_clear()  # waits for a registry being collected, then drops it


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered by `register_plugin` (or any plugin, by name)."""
    get_plugin_manager().unregister(name=name)
    _registry.cache_clear()
