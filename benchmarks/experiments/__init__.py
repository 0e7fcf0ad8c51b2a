"""One-off studies behind the decisions in ``benchmarks/NOTES.md``; run each from the
repository root as ``python -m benchmarks.experiments.NAME``. They build the variants
they compare from public pieces (onnxruntime, OpenVINO and torch directly); the package
offers none of them as an option."""
