"""benchmarks.cpu_mask: a command sees a CPU without VNNI (or AVX-512), and so do its libraries.

The real mask runs where the machine can (Linux x86-64 with CPUID faulting and a C compiler);
elsewhere those tests skip, naming why. What the CPU looks like is read back from numpy's own CPUID
probe, a library this project does not control, and from ONNX Runtime running a model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cpu_mask
from runtime import cpu
from runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"


def _why_not() -> str | None:
    """Why the mask cannot run on this machine (no CPUID faulting, no compiler, a kernel that refuses)."""
    reason = cpu_mask.unsupported_reason()
    if reason:
        return reason
    try:
        with cpu_mask.masked_environment("avx2"):
            return None
    except UserError as e:
        return str(e)


REASON = _why_not()
needs_mask = pytest.mark.skipif(REASON is not None, reason=f"no CPUID mask here: {REASON}")

# what numpy's CPUID probe found, what this project reports, and a model's output (fp32, ONNX Runtime)
PROBE = f"""
import json, sys
import numpy as np
import onnxruntime as ort
from benchmarks.report import machine
from runtime import cpu
feats = np._core._multiarray_umath.__cpu_features__
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
s = ort.InferenceSession({str(MODEL)!r}, opts, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal((2, 3, i.shape[2], i.shape[3])).astype(np.float32)
print(json.dumps({{"numpy": {{k: bool(feats.get(k)) for k in ("AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI")}},
                  "vnni": cpu.has_vnni(), "mask": cpu.mask(), "report": machine().get("cpuid_mask"),
                  "flags": machine()["cpu_flags"], "out": s.run(None, {{i.name: x}})[0].ravel().tolist()}}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (cpu.MASK_ENV, "LD_PRELOAD", "PYTHONFAULTHANDLER")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _probe(*mask_args: str, env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.cpu_mask", *mask_args, "--", sys.executable, "-c", PROBE] if mask_args \
        else [sys.executable, "-c", PROBE]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**_env(), **(env or {})}, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_mask
def test_avx2_mask_hides_avx512_and_vnni_from_every_library() -> None:
    real, masked = _probe(), _probe("--as", "avx2")
    listed = cpu.listed_flags()
    assert real["numpy"]["AVX512F"] == ("avx512f" in listed)  # unmasked, numpy sees the CPU as listed
    assert real["mask"] is None and real["report"] is None
    assert masked["numpy"] == {"AVX2": "avx2" in listed, "FMA3": "fma" in listed, "AVX512F": False,
                               "AVX512BW": False, "AVX512VNNI": False}
    assert masked["mask"] == masked["report"] == "avx2" and not masked["vnni"]
    assert masked["flags"] == [f for f in ("avx2", "fma") if f in listed]
    # ONNX Runtime runs under the mask (other kernels, the same model): the scores agree
    np.testing.assert_allclose(masked["out"], real["out"], rtol=1e-3, atol=1e-3)


@needs_mask
def test_avx512_mask_keeps_avx512_without_vnni() -> None:
    if "avx512bw" not in cpu.listed_flags():
        pytest.skip("this CPU has no AVX-512 to keep")
    masked = _probe("--as", "avx512")
    assert masked["numpy"]["AVX512F"] and masked["numpy"]["AVX512BW"] and not masked["numpy"]["AVX512VNNI"]
    assert masked["mask"] == "avx512" and not masked["vnni"]
    assert "avx512f" in masked["flags"] and "avx512_vnni" not in masked["flags"]


@needs_mask
def test_the_command_exit_status_passes_through() -> None:
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_mask", "--", sys.executable, "-c",
                        "import sys; sys.exit(5)"], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60)
    assert r.returncode == 5 and "CPUID reports AVX2 and FMA" in r.stderr


@needs_mask
def test_a_program_with_its_own_fault_handler_still_sees_the_mask_and_its_faults() -> None:
    """Python's fault handler (pytest turns it on) installs a SIGSEGV handler after the mask: the mask
    keeps answering CPUID, and a real fault still reaches the program's handler, then kills."""
    code = ("import faulthandler, numpy as np, ctypes; assert faulthandler.is_enabled(); "
            "print('AVX512F', bool(np._core._multiarray_umath.__cpu_features__['AVX512F']), flush=True); "
            "ctypes.string_at(0)")
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_mask", "--", sys.executable, "-X", "faulthandler",
                        "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60)
    assert r.stdout.split() == ["AVX512F", "False"]
    assert "Fatal Python error: Segmentation fault" in r.stderr and "string_at" in r.stderr
    assert r.returncode == 128 + 11  # killed by SIGSEGV, reported as a shell does


@needs_mask
def test_an_unusable_temporary_folder_falls_back(tmp_path: Path) -> None:
    """LD_PRELOAD splits paths on spaces: a temporary folder with one would leave the command unmasked
    (the loader only warns); the library is built elsewhere and the command is masked."""
    spaced = tmp_path / "with space"
    spaced.mkdir()
    masked = _probe("--as", "avx2", env={"TMPDIR": str(spaced)})
    assert masked["mask"] == "avx2" and not masked["numpy"]["AVX512F"]


@needs_mask
def test_a_program_that_ignores_sigsegv_or_blocks_it_in_a_thread_keeps_its_mask() -> None:
    """SIGSEGV ignored and sent by a process: ignored, and CPUID still answered afterwards; a thread
    that blocks every signal and then loads a library that asks CPUID is not killed."""
    code = ("import os, signal, threading\n"
            "signal.signal(signal.SIGSEGV, signal.SIG_IGN)\n"
            "os.kill(os.getpid(), signal.SIGSEGV)\n"
            "out = {}\n"
            "def work():\n"
            "    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())\n"
            "    import numpy as np\n"
            "    out['avx512f'] = bool(np._core._multiarray_umath.__cpu_features__['AVX512F'])\n"
            "t = threading.Thread(target=work)\n"
            "t.start(); t.join()\n"
            "print(out)\n")
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_mask", "--", sys.executable, "-c", code],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'avx512f': False}"


@needs_mask
def test_the_variable_alone_is_not_a_mask() -> None:
    env = {**_env(), cpu.MASK_ENV: "avx2"}
    r = subprocess.run([sys.executable, "-c", "from runtime import cpu; print(cpu.mask())"], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=60)
    assert r.stdout.strip() == "None"


@needs_mask
def test_the_library_refuses_an_unknown_level(tmp_path: Path) -> None:
    lib = cpu_mask.build(tmp_path)
    env = {**cpu_mask.environment(lib, "avx2", _env()), cpu.MASK_ENV: "avx3"}
    r = subprocess.run([sys.executable, "-c", "print('ran')"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 3 and "ran" not in r.stdout
    assert "JRC_CPUID_MASK must be avx2 or avx512 (is avx3)" in r.stderr


@pytest.mark.parametrize("argv,code,message", [
    ([], 2, "no command given: put it after --"),
    (["--", "jrc-no-such-program"], 2, "jrc-no-such-program: command not found"),
])
def test_cli_errors_are_one_line(argv: list[str], code: int, message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "benchmarks.cpu_mask", *argv], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=60)
    assert r.returncode == code
    assert r.stderr.strip().count("\n") == 0 and message in r.stderr and "Traceback" not in r.stderr


def test_a_machine_without_cpuid_faulting_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "listed_flags", lambda cpuinfo=cpu.CPUINFO: {"avx2", "fma"})
    monkeypatch.setattr(cpu_mask.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cpu_mask.platform, "machine", lambda: "x86_64")
    with pytest.raises(UserError, match="no CPUID faulting.*measure on a CPU without VNNI"):
        cpu_mask.main(["--", sys.executable, "-c", "pass"])
    monkeypatch.setattr(cpu_mask.platform, "machine", lambda: "aarch64")
    assert "needs Linux on x86-64" in (cpu_mask.unsupported_reason() or "")


def test_a_missing_compiler_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", f"{tmp_path / 'no-cc'} -O1")
    with pytest.raises(UserError, match="no C compiler .*no-cc not found.*apt-get install gcc"):
        cpu_mask.build(tmp_path)
