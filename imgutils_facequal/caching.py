"""One way to load something once: a thread-safe cache with fork-safe locks and no fork hook.

`cached` decorates a loader. Its values are kept in a `functools.lru_cache`; a lock held
around each call makes two threads that ask for one key load it once. The lock belongs to
the process that made it (found by ``os.getpid()``), so a forked child never waits on a lock
a thread of its parent held, and no ``os.register_at_fork`` hook is needed (it does not
exist on Windows). With ``per_process=True`` the values are kept per process too: a forked
child loads its own (sessions and threads do not survive a fork) and leaves its parent's
untouched, since freeing them in the child would wait on threads the child does not have.
"""
import functools
import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

__all__ = ['cached']

_F = TypeVar('_F', bound=Callable[..., Any])


def cached(*, per_process: bool, maxsize: Optional[int] = None) -> Callable[[_F], _F]:
    """Cache a loader: each key (its arguments) is loaded once, however many threads ask.

    :param per_process: Keep the values per process, so a forked child loads its own; else
        a child reuses what its parent loaded (its locks are its own either way).
    :param maxsize: Values kept per cache at most, least recently used dropped first
        (default: no limit).
    :return: A decorator. The decorated function has ``cache_info()`` and ``cache_clear()``,
        of `functools.lru_cache`, for the cache the calling process uses.

    >>> calls = []
    >>> @cached(per_process=True)
    ... def square(x):
    ...     calls.append(x)
    ...     return x * x
    >>> square(3), square(3), calls
    (9, 9, [3])
    >>> square.cache_info().currsize
    1
    >>> square.cache_clear()
    >>> square(3), calls
    (9, [3, 3])
    """
    def decorate(function: _F) -> _F:
        shared = functools.lru_cache(maxsize=maxsize)(function)
        processes: Dict[int, Tuple[threading.RLock, Callable[..., Any]]] = {}

        def here() -> Tuple[threading.RLock, Callable[..., Any]]:
            process = os.getpid()
            found = processes.get(process)
            if found is None:  # a new process: setdefault keeps the first of two threads racing here
                found = processes.setdefault(process, (
                    threading.RLock(), functools.lru_cache(maxsize=maxsize)(function) if per_process else shared))
            return found

        @functools.wraps(function)
        def load(*args, **kwargs):
            lock, cache = here()
            with lock:
                return cache(*args, **kwargs)

        def cache_clear() -> None:
            lock, cache = here()
            with lock:
                cache.cache_clear()

        load.cache_info = lambda: here()[1].cache_info()
        load.cache_clear = cache_clear
        return load  # type: ignore[return-value]

    return decorate
