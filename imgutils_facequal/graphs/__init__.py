"""ONNX graphs: the rewrites that make published graphs fast, their checked cache, and what a check compares.

* ``onnx_rewrites``: exact rewrites of a published caformer graph, with the ``onnx`` package;
* ``cache``: a rewrite is made once, checked against the original and cached on disk;
* ``check``: the images and tolerance every check uses, and a graph's output as probabilities;
* ``torch_rewrites``: the same rewrites on a timm model before it is exported (torch only).
"""
