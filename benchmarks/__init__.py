"""Benchmarks of the JRC edge detector (training side: may import torch, lazily).

- ``python -m benchmarks.latency``: classifier latency/throughput/memory per artifact and batch,
  interleaved; runtime overhead vs bare onnxruntime, full/detect ratio, speed-up over PyTorch eager.
- ``python -m benchmarks.pipeline``: end-to-end frames/s and per-stage split, with and without
  tracking, vs classifier-only and vs a research-style loop.
- ``python -m benchmarks.accuracy``: AUC beside latency and throughput per artifact.
- ``python -m benchmarks.hswish_bound``: the fastest a v3 INT8 model could run on ONNX Runtime if its
  hard-swish took one integer pass or none (the altered copies' scores are wrong; their time is the point).
- ``pytest tests/benchmarks/suite --benchmark-only``: the pytest-benchmark suite (lives with the tests).
- ``python -m benchmarks.demo``: the demo (``make demo``); its clip generator feeds the pipeline benchmark.

:mod:`benchmarks.stats` holds the statistics (percentiles, interleaving, paired ratios).
"""
