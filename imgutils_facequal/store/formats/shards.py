"""A folder of Parquet shards, as ``score --ray`` writes it: ``part-<run>-<n>.parquet``, each written whole
under a hidden name, then renamed.

A shard holds the rows of whole images (an actor scores an image at once), with the provenance
and the actors that scored it in its metadata. Readers of the folder (this package, pyarrow,
Ray, pandas) skip names that start with ``.`` or ``_``. A folder holding other Parquet files
is refused (`check_shard_folder`) before anything in it is set aside or rewritten.
"""
import io
import json
import os
import re
import time
import uuid
import warnings
from typing import Any, Callable, Dict, List, Optional, Set

from ...atomic import replace_file
from ..complete import complete_images
from ..paths import image_key, path_from_text
from ..schema import PROVENANCE_KEY

__all__ = ['ACTOR_KEY', 'IMAGES_PER_SHARD', 'shard_files', 'check_shard_folder', 'set_aside_unreadable',
           'drop_error_rows', 'completed', 'ShardWriter']

#: The Parquet metadata key of the actors that scored a shard (a JSON list): process, node, threads, GPUs.
ACTOR_KEY = b'imgutils_facequal_actor'
#: Images per shard.
IMAGES_PER_SHARD = 4096
_SHARD_NAME = re.compile(r'part-\d{8}-\d{6}-[0-9a-f]{8}-\d{5}\.parquet')


def shard_files(folder: str) -> List[str]:
    """The visible Parquet files of a folder, in name order."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith('.parquet') and not name.startswith(('.', '_'))]


def check_shard_folder(folder: str) -> None:
    """Refuse a folder that holds Parquet files ``score --ray`` did not write (by their names, or shards
    without the package's provenance): a resume would set them aside or rewrite them.

    :raises ValueError: Naming the files, and saying what to do.
    """
    import pyarrow.parquet as pq
    foreign = []
    for path in shard_files(folder):
        if not _SHARD_NAME.fullmatch(os.path.basename(path)):
            foreign.append(path)
            continue
        try:
            metadata = pq.read_schema(path).metadata or {}
        except Exception:  # a torn shard of ours: set aside on resume
            continue
        if PROVENANCE_KEY not in metadata:
            foreign.append(path)
    if foreign:
        shown = ', '.join(repr(os.path.basename(path)) for path in foreign[:5])
        raise ValueError(f'{folder!r} holds Parquet files that score --ray did not write ({shown}'
                         f'{f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""}); they are left as they '
                         f'are. Give --output an empty folder, or one that only score --ray has written to.')


def set_aside_unreadable(folder: str) -> List[str]:
    """Rename the shards that cannot be read (a run killed while writing one) ``.<name>.incomplete``, hidden
    from readers, with a warning; the readable shards, in order."""
    import pyarrow.parquet as pq
    readable = []
    for path in shard_files(folder):
        try:
            pq.read_schema(path)
        except Exception as err:  # a torn file: no footer, or a footer of another file
            aside = f'.{os.path.basename(path)}.incomplete'
            os.replace(path, os.path.join(folder, aside))
            warnings.warn(f'{path} cannot be read ({type(err).__name__}: {err}); it was set aside as {aside} '
                          f'and its images will be scored again.', UserWarning, stacklevel=2)
            continue
        readable.append(path)
    return readable


def drop_error_rows(path: str) -> bool:
    """Rewrite a shard without its error rows (those images are to be scored again); whether it had any."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    failed = pc.is_valid(table.column('error'))
    if not pc.any(failed).as_py():
        return False
    buffer = io.BytesIO()
    pq.write_table(table.filter(pc.invert(failed)), buffer)
    replace_file(path, buffer.getvalue())
    return True


def completed(folder: str, key: Callable[[str], str] = image_key) -> Set[str]:
    """The images complete in a folder of shards (by ``key``, as for
    `imgutils_facequal.store.complete.complete_images`), ready for a resume: unreadable shards are set
    aside, and error rows leave their shards (each rewritten whole), so the images that failed are scored
    again and every image stays in the folder once."""
    import pyarrow.parquet as pq
    if not os.path.isdir(folder):
        return set()
    rows = []
    for path in set_aside_unreadable(folder):
        drop_error_rows(path)
        rows.extend(pq.read_table(path, columns=['image', 'face', 'faces', 'error']).to_pylist())
    return complete_images(rows, key=lambda image: key(path_from_text(image)))[0]


class ShardWriter:
    """Blocks of rows (``pyarrow`` tables with the provenance in their metadata) into whole shards."""

    def __init__(self, folder: str, where: Optional[Dict[str, Any]] = None):
        """:param where: Provenance fields the writer knows and the actors cannot (``working_dir`` and
            ``roots``: the actors run in folders of their own), filled in where the actors left them ``None``."""
        self.folder = folder
        self.where = where or {}
        self.run = f'{time.strftime("%Y%m%d-%H%M%S")}-{uuid.uuid4().hex[:8]}'
        self.blocks: list = []
        self.images = 0
        self.count = 0

    def add(self, table, images: int) -> None:
        self.blocks.append(table)
        self.images += images
        if self.images >= IMAGES_PER_SHARD:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        if not self.blocks:
            return
        actors = []
        for block in self.blocks:
            for actor in json.loads((block.schema.metadata or {}).get(ACTOR_KEY, b'[]')):
                if actor not in actors:
                    actors.append(actor)
        provenance = json.loads(self.blocks[0].schema.metadata[PROVENANCE_KEY])
        provenance.update({name: value for name, value in self.where.items() if provenance.get(name) is None})
        metadata = {PROVENANCE_KEY: json.dumps(provenance).encode('utf-8'),
                    ACTOR_KEY: json.dumps(actors).encode('utf-8')}
        table = pa.concat_tables([block.replace_schema_metadata(None) for block in self.blocks])
        target = os.path.join(self.folder, f'part-{self.run}-{self.count:05d}.parquet')
        replace_file(target, lambda staging: pq.write_table(table.replace_schema_metadata(metadata), staging))
        self.blocks, self.images = [], 0
        self.count += 1
