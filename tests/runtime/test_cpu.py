"""runtime.cpu: the CPU as this process sees it, /proc/cpuinfo less what a CPUID mask hides."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import cpu

EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512cd " \
       "avx512bw avx512vl avx512_vnni avx512_bf16 avx512vbmi avx_vnni cpuid_fault\n"


@pytest.fixture
def epyc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(cpu.MASK_ENV, raising=False)
    monkeypatch.setattr(cpu, "mask_loaded", lambda: True)  # as under benchmarks.cpu_mask
    p = tmp_path / "cpuinfo"
    p.write_text(EPYC)
    return str(p)


def test_flags_and_name_from_cpuinfo(epyc: str, tmp_path: Path) -> None:
    assert cpu.name(epyc) == "AMD EPYC 9B14"
    assert {"avx2", "avx512f", "avx512_vnni", "cpuid_fault"} <= cpu.flags(epyc)
    assert cpu.has_vnni(epyc)
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu.flags(str(arm)) == {"fp", "asimd", "asimddp"} and not cpu.has_vnni(str(arm))
    plain = tmp_path / "plain"
    plain.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert not cpu.has_vnni(str(plain))
    plain.write_text("flags\t\t: fpu avx2 avx_vnni\n")  # AVX-VNNI alone (Alder Lake) counts
    assert cpu.has_vnni(str(plain))
    assert cpu.flags(str(tmp_path / "missing")) == set() and not cpu.has_vnni(str(tmp_path / "missing"))


def test_a_mask_hides_what_its_level_lacks(epyc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu.MASK_ENV, "avx2")
    assert cpu.mask() == "avx2"
    seen = cpu.flags(epyc)
    assert {"avx2", "fma", "cpuid_fault"} <= seen
    assert not any(f.startswith("avx512") or "vnni" in f for f in seen) and not cpu.has_vnni(epyc)
    monkeypatch.setenv(cpu.MASK_ENV, "avx512")
    seen = cpu.flags(epyc)
    assert {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= seen
    assert not seen & {"avx512_vnni", "avx_vnni", "avx512_bf16", "avx512vbmi"} and not cpu.has_vnni(epyc)
    assert cpu.listed_flags(epyc) >= {"avx512_vnni", "avx_vnni"}  # what the OS lists is unchanged


@pytest.mark.parametrize("value", ["", "avx", "AVX2", "none"])
def test_an_unknown_mask_level_is_no_mask(epyc: str, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(cpu.MASK_ENV, value)
    assert cpu.mask() is None and cpu.has_vnni(epyc)


def test_the_variable_without_the_mask_library_is_no_mask(epyc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preload the loader refused (or the variable set by hand) leaves the real CPU: say so."""
    monkeypatch.setenv(cpu.MASK_ENV, "avx2")
    monkeypatch.setattr(cpu, "mask_loaded", lambda: False)
    assert cpu.mask() is None and cpu.has_vnni(epyc)


def test_this_process_has_no_mask_library() -> None:
    cpu.mask_loaded.cache_clear()
    assert cpu.mask_loaded() is False  # the test run itself is not masked
