"""Run a command as a CPU without VNNI would run it: a CPUID mask for one process tree.

    python -m benchmarks.cpu_mask [--as avx2|avx512] -- python -m benchmarks.latency --engine ...

ONNX Runtime picks its int8 and float kernels from what CPUID reports (VNNI dot products, AVX-512,
AVX2). To measure what a CPU without VNNI gets from an INT8 model on a machine that has it, this
compiles ``benchmarks/cpuid_mask.c`` with the system's C compiler and preloads it into the command:
CPUID then reports the real CPU less AVX-512 and VNNI (``avx2``, the default: Zen 2/3, Intel client
cores Haswell to Comet Lake) or less VNNI and the later AVX-512 subsets (``avx512``: Skylake-SP).
Libraries in the command and its children that ask CPUID when they load (ONNX Runtime, numpy, OpenCV)
see the masked CPU (glibc's own choices and static programs do not), and so do this project's reports
(``runtime.cpu``: the flags, the VNNI check that picks 7-bit weights, ``"cpuid_mask"`` in the JSON).
Before the command starts, a probe checks that the loader really mapped the library (it only warns
when it cannot, e.g. from a folder mounted noexec).

What it measures is the masked CPU's code path on this CPU's cores, not another CPU: cores with
narrower vector units (Zen 1 splits 256-bit instructions in two) or other cache sizes give other
times, so report it as what it is. It needs Linux on x86-64 with CPUID faulting (the ``cpuid_fault``
flag: Intel since Ivy Bridge, recent AMD) and a C compiler (``cc``, or ``$CC``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from runtime import cpu
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.cpu_mask"
SOURCE = Path(__file__).with_name("cpuid_mask.c")
ROOT = SOURCE.parents[1]  # the probe imports runtime.cpu from here


def unsupported_reason() -> str | None:
    """Why a CPUID mask cannot work here, or None when it can."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return f"a CPUID mask needs Linux on x86-64 (this is {platform.system()} on {platform.machine()})"
    if "cpuid_fault" not in cpu.listed_flags():
        return "this CPU or kernel offers no CPUID faulting (no cpuid_fault flag in /proc/cpuinfo)"
    return None


def compiler() -> list[str]:
    """The C compiler's command (``$CC`` may carry arguments: ``ccache gcc``)."""
    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or "cc"]
    if shutil.which(cc[0]) is None:
        raise UserError(f"no C compiler ({cc[0]} not found): the CPUID mask is compiled from "
                        "benchmarks/cpuid_mask.c; install one (apt-get install gcc) or set CC")
    return cc


def build(out_dir: Path) -> Path:
    """The mask as a shared library in ``out_dir``."""
    lib = out_dir / cpu.MASK_LIBRARY
    cc = compiler()
    r = subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(SOURCE), "-ldl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        first = next((line for line in lines if "error" in line), lines[0] if lines else f"exit {r.returncode}")
        raise UserError(f"{SOURCE}: {' '.join(cc)} could not compile the CPUID mask ({first}); check the compiler")
    return lib


def environment(lib: Path, level: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: the mask preloaded, its level named."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(p for p in (str(lib), env.get("LD_PRELOAD", "")) if p)
    env[cpu.MASK_ENV] = level
    return env


# run under the mask, it says whether the loader mapped the library (it only warns when it cannot)
PROBE = "import sys; from runtime import cpu; sys.exit(0 if cpu.mask_loaded() else 4)"


def _folders() -> Iterator[Path]:
    """Where the library may be built: the temporary folder, then shared memory, then the user's
    cache. LD_PRELOAD splits on spaces and colons, and a folder mounted noexec cannot map it."""
    yield Path(tempfile.gettempdir())
    yield Path("/dev/shm")
    yield Path.home() / ".cache"


@contextlib.contextmanager
def masked_environment(level: str) -> Iterator[dict[str, str]]:
    """An environment whose processes run under the mask, checked by starting one; the library is
    deleted on exit."""
    reasons = []
    for folder in _folders():
        if any(c in str(folder) for c in " \t:") or not folder.is_dir():
            continue
        with tempfile.TemporaryDirectory(prefix="jrc-cpuid-", dir=folder) as tmp:
            env = environment(build(Path(tmp)), level)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
            probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
            if probe.returncode == 0:
                yield environment(Path(tmp) / cpu.MASK_LIBRARY, level)
                return
            lines = probe.stderr.strip().splitlines()
            reasons.append(f"{folder}: {lines[-1] if lines else f'exit {probe.returncode}'}")
    raise UserError(f"the CPUID mask did not start ({'; '.join(reasons) or 'no folder to build it in'}); "
                    "measure on a CPU without VNNI instead")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=f"python -m {PROG}",
                                 description="run a command as a CPU without VNNI (or without AVX-512) would",
                                 epilog="example: python -m benchmarks.cpu_mask -- python -m benchmarks.latency "
                                        "--engine runs/edge224/detect.onnx --threads 1")
    ap.add_argument("--as", dest="level", choices=sorted(cpu.MASK_LEVELS), default="avx2",
                    help="what CPUID reports: " + "; ".join(f"{k}: {v}" for k, v in cpu.MASK_LEVELS.items())
                    + " (default avx2)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    a = ap.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        raise UserError("no command given: put it after --, e.g. -- python -m benchmarks.latency --engine "
                        "detect.onnx", exit_code=2)
    if shutil.which(cmd[0]) is None:
        raise UserError(f"{cmd[0]}: command not found; give the program to run after --", exit_code=2)
    reason = unsupported_reason()
    if reason:
        raise UserError(f"{reason}; measure on a CPU without VNNI instead")
    with masked_environment(a.level) as env:
        print(f"{PROG}: CPUID reports {cpu.MASK_LEVELS[a.level]}; this CPU's cores run that CPU's code path "
              f"({cpu.MASK_ENV}={a.level})", file=sys.stderr, flush=True)
        code = subprocess.run(cmd, env=env).returncode
        return 128 - code if code < 0 else code  # killed by a signal: a shell's 128 + its number


if __name__ == "__main__":
    run_cli(main, PROG)
