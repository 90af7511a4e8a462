"""Q/DQ structure per target, checked with onnx; both artifacts run in ONNX Runtime on CPU."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import has_module, run_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("onnxruntime") and has_module("onnx")),
                                reason="needs torch, onnx and onnxruntime")

SIZE = 32


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small (untrained) edge JRC exported by export.onnx, preprocessed, calibrated once."""
    from calibration import ranges
    from tests.helpers.models import calibrated_edge

    w = calibrated_edge(tmp_path_factory.mktemp("qdq"), SIZE)
    return {**w, "ranges": ranges.ranges(w["stats"], "entropy", full_range=w["full_range"])}


def quantized(work: dict, target: str, name: str, keep=(), vnni=None):
    import onnx

    from calibration import qdq

    out = work["root"] / name
    info = qdq.quantize(work["prep"], out, work["calib"], target, work["ranges"], keep, vnni)
    qdq.stamp(out, work["meta"], work["src"], info)
    return onnx.load(str(out)), out


def qdq_parts(model):
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    return inits, nodes


def logits(path_or_model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    data = path_or_model if isinstance(path_or_model, bytes) else Path(path_or_model).read_bytes()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0][:, 0]


def test_trt_target_is_symmetric_signed_int8_with_per_channel_weights(work: dict) -> None:
    from export.onnx_io import QUANT_KEY
    from runtime.meta import ONNX_KEY, Meta, sha256_file

    model, path = quantized(work, "trt", "detect.int8.onnx")
    inits, nodes = qdq_parts(model)
    assert nodes
    for n in nodes:  # every zero point: int8 and 0; every scale positive
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
        assert (inits[n.input[1]] > 0).all()
    weight_dq = [n for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    convs = 0
    for dq in weight_dq:
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.dtype == np.int8  # no int32 bias: TensorRT has no INT32 dequantize for biases
        user = consumers[dq.output[0]][0]
        if user.op_type == "Conv":
            convs += 1
            axis = {a.name: a.i for a in dq.attribute}.get("axis", 1)
            assert axis == 0 and scale.shape == (w.shape[0],), (dq.name, scale.shape, w.shape)
    assert convs == sum(n.op_type == "Conv" for n in model.graph.node)  # every conv has int8 weights
    # Q/DQ sit on inputs: no weighted layer's output is quantized unless it feeds a residual Add
    for n in nodes:
        if n.op_type == "QuantizeLinear" and n.input[0] in producer:
            src = producer[n.input[0]]
            if src.op_type in ("Conv", "Gemm"):
                assert all(c.op_type == "QuantizeLinear" for c in consumers[n.input[0]]) or any(
                    c.op_type == "Add" for c in consumers[n.input[0]])
    # activations stay explicit (TensorRT fuses them itself)
    before = Counter(n.op_type for n in work["prepped"].graph.node)
    after = Counter(n.op_type for n in model.graph.node)
    assert after["Relu"] == before["Relu"] and after["HardSigmoid"] == before["HardSigmoid"]
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # nothing ORT-specific left
    props = {p.key: p.value for p in model.metadata_props}
    meta = Meta.from_json(props[ONNX_KEY])
    assert meta.precision == "int8" and meta.source_sha256 == sha256_file(work["src"])
    quant = json.loads(props[QUANT_KEY])
    assert quant["target"] == "trt" and quant["activation_type"] == "int8" and quant["symmetric_activations"]
    assert quant["calibration"]["data_sha256"] == work["calib"].data_sha256


def test_cpu_target_is_unsigned_activations_and_signed_weights(work: dict) -> None:
    model, _ = quantized(work, "cpu", "detect.int8-cpu.onnx", vnni=False)
    inits, nodes = qdq_parts(model)
    act = [n for n in nodes if n.op_type == "QuantizeLinear"]
    assert act and all(inits[n.input[2]].dtype == np.uint8 for n in act)
    assert any(inits[n.input[2]].any() for n in act)  # asymmetric: some zero points are not 0
    weights = [inits[n.input[0]] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].dtype == np.int8]
    assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)  # reduce_range: 7 bits
    assert any(inits[n.input[0]].dtype == np.int32 for n in nodes if n.input[0] in inits)  # int32 biases
    full, _ = quantized(work, "cpu", "vnni.onnx", vnni=True)
    inits, nodes = qdq_parts(full)
    assert max(int(np.abs(inits[n.input[0]]).max()) for n in nodes
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8) == 127


def test_both_targets_run_in_onnxruntime_close_to_fp32(work: dict) -> None:
    x = work["calib"].inputs()
    ref = logits(work["src"], x)
    for target in ("trt", "cpu"):
        _, path = quantized(work, target, f"run-{target}.onnx")
        got = logits(path, x)
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert np.abs(got - ref).max() < 0.25 * (np.abs(ref).max() + 1), target
        assert not np.array_equal(got, ref)


def test_keep_float_leaves_first_conv_and_head_without_qdq(work: dict) -> None:
    from calibration import qdq

    keep = qdq.resolve_keep_float(work["prepped"], ["first", "head"], "m")
    aliases = qdq.first_and_head(work["prepped"])
    assert aliases["first"] and aliases["head"] and set(keep) == set(aliases["first"] + aliases["head"])
    assert all(n.op_type == "Gemm" for n in work["prepped"].graph.node if n.name in aliases["head"])
    model, _ = quantized(work, "trt", "keep.onnx", keep)
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        fed = [producer[t].op_type for t in node.input if t in producer]
        if node.name in keep:
            assert "DequantizeLinear" not in fed, node.name
        elif node.op_type == "Conv":
            assert "DequantizeLinear" in fed, node.name
    with pytest.raises(Exception, match="no such node"):
        qdq.resolve_keep_float(work["prepped"], ["nonexistent"], "m")


def test_sensitivity_quantizes_one_layer_at_a_time(work: dict) -> None:
    import onnx

    from calibration import qdq, sensitivity

    full, _ = quantized(work, "trt", "all.onnx")
    names = qdq.weighted_nodes(work["prepped"])
    variant = sensitivity.single_layer_variant(work["prepped"], full, names[3])
    onnx.checker.check_model(variant)
    ops = Counter(n.op_type for n in variant.graph.node)
    assert ops["QuantizeLinear"] == 1 and ops["DequantizeLinear"] == 2  # its activation and its weights
    rows = sensitivity.analyse(work["prepped"], full, work["calib"].inputs()[:8], "input")
    assert {r.node for r in rows} == set(names)
    assert [r.mean_abs_dlogit for r in rows] == sorted((r.mean_abs_dlogit for r in rows), reverse=True)
    assert rows[0].mean_abs_dlogit > 0


def test_preprocess_without_torch_gives_the_same_graph(work: dict) -> None:
    """A quantization process does not import PyTorch (onnxruntime.tools' __init__ would), and its
    pre-quantization pass writes the same bytes as one that has torch loaded (this worker)."""
    import subprocess
    import sys

    out = work["root"] / "prep-no-torch.onnx"
    code = ("import sys; from pathlib import Path; from calibration import qdq; "
            f"qdq.preprocess(Path({str(work['src'])!r}), Path({str(out)!r})); "
            "print('torch' in sys.modules, 'onnxruntime.tools.symbolic_shape_infer' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["False", "True"]  # symbolic shape inference ran, torch never loaded
    assert out.read_bytes() == work["prep"].read_bytes()


def test_ranges_methods_on_known_distributions() -> None:
    from calibration.ranges import TensorStats

    rng = np.random.default_rng(0)
    gauss, relu = TensorStats(), TensorStats()
    for _ in range(4):  # several batches: the histogram grows as the range does
        gauss.add(rng.standard_normal(100_000).astype(np.float32))
        relu.add(np.maximum(rng.standard_normal(100_000), 0).astype(np.float32) * 3)
    lo, hi = gauss.minmax()
    assert lo < -4 and hi > 4 and gauss.hist.sum() == 400_000
    p_lo, p_hi = gauss.percentile(99.99)
    assert p_lo == -p_hi and 3.5 < p_hi < hi
    e_lo, e_hi = gauss.entropy()
    assert lo <= e_lo < -3.0 and 3.0 < e_hi <= hi
    r_lo, r_hi = relu.entropy()
    assert r_lo == 0.0 and 6.0 < r_hi <= relu.hi  # the spike of zeros does not pull it down
    m_lo, m_hi = gauss.mse()  # 8 bits over ±t: rounding noise (2t/255)²/12 against the clipped tails
    assert m_lo == -m_hi and 2.5 < m_hi < 4.5 < hi
    assert relu.mse()[0] == 0.0 and relu.mse()[1] < relu.hi
    constant = TensorStats()
    constant.add(np.zeros(10, np.float32))
    assert constant.entropy() == (0.0, 0.0)


def test_cli_errors_are_one_line(work: dict) -> None:
    r = run_module("calibration.quantize", "--onnx", work["src"], "--data", "synthetic", "--target", "gpu")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [  # a bad command line
        "calibration.quantize: error: --target 'gpu': expected trt, cpu, trt,cpu or both"]
    r = run_module("calibration.quantize", "--onnx", work["src"], "--data", "synthetic", "--target", "trt,cpu",
                   "--out", work["root"] / "x.onnx")
    assert r.returncode == 2 and "use --out-dir" in r.stderr and "Traceback" not in r.stderr
    r = run_module("calibration.quantize", "--onnx", work["root"] / "missing.onnx", "--data", "synthetic")
    assert r.returncode == 1 and "missing.onnx: no such ONNX file" in r.stderr
    for flag, value, says, code in (("--headroom", "0.5", "--headroom 0.5: expected a factor from 1", 2),
                                    ("--headroom", "nan", "--headroom nan: expected a factor from 1", 2),
                                    ("--anchor-size", "0", "--anchor-size 0: must be at least 1", 2),
                                    ("--anchor", str(work["root"] / "nope"), f"--anchor: {work['root'] / 'nope'}: not found",
                                     1)):
        r = run_module("calibration.quantize", "--onnx", work["src"], "--data", "synthetic:16", flag, value, "--quiet")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == code and len(lines) == 1 and lines[0].startswith(f"calibration.quantize: error: {says}")
    earlier = work["root"] / "earlier"
    earlier.mkdir(exist_ok=True)
    (earlier / "detect.int8.onnx").write_bytes(b"an earlier result")  # replacing it is noted only once inputs pass
    r = run_module("calibration.quantize", "--onnx", work["src"], "--data", "synthetic:16", "--out-dir", earlier,
                   "--anchor", str(work["root"] / "nope"), "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "--anchor" in lines[0] and "not found" in lines[0], r.stderr
    assert (earlier / "detect.int8.onnx").read_bytes() == b"an earlier result"
    r = run_module("calibration.quantize", "--onnx", work["src"], "--data", "synthetic:16", "--target", "trt",
                   "--trt-plan", "nope", "--out-dir", work["root"] / "bad-plan", "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("calibration.quantize: error: --trt-plan 'nope': no such tensor in the preprocessed graph")
    assert not (work["root"] / "bad-plan" / "detect.int8.onnx").exists()


@pytest.mark.slow
def test_cli_with_relative_paths_from_another_working_directory(work: dict, tmp_path: Path) -> None:
    """The README's command with relative paths: outputs land beside --onnx, relative to the caller's
    working directory (the quantizer once ran inside a chdir to a temporary folder and then failed
    with FileNotFoundError: 'models/detect.int8.onnx'); nothing else is written into the cwd."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "models").mkdir()
    shutil.copy(work["src"], tmp_path / "models" / "detect.onnx")
    cmd = [sys.executable, "-m", "calibration.quantize", "--onnx", "models/detect.onnx", "--data", "synthetic",
           "--target", "trt,cpu", "--fp16", "--calib-size", "16", "--eval-size", "20", "--max-auc-drop", "1",
           "--max-dprob", "1", "--no-speed", "--quiet"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["models/detect.fp16.onnx", "models/detect.int8-cpu.onnx", "models/detect.int8.onnx",
                       "models/detect.onnx", "models/detect.quant.json"], written


def test_cover_widens_each_range_to_the_anchor_and_counts_it() -> None:
    from calibration.ranges import cover

    base = {"a": (-1.0, 2.0), "b": (0.0, 4.0), "c": (-3.0, 3.0)}
    extra = {"a": (-2.0, 1.0), "b": (0.0, 3.0), "d": (-9.0, 9.0)}
    got, widened = cover(base, extra)
    assert got == {"a": (-2.0, 2.0), "b": (0.0, 4.0), "c": (-3.0, 3.0)}  # d: not a tensor of base's
    assert widened == 1


def test_widen_scales_every_range_but_the_known_ones() -> None:
    from calibration.ranges import widen

    got = widen({"relu": (0.0, 3.0), "conv": (-1.0, 2.0), "gate": (0.0, 1.0), "logit": (-4.0, 5.0)}, 2.0,
                fixed=("gate", "logit"))
    assert got == {"relu": (0.0, 6.0), "conv": (-2.0, 4.0), "gate": (0.0, 1.0), "logit": (-4.0, 5.0)}
