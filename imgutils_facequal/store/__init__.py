"""Saved scores, one home: their rows, their formats, their provenance, the writer and the reader.

Every command and the Python API read and write saved scores through here:

* `schema`: the rows (one per face, one per image without a face, one error row per
  unreadable file) and the conversions between rows and results;
* `formats`: one reader and one writer per format (JSON Lines, CSV, Parquet and its part
  files, the Parquet shards of Ray runs);
* `complete`: the one rule for "this image is complete", for resuming and for reading;
* `provenance`: what produced the rows, and which differences block a resume or a merge;
* `writer`: `ScoresWriter`, the resumable writer with its lock;
* `reader`: `read_scores`, which takes files, globs and folders of shards;
* `paths`: how paths are saved (``/`` on every system) and the key that tells images apart.

Example:

    >>> from imgutils_facequal.store import read_scores
    >>> from imgutils_facequal import kept_images
    >>> kept_images(read_scores('scores/').rows, min_label='good')  # doctest: +SKIP
    ['frames/0001.png', 'frames/0007.png']
"""
from .complete import complete_images
from .formats import FORMATS, format_for, read_provenance
from .paths import image_key, local_path, stored_path
from .provenance import Difference, describe_differences, differences, make_provenance, normalise_provenance, settings_mismatches
from .reader import SavedScores, read_scores, score_files
from .schema import (PER_IMAGE_COLUMNS, PROVENANCE_KEY, arrow_schema, flat_columns, flat_row, nested_row, records,
                     result_rows, rows_of, rows_table, scored_images)
from .writer import ScoresWriter

__all__ = ['FORMATS', 'PER_IMAGE_COLUMNS', 'PROVENANCE_KEY', 'Difference', 'SavedScores', 'ScoresWriter',
           'arrow_schema', 'complete_images', 'describe_differences', 'differences', 'flat_columns', 'flat_row', 'format_for', 'image_key',
           'local_path', 'make_provenance', 'nested_row', 'normalise_provenance', 'read_provenance', 'read_scores',
           'records', 'result_rows', 'rows_of', 'rows_table', 'score_files', 'scored_images', 'settings_mismatches',
           'stored_path']
