"""training.evaluate: metrics of a tiny checkpoint on generated datasets, JSON and ROC PNG output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import has_module, run_in_process, run_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("matplotlib")),
                                reason="needs the train extra (torch, matplotlib)")

SIZE = 64


def _strict_json(text: str):
    def no_nan(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_nan)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained edge model at 64 px, saved the way training saves it."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import build_model, default_meta

    torch.manual_seed(0)
    meta = default_meta("edge", SIZE)
    net = build_model(meta)
    meta = meta.with_(model=net.config(), threshold=0.5, training={"data": "unit-test", "epochs": 0})
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, meta, epoch=0)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """real/ and fake/ crops in per-video folders: 3 real videos and 2 fake ones, 2 frames each."""
    import cv2

    root = tmp_path_factory.mktemp("faces") / "tinyset"
    rng = np.random.default_rng(0)
    for label, videos in (("real", ("r0", "r1", "r2")), ("fake", ("f0", "f1"))):
        for v in videos:
            (root / label / v).mkdir(parents=True)
            base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            for k in range(2):
                frame = np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / label / v / f"{k:06d}.png"), frame)
    return root


def _expected(ckpt, folder):
    """Probabilities computed here from the files, independently of the CLI's data pipeline."""
    import cv2
    import torch

    from runtime.preprocess import to_input
    from training.checkpoint import load_model

    net, meta = load_model(ckpt)
    files = sorted((folder / "real").rglob("*.png")) + sorted((folder / "fake").rglob("*.png"))
    x = to_input([cv2.imread(str(f)) for f in files], meta)
    with torch.no_grad():
        probs = torch.sigmoid(net(torch.from_numpy(x))).reshape(-1).numpy().astype(np.float64)
    labels = np.array([0 if "real" in f.parts[-3] else 1 for f in files])
    videos = [f"{f.parts[-3]}/{f.parent.name}" for f in files]
    return probs, labels, videos


def test_evaluate_cli_writes_json_png_and_table(ckpt, folder, tmp_path):
    import cv2

    sk = pytest.importorskip("sklearn.metrics")
    out = tmp_path / "eval"
    r = run_module("training.evaluate", "--ckpt", ckpt, "--data", folder, "synthetic:12", "--out", out,
                   "--workers", "0", "--threads", "1", "--batch-size", "4", timeout=240)
    assert r.returncode == 0, r.stderr
    # the cross-dataset table: one row per dataset
    rows = [line for line in r.stdout.splitlines() if line.startswith(("tinyset", "synthetic"))]
    assert len(rows) == 2, r.stdout
    doc = _strict_json((out / "metrics.json").read_text())
    assert set(doc["datasets"]) == {"tinyset", "synthetic:12"}
    assert doc["threshold"] == 0.5 and doc["meta"]["encoder"] == "edge" and doc["meta"]["input_size"] == SIZE

    tiny = doc["datasets"]["tinyset"]
    probs, labels, videos = _expected(ckpt, folder)
    assert tiny["frame"]["n"] == 10 and tiny["frame"]["n_fake"] == 4
    assert tiny["frame"]["auc"] == pytest.approx(sk.roc_auc_score(labels, probs), abs=1e-6)
    assert tiny["frame"]["ap"] == pytest.approx(sk.average_precision_score(labels, probs), abs=1e-6)
    assert tiny["frame"]["acc"] == pytest.approx(np.mean((probs >= 0.5) == labels), abs=1e-9)
    vprobs = [probs[[i for i, v in enumerate(videos) if v == name]].mean() for name in dict.fromkeys(videos)]
    vlabels = [int(name.startswith("fake")) for name in dict.fromkeys(videos)]
    assert tiny["video"]["n"] == 5
    assert tiny["video"]["auc"] == pytest.approx(sk.roc_auc_score(vlabels, vprobs), abs=1e-6)

    # the false-alarm rate (reals called fake at the checkpoint's threshold 0.5): JSON and table column
    far = float(np.mean(probs[labels == 0] >= 0.5))
    vfar = float(np.mean([p >= 0.5 for p, y in zip(vprobs, vlabels) if y == 0]))
    assert tiny["frame"]["far"] == pytest.approx(far, abs=1e-12)
    assert tiny["video"]["far"] == pytest.approx(vfar, abs=1e-12)
    head = next(line for line in r.stdout.splitlines() if line.startswith("dataset"))
    assert head.split() == ["dataset", "frames", "AUC", "EER", "AP", "ACC", "FAR", "|", "videos", "AUC", "EER",
                            "AP", "ACC", "FAR"], head
    assert "FAR (false-alarm rate: real items called fake, p >= 0.5) at threshold 0.5" in r.stdout
    cells = rows[0].split()
    assert cells[0] == "tinyset" and cells[7] == "|", rows[0]
    assert float(cells[6]) == pytest.approx(far, abs=5e-5) and float(cells[13]) == pytest.approx(vfar, abs=5e-5)

    synth = doc["datasets"]["synthetic:12"]
    assert synth["frame"]["n"] == 12 and synth["frame"]["n_fake"] == 6
    for name in ("tinyset", "synthetic_12"):
        png = out / f"roc_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = cv2.imread(str(png))
        assert img is not None and img.shape[0] > 100 and img.std() > 5  # a drawn plot, not a blank page


def test_threshold_override_and_one_class_data(ckpt, folder, tmp_path):
    only_real = tmp_path / "onlyreal"
    (only_real / "real").mkdir(parents=True)
    for f in sorted((folder / "real").rglob("*.png"))[:3]:
        (only_real / "real" / f"{f.parent.name}_{f.name}").write_bytes(f.read_bytes())
    out = tmp_path / "eval"
    r = run_module("training.evaluate", "--ckpt", ckpt, "--data", only_real, "--out", out, "--threshold", "0",
                   "--workers", "0", "--threads", "1", timeout=240)
    assert r.returncode == 0, r.stderr
    doc = _strict_json((out / "metrics.json").read_text())
    frame = doc["datasets"]["onlyreal"]["frame"]
    assert doc["threshold"] == 0.0 and frame["acc"] == 0.0  # everything called fake at threshold 0
    assert frame["auc"] is None and frame["eer"] is None  # undefined with one class: null, and a note
    assert any("only real" in n for n in doc["datasets"]["onlyreal"]["notes"])
    assert "n/a" in r.stdout and (out / "roc_onlyreal.png").is_file()
    assert "note: replacing" not in r.stderr
    # evaluating again into the same folder replaces the earlier metrics, and says so
    r = run_in_process("training.evaluate", "--ckpt", ckpt, "--data", only_real, "--out", out, "--workers", "0")
    assert r.returncode == 0 and _strict_json((out / "metrics.json").read_text())["threshold"] == 0.5
    assert f"training.evaluate: note: replacing {out / 'metrics.json'} (an earlier evaluation)" in r.stderr


def test_user_errors_are_one_line(ckpt, tmp_path):
    r = run_module("training.evaluate", "--ckpt", tmp_path / "missing.pt", "--data", "synthetic")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("training.evaluate: error:") and "not found" in r.stderr
    r = run_in_process("training.evaluate", "--ckpt", ckpt, "--data", tmp_path / "nowhere")
    assert r.returncode == 1 and "no such folder" in r.stderr
    r = run_module("training.evaluate", "--ckpt", ckpt, "--data", "synthetic", "--threshold", "2")
    assert r.returncode == 2 and "--threshold" in r.stderr  # a value out of range: a command-line error
    # an --out that cannot be written is refused before any data is read (here: data that does not exist)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub", "/proc/jrc-eval"):
        r = run_in_process("training.evaluate", "--ckpt", ckpt, "--data", tmp_path / "nowhere", "--out", out)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"training.evaluate: error: --out {out}:")


def test_far_column_at_the_given_threshold_and_the_threshold_rule_line():
    """format_table's FAR column is the share of reals at or above the threshold it is given (here a
    threshold that splits the reals, so 0 or 1 cannot pass by accident); the rule line names the rule."""
    from training.metrics import summary
    from training.report import format_table, threshold_rule_line

    probs = np.array([0.1, 0.35, 0.6, 0.8, 0.2, 0.7, 0.9, 0.95])  # 5 reals, 3 fakes
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    videos = ["r0", "r0", "r1", "r1", "r2", "f0", "f0", "f1"]
    s = summary(probs, labels, videos, threshold=0.5)
    line = format_table([("hand", s)], 0.5).splitlines()[-1].split()
    assert float(line[6]) == pytest.approx(2 / 5) and s["frame"]["far"] == pytest.approx(2 / 5)
    # videos: r0 0.225, r1 0.7, r2 0.2 -> one of three real videos at or above 0.5
    assert float(line[13]) == pytest.approx(1 / 3, abs=5e-5) and s["video"]["far"] == pytest.approx(1 / 3)
    rule = {"rule": "fpr:0.01", "target_fpr": 0.01, "achieved_fpr": 0.0, "chosen_on": "synthetic:200",
            "real_items": 100, "threshold": 0.73}
    text = threshold_rule_line(rule, 0.73)
    assert text.startswith("threshold 0.73: chosen for a false-alarm rate of at most 0.01 on synthetic:200")
    assert "100 real items" in text and "achieved 0 there" in text and "not at it" not in text
    assert "numbers here are at 0.5, not at it" in threshold_rule_line(rule, 0.5)
    assert threshold_rule_line(None, 0.5) is None and threshold_rule_line({}, 0.5) is None


def test_far_column_at_a_threshold_that_splits_the_reals(ckpt, folder, tmp_path):
    """The untrained model scores every face below 0.5 (FAR 0 there); at a threshold between two real
    scores the FAR column and JSON must say exactly how many reals are above it."""
    probs, labels, videos = _expected(ckpt, folder)
    real = np.sort(probs[labels == 0])[::-1]
    thr = float((real[1] + real[2]) / 2)  # two of the six real frames at or above it
    assert real[1] - real[2] > 1e-5  # a clear gap, so float noise between the two paths cannot move a face
    out = tmp_path / "eval"
    r = run_module("training.evaluate", "--ckpt", ckpt, "--data", folder, "--out", out, "--threshold", repr(thr),
                   "--workers", "0", "--threads", "1", timeout=240)
    assert r.returncode == 0, r.stderr
    far = float(np.mean(probs[labels == 0] >= thr))
    assert far == pytest.approx(2 / 6)
    names = list(dict.fromkeys(videos))
    vprobs = np.array([probs[[i for i, v in enumerate(videos) if v == n]].mean() for n in names])
    vreal = vprobs[[not n.startswith("fake") for n in names]]
    vfar = float(np.mean(vreal >= thr))
    doc = _strict_json((out / "metrics.json").read_text())
    assert doc["threshold"] == thr
    tiny = doc["datasets"]["tinyset"]
    assert tiny["frame"]["far"] == pytest.approx(far, abs=1e-12)
    assert tiny["video"]["far"] == pytest.approx(vfar, abs=1e-12)
    cells = next(line for line in r.stdout.splitlines() if line.startswith("tinyset")).split()
    assert float(cells[6]) == pytest.approx(far, abs=5e-5) and float(cells[13]) == pytest.approx(vfar, abs=5e-5)
    assert f"at threshold {thr:g}" in r.stdout
