"""Benchmarks and experiments, run from the repository root as modules.

``python -m benchmarks.performance`` is the run behind ``docs/performance.md``; the
one-off studies live in ``benchmarks/experiments`` (``python -m benchmarks.experiments.NAME``).
They import the tests' builders (``tests.support``) as a package, so they run from the
repository root with no path edits. What earlier runs found is in ``benchmarks/NOTES.md``.
"""
