"""INT8 and calibration for the JRC edge detector (training side; heavy libraries imported lazily).

- :mod:`calibration.data`: calibration/evaluation faces through the runtime's own preprocessing.
- :mod:`calibration.ranges`: activation ranges (entropy, percentile, min-max) from one pass.
- :mod:`calibration.qdq`: Q/DQ ONNX per target (``trt``: symmetric int8; ``cpu``: u8/s8).
- :mod:`calibration.sensitivity`: per-layer INT8 sensitivity.
- :mod:`calibration.report`, :mod:`calibration.speed`: accuracy against fp32, CPU speed.
- :mod:`calibration.quantize`: the CLI tying these together.
- :mod:`calibration.trt_calibrator`: TensorRT 8.5-10.x implicit calibrator with a keyed cache.
"""
