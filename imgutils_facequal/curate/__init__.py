"""Curating a dataset from saved scores, with no model: which images and faces a threshold keeps, and
putting them in a folder without ever losing or half-writing a file.

* `selection`: what a threshold keeps (`kept_images`, `kept_faces`), and `threshold_table`,
  how many images and faces each class and quality step keeps, to choose one.
* `naming`: names under an output folder that no two inputs share.
* `placement`: `place_file`, copy, hard-link or move that never overwrites; sidecars.
* `filter`: `filter_images` and the `FolderFilter` behind it and the ``filter`` command.

Everything works on the rows of saved scores (`imgutils_facequal.store.read_scores`), or
on a pandas DataFrame of them, nested or flat.
"""
from .filter import FilterSummary, FolderFilter, Outcome, filter_images
from .naming import common_root, output_paths, output_stem, output_stems
from .placement import DEFAULT_SIDECARS, MODES, find_sidecars, place_file, write_manifest, write_new_file
from .selection import (DEFAULT_QUALITY_STEPS, ThresholdRow, ThresholdTable, face_passes, image_passes, kept_faces,
                        kept_images, table_of, threshold_table)

__all__ = ['DEFAULT_SIDECARS', 'DEFAULT_QUALITY_STEPS', 'MODES', 'ThresholdRow', 'ThresholdTable', 'FilterSummary',
           'FolderFilter', 'Outcome', 'face_passes', 'image_passes', 'kept_images', 'kept_faces', 'threshold_table',
           'table_of', 'place_file', 'write_new_file', 'find_sidecars', 'output_stem', 'output_stems',
           'output_paths', 'common_root', 'filter_images', 'write_manifest']
