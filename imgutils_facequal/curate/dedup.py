"""Near-duplicates: images whose perceptual hashes lie within a Hamming distance, grouped.

``score`` records each image's perceptual hash as it decodes it (the ``phash`` column:
``imagehash.phash`` with its default 8 x 8 DCT, 64 bits written as 16 hex digits), so
grouping needs no image and no model. `duplicate_groups` joins two images when their
hashes differ in at most ``distance`` bits, and joins groups that share an image (so a
slow pan, whose first and last frames differ more, stays one group).

It never compares all pairs. By the pigeonhole principle, two 64-bit hashes that differ in
at most ``d`` bits, cut into ``m > d`` blocks, agree exactly on at least ``m - d`` of them;
so the hashes are sorted by each combination of ``m - d`` blocks (the parameters that cost
least are chosen), and only hashes equal there, and not yet in one group, are compared
(multi-index hashing). The frames of a shot, joined by the first combinations, cost almost
nothing in the others. ``python -m benchmarks.dedup`` times 1,000,000 hashes drawn in shots
of 1 to 40 frames, on a shared 2-core Intel Xeon guest: 6.8 s at distance 6 (the default),
3.8 s at 4, 47 s at 8 (the work grows steeply with the distance).

`DEFAULT_DEDUP_DISTANCE` was measured on drawn frames (``python -m benchmarks.dedup --measure``:
40 shots of 10 frames, each frame panned 3 px and zoomed 0.5 %, with noise, through JPEG at
quality 75): consecutive frames of one shot lie 0 to 12 bits apart, 98 % of them within 6;
frames of different shots 12 bits or more. At 6 no group mixes two shots, and the 40 shots
make 44 groups (36 shots one group each); 8 joins a little more (42 groups) with half the
margin to other shots and seven times the time.
"""
import importlib.util
import itertools
import math
from typing import List, Optional, Sequence, Tuple

__all__ = ['DEFAULT_DEDUP_DISTANCE', 'HASH_BITS', 'duplicate_groups', 'fill_hashes', 'hash_distance', 'parse_hash']

#: Hashes at most this many bits apart are near-duplicates, unless the user says otherwise
#: (measured, see the module docs).
DEFAULT_DEDUP_DISTANCE = 6
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


def _parse_all(hashes: Sequence[Optional[str]]):
    """``(positions, values)`` of the hashes given (a uint64 each), parsed all at once.

    :raises ValueError: Naming the position of the first hash that is not 16 hex digits.
    """
    import numpy as np
    hashes = list(hashes)
    positions = [position for position, text in enumerate(hashes) if text is not None and text != '']
    texts = [hashes[position] for position in positions]
    digits = None
    if all(isinstance(text, str) for text in texts) and all(len(text) == HASH_BITS // 4 for text in texts):
        try:
            raw = np.frombuffer(''.join(texts).encode('ascii'), dtype=np.uint8).reshape(-1, HASH_BITS // 4)
            table = np.full(256, 255, dtype=np.uint8)
            for value, char in enumerate('0123456789abcdef'):
                table[ord(char)] = table[ord(char.upper())] = value
            digits = table[raw]
        except UnicodeEncodeError:
            digits = None
    if digits is None or (digits == 255).any():
        for position in positions:  # the first bad one, named
            try:
                parse_hash(hashes[position])
            except ValueError as err:
                raise ValueError(f'hash {position}: {err}') from None
    values = np.zeros(len(texts), dtype=np.uint64)
    for column in range(HASH_BITS // 4):
        values = (values << np.uint64(4)) | digits[:, column].astype(np.uint64)
    return np.asarray(positions, dtype=np.int64), values


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
    """``(blocks, blocks that must agree)`` that cost least for this many hashes: a sort per combination
    of blocks, and a comparison per pair that agrees on one by chance."""
    best = None
    for agree in range(1, 6):
        blocks = distance + agree
        if blocks > HASH_BITS:
            break
        combinations = math.comb(blocks, agree)
        key_bits = agree * (HASH_BITS // blocks)
        chance_pairs = hashes * hashes / 2.0 / 2.0 ** key_bits
        cost = combinations * (hashes + chance_pairs)  # measured: a pair costs about what a hash does
        if best is None or cost < best[0]:
            best = (cost, blocks, agree)
    return best[1], best[2]


def _run_pairs(ordered):
    """Pairs ``(i, j)``, ``i < j``, of positions in sorted ``ordered`` that hold equal values, without an
    all-pairs loop: offset by offset, only the positions still in a run of equal values are looked at."""
    import numpy as np
    firsts, seconds = [], []
    active = np.flatnonzero(ordered[:-1] == ordered[1:])
    offset = 1
    while active.size:
        firsts.append(active)
        seconds.append(active + offset)
        offset += 1
        active = active[active + offset < ordered.size]
        active = active[ordered[active] == ordered[active + offset]]
    if not firsts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def _merge(labels, firsts, seconds):
    """Labels after joining the components ``firsts[i]`` and ``seconds[i]``: each node takes the
    smallest label of its new component."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    nodes = np.unique(np.concatenate([firsts, seconds]))
    local = coo_matrix((np.ones(firsts.size, dtype=np.int8),
                        (np.searchsorted(nodes, firsts), np.searchsorted(nodes, seconds))),
                       shape=(nodes.size, nodes.size))
    count, component = connected_components(local, directed=False)
    smallest = np.full(count, labels.size, dtype=np.int64)
    np.minimum.at(smallest, component, nodes)
    remap = np.arange(labels.size, dtype=np.int64)
    remap[nodes] = smallest[component]
    return remap[labels]


def _components(unique, distance: int):
    """A component label per distinct hash: hashes within ``distance`` share one, transitively.

    Per combination of blocks, only the runs of equal keys that hold two components or more are
    looked at, and only pairs across components compared: the frames of a shot, joined by the
    first combinations, cost nothing in the others."""
    import numpy as np
    labels = np.arange(unique.size, dtype=np.int64)
    if distance == 0 or unique.size < 2:
        return labels
    blocks, agree = _plan(unique.size, distance)
    pending, waiting = [], 0
    for combination in itertools.combinations(_blocks(blocks), agree):
        keys = np.zeros(unique.size, dtype=np.uint64)
        for shift, width in combination:
            keys = (keys << np.uint64(width)) | ((unique >> np.uint64(shift)) & np.uint64((1 << width) - 1))
        if sum(width for _, width in combination) <= 32:  # a narrower sort
            keys = keys.astype(np.uint32)
        members = np.argsort(keys)
        ordered = keys[members]
        component = labels[members]
        # a run of equal keys holds two components when two neighbours in it differ
        same_key = ordered[1:] == ordered[:-1]
        run = np.cumsum(np.r_[False, ~same_key])
        mixed = np.zeros(run[-1] + 1, dtype=bool)
        mixed[run[1:][same_key & (component[1:] != component[:-1])]] = True
        if not mixed.any():
            continue
        keep = mixed[run]
        members, ordered, component = members[keep], ordered[keep], component[keep]
        first, second = _run_pairs(ordered)
        across = component[first] != component[second]
        first, second = members[first[across]], members[second[across]]
        near = _popcount(unique[first] ^ unique[second]) <= distance
        pending.append((labels[first[near]], labels[second[near]]))
        waiting += int(near.sum())
        if waiting > unique.size // 64:  # few joins left unmerged only cost a few comparisons more
            labels = _merge(labels, *(np.concatenate(side) for side in zip(*pending)))
            pending, waiting = [], 0
    if waiting:
        labels = _merge(labels, *(np.concatenate(side) for side in zip(*pending)))
    return labels


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
    positions, values = _parse_all(hashes)
    if values.size < 2:
        return []
    unique, inverse = np.unique(values, return_inverse=True)
    image_labels = _components(unique, int(distance))[inverse.ravel()]
    sizes = np.bincount(image_labels)
    grouped = sizes[image_labels] >= 2
    order = np.argsort(image_labels[grouped], kind='stable')
    members = positions[grouped][order]
    cuts = np.flatnonzero(np.diff(image_labels[grouped][order])) + 1
    groups = [group.tolist() for group in np.split(members, cuts)] if members.size else []
    groups.sort(key=lambda group: group[0])
    return groups


def fill_hashes(results) -> int:
    """Compute the perceptual hash of each readable result that has none, from its image file
    (scores written before hashes were recorded, or without the ``dedup`` extra).

    :param results: `imgutils_facequal.ImageResult` objects; their ``phash`` is set in place.
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
    if importlib.util.find_spec('imagehash') is None:
        raise ImportError(f'Grouping near-duplicates needs perceptual hashes; the scores hold none for '
                          f'{len(missing)} images, and computing them needs imagehash: {install_hint("dedup")}.')
    computed = 0
    for result in missing:
        try:
            result.phash = perceptual_hash(load_rgb_image(result.image.path))
            computed += 1
        except (ImageLoadError, OSError):
            pass
    return computed
