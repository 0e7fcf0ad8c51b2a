"""Curating a dataset from saved scores, with no model: which images and faces a threshold keeps, and
putting them in a folder without ever losing or half-writing a file.

* `selection`: `Thresholds` (class, quality value, face filters, near-duplicate distance),
  what they keep (`kept_images`, `kept_faces`, `select_images`), and `threshold_table`,
  how many images and faces each class and quality step keeps, to choose one.
* `dedup`: `duplicate_groups`, images whose perceptual hashes are near, without all pairs.
* `decisions`: ``decisions.json`` from the report (thresholds and overrides), read and applied.
* `naming`: names under an output folder that no two inputs share.
* `placement`: `place_file`, copy, hard-link or move that never overwrites; sidecars.
* `filter`: `filter_images` and the `FolderFilter` behind it and the ``filter`` command.

Everything works on the rows of saved scores (`imgutils_facequal.store.read_scores`), or
on a pandas DataFrame of them, nested or flat.
"""
from .decisions import (Decisions, DecisionsError, apply_decisions, check_decisions, decided_images, make_decisions,
                        read_decisions, scores_fingerprint, write_decisions)
from .dedup import DEFAULT_DEDUP_DISTANCE, duplicate_groups, hash_distance
from .filter import FilterSummary, FolderFilter, Outcome, filter_images
from .naming import common_root, output_paths, output_stem, output_stems
from .placement import DEFAULT_SIDECARS, MODES, find_sidecars, place_file, write_manifest, write_new_file
from .selection import (DEFAULT_QUALITY_STEPS, FACE_FILTERS, Selection, ThresholdRow, ThresholdTable, Thresholds,
                        face_passes, face_size, image_passes, kept_faces, kept_images, select_images, table_of,
                        threshold_table)

__all__ = ['DEFAULT_SIDECARS', 'DEFAULT_QUALITY_STEPS', 'MODES', 'ThresholdRow', 'ThresholdTable', 'FilterSummary',
           'FolderFilter', 'Outcome', 'face_passes', 'image_passes', 'kept_images', 'kept_faces', 'threshold_table',
           'table_of', 'place_file', 'write_new_file', 'find_sidecars', 'output_stem', 'output_stems',
           'output_paths', 'common_root', 'filter_images', 'write_manifest', 'FACE_FILTERS', 'Thresholds', 'Selection',
           'face_size', 'select_images', 'DEFAULT_DEDUP_DISTANCE', 'duplicate_groups', 'hash_distance', 'Decisions',
           'DecisionsError', 'scores_fingerprint', 'make_decisions', 'read_decisions', 'write_decisions',
           'check_decisions', 'decided_images', 'apply_decisions']
