"""benchmarks.latency and benchmarks.accuracy end to end on a tiny model: valid JSON, all parts present.

Timing values are never asserted (the machine is shared); structure and the numbers' internal
consistency are.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.helpers import ROOT, load_strict, run_in_process, run_module


def _one_line_error(p, prog: str, *needles: str, code: int = 1) -> None:
    assert p.returncode == code, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:"), p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0]


def test_latency_json_table_and_ratios(tiny, tmp_path):
    out, png = tmp_path / "lat.json", tmp_path / "lat.png"
    p = run_module("benchmarks.latency", "--engine", tiny["detect"], "--reference", tiny["ckpt"], "--batch", "1,2",
                   "--runs", "6", "--warmup", "1", "--threads", "1", "--json", out, "--png", png, "--quiet")
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert d["tool"] == "benchmarks.latency" and d["machine"]["cpu"] and d["settings"]["threads"] == 1
    labels = {r["label"] for r in d["results"]}
    # full.onnx beside detect.onnx is found for the full/detect ratio; each .onnx gets a bare session
    assert labels == {"detect.onnx", "detect.onnx [bare ort]", "full.onnx", "full.onnx [bare ort]",
                      "pytorch eager (full)"}
    assert len(d["results"]) == 2 * len(labels)
    for r in d["results"]:
        assert r["n"] == 6 and r["batch"] in (1, 2)
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1000.0 / r["p50_ms"], rel=1e-3)
        assert r["rss_peak_delta_mb"] > 0  # measured in a child process per artifact
    by = {(r["label"], r["batch"]): r for r in d["results"]}
    assert by[("full.onnx", 1)]["graph"] == "full" and by[("detect.onnx", 1)]["graph"] == "detect"
    assert by[("pytorch eager (full)", 2)]["backend"] == "torch eager"
    kinds = {(x["kind"], x["batch"]) for x in d["ratios"]}
    assert kinds == {(k, b) for k in ("overhead", "full_vs_detect", "speedup") for b in (1, 2)}
    for x in d["ratios"]:
        assert x["rounds"] == 6 and x["low"] <= x["median"] <= x["high"] and x["median"] > 0
    over = [x for x in d["ratios"] if x["kind"] == "overhead"]
    assert {x["denominator"] for x in over} == {"detect.onnx [bare ort]", "full.onnx [bare ort]"}
    assert "p50 ms" in p.stdout and "runtime overhead vs bare onnxruntime" in p.stdout
    assert "speed-up over pytorch eager" in p.stdout and "full / detect" in p.stdout
    # the kernel split of every .onnx run by the runtime on the CPU, at every batch (fp32: no int8 time)
    split = {(k["label"], k["batch"]): k for k in d["kernels"]}
    assert set(split) == {(n, b) for n in ("detect.onnx", "full.onnx") for b in (1, 2)}
    for k in split.values():
        assert set(k["groups_ms"]) == {"int8", "float", "qdq", "layout"} and k["runs"] > 0
        assert k["groups_ms"]["float"] > 0 and k["groups_ms"]["int8"] == 0 and k["groups_ms"]["qdq"] == 0
        assert sum(k["ops_ms"].values()) == pytest.approx(sum(k["groups_ms"].values()), rel=0.05)
    assert "kernel split (ONNX Runtime profiler" in p.stdout and "detect.onnx" in p.stdout.split("kernel split")[1]


def test_latency_speedup_only_against_the_same_architecture(tiny, tmp_path):
    """The bundled 64 px model beside a reference checkpoint of another size gets no speed-up, and a note."""
    bundled = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"
    out = tmp_path / "lat.json"
    p = run_module("benchmarks.latency", "--engine", tiny["detect"], "--engine", bundled, "--reference", tiny["ckpt"],
                   "--batch", "1", "--runs", "3", "--warmup", "0", "--threads", "1", "--no-bare", "--no-siblings",
                   "--no-memory", "--json", out, "--quiet")
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    speedups = [x["denominator"] for x in d["ratios"] if x["kind"] == "speedup"]
    assert speedups == ["detect.onnx"]
    assert any(n.startswith("jrc_edge_detect.onnx is not the architecture of") for n in d["notes"]), d["notes"]


def test_latency_ratios_only_between_siblings_of_one_model_naming_both(tiny, tmp_path):
    """An int8 file quantized from this detect.onnx gets the precision ratio, named against it; an
    int8 file of another model (its source hash is another checkpoint's) gets none, and a note."""
    import shutil

    from export.onnx_io import file_meta, load_onnx, save_onnx, set_meta
    from runtime.meta import sha256_file

    folder = tmp_path / "m"
    folder.mkdir()
    detect = Path(shutil.copy(tiny["detect"], folder / "detect.onnx"))
    for name, source in (("detect.int8.onnx", sha256_file(detect)), ("theirs.int8.onnx", "0" * 64)):
        model = load_onnx(detect)  # the same graph: the speed is not what is checked here
        set_meta(model, file_meta(detect).with_(precision="int8", source_sha256=source))
        save_onnx(model, folder / name)
    out = tmp_path / "lat.json"
    p = run_module("benchmarks.latency", "--engine", detect, "--engine", folder / "detect.int8.onnx", "--engine",
                   folder / "theirs.int8.onnx", "--batch", "1", "--runs", "3", "--warmup", "0", "--threads", "1",
                   "--no-bare", "--no-siblings", "--no-memory", "--json", out)
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    ratios = [(x["kind"], x["numerator"], x["denominator"]) for x in d["ratios"]]
    assert ratios == [("precision", "detect.onnx", "detect.int8.onnx")]
    assert "speed-up of int8  over fp32             detect.int8.onnx over detect.onnx" in p.stdout
    unrelated = [n for n in d["notes"] if n.startswith("no ratio between")]
    assert unrelated == ["no ratio between detect.onnx and theirs.int8.onnx: they were not made from the same model "
                         "(their metadata's source hashes lead to different checkpoints)"]


def test_latency_with_the_extras_switched_off(tiny, tmp_path):
    out = tmp_path / "lat.json"
    p = run_module("benchmarks.latency", "--engine", tiny["full"], "--batch", "1", "--runs", "3", "--warmup", "0",
                   "--threads", "1", "--no-bare", "--no-siblings", "--no-memory", "--no-kernels", "--order", "rotate",
                   "--json", out)
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert [r["label"] for r in d["results"]] == ["full.onnx"]
    assert d["ratios"] == [] and "rss_peak_delta_mb" not in d["results"][0]
    assert "kernels" not in d and "kernel split" not in p.stdout


@pytest.mark.parametrize("args, needles", [
    (["--engine", "missing.onnx"], ["--engine missing.onnx", "no such file"]),
    (["--engine", "{detect}", "--batch", "0,x"], ["--batch", "positive integers"]),
    (["--engine", "{detect}", "--runs", "0"], ["--runs 0"]),
    (["--engine", "{detect}", "--json", "{detect}/x.json"], ["--json", "is a file, not a folder"]),
    (["--engine", "{detect}", "--json", "{detect}"], ["--json", "the same file as --engine", "an input"]),
    (["--engine", "{detect}", "--png", "{detect}"], ["--png", "the same file as --engine", "an input"]),
    (["--engine", "{detect}", "--json", "{folder}"], ["--json", "is a folder"]),
])
def test_latency_bad_input_is_one_line(tiny, args, needles):
    before = Path(tiny["detect"]).read_bytes()
    args = [a.format(detect=tiny["detect"], folder=Path(tiny["detect"]).parent) for a in args]
    code = 2 if "an input" in needles else 1  # an output over an input is a bad command line, as in runtime.detect
    _one_line_error(run_module("benchmarks.latency", *args, "--no-memory"), "benchmarks.latency", *needles, code=code)
    assert Path(tiny["detect"]).read_bytes() == before  # the model is never written over


def test_accuracy_table_json_png(tiny, tmp_path):
    out, png = tmp_path / "acc.json", tmp_path / "acc.png"
    p = run_module("benchmarks.accuracy", "--engine", tiny["detect"], "--engine", tiny["full"], "--reference",
                   tiny["ckpt"], "--data", "synthetic:12", "--runs", "4", "--warmup", "1", "--threads", "1",
                   "--json", out, "--png", png, "--quiet")
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert d["data"] == {"spec": "synthetic:12", "split": None, "faces": 12, "fake": 6}
    rows = {r["label"]: r for r in d["results"]}
    assert set(rows) == {"detect.onnx", "full.onnx", "pytorch eager (full)"}
    for r in rows.values():
        assert 0.0 <= r["auc"] <= 1.0 and not math.isnan(r["auc"])
        assert r["p50_ms"] > 0 and r["throughput"] > 0 and r["batch"] == 8
    # the same weights through three paths: the same scores, hence the same AUC
    assert rows["full.onnx"]["auc"] == rows["detect.onnx"]["auc"] == rows["pytorch eager (full)"]["auc"]
    assert rows["pytorch eager (full)"]["max_abs_dprob_vs_first"] < 1e-4
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "AUC" in p.stdout
    # the false-alarm rate at each artifact's metadata threshold, the same for the same scores
    assert "FAR@thr" in p.stdout and "false-alarm rate" in p.stdout
    assert rows["full.onnx"]["far"] == rows["detect.onnx"]["far"] == rows["pytorch eager (full)"]["far"]
    assert all(r["threshold"] == 0.5 and r["threshold_rule"] is None for r in rows.values())


def test_accuracy_far_at_each_artifacts_own_threshold_and_its_rule(tiny, tmp_path):
    """The same weights with another metadata threshold (one that splits the held-out reals, with a
    recorded rule): its FAR is the share of reals at or above that threshold, recomputed here from a
    plain ONNX Runtime session, and the rule is named under the table."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from benchmarks.accuracy import Faces
    from export.onnx_io import file_meta
    from runtime.meta import ONNX_KEY

    meta = file_meta(tiny["detect"])
    faces = Faces("synthetic:12", None, None, meta)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(tiny["detect"]), sess_options=opts, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {meta.input_name: faces.inputs(meta)})[0].reshape(-1).astype(np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    real = np.sort(probs[faces.labels == 0])[::-1]
    k = int(np.argmax(real[:-1] - real[1:])) + 1  # the widest gap between two real scores: k reals above it
    assert real[k - 1] - real[k] > 1e-6, real  # float noise between the two paths cannot move a face across
    thr = float((real[k - 1] + real[k]) / 2)
    rule = {"rule": "fpr:0.34", "target_fpr": 0.34, "achieved_fpr": k / len(real), "chosen_on": "unit-test-val",
            "real_items": len(real), "threshold": thr}
    proto = onnx.load(str(tiny["detect"]))
    entry = next(e for e in proto.metadata_props if e.key == ONNX_KEY)
    entry.value = meta.with_(threshold=thr, training={**meta.training, "threshold_rule": rule}).to_json()
    moved = tmp_path / "moved.onnx"
    onnx.save(proto, str(moved))

    out, png = tmp_path / "acc.json", tmp_path / "acc.png"
    p = run_module("benchmarks.accuracy", "--engine", tiny["detect"], "--engine", moved, "--data", "synthetic:12",
                   "--runs", "2", "--warmup", "0", "--threads", "1", "--json", out, "--png", png, "--quiet")
    assert p.returncode == 0, p.stderr
    rows = {r["label"]: r for r in load_strict(out)["results"]}
    assert rows["moved.onnx"]["threshold"] == thr and rows["moved.onnx"]["threshold_rule"] == rule
    assert 0 < k < len(real)
    assert rows["moved.onnx"]["far"] == pytest.approx(float(np.mean(probs[faces.labels == 0] >= thr)), abs=1e-5)
    assert rows["moved.onnx"]["far"] == pytest.approx(k / len(real), abs=1e-5)
    assert rows["detect.onnx"]["far"] == pytest.approx(float(np.mean(probs[faces.labels == 0] >= 0.5)), abs=1e-5)
    lines = p.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("artifact"))
    end = lines[head].index("FAR@thr") + len("FAR@thr")  # columns are right-aligned under their header
    moved_row = next(line for line in lines if line.startswith("moved.onnx"))
    assert float(moved_row[:end].split()[-1]) == pytest.approx(k / len(real), abs=5e-5)
    assert any(line.startswith(f"moved.onnx: threshold {thr:g}: chosen for a false-alarm rate of at most 0.34 "
                               "on unit-test-val") for line in lines), p.stdout
    assert not any(line.startswith("detect.onnx: threshold") for line in lines)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_accuracy_one_class_data_is_a_user_error(tiny, tmp_path):
    import cv2
    import numpy as np

    (tmp_path / "real").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "real" / f"r{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    p = run_module("benchmarks.accuracy", "--engine", tiny["detect"], "--data", tmp_path, "--runs", "2")
    _one_line_error(p, "benchmarks.accuracy", "only real faces")


def test_help_needs_no_heavy_libraries():
    """--help of every benchmark CLI works with torch, onnxruntime, onnx and matplotlib blocked."""
    code = ("import sys\n"
            "for m in ('torch', 'onnxruntime', 'onnx', 'matplotlib', 'tensorrt', 'pycuda'):\n"
            "    sys.modules[m] = None\n"
            "import importlib\n"
            "for name in ('latency', 'pipeline', 'accuracy'):\n"
            "    mod = importlib.import_module('benchmarks.' + name)\n"
            "    try:\n"
            "        mod.main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, name\n")
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("usage:") == 3


def test_json_output_is_strict(tmp_path):
    from benchmarks import report

    out = tmp_path / "x.json"
    report.write_json(str(out), {"a": float("nan"), "b": [float("inf"), 1.5], "c": (2, {"d": -float("inf")})})
    assert load_strict(out) == {"a": None, "b": [None, 1.5], "c": [2, {"d": None}]}


@pytest.mark.gpu
def test_latency_on_a_tensorrt_engine(tiny, tmp_path):
    """The engine beside its ONNX: device memory measured, interleaved with the ONNX artifacts."""
    engine = tmp_path / "detect.fp16.engine"
    built = run_module("export.engine", "--onnx", tiny["detect"], "--precision", "fp16", "--out", engine,
                       "--batch", "1:4:8")
    assert built.returncode == 0, built.stderr
    out = tmp_path / "lat.json"
    p = run_module("benchmarks.latency", "--engine", tiny["detect"], "--engine", engine, "--batch", "1,8",
                   "--runs", "10", "--warmup", "2", "--no-siblings", "--json", out)
    assert p.returncode == 0, p.stderr
    rows = [r for r in load_strict(out)["results"] if r["backend"] == "tensorrt"]
    assert [r["batch"] for r in rows] == [1, 8] and all(r["precision"] == "fp16" for r in rows)
    assert all("device" in r and r["device_delta_mb"] > 0 for r in rows)
    for r in rows:  # the H2D / compute / D2H split, when the backend reports it
        if "split_ms" in r:
            assert set(r["split_ms"]) == {"h2d_ms", "compute_ms", "d2h_ms"}
            assert all(v > 0 for v in r["split_ms"].values())


def test_sibling_graphs_are_found_by_name(tmp_path):
    from benchmarks.latency import sibling

    for name in ("detect.onnx", "full.onnx", "jrc_edge_detect.int8-cpu.onnx", "jrc_edge_full.int8-cpu.onnx"):
        (tmp_path / name).write_bytes(b"x")
    assert sibling(tmp_path / "detect.onnx") == tmp_path / "full.onnx"
    assert sibling(tmp_path / "full.onnx") == tmp_path / "detect.onnx"
    assert sibling(tmp_path / "jrc_edge_detect.int8-cpu.onnx") == tmp_path / "jrc_edge_full.int8-cpu.onnx"
    assert sibling(tmp_path / "jrc_edge_full.int8-cpu.onnx") == tmp_path / "jrc_edge_detect.int8-cpu.onnx"
    (tmp_path / "other.detect.fp16.engine").write_bytes(b"x")
    assert sibling(tmp_path / "other.detect.fp16.engine") is None  # no full engine beside it
    assert sibling(tmp_path / "model.onnx") is None


def test_which_artifacts_are_compared():
    from benchmarks.latency import _pairs
    from benchmarks.runners import Runner, Spec
    from runtime.meta import Meta

    ckpt = "c" * 64  # every artifact here records that it was made from this checkpoint (siblings)

    def runner(kind, path, graph="detect", precision="fp32", backend="onnxruntime", label=None, source=ckpt):
        meta = Meta(graph=graph, outputs=("logit", "recon") if graph == "full" else ("logit",), precision=precision,
                    source_sha256=source)
        return Runner(Spec(kind, path, label=label or path), meta, backend, 8, lambda: None, lambda x: (lambda: None))

    rs = [runner("runtime", "detect.onnx"), runner("bare", "detect.onnx", backend="onnxruntime (bare)",
                                                    label="detect.onnx [bare ort]"),
          runner("runtime", "detect.int8-cpu.onnx", precision="int8"), runner("runtime", "full.onnx", "full"),
          runner("runtime", "detect.fp16.engine", precision="fp16", backend="tensorrt"),
          runner("runtime", "other.int8-cpu.onnx", precision="int8", source="d" * 64),  # another model's
          runner("torch", "best.pt", "full", backend="torch eager", label="pytorch eager (full)")]
    p = _pairs(rs)
    assert p["overhead"] == [("detect.onnx", "detect.onnx [bare ort]", "runtime / bare onnxruntime")]
    assert p["full_vs_detect"] == [("full.onnx", "detect.onnx", "full / detect")]  # same backend and precision only
    assert p["precision"] == [("detect.onnx", "detect.int8-cpu.onnx", "fp32 / int8")]  # not across backends or models
    assert [d for _, d, _ in p["speedup"]] == ["detect.onnx", "detect.int8-cpu.onnx", "full.onnx", "detect.fp16.engine",
                                               "other.int8-cpu.onnx"]
    assert p["models"] == []


def test_precision_pairs_stay_within_one_network(monkeypatch):
    """int8 of one edge style is never compared with fp32 of the other (a 2.6× "int8 speed-up" that
    was the style's); two networks of one precision and size get their own ratio."""
    from benchmarks import latency
    from benchmarks.latency import _pairs

    # each style's two files are one model's (their lineage is tested above): only the network may differ
    monkeypatch.setattr(latency, "_roots", lambda rt: {r.label: r.label.split(".")[0] for r in rt})
    from benchmarks.runners import Runner, Spec
    from runtime.meta import Meta

    def runner(path, style, precision="fp32"):
        meta = Meta(graph="detect", outputs=("logit",), precision=precision, input_size=224,
                    model={"style": style})
        return Runner(Spec("runtime", path, label=path), meta, "onnxruntime", 8, lambda: None, lambda x: (lambda: None))

    rs = [runner("v3.onnx", "v3"), runner("v3.int8-cpu.onnx", "v3", "int8"),
          runner("min.onnx", "minimal"), runner("min.int8-cpu.onnx", "minimal", "int8")]
    p = _pairs(rs)
    assert p["precision"] == [("v3.onnx", "v3.int8-cpu.onnx", "fp32 / int8"), ("min.onnx", "min.int8-cpu.onnx", "fp32 / int8")]
    assert p["models"] == [("v3.onnx", "min.onnx", "model / model"),
                           ("v3.int8-cpu.onnx", "min.int8-cpu.onnx", "model / model")]


def test_speed_artifacts_are_full_width_models_of_the_asked_size(tmp_path):
    """`python -m benchmarks.fixtures`: an untrained full-width model whose ONNX the runtime opens at
    the asked input size, full width (megabytes of weights, unlike the tiny model); bad sizes are one line."""
    import onnxruntime as ort

    from runtime.backends import open_backend

    r = run_module("benchmarks.fixtures", "--out", tmp_path / "m", "--input-size", "96")
    assert r.returncode == 0, r.stderr
    with open_backend(str(tmp_path / "m" / "detect.onnx")) as b:
        assert b.meta.input_size == 96 and b.meta.encoder == "edge" and b.meta.outputs == ("logit",)
    mine = ort.InferenceSession(str(tmp_path / "m" / "detect.onnx"), providers=["CPUExecutionProvider"])
    assert mine.get_inputs()[0].shape[1:] == [3, 96, 96]
    size = (tmp_path / "m" / "detect.onnx").stat().st_size  # full width, unlike the quarter-width tiny model
    assert size > 1_000_000
    bad = run_module("benchmarks.fixtures", "--out", tmp_path / "x", "--input-size", "5")
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "--input-size 5" in bad.stderr
    r = run_in_process("benchmarks.fixtures", "--out", tmp_path / "min", "--input-size", "32", "--edge-style", "minimal",
                       "--downsample", "max")
    assert r.returncode == 0, r.stderr
    with open_backend(str(tmp_path / "min" / "detect.onnx")) as b:  # the edge options reach the model
        assert (b.meta.model["style"], b.meta.model["downsample"]) == ("minimal", "max")


def test_synthetic_is_the_same_held_out_set_in_every_evaluation_tool():
    """benchmarks.accuracy used to score the training faces too (AUC 0.80 vs 0.72 elsewhere)."""
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    import numpy as np

    from benchmarks.accuracy import Faces
    from runtime.meta import Meta
    from runtime.preprocess import resize_square
    from training.calibration_set import load
    from training.dataspec import split_ids
    from training.evaluate import _open
    from training.sample_faces import sample_real_faces

    meta = Meta(input_size=32)
    held_out = split_ids([fid for fid, _ in sample_real_faces(32)], "val")
    ds = _open("synthetic:20", meta)  # training.evaluate
    assert set(ds.videos) <= held_out
    evaluated = np.stack([resize_square(ds.image(i), 32) for i in range(len(ds))])
    report = load("synthetic:20", meta, 200, held_out=True, need_labels=True, progress=False)  # calibration
    faces = Faces("synthetic:20", None, None, meta)  # benchmarks.accuracy
    assert faces.crops.tobytes() == report.crops.tobytes() == evaluated.tobytes()
    assert faces.labels.tolist() == report.labels.tolist() == ds.labels


@pytest.mark.parametrize("prog, args, needle", [
    ("benchmarks.faces", ["--cost-rounds", "0"], "--cost-rounds 0"),
    ("benchmarks.faces", ["--rounds", "0", "--only", "e2e"], "--rounds 0"),
    ("benchmarks.faces", ["--frames", "-3"], "--frames -3"),
    ("benchmarks.faces", ["--lfw", "0"], "--lfw 0"),
    ("benchmarks.families", ["--epochs", "0"], "--epochs 0"),
])
def test_sizes_below_one_are_one_line_before_any_work(prog, args, needle, tmp_path):
    """A size of 0 or less is refused at once (no detector built, nothing trained), naming the flag."""
    p = run_module(prog, *args, "--json", tmp_path / "r.json")
    _one_line_error(p, prog, needle, "at least 1")
    assert not (tmp_path / "r.json").exists()


def test_an_output_in_a_data_folder_is_refused_only_where_it_would_be_read(tmp_path):
    """A report (.json) beside the faces a folder input holds is fine; a picture (.png) there would
    be read as one of its faces on the next run, and an output over an input file destroys it."""
    from benchmarks.report import check_writable
    from runtime.errors import UserError

    data = tmp_path / "crops"
    (data / "real").mkdir(parents=True)
    (data / "real" / "a.png").write_bytes(b"x")
    check_writable(str(data / "acc.json"), "--json", [("--data", str(data))])
    for out, flag in ((data / "chart.png", "--png"), (data / "real" / "a.png", "--png"), (tmp_path, "--json")):
        with pytest.raises(UserError):
            check_writable(str(out), flag, [("--data", str(data))])
