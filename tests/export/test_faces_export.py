"""export.faces checks its --out folder before converting any network, and says what it replaces."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from export.faces import check_out, export_faces
from runtime.errors import UserError


def _wheel(tmp: Path) -> Path:
    """A wheel whose weights are not weights: converting would fail, so an --out error proves it came first."""
    wheel = tmp / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for net in ("pnet", "rnet", "onet"):
            z.writestr(f"facenet_pytorch/data/{net}.pt", b"not a state_dict")
    return wheel


def test_out_is_checked_before_any_network_is_converted(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        export_faces(blocker / "mtcnn", wheel)
    with pytest.raises(UserError, match="nothing can be written in /proc"):
        export_faces("/proc/jrc-x/mtcnn", wheel)
    (tmp_path / "out" / "rnet.onnx").mkdir(parents=True)
    with pytest.raises(UserError, match="rnet.onnx is a folder"):
        export_faces(tmp_path / "out", wheel)
    assert not (tmp_path / "out" / "pnet.onnx").exists()


def test_replacing_names_the_engines_built_from_the_earlier_files(tmp_path: Path, capsys) -> None:
    for name in ("pnet.onnx", "pnet.engine", "pnet.engine.json", "rnet.onnx"):
        (tmp_path / name).write_text("earlier")
    say_replacing = check_out(tmp_path)
    assert capsys.readouterr().err == ""  # said only once the weights passed their checks
    say_replacing()
    assert (f"note: replacing pnet.onnx, rnet.onnx in {tmp_path}; built from the earlier ones, rebuild them: "
            "pnet.engine, pnet.engine.json") in capsys.readouterr().err


@pytest.mark.parametrize("blob", [b"garbage", b"PK\x03\x04garbage", b"\x80\x04N."], ids=["text", "bad-zip", "a-pickled-None"])
def test_damaged_face_weights_are_one_line(blob):
    """Weights that are damaged or not MTCNN's say so in one line naming the network, never a torch
    traceback (export.faces reads them from the installed wheel)."""
    import io

    from runtime.errors import UserError
    from training.mtcnn import load_net

    with pytest.raises(UserError, match=r"MTCNN onet: its weights cannot be read") as e:
        load_net("onet", io.BytesIO(blob))
    assert "\n" not in str(e.value)
