"""INT8 and calibration for the JRC edge detector (training side; heavy libraries imported lazily).

- :mod:`calibration.ranges`: activation ranges (mse, entropy, percentile, min-max) from one pass.
- :mod:`calibration.qdq`: Q/DQ ONNX per target (``trt``: symmetric int8; ``cpu``: u8/s8).
- :mod:`calibration.cpu_graph`, :mod:`calibration.channel_pad`, :mod:`calibration.cpu_plan`: the
  CPU graph written for ONNX Runtime's integer kernels, and which layers run in int8 (measured).
- :mod:`calibration.kernels`: ONNX Runtime's profiler, split into int8 / float / Q/DQ / layout.
- :mod:`calibration.sensitivity`: per-layer INT8 sensitivity.
- :mod:`calibration.report`, :mod:`calibration.speed`: accuracy against fp32, CPU speed.
- :mod:`calibration.quantize`: the CLI tying these together.

Calibration faces come from :mod:`training.calibration_set` (the runtime's own crop and preprocessing); the
TensorRT implicit calibrator lives with the engine builder (:mod:`export.trt_calibrator`).
"""
