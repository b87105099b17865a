"""Cortex-M backend, real-valued layers between binary layers (issue #11): the generated C
equals the golden model's fixed-point mode (`run --fixed-point`) bit for bit.

Models are the torch examples of test_fixed_point_layers.py (Bi-Real residual blocks with a
grouped conv and a global average, ReActNet RSign/RPReLU with both heads, a depthwise conv
concatenated with its input, ReLU + max-pool on fixed-point data, a concat of ±1 maps). The C
is compiled for the host (many random inputs) and for the Cortex-M4 under QEMU; the kernels'
rounding on negative values is checked against sdk/fixedpoint.py on its own.
"""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from host_check import (
    assert_device_tensors_bit_exact,
    assert_host_bit_exact,
    assert_qemu_bit_exact,
    host_bit_exact,
)

import edge_sdk
from edge_sdk import bitpack, golden
from edge_sdk import fixedpoint as fx
from edge_sdk.converters.cortexm import build, layout
from edge_sdk.converters.cortexm.geometry import Window
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.kernels_concat import bits_into
from edge_sdk.converters.cortexm.kernels_fixed import (
    add_align,
    align_into,
    global_avg,
    prelu,
    requant,
)
from edge_sdk.converters.cortexm.kernels_group import group_conv
from edge_sdk.converters.cortexm.plan_fixed import group_lane_weights, split_int64
from edge_sdk.converters.cortexm.tir_to_c import to_c
from edge_sdk.ir import layers as L

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

import test_fixed_point_layers as fpl
import torch_nets as tn


def _scaled_stem(model, factor: float):
    """The stem's BN scaled up: its real-valued output needs a coarser frac than the
    residual branch, so adds and concats shift their operands (rounded right shifts)."""
    with torch.no_grad():
        model.bn0.weight.mul_(factor)
        model.bn0.bias.mul_(factor)
    return model


# The examples, plus wider variants: > 32 channels (several words per packed pixel, bit
# concat across word boundaries, groups of 20 channels) and operands of different fracs.
MODELS = {
    **fpl.MODELS,
    "bireal_40_fracs": lambda: _scaled_stem(fpl.BiReal(c=40, seed=1), 3000.0),
    "depthwise_concat_40_fracs": lambda: _scaled_stem(fpl.DepthwiseConcat(c=40, seed=2),
                                                      3000.0),
    "sign_concat_40": lambda: fpl.SignConcat(c=40, seed=3),
    "reactnet_40": lambda: fpl.ReAct(c=40, seed=4),
}
NAMES = list(MODELS)
QEMU_NAMES = [*fpl.MODELS, "bireal_40_fracs"]
HOST_INPUTS = 200
QEMU_INPUTS = 16
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    """Each example exported once (torchscript exporter: BatchNormalization nodes kept)."""
    folder = tmp_path_factory.mktemp("fixed_models")
    paths = {}
    for name, make in MODELS.items():
        paths[name] = tn.export(make(), torch.zeros((2, *fpl.SHAPE)), folder / f"{name}.onnx",
                                False)
    return paths


def _load(path):
    return edge_sdk.load(path, input_range=(fpl.LO, fpl.HI))


def _scores_to_output(ir, y, like):
    """The model output from the C's int32 scores, as golden._run_fixed computes it."""
    scores = ir.producer(ir.outputs[0])
    info = ir.infos()[scores.inputs[0]]
    q = y.reshape(like.shape[:1] + tuple(info.shape))
    if info.kind == "fixed":
        real = (q.astype(np.float64) * 2.0 ** -info.frac).astype(np.float32)
        return golden.float_ops(real, scores.ops)
    return golden.float_ops(q.astype(np.int64), scores.ops)


@pytest.mark.parametrize("name", NAMES)
def test_host_bit_exact_with_fixed_point_golden(onnx_paths, tmp_path, name):
    m = _load(onnx_paths[name])
    x = fpl._inputs(HOST_INPUTS, seed=3)
    x[0], x[1] = fpl.LO, fpl.HI
    cm, y = host_bit_exact(m.ir, x, tmp_path / "host")
    again = build(_load(onnx_paths[name]).ir)  # a second, independent conversion
    assert cm.files == again.files
    out = golden.run_all(m.ir, x, fixed_point=True)[m.ir.outputs[0]]
    np.testing.assert_array_equal(_scores_to_output(m.ir, y, out), out)
    np.testing.assert_array_equal(out, m.run(x, fixed_point=True))


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", QEMU_NAMES)
def test_qemu_bit_exact_with_fixed_point_golden(onnx_paths, tmp_path, name):
    # the default board, and for the int64 products the Cortex-M3 too
    boards = (None, "qemu-mps2-an385") if name in ("bireal", "reactnet") else (None,)
    folder = assert_qemu_bit_exact(_load(onnx_paths[name]), fpl._inputs(QEMU_INPUTS, seed=5),
                                   tmp_path / "out", boards=boards)
    assert (folder / "report.json").is_file()


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", ["bireal", "depthwise_concat"])
def test_every_tensor_on_the_device_equals_fixed_point_golden(onnx_paths, tmp_path, name):
    """The debug firmware (every buffer kept, thresholds unfused) under unicorn: each layer's
    output, the int32 fixed-point tensors included, equals golden.run_all(fixed_point=True)."""
    ir = _load(onnx_paths[name]).ir
    dumped = assert_device_tensors_bit_exact(ir, fpl._inputs(8, seed=11), tmp_path / "debug")
    fixed = [t for t, info in ir.infos().items() if info.kind == "fixed"]
    assert fixed and set(fixed) <= dumped


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", ["bireal", "reactnet", "depthwise_concat", "sign_concat"])
def test_host_many_seeds_and_inputs(tmp_path, name, seed):
    """Other random weights (seeds) of the examples at 40 channels, 2000 inputs each."""
    make = {"bireal": fpl.BiReal, "reactnet": fpl.ReAct,
            "depthwise_concat": fpl.DepthwiseConcat, "sign_concat": fpl.SignConcat}[name]
    path = tn.export(make(c=40, seed=10 + seed), torch.zeros((2, *fpl.SHAPE)),
                     tmp_path / "m.onnx", False)
    assert_host_bit_exact(_load(path).ir, fpl._inputs(2000, seed=seed), tmp_path / "host")


# ---------------------------------------------------------------------------- kernels alone
def _lib(kernels, tmp_path) -> ctypes.CDLL:
    src = '#include <stdint.h>\n' + "\n".join(to_c(k) for k in kernels)
    return compile_shared({"k.c": src}, tmp_path)


def _p(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _edges(rng, n: int, top: int) -> np.ndarray:
    """Random int32 values in [-top, top] with the extremes, 0, ±1 and small negatives."""
    v = rng.integers(-top, top + 1, size=n, dtype=np.int64)
    v[:8] = [-top, top, 0, -1, 1, -2, -3, -(1 << 20) - 1]
    return np.clip(v, -top, top)


@pytest.mark.parametrize("shift", [1, 2, 15, 24, 32])
def test_requant_rounds_like_the_golden_rule(tmp_path, shift):
    """(x * m + r) >> s in int64 with floor semantics, ties (v = k * 2**s + 2**(s-1) - ...)
    and negative products included: the C equals fixedpoint.affine exactly."""
    rng = np.random.default_rng(shift)
    c, p = 6, 50
    mult = rng.integers(-(1 << 30), 1 << 30, size=c, dtype=np.int64)
    mult[:2] = [1, -1]  # pure shifts: every tie of round-half-up on negative values
    add = rng.integers(-(1 << 52), 1 << 52, size=c, dtype=np.int64)
    add[:2] = 1 << (shift - 1)
    x = _edges(rng, c * p, (1 << 30) - 1).reshape(c, p)
    ties = -(np.arange(1, p - 7, dtype=np.int64) << (shift - 1))  # odd k: exact half ties
    x[:2, 8:] = np.clip(ties, -(1 << 30), 0)[None]
    lib = _lib([requant("rq", c, p, "int32", shift)], tmp_path)
    lo, hi = split_int64(add)
    t = np.concatenate([mult, lo, hi]).astype(np.int32)
    xi = x.astype(np.int32).ravel()
    y = np.zeros(c * p, dtype=np.int32)
    lib.rq(_p(xi), _p(t), _p(y))
    want = fx.affine(x[None], mult, add, shift)[0]
    in_range = (want >= -(1 << 31)) & (want < (1 << 31))  # the lowering never gives others
    np.testing.assert_array_equal(y.reshape(c, p)[in_range], want[in_range])
    assert in_range[:2].all()


@pytest.mark.parametrize("sa,sb", [(0, 0), (3, -1), (-5, 2), (-16, -1), (16, 0)])
def test_add_and_concat_align_like_the_golden_rule(tmp_path, sa, sb):
    rng = np.random.default_rng(abs(sa) * 31 + abs(sb))
    n = 300
    top_a = (1 << (30 - max(sa, 0))) - 1
    top_b = (1 << (30 - max(sb, 0))) - 1
    a = _edges(rng, n, top_a)
    b = _edges(rng, n, top_b)
    lib = _lib([add_align("ad", n, "int32", "int32", sa, sb),
                align_into("al", n, "int32", sa, 2 * n, n)], tmp_path)
    y = np.zeros(n, dtype=np.int32)
    ai, bi = a.astype(np.int32), b.astype(np.int32)
    lib.ad(_p(ai), _p(bi), _p(y))
    want = fx.align(a, 0, sa) + fx.align(b, 0, sb)
    np.testing.assert_array_equal(y, want)
    cat = np.full(2 * n, 7, dtype=np.int32)
    lib.al(_p(ai), _p(cat))
    np.testing.assert_array_equal(cat[n:], fx.align(a, 0, sa))
    assert (cat[:n] == 7).all()  # only its own slice written


def test_prelu_and_average_like_the_golden_rule(tmp_path):
    rng = np.random.default_rng(7)
    c, p = 5, 49
    x = _edges(rng, c * p, (1 << 30) - 1).reshape(c, p)
    slopes = fx.prelu_params(np.array([0.0, 0.25, -0.7, 1.3, 0.123456]))
    lib = _lib([prelu("pr", c, p, "int32", fx.PRELU_SHIFT),
                global_avg("ga", c, p, "int32", fx.gap_multiplier(p), fx.GAP_SHIFT)],
               tmp_path)
    xi = x.astype(np.int32).ravel()
    y = np.zeros(c * p, dtype=np.int32)
    lib.pr(_p(xi), _p(slopes.astype(np.int32)), _p(y))
    np.testing.assert_array_equal(y.reshape(c, p), fx.prelu(x[None], slopes)[0])
    g = np.zeros(c, dtype=np.int32)
    lib.ga(_p(xi), _p(g))
    np.testing.assert_array_equal(g, fx.gap(x.reshape(1, c, 7, 7))[0])


@pytest.mark.parametrize("c_a,a_mask,c_b,b_mask", [(8, False, 16, False), (40, True, 50, False),
                                                   (31, False, 33, True), (64, True, 7, True)])
def test_bit_concat_packs_like_bitpack(tmp_path, c_a, a_mask, c_b, b_mask):
    """Two packed maps (±1 or with zeros) concatenated on the channels equal bitpack's packing
    of the concatenated values: word crossings, mask planes made for ±1 inputs, pad bits 0."""
    rng = np.random.default_rng(c_a * 100 + c_b)
    pixels, c_out = 5, c_a + c_b
    a = rng.choice([-1, 0, 1] if a_mask else [-1, 1], size=(pixels, c_a))
    b = rng.choice([-1, 0, 1] if b_mask else [-1, 1], size=(pixels, c_b))
    mask = a_mask or b_mask

    def planes(v, m):
        sign = bitpack.pack_bits(v > 0).ravel()
        return np.concatenate([sign, bitpack.pack_bits(v != 0).ravel()]) if m else sign

    lib = _lib([bits_into("ca", pixels, c_a, a_mask, c_out, 0, mask, True),
                bits_into("cb", pixels, c_b, b_mask, c_out, c_a, mask, False)], tmp_path)
    pa, pb = planes(a, a_mask), planes(b, b_mask)
    y = np.full(planes(np.concatenate([a, b], 1), mask).size, 0xDEADBEEF, dtype=np.uint32)
    lib.ca(_p(pa), _p(y))
    lib.cb(_p(pb), _p(y))
    np.testing.assert_array_equal(y, planes(np.concatenate([a, b], 1), mask))


def _group_case(rng, groups, cin, rows, k, pads, strides, a_zero, w_zero):
    c, o = groups * cin, groups * rows
    h, w = 5, 6
    oh = (h + pads[0] + pads[2] - k) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - k) // strides[1] + 1
    g = Window(c, h, w, o, k, k, strides[0], strides[1], pads[0], pads[1], 1, 1, oh, ow)
    x = rng.choice([-1, 0, 1] if a_zero else [-1, 1], size=(1, c, h, w)).astype(np.int8)
    wv = rng.choice([-1, 0, 1] if w_zero else [-1, 1], size=(o, cin * k * k)).astype(np.int8)
    layer = L.GroupConv2d("g", ["x"], "y", weights=L.IntWeights(wv), in_channels=c,
                          kernel=(k, k), strides=strides, pads=pads, groups=groups)
    want = golden.group_conv2d(x.astype(np.int64), layer, "ternary" if a_zero else "bipolar")
    return g, x, layer, want


@pytest.mark.parametrize("groups,cin,rows,k,pads,strides,a_zero,w_zero", [
    (8, 1, 1, 3, (1, 1, 1, 1), (1, 1), False, False),  # depthwise
    (40, 1, 2, 3, (1, 1, 1, 1), (1, 1), True, False),  # depthwise x2, 2 words, zeros
    (4, 2, 4, 3, (1, 1, 1, 1), (1, 1), False, True),  # ternary weights
    (3, 12, 2, 2, (0, 1, 1, 0), (2, 1), True, True),  # groups straddle words
    (2, 20, 3, 3, (0, 0, 0, 0), (1, 2), False, False),  # no padding
])
def test_group_conv_lanes_equal_golden(tmp_path, groups, cin, rows, k, pads, strides, a_zero,
                                       w_zero):
    rng = np.random.default_rng(groups * 7 + cin)
    g, x, layer, want = _group_case(rng, groups, cin, rows, k, pads, strides, a_zero, w_zero)
    lib = _lib([group_conv("gc", g, groups, a_zero, w_zero)], tmp_path)
    xa = np.concatenate([bitpack.pack_bits(x[0].transpose(1, 2, 0) > 0).ravel()]
                        + ([bitpack.pack_bits(x[0].transpose(1, 2, 0) != 0).ravel()]
                           if a_zero else []))
    wt = group_lane_weights(layout.weight_values(layer.weights), groups, k * k, g.cw)
    y = np.zeros(want.size, dtype=np.int32)
    lib.gc(_p(xa), _p(wt), _p(y))
    np.testing.assert_array_equal(y.reshape(want.shape[1:]), want[0])


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", ["reactnet_real_head", "bireal"])
def test_build_simulate_check_uses_the_fixed_point_golden(onnx_paths, tmp_path, name):
    """Build.simulate(check=True) (what `edge-sdk simulate --check` runs): the output goes
    through the fixed-point scores' 2^-frac and the check compares with `run --fixed-point`."""
    m = _load(onnx_paths[name])
    b = m.convert("cortex-m", tmp_path / "out")
    x = fpl._inputs(8, seed=9)
    sim = b.simulate(x, check=True)
    assert sim.ok, sim.mismatch
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))
