"""Words for counts in messages and pages."""

__all__ = ['plural']


def plural(count: int, noun: str) -> str:
    """``1 image``, ``2 images``.

    >>> plural(1, 'face'), plural(3, 'face')
    ('1 face', '3 faces')
    """
    return f'{count} {noun}{"" if count == 1 else "s"}'
