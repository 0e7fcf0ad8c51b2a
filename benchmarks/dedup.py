"""Near-duplicates: how far apart the perceptual hashes of one shot's frames lie, and how long
grouping 1,000,000 hashes takes.

    python -m benchmarks.dedup              # time duplicate_groups on 1,000,000 hashes
    python -m benchmarks.dedup --measure    # distances within and between drawn shots

The timing draws hashes as a frame-heavy dataset looks: shots of 1 to 40 frames, each frame
a few bits from the one before (a pan), the rest of the hashes unrelated. The measure draws
shots of coloured shapes on a gradient, each frame panned, zoomed, noised and saved as JPEG,
and hashes them as ``score`` does (``imagehash.phash``): the distances between consecutive
frames of one shot, and the smallest between frames of different shots, are what
`imgutils_facequal.curate.DEFAULT_DEDUP_DISTANCE` was chosen from.
"""
import argparse
import io
import platform
import random
import time


def clustered_hashes(count: int, seed: int = 0, max_shot: int = 40, step_bits: int = 3):
    """``count`` hashes (16 hex digits) in shots of 1 to ``max_shot`` frames, each frame up to
    ``step_bits`` bits from the one before; and how many shots."""
    import numpy as np
    rng = np.random.default_rng(seed)
    hashes = np.empty(count, dtype=np.uint64)
    filled = shots = 0
    while filled < count:
        size = min(int(rng.integers(1, max_shot + 1)), count - filled)
        value = np.uint64(rng.integers(0, 2 ** 63, dtype=np.int64)) * np.uint64(2) + np.uint64(rng.integers(0, 2))
        for index in range(size):
            hashes[filled + index] = value
            for _ in range(int(rng.integers(0, step_bits + 1))):
                value ^= np.uint64(1) << np.uint64(int(rng.integers(0, 64)))
        filled += size
        shots += 1
    return [f'{int(value):016x}' for value in hashes], shots


def time_grouping(count: int, distance: int) -> None:
    from imgutils_facequal.curate import duplicate_groups
    hashes, shots = clustered_hashes(count)
    started = time.perf_counter()
    groups = duplicate_groups(hashes, distance)
    seconds = time.perf_counter() - started
    grouped = sum(len(group) for group in groups)
    print(f'{count:,} hashes ({shots:,} drawn shots), distance {distance}: {len(groups):,} groups of {grouped:,} '
          f'images in {seconds:.2f} s')


def shot_frames(seed: int, frames: int, size=(320, 240)):
    """One drawn shot: coloured ellipses and polygons on a gradient, panned 3 px a frame, zoomed
    0.5 % a frame, with noise, through JPEG at quality 75."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = random.Random(seed)
    width, height = size[0] + 8 * frames, size[1] + 8 * frames
    canvas = Image.new('RGB', (width, height))
    top, bottom = [rng.randrange(256) for _ in range(3)], [rng.randrange(256) for _ in range(3)]
    pixels = np.linspace(top, bottom, height)[:, None, :].repeat(width, axis=1).astype('uint8')
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randrange(5, 12)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x, y = rng.randrange(width), rng.randrange(height)
        w, h = rng.randrange(20, width // 2), rng.randrange(20, height // 2)
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        else:
            draw.polygon([(x + rng.randrange(w), y + rng.randrange(h)) for _ in range(5)], fill=colour)
    noise = np.random.default_rng(seed)
    for index in range(frames):
        zoom = 1 + 0.005 * index
        w, h = int(size[0] / zoom), int(size[1] / zoom)
        x, y = 3 * index, 2 * index
        frame = canvas.crop((x, y, x + w, y + h)).resize(size)
        array = np.asarray(frame).astype('float32') + noise.normal(0, 4, (size[1], size[0], 3))
        frame = Image.fromarray(array.clip(0, 255).astype('uint8'))
        buffer = io.BytesIO()
        frame.save(buffer, 'JPEG', quality=75)
        yield Image.open(io.BytesIO(buffer.getvalue())).convert('RGB')


def measure(shots: int, frames: int) -> None:
    import imagehash
    from imgutils_facequal.curate import hash_distance
    hashed = [[str(imagehash.phash(frame)) for frame in shot_frames(seed, frames)] for seed in range(shots)]
    consecutive = [hash_distance(shot[i], shot[i + 1]) for shot in hashed for i in range(len(shot) - 1)]
    within = [hash_distance(a, b) for shot in hashed for i, a in enumerate(shot) for b in shot[i + 1:]]
    between = [hash_distance(a, b) for s, shot in enumerate(hashed) for other in hashed[s + 1:]
               for a in shot for b in other]
    print(f'{shots} shots of {frames} frames: consecutive frames {min(consecutive)} to {max(consecutive)} bits apart '
          f'(mean {sum(consecutive) / len(consecutive):.1f}); any two of one shot up to {max(within)}; frames of '
          f'different shots {min(between)} bits apart at least (mean {sum(between) / len(between):.1f})')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=1_000_000)
    parser.add_argument('--distance', type=int, default=None)
    parser.add_argument('--measure', action='store_true')
    parser.add_argument('--shots', type=int, default=40)
    parser.add_argument('--frames', type=int, default=10)
    args = parser.parse_args()
    print(f'{platform.processor() or platform.machine()}, {platform.python_version()}')
    if args.measure:
        measure(args.shots, args.frames)
        return
    from imgutils_facequal.curate import DEFAULT_DEDUP_DISTANCE
    time_grouping(args.count, DEFAULT_DEDUP_DISTANCE if args.distance is None else args.distance)


if __name__ == '__main__':
    main()
