"""Export and inference: the ONNX contract and its self-checks (:mod:`export.onnx_export`), one backend interface
with ONNX Runtime / torch / TensorRT / teacher implementations (:mod:`export.backends`), the TensorRT engine cache
(:mod:`export.engine_cache`) and the latency benchmark (:mod:`export.bench`). See docs/export.md.

Importing this package imports nothing heavy; each module loads torch / onnx / onnxruntime / tensorrt itself.
"""
