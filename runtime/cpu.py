"""What this process's CPU offers: its name and the feature flags that decide which kernels run.

The flags are those /proc/cpuinfo lists, less any a CPUID mask hides from this process
(``python -m benchmarks.cpu_mask``, which sets ``JRC_CPUID_MASK`` to the level it emulates): under
a mask, ONNX Runtime, numpy and every other library see the masked CPU, so reports, the quantizer's
choice of weight bits and cache keys must see it too.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = "/proc/cpuinfo"
MASK_ENV = "JRC_CPUID_MASK"

# a mask hides the flags of these families (AVX-512 subsets, AVX10, AMX) ...
_HIDDEN_PREFIXES = ("avx512", "avx10", "amx")
# ... and the VEX-encoded dot-product extensions a CPU without VNNI lacks, which those prefixes miss
_AVX_VNNI_AND_LATER = frozenset({"avx_vnni", "avx_vnni_int8", "avx_vnni_int16", "avx_ifma", "avx_ne_convert"})
# Levels a mask emulates, each with a description: what it hides is decided by hidden()
MASK_LEVELS = {
    "avx2": "AVX2 and FMA, no AVX-512 and no VNNI (e.g. Zen 2/3, Haswell to Comet Lake)",
    "avx512": "AVX-512 F/BW/VL/DQ/CD without VNNI (e.g. Skylake-SP)",
}
_AVX512_BASE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"})
MASK_LIBRARY = "cpuid_mask.so"  # the file name benchmarks.cpu_mask builds and preloads
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp")


@functools.lru_cache(maxsize=1)
def mask_loaded() -> bool:
    """Whether the CPUID mask's library is mapped into this process (a preload the loader refused,
    or the variable set by hand, is no mask)."""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return False
    # its code mapped executable: a loader that fails half-way (a noexec folder) leaves a read-only map
    return any(line.endswith("/" + MASK_LIBRARY) and "x" in line.split()[1] for line in maps.splitlines())


def mask() -> str | None:
    """The level a CPUID mask emulates for this process (``JRC_CPUID_MASK`` with the mask loaded), or None."""
    level = os.environ.get(MASK_ENV, "").strip()
    return level if level in MASK_LEVELS and mask_loaded() else None


def hidden(level: str | None, flags: set[str]) -> set[str]:
    """Which of ``flags`` a mask of ``level`` hides (``avx512`` keeps Skylake-SP's AVX-512 subsets)."""
    if level not in MASK_LEVELS:
        return set()
    kept = _AVX512_BASE if level == "avx512" else frozenset()
    return {f for f in flags if (f.startswith(_HIDDEN_PREFIXES) and f not in kept) or f in _AVX_VNNI_AND_LATER}


def listed_flags(cpuinfo: str = CPUINFO) -> set[str]:
    """Every flag /proc/cpuinfo lists for the first CPU ("flags" on x86, "Features" on ARM)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[-1].split())
    return set()


def flags(cpuinfo: str = CPUINFO) -> set[str]:
    """The flags this process sees: those listed, less any a CPUID mask hides."""
    have = listed_flags(cpuinfo)
    return have - hidden(mask(), have)


def simd_flags() -> list[str]:
    """The vector-instruction flags that decide inference speed (AVX2, AVX-512, VNNI; NEON's asimd on
    ARM), as this process sees them."""
    have = flags()
    return [f for f in SIMD_FLAGS if f in have]


def describe() -> dict[str, Any]:
    """What a report says of the CPU its numbers came from."""
    return {"cpu": name(), "cpu_flags": simd_flags(), "vnni": has_vnni(), "cpuid_mask": mask()}


def has_vnni(cpuinfo: str = CPUINFO) -> bool:
    """True when the CPU has an 8-bit dot-product instruction (AVX512-VNNI or AVX-VNNI)."""
    return bool(flags(cpuinfo) & {"avx512_vnni", "avx_vnni"})


def name(cpuinfo: str = CPUINFO) -> str:
    """The CPU model (``lscpu``'s "Model name"), or the board on a Jetson."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return platform.processor() or platform.machine()
