"""INT8 and calibration for the JRC edge detector (training side; heavy libraries imported lazily).

- :mod:`calibration.ranges`: activation ranges (entropy, percentile, min-max) from one pass.
- :mod:`calibration.qdq`: Q/DQ ONNX per target (``trt``: symmetric int8; ``cpu``: u8/s8).
- :mod:`calibration.sensitivity`: per-layer INT8 sensitivity.
- :mod:`calibration.report`, :mod:`calibration.speed`: accuracy against fp32, CPU speed.
- :mod:`calibration.quantize`: the CLI tying these together.

Calibration faces come from :mod:`training.calibration_set` (the runtime's own crop and preprocessing); the
TensorRT implicit calibrator lives with the engine builder (:mod:`export.trt_calibrator`).
"""
