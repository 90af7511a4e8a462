"""TensorRT implicit INT8 calibration (TensorRT 8.5 – 10.x), with a cache that cannot go stale.

``make_calibrator(trt, onnx_path, data, meta, cache_path, ...)`` returns an instance of a class
derived from ``trt.IInt8EntropyCalibrator2`` (or ``IInt8MinMaxCalibrator``), for
``config.int8_calibrator``. It feeds the calibration faces, preprocessed by the runtime's
``to_input``, through one pycuda device buffer. The class is defined inside the function because
its base class only exists on those releases: TensorRT 11 removed the calibrators (its INT8 path is
a Q/DQ ONNX from ``python -m calibration.quantize --target trt``), and this module must still import
there, and without tensorrt or pycuda at all.

The cache file holds exactly the bytes TensorRT wrote. Its key lives in ``<cache>.json``: the
ONNX sha256, the calibration data hash, the preprocessing parameters, method, batch size,
TensorRT version and the sha256 of the cache bytes. A cache whose key differs is reported and
rebuilt (or refused with ``strict``), never silently used. A pycuda context must be current on
the thread that builds the engine (``export.engine`` sets one up).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import UserError
from runtime.fileio import write_atomic
from runtime.meta import Meta, sha256_file

CACHE_FORMAT = 1
BASES = {"entropy": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


def sidecar(cache_path: str | Path) -> Path:
    """``calib.cache`` → ``calib.cache.json``."""
    p = Path(cache_path)
    return p.with_name(p.name + ".json")


def cache_key(onnx_path: str | Path, calib: Any, method: str, batch_size: int, trt_version: str) -> dict[str, Any]:
    """Everything that changes what TensorRT would compute or store in the cache."""
    return {"format": CACHE_FORMAT, "onnx_sha256": sha256_file(onnx_path), "method": method,
            "batch_size": int(batch_size), "tensorrt": str(trt_version), **calib.cache_key()}


class CalibrationCache:
    """A TensorRT calibration cache file plus the JSON sidecar that says what it was made from."""

    def __init__(self, path: str | Path, key: dict[str, Any], strict: bool = False) -> None:
        self.path = Path(path)
        self.key = key
        self.strict = strict

    def stale_fields(self) -> list[str] | None:
        """None when there is no cache; [] when it matches; else the key fields that differ."""
        if not self.path.is_file():
            return None
        side = sidecar(self.path)
        try:
            stored = json.loads(side.read_text())
        except (OSError, ValueError):
            return ["sidecar"]  # a cache of unknown origin is stale by definition
        if not isinstance(stored, dict):
            return ["sidecar"]
        diff = sorted(k for k in set(self.key) | (set(stored) - {"cache_sha256"}) if stored.get(k) != self.key.get(k))
        if stored.get("cache_sha256") != sha256_file(self.path):
            diff.append("cache_sha256")
        return diff

    def check(self) -> str:
        """'missing', 'fresh' or 'stale'; with ``strict`` a stale cache is a UserError."""
        diff = self.stale_fields()
        if diff is None:
            return "missing"
        if not diff:
            return "fresh"
        what = ", ".join(diff)
        if self.strict:
            raise UserError(f"{self.path}: calibration cache is stale ({what} changed since it was written); "
                            "delete it to recalibrate, or drop --strict to rebuild it automatically")
        print(f"calibration: {self.path.name} is stale ({what} changed); recalibrating", file=sys.stderr)
        return "stale"

    def read(self) -> bytes | None:
        """The cache bytes when they match the key; None otherwise (TensorRT then calibrates)."""
        if self.stale_fields() != []:
            return None
        return self.path.read_bytes()

    def write(self, data: bytes) -> None:
        """Store TensorRT's bytes unchanged, then the sidecar (both atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, data)
        write_atomic(sidecar(self.path),
                     json.dumps({**self.key, "cache_sha256": sha256_file(self.path)}, indent=2, sort_keys=True) + "\n")


def _calibrator_class(trt: Any, method: str) -> type:
    """The calibrator class for this TensorRT (its base class exists on 8.5 – 10.x only)."""
    base = getattr(trt, BASES[method], None)
    if base is None:
        raise UserError(f"TensorRT {getattr(trt, '__version__', '?')} has no {BASES[method]}: implicit INT8 "
                        "calibration was removed in TensorRT 11; make a Q/DQ ONNX with python -m "
                        "calibration.quantize --target trt and build the engine from it")

    class JRCCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds runtime-preprocessed faces to TensorRT, one full batch per call."""

        def __init__(self, calib: Any, batch_size: int, cache: CalibrationCache) -> None:
            base.__init__(self)
            self.calib = calib
            self.batch_size = int(batch_size)
            self.cache = cache
            self.batches_fed = 0
            self._batches: Any = None
            self._device: Any = None
            self._cuda: Any = None

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str], *unused: Any) -> list[int] | None:
            if self.calib is None:  # cache-only: TensorRT asks for data only if it rejects the cache
                return None
            if self._batches is None:
                self._batches = self.calib.batches(self.batch_size)
            batch = next(self._batches, None)
            if batch is None or len(batch) < self.batch_size:  # TensorRT needs full batches
                return None
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self._device is None:
                from runtime.backends.trt_compat import import_pycuda

                self._cuda = import_pycuda()
                self._device = self._cuda.mem_alloc(batch.nbytes)
            self._cuda.memcpy_htod(self._device, batch)
            self.batches_fed += 1
            return [int(self._device)] * max(1, len(names))

        def read_calibration_cache(self) -> bytes | None:
            return self.cache.read()

        def write_calibration_cache(self, cache: Any) -> None:
            self.cache.write(bytes(cache))

        def free(self) -> None:
            """Release the device buffer (call after the build)."""
            if self._device is not None:
                self._device.free()
                self._device = None

    return JRCCalibrator


def _cache_only(cache_path: str | Path, onnx_path: str | Path, meta: Meta, method: str, batch_size: int,
                trt_version: str) -> CalibrationCache:
    """No calibration data given: an existing cache is usable only if it was made for this ONNX,
    preprocessing, method, batch size and TensorRT (its data hash is taken on trust from its key)."""
    from training.calibration_set import preprocess_params

    path = Path(cache_path)
    try:
        stored = json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        stored = None
    if not path.is_file() or not isinstance(stored, dict):
        raise UserError(f"{path}: no usable calibration cache (or its {sidecar(path).name} key is missing); "
                        "pass calibration data (--calib-data) to create one")
    key = {"format": CACHE_FORMAT, "onnx_sha256": sha256_file(onnx_path), "method": method,
           "batch_size": int(batch_size), "tensorrt": str(trt_version), "preprocess": preprocess_params(meta),
           "data_sha256": stored.get("data_sha256"), "samples": stored.get("samples")}
    cache = CalibrationCache(path, key, strict=True)
    try:
        cache.check()
    except UserError as e:
        raise UserError(f"{e}; without --calib-data it cannot be rebuilt, pass the calibration data") from None
    return cache


def make_calibrator(trt: Any, onnx_path: str | Path, data: Any, meta: Meta, cache_path: str | Path,
                    batch_size: int = 8, calib_size: int = 512, method: str = "entropy", strict: bool = False,
                    seed: int = 0, progress: bool = True) -> Any:
    """A calibrator for ``config.int8_calibrator`` (TensorRT 8.5 – 10.x).

    ``data``: a calibration spec (crops folder, manifest, videos, 'synthetic'), an already loaded
    :class:`training.calibration_set.CalibrationSet`, or None to use an existing matching cache only. Only whole batches are fed: ``calib_size`` is rounded
    down to a multiple of ``batch_size``. The cache at ``cache_path`` is reused only when its key
    matches; otherwise TensorRT recalibrates and overwrites it (``strict``: UserError instead).
    """
    if method not in BASES:
        raise UserError(f"calibration method {method!r}: TensorRT's calibrators offer {', '.join(BASES)}")
    cls = _calibrator_class(trt, method)
    if batch_size < 1:
        raise UserError(f"calibration batch size {batch_size}: must be at least 1")
    from training.calibration_set import CalibrationSet, load, preprocess_params

    if data is None:
        return cls(None, batch_size, _cache_only(cache_path, onnx_path, meta, method, batch_size, trt.__version__))
    calib = data if isinstance(data, CalibrationSet) else load(data, meta, calib_size, seed=seed, progress=progress)
    if preprocess_params(calib.meta) != preprocess_params(meta):
        raise UserError(f"{calib.source}: calibration data was preprocessed for {preprocess_params(calib.meta)}, "
                        f"but {onnx_path} expects {preprocess_params(meta)}; load it with the model's metadata")
    usable = len(calib) // batch_size * batch_size
    if usable == 0:
        raise UserError(f"{calib.source}: {len(calib)} calibration faces, fewer than one batch of {batch_size}; "
                        "give more data or a smaller batch")
    if usable < len(calib):
        calib = CalibrationSet(calib.crops[:usable], None if calib.labels is None else calib.labels[:usable],
                               calib.meta, calib.source, calib.skipped)
    cache = CalibrationCache(cache_path, cache_key(onnx_path, calib, method, batch_size, trt.__version__), strict)
    cache.check()
    return cls(calib, batch_size, cache)
