"""Near-duplicates: images whose perceptual hashes lie within a Hamming distance, grouped.

``score`` records each image's perceptual hash as it decodes it (the ``phash`` column:
``imagehash.phash`` with its default 8 x 8 DCT, 64 bits written as 16 hex digits), so
grouping needs no image and no model. `duplicate_groups` joins two images when their
hashes differ in at most ``distance`` bits, and joins groups that share an image (so a
slow pan, whose first and last frames differ more, stays one group).

It never compares all pairs. By the pigeonhole principle, two 64-bit hashes that differ in
at most ``d`` bits, cut into ``m > d`` blocks, agree exactly on at least ``m - d`` of them;
so the hashes are sorted by each combination of ``m - d`` blocks (the parameters that
leave the fewest chance candidates are chosen), only hashes equal there are compared, and
the pairs within ``d`` are joined (connected components, `scipy.sparse.csgraph`).
``benchmarks/dedup.py`` times 1,000,000 hashes drawn in shots of 1 to 40 frames: 155 s at
distance 8, 21 s at distance 4 on a shared 2-core Intel Xeon guest; the pairs within a shot,
which share most blocks, are what costs.

`DEFAULT_DEDUP_DISTANCE` was measured on drawn frames (``benchmarks/dedup.py --measure``):
consecutive frames of one shot (panned 3 px and zoomed 0.5 % a frame, with noise, through
JPEG at quality 75) lie 0 to 12 bits apart, 99 % of them within 8; frames of different
shots 12 bits or more. At 8 no group mixes two shots and 38 of 40 shots are one group.
"""
import itertools
import math
from typing import List, Optional, Sequence, Tuple

__all__ = ['DEFAULT_DEDUP_DISTANCE', 'HASH_BITS', 'duplicate_groups', 'fill_hashes', 'hash_distance', 'parse_hash']

#: Hashes at most this many bits apart are near-duplicates, unless the user says otherwise
#: (measured, see the module docs).
DEFAULT_DEDUP_DISTANCE = 8
#: Bits in a perceptual hash (``imagehash.phash`` with its default ``hash_size`` 8).
HASH_BITS = 64


def parse_hash(text: Optional[str]) -> Optional[int]:
    """A perceptual hash as written (16 hex digits) as an integer; ``None`` for none.

    :raises ValueError: When it is not 16 hex digits.

    >>> parse_hash('00000000000000ff')
    255
    """
    if text is None or text == '':
        return None
    text = str(text).strip()
    if len(text) != HASH_BITS // 4:
        raise ValueError(f'a perceptual hash is {HASH_BITS // 4} hex digits (imagehash.phash as str), not {text!r}.')
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f'a perceptual hash is {HASH_BITS // 4} hex digits (imagehash.phash as str), '
                         f'not {text!r}.') from None


def hash_distance(first: str, second: str) -> int:
    """The Hamming distance between two hashes as written.

    >>> hash_distance('0000000000000000', '0000000000000013')
    3
    """
    return bin(parse_hash(first) ^ parse_hash(second)).count('1')


def _popcount(values):
    """Bits set in each uint64 (numpy 1 has no bit_count)."""
    import numpy as np
    values = values - ((values >> np.uint64(1)) & np.uint64(0x5555555555555555))
    values = (values & np.uint64(0x3333333333333333)) + ((values >> np.uint64(2)) & np.uint64(0x3333333333333333))
    values = (values + (values >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (values * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _blocks(count: int) -> List[Tuple[int, int]]:
    """``count`` blocks of the 64 bits as ``(shift, width)``, widths as even as they go."""
    widths = [HASH_BITS // count + (1 if index < HASH_BITS % count else 0) for index in range(count)]
    shifts = [sum(widths[:index]) for index in range(count)]
    return list(zip(shifts, widths))


def _plan(hashes: int, distance: int) -> Tuple[int, int]:
    """``(blocks, blocks that must agree)`` that leave the fewest chance candidates for this many hashes."""
    best = None
    for agree in range(1, 6):
        blocks = distance + agree
        if blocks > HASH_BITS:
            break
        combinations = math.comb(blocks, agree)
        key_bits = agree * (HASH_BITS // blocks)
        chance_pairs = hashes * hashes / 2.0 / 2.0 ** key_bits
        cost = combinations * (hashes * 8 + chance_pairs)  # a sort per combination, a comparison per candidate
        if best is None or cost < best[0]:
            best = (cost, blocks, agree)
    return best[1], best[2]


def _candidate_pairs(keys):
    """Pairs ``(i, j)`` of positions whose keys are equal (keys sorted), without an all-pairs loop:
    offset by offset, only the positions still in a run of equal keys are looked at."""
    import numpy as np
    order = np.argsort(keys, kind='stable')
    ordered = keys[order]
    firsts, seconds = [], []
    active = np.nonzero(ordered[:-1] == ordered[1:])[0]
    offset = 1
    while active.size:
        firsts.append(order[active])
        seconds.append(order[active + offset])
        offset += 1
        active = active[active + offset < ordered.size]
        active = active[ordered[active] == ordered[active + offset]]
    if not firsts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def duplicate_groups(hashes: Sequence[Optional[str]], distance: int) -> List[List[int]]:
    """Groups of images whose perceptual hashes lie within ``distance`` bits, joined transitively.

    :param hashes: One hash per image (16 hex digits, as the ``phash`` column holds it);
        ``None`` for an image without one, which is in no group.
    :param distance: The largest Hamming distance (0 to 63) that makes two images near-duplicates.
    :return: Groups of two images or more, as indices into ``hashes`` in input order; the
        groups in the order of their first image.
    :raises ValueError: On a hash that is not 16 hex digits (naming its position) or a distance out of range.

    >>> duplicate_groups(['ffff000000000000', None, 'ffff000000000001', '0000ffffffff0000'], 2)
    [[0, 2]]
    """
    import numpy as np
    if isinstance(distance, bool) or not isinstance(distance, (int, np.integer)) or not 0 <= distance < HASH_BITS:
        raise ValueError(f'distance must be a whole number of bits from 0 to {HASH_BITS - 1}; got {distance!r}.')
    distance = int(distance)
    positions, values = [], []
    for position, text in enumerate(hashes):
        try:
            value = parse_hash(text)
        except ValueError as err:
            raise ValueError(f'hash {position}: {err}') from None
        if value is not None:
            positions.append(position)
            values.append(value)
    if len(values) < 2:
        return []
    positions = np.asarray(positions, dtype=np.int64)
    unique, inverse = np.unique(np.asarray(values, dtype=np.uint64), return_inverse=True)
    firsts, seconds = [], []
    if distance > 0 and unique.size > 1:
        blocks, agree = _plan(unique.size, distance)
        parts = _blocks(blocks)
        for combination in itertools.combinations(parts, agree):
            keys = np.zeros(unique.size, dtype=np.uint64)
            for shift, width in combination:
                block = (unique >> np.uint64(shift)) & np.uint64((1 << width) - 1)
                keys = (keys << np.uint64(width)) | block
            first, second = _candidate_pairs(keys)
            near = _popcount(unique[first] ^ unique[second]) <= distance
            firsts.append(first[near])
            seconds.append(second[near])
    # one node per distinct hash, then one per image; images join the node of their hash
    count = unique.size + positions.size
    images = np.arange(unique.size, count, dtype=np.int64)
    first = np.concatenate(firsts + [images])
    second = np.concatenate(seconds + [inverse.astype(np.int64)])
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    graph = coo_matrix((np.ones(first.size, dtype=np.int8), (first, second)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    image_labels = labels[unique.size:]
    sizes = np.bincount(image_labels)
    grouped = sizes[image_labels] >= 2
    order = np.argsort(image_labels[grouped], kind='stable')
    members = positions[grouped][order]
    member_labels = image_labels[grouped][order]
    cuts = np.nonzero(np.diff(member_labels))[0] + 1
    groups = [group.tolist() for group in np.split(members, cuts)] if members.size else []
    groups.sort(key=lambda group: group[0])
    return groups


def fill_hashes(results, on_image=None) -> int:
    """Compute the perceptual hash of each readable result that has none, from its image file
    (scores written before hashes were recorded, or without the ``dedup`` extra).

    :param results: `imgutils_facequal.ImageResult` objects; their ``phash`` is set in place.
    :param on_image: Called with each result once looked at (for progress).
    :return: How many hashes were computed; an image that no longer exists or cannot be
        read keeps none (it is then in no group).
    :raises ImportError: Without imagehash, saying how to install it.
    """
    from ..errors import ImageLoadError, install_hint
    from ..images import load_rgb_image
    from ..pipeline import perceptual_hash
    missing = [result for result in results if result.error is None and getattr(result, 'phash', None) is None]
    if not missing:
        return 0
    try:
        import imagehash  # noqa: F401
    except ImportError:
        raise ImportError(f'Grouping near-duplicates needs perceptual hashes; the scores hold none for '
                          f'{len(missing)} images, and computing them needs imagehash: {install_hint("dedup")}.'
                          ) from None
    computed = 0
    for result in missing:
        try:
            result.phash = perceptual_hash(load_rgb_image(result.image.path))
            computed += 1
        except (ImageLoadError, OSError):
            pass
        if on_image is not None:
            on_image(result)
    return computed
