"""A broken model file is one clear line before any work (issue 23): real damaged copies of
U²-Net-p in a temp cache (truncated, random bytes, empty, a folder in its place)."""

from __future__ import annotations

import os

import pytest

import ewc_fo.models.objectness as obj
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.model_files import check_model_file, check_onnx

REAL = obj.default_model_path()


def _damaged(kind: str, path) -> None:
    data = REAL.read_bytes()
    if kind == "folder":
        os.makedirs(path)
        return
    payload = {"truncated": data[: len(data) // 2], "random": os.urandom(len(data)), "empty": b"",
               "flipped": data[:4096] + bytes(b ^ 0xFF for b in data[4096:8192]) + data[8192:]}[kind]
    path.write_bytes(payload)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "flipped", "folder"])
def test_a_damaged_objectness_model_is_one_line_naming_it(kind, tmp_path, monkeypatch):
    cache = tmp_path / "u2net"
    cache.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(cache))
    monkeypatch.setattr(obj, "PACKAGE", "no-such-wheel")  # the cache's file is the one used
    target = cache / "u2netp.onnx"
    _damaged(kind, target)
    if kind == "folder":  # not found as a file: the download is tried (no network in tests)
        with pytest.raises(ConfigError, match="download"):
            obj.require_objectness()
        return
    with pytest.raises(ConfigError) as e:
        obj.require_objectness()
    msg = str(e.value)
    assert str(target) in msg and "delete it" in msg and "\n" not in msg, msg


def test_the_good_model_passes_by_its_hash_and_a_wrong_onnx_by_its_inputs(tmp_path, monkeypatch):
    cache = tmp_path / "u2net"
    cache.mkdir()
    (cache / "u2netp.onnx").write_bytes(REAL.read_bytes())
    monkeypatch.setenv("U2NET_HOME", str(cache))
    monkeypatch.setattr(obj, "PACKAGE", "no-such-wheel")
    assert obj.require_objectness() == cache / "u2netp.onnx"
    # a whole ONNX file that is not the model asked for: refused on its inputs
    with pytest.raises(ConfigError, match="inputs are"):
        check_model_file(REAL, "a model", "use another", sha256="0" * 64, load=check_onnx([(1, 3, 64, 64)]))
    with pytest.raises(ConfigError, match="not the expected file"):
        check_model_file(REAL, "a model", "use another", sha256="0" * 64)
