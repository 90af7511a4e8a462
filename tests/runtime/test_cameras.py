"""runtime.cameras: named sources, the cameras TOML file and its one-line errors."""

from __future__ import annotations

import builtins

import pytest

from runtime.cameras import FOREVER, camera_specs, from_toml, split_name
from runtime.errors import EXIT_USAGE, UserError


def test_a_name_before_equals_names_the_camera_but_urls_and_pipelines_keep_theirs(tmp_path):
    assert split_name("door=rtsp://10.0.0.5/s?x=1") == ("door", "rtsp://10.0.0.5/s?x=1")
    assert split_name("rtsp://host/a=b") == (None, "rtsp://host/a=b")
    assert split_name("v4l2src device=/dev/video0 ! appsink") == (None, "v4l2src device=/dev/video0 ! appsink")
    odd = tmp_path / "a=b.mp4"
    odd.write_bytes(b"")
    assert split_name(str(odd)) == (None, str(odd))  # an existing file is a file
    specs = camera_specs(["0", "lobby=lobby.mp4", "x.mp4"], None)
    assert [(s.name, s.source) for s in specs] == [("cam1", "0"), ("lobby", "lobby.mp4"), ("cam3", "x.mp4")]


def test_toml_cameras_with_options_relative_paths_and_forever(tmp_path):
    (tmp_path / "lobby.mp4").write_bytes(b"")
    cfg = tmp_path / "cams.toml"
    cfg.write_text('[cameras.door]\nsource = "rtsp://10.0.0.5/s"\nmax_reconnects = "forever"\ntimeout = 3\n\n'
                   '[cameras.lobby]\nsource = "lobby.mp4"\nstride = 2\nfaces = "haar"\ndetect_every = 3\n')
    door, lobby = from_toml(str(cfg))
    assert door.name == "door" and door.options == {"max_reconnects": FOREVER, "timeout": 3}
    assert lobby.source == str(tmp_path / "lobby.mp4") and lobby.options == {"stride": 2, "faces": "haar",
                                                                             "detect_every": 3}
    with pytest.raises(UserError, match="'door' is given twice"):
        camera_specs(["door=1"], str(cfg))
    specs = camera_specs(["0"], str(cfg))
    assert [s.name for s in specs] == ["door", "lobby", "cam1"]


@pytest.mark.parametrize("text, needle", [
    ('[cameras.door]\nsource = "0"\nstrid = 2\n', "unknown key 'strid'"),
    ('[cameras.door]\nsource = "0"\nstride = 0\n', "stride = 0: expected an integer of at least 1"),
    ('[cameras.door]\nsource = "0"\nlive = true\n', "live = True: expected one of auto, yes, no"),
    ('[cameras.door]\nstride = 2\n', "no source"),
    ('[cameras."1door"]\nsource = "0"\n', "a name is a letter"),
    ('[cameras."door\\n"]\nsource = "0"\n', "a name is a letter"),  # a trailing newline is no name
    ('[camera.door]\nsource = "0"\n', "unknown top-level key"),
    ('cameras = 3\n', "no cameras"),
    ('[cameras.door\nsource = "0"\n', "not valid TOML"),
])
def test_toml_mistakes_are_one_line_usage_errors_naming_file_camera_and_key(tmp_path, text, needle):
    cfg = tmp_path / "cams.toml"
    cfg.write_text(text)
    with pytest.raises(UserError, match=needle) as e:
        from_toml(str(cfg))
    assert e.value.exit_code == EXIT_USAGE and str(cfg) in str(e.value) and "\n" not in str(e.value)


def test_without_tomllib_or_tomli_the_error_names_the_install_command(tmp_path, monkeypatch):
    cfg = tmp_path / "cams.toml"
    cfg.write_text('[cameras.door]\nsource = "0"\n')
    real = builtins.__import__

    def no_toml(name, *args, **kw):
        if name in ("tomllib", "tomli"):
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_toml)
    with pytest.raises(UserError, match=r"pip install tomli"):
        from_toml(str(cfg))


def test_a_relative_toml_source_is_the_tomls_even_when_the_cwd_has_one_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "x.jpg").write_bytes(b"the toml's")
    (tmp_path / "x.jpg").write_bytes(b"a decoy in the cwd")
    cfg = tmp_path / "cfg" / "c.toml"
    cfg.write_text('[cameras.a]\nsource = "x.jpg"\n')
    monkeypatch.chdir(tmp_path)
    (cam,) = from_toml(str(cfg))
    assert cam.source == str(tmp_path / "cfg" / "x.jpg")
    (tmp_path / "cfg" / "x.jpg").unlink()  # only the cwd has one: say why it is not read
    with pytest.raises(UserError, match="relative to .*c.toml's folder") as e:
        from_toml(str(cfg))
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("raw", ["a b=x.jpg", "\u00e9=x.jpg", "door cam=rtsp-less.mp4"])
def test_a_source_whose_name_is_no_camera_name_says_so(tmp_path, monkeypatch, raw):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="is not a camera name") as e:
        camera_specs([raw, "door=y.jpg"], None)
    assert e.value.exit_code == EXIT_USAGE and raw in str(e.value)
    (tmp_path / raw).write_bytes(b"")  # a file of that whole name is that file, no camera name needed
    assert camera_specs([raw], None)[0].source == raw


@pytest.mark.parametrize("raw", ["data/date=2024-01-01/*.mp4", "clips/date=2024-01-01/a.mp4", "runs/k=1/x.mp4"])
def test_paths_and_patterns_with_equals_are_sources_not_names(tmp_path, monkeypatch, raw):
    monkeypatch.chdir(tmp_path)
    (cam,) = camera_specs([raw], None)  # a missing file is the source's own error later, not a name error
    assert cam.source == raw and cam.name == "cam1"
