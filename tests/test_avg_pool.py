"""Windowed average pooling on real-valued data (issue #11): the Bi-Real / ReActNet / QuickNet
downsampling shortcut AvgPool2d(2, stride 2) -> BN on the real-valued map.

- `run` (faithful float32) equals onnxruntime bit for bit (AveragePool up to opset 18: MLAS's
  order, column sums then across; from opset 19: taps row by row; both divided by float32(n))
  and TFLite's float AVERAGE_POOL_2D (taps row by row) as the independent NumPy reference
  converters/tflite/reference.py computes it;
- `run --fixed-point` (sdk/fixedpoint.py's AvgPool rule) against plain integer arithmetic and,
  on whole models, onnxruntime's argmax;
- Cortex-M (host build, QEMU) and FPGA (Icarus) bit-exact with golden.run(ir, x,
  fixed_point=True);
- bad windows: one-line errors naming the node.
"""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest

import edge_sdk
from edge_sdk import fixedpoint as fx
from edge_sdk import golden
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

import test_fixed_point_layers as fpl
import torch_nets as tn
from conftest import assert_close_to_reference
from host_check import assert_host_bit_exact, assert_qemu_bit_exact
from torch import nn

SHAPE = (1, 8, 8)
LO, HI = 0, 15
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")


# ---------------------------------------------------------------------------- torch models
class BiRealDown(nn.Module):
    """Bi-Real's downsampling block: the binary branch BN(binconv 3x3 stride 2 (sign x)), the
    shortcut BN(AvgPool2d(2, 2)(x)) on the real-valued map, summed; then sign -> binary dense."""

    def __init__(self, c=8, seed=0, n_out=10, pool=None):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = fpl._bin_conv(1, c, gen, kfan=9 * HI)
        self.conv = tn.BinConv(c, c, 3, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
        self.bn1 = nn.BatchNorm2d(c)
        tn._randomise_bn(self.bn1, gen, c * 9)
        self.pool = pool or nn.AvgPool2d(2, 2)
        self.bn2 = nn.BatchNorm2d(c)
        tn._randomise_bn(self.bn2, gen, 1)
        with torch.no_grad():  # the shortcut's BN on values of the stem's scale
            self.bn2.running_mean.zero_()
            self.bn2.running_var.fill_(1.0)
        oh = SHAPE[1] // 2
        self.fc, self.bnf = fpl._head(c * oh * oh, n_out, gen)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        y = self.bn1(self.conv(torch.sign(x))) + self.bn2(self.pool(x))
        return self.bnf(self.fc(torch.flatten(torch.sign(y), 1)))


class BiRealDownConv(BiRealDown):
    """The shortcut as Bi-Real / ReActNet / QuickNet train it: AvgPool2d(2, 2) -> real-valued
    1x1 conv -> BN (the conv becomes an 8-bit layer with a calibration set)."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__(c, seed, n_out)
        gen = torch.Generator().manual_seed(seed + 100)
        self.down = nn.Conv2d(c, c, 1, bias=False)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(self.down.weight.shape, generator=gen) * 0.5)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        y = self.bn1(self.conv(torch.sign(x))) + self.bn2(self.down(self.pool(x)))
        return self.bnf(self.fc(torch.flatten(torch.sign(y), 1)))


class PoolSign(nn.Module):
    """real map -> AvgPool (any window) -> BN -> sign -> binary dense: the simplest reader."""

    def __init__(self, pool, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = fpl._bin_conv(1, c, gen, kfan=9 * HI)
        self.pool = pool
        self.bn = nn.BatchNorm2d(c)
        tn._randomise_bn(self.bn, gen, 1)
        with torch.no_grad():
            self.bn.running_mean.zero_()
            self.bn.running_var.fill_(1.0)
        n = int(np.prod(pool(torch.zeros(1, c, *SHAPE[1:])).shape[1:]))
        self.fc, self.bnf = fpl._head(n, n_out, gen)

    def forward(self, x):
        x = self.pool(self.bn0(self.stem(x)))
        return self.bnf(self.fc(torch.flatten(torch.sign(self.bn(x)), 1)))


class AccPool(nn.Module):
    """AvgPool straight on a binary conv's integer accumulator, then BN -> sign -> dense: the
    fixed-point mean keeps its fraction (a finer frac than the integers it reads)."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = fpl._bin_conv(1, c, gen, kfan=9 * HI)
        self.pool = nn.AvgPool2d(2, 2)
        oh = SHAPE[1] // 2
        self.fc, self.bnf = fpl._head(c * oh * oh, n_out, gen)

    def forward(self, x):
        x = self.bn0(self.pool(self.stem(x)))
        return self.bnf(self.fc(torch.flatten(torch.sign(x), 1)))


class PoolOut(nn.Module):
    """real map -> AvgPool -> flatten as the model output: the pooled fixed-point tensor is
    what the backends return, so every value of it is compared (no sign hides an error)."""

    def __init__(self, pool, c=6, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = fpl._bin_conv(1, c, gen, kfan=9 * HI)
        self.pool = pool

    def forward(self, x):
        return torch.flatten(self.pool(self.bn0(self.stem(x))), 1)


MODELS = {
    "bireal_down": lambda: BiRealDown(),
    "bireal_down_conv": lambda: BiRealDownConv(seed=7),
    "pool2_sign": lambda: PoolSign(nn.AvgPool2d(2, 2)),
    "pool3_s1": lambda: PoolSign(nn.AvgPool2d(3, 1), seed=1),
    "pool3_pad_exclude": lambda: PoolSign(nn.AvgPool2d(3, 1, padding=1,
                                                       count_include_pad=False), seed=2),
    "pool3_pad_include": lambda: PoolSign(nn.AvgPool2d(3, 2, padding=1), seed=3),
    "acc_pool": lambda: AccPool(seed=8),
    "out_pool2": lambda: PoolOut(nn.AvgPool2d(2, 2), seed=4),
    "out_pool3_include": lambda: PoolOut(nn.AvgPool2d(3, 2, padding=1), seed=5),
    "out_pool3_exclude": lambda: PoolOut(nn.AvgPool2d(3, 1, padding=1,
                                                      count_include_pad=False), seed=6),
}
# windows that never leave the map run on every target; padded ones as far as they go
BACKEND_MODELS = ["bireal_down", "pool2_sign", "pool3_s1"]


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avg_models")
    cache: dict = {}

    def get(name: str, dynamo: bool = False):
        if (name, dynamo) not in cache:
            model = MODELS[name]()
            path = tn.export(model, torch.zeros((2, *SHAPE)),
                             folder / f"{name}_{int(dynamo)}.onnx", dynamo)
            cache[name, dynamo] = (model, path)
        return cache[name, dynamo]

    return get


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(LO, HI + 1, size=(n, *SHAPE)).astype(np.float32)
    x[0], x[1] = LO, HI
    return x


def _opset(path) -> int:
    import onnx

    return next(o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx"))


def _load(path):
    """The ONNX model, 8-bit-quantising its float convs (a calibration set) when it has any."""
    cal = _inputs(64, seed=99) if "_conv" in str(path) else None
    return edge_sdk.load(path, input_range=(LO, HI), calibration=cal)


# ---------------------------------------------------------------------------- ONNX models
@pytest.mark.parametrize("name", list(MODELS))
def test_run_equals_onnxruntime_and_fixed_point_agrees(onnx_paths, name):
    model, path = onnx_paths(name)
    m = _load(path)
    pools = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    assert len(pools) == 1 and pools[0].float_kernel == ("mlas" if _opset(path) < 19 else "rows")
    x = _inputs(300)
    ref = run_onnxruntime(path, x)
    y = m.run(x)
    assert_close_to_reference(y, ref, exact=True)
    assert m.check(x, y).ok
    with torch.no_grad():
        assert_close_to_reference(y, model(torch.from_numpy(x)).numpy(), exact=False)
    yq = m.run(x, fixed_point=True)
    if name.startswith("out_"):  # the pooled map itself: a few steps 2**-frac from float32
        frac = m.ir.infos()[m.ir.producer(m.ir.outputs[0]).inputs[0]].frac
        assert np.abs(yq - ref).max() <= 4 * 2.0 ** -frac + 4 * np.spacing(np.abs(ref).max())
        return
    agree = float(np.mean(yq.argmax(1) == ref.argmax(1)))
    # the calibrated shortcut conv reads the pooled map quantised to 8 bits in fixed point
    assert agree >= (0.9 if name.endswith("_conv") else 0.98), agree


def test_dynamo_export_equals_onnxruntime(onnx_paths):
    _, path = onnx_paths("bireal_down", True)
    m = _load(path)
    assert any(isinstance(la, L.AvgPool) for la in m.ir.layers)
    x = _inputs(100, seed=4)
    ref = run_onnxruntime(path, x)
    # dynamo folds BN into the conv weights: onnxruntime's own float32 order there
    assert_close_to_reference(m.run(x), ref, exact=False)
    assert float(np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1))) >= 0.97


def test_average_of_integers_keeps_its_fraction(onnx_paths):
    """On an integer accumulator the pooled mean gets a fine frac (its quarter steps are not
    rounded away), so the BN + sign after it agree with float32 on nearly every value."""
    _, path = onnx_paths("acc_pool")
    m = _load(path)
    infos = m.ir.infos()
    (pool,) = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    assert infos[pool.inputs[0]].kind == "int" and infos[pool.output].frac >= 16
    x = _inputs(200, seed=6)
    env_f = golden.run_all(m.ir, x)
    env_q = golden.run_all(m.ir, x, fixed_point=True)
    # exact: the sum of 4 integers over 4 is a multiple of 2**-2, both modes
    np.testing.assert_array_equal(env_q[pool.output] * 2.0 ** -infos[pool.output].frac,
                                  env_f[pool.output])
    sign = m.ir.consumers(pool.output)[0]
    assert float(np.mean(env_q[sign.output] == env_f[sign.output])) >= 0.999


def test_fixed_point_pool_tracks_float32(onnx_paths):
    """The pooled fixed-point tensor is within a couple of steps 2**-frac of float32's."""
    _, path = onnx_paths("bireal_down")
    m = _load(path)
    infos = m.ir.infos()
    x = _inputs(100, seed=1)
    env_f = golden.run_all(m.ir, x)
    env_q = golden.run_all(m.ir, x, fixed_point=True)
    (pool,) = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    info = infos[pool.output]
    assert info.kind == "fixed" and info.frac == infos[pool.inputs[0]].frac
    assert np.abs(env_q[pool.output]).max() <= info.max_abs
    err = np.abs(env_q[pool.output] * 2.0 ** -info.frac - env_f[pool.output]).max()
    assert err <= 2 * 2.0 ** -info.frac + 8 * float(np.spacing(np.float32(
        info.max_abs * 2.0 ** -info.frac)))


def test_ir_folder_round_trip(onnx_paths, tmp_path):
    _, path = onnx_paths("pool3_pad_exclude")
    m = _load(path)
    back = edge_sdk.load(m.convert("ir", tmp_path / "ir"))
    (pool,) = [la for la in back.ir.layers if isinstance(la, L.AvgPool)]
    assert pool.pads == (1, 1, 1, 1) and not pool.count_include_pad
    x = _inputs(40, seed=2)
    for fixed in (False, True):
        np.testing.assert_array_equal(back.run(x, fixed_point=fixed), m.run(x, fixed_point=fixed))


# ---------------------------------------------------------------------------- the rules
def _onnx_pool(shape, kernel, strides, pads, include, ceil=0, opset=13):
    from onnx import TensorProto, helper

    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(strides), pads=list(pads),
                            count_include_pad=int(include), ceil_mode=ceil)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [None, *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 19 else 9
    return model.SerializeToString()


WINDOWS = [((2, 2), (2, 2), (0, 0, 0, 0), False), ((3, 3), (1, 1), (0, 0, 0, 0), False),
           ((3, 3), (1, 1), (1, 1, 1, 1), False), ((3, 3), (1, 1), (1, 1, 1, 1), True),
           ((3, 3), (2, 2), (1, 1, 1, 1), False), ((5, 3), (1, 2), (2, 1, 2, 1), True),
           ((2, 3), (2, 1), (0, 1, 1, 0), False)]


@pytest.mark.parametrize("opset,order", [(13, "mlas"), (18, "mlas"), (19, "rows"), (21, "rows")])
@pytest.mark.parametrize("kernel,strides,pads,include", WINDOWS)
def test_float_average_mirrors_onnxruntime_bit_for_bit(kernel, strides, pads, include, opset,
                                                       order):
    """onnxruntime sums AveragePool-7..18 in MLAS's order and AveragePool-19+ row by row; the
    other order would differ in about a third of the values."""
    rng = np.random.default_rng(3)
    layer = L.AvgPool("p", ["x"], "y", kernel=kernel, strides=strides, pads=pads,
                      count_include_pad=include, float_kernel=order)
    other = L.AvgPool("p", ["x"], "y", kernel=kernel, strides=strides, pads=pads,
                      count_include_pad=include, float_kernel={"mlas": "rows",
                                                               "rows": "mlas"}[order])
    for hw in ((6, 6), (9, 7), (33, 34)):
        x = (rng.normal(size=(3, 5, *hw)) * 10).astype(np.float32)
        want = run_onnxruntime(_onnx_pool((5, *hw), kernel, strides, pads, include,
                                          opset=opset), x)
        got = golden.avg_pool_float(x, layer)
        assert got.dtype == want.dtype and np.array_equal(got, want), hw
        assert not np.array_equal(golden.avg_pool_float(x, other), want)


def _scaled_pool_model(path, kernel, strides, pads, include, opset, ceil=0, name="pool_node"):
    """input [N, 4, 8, 8] -> Mul by 0.1 (a real-valued map) -> AveragePool -> the output."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(_onnx_pool((4, 8, 8), kernel, strides, pads, include, ceil,
                                             opset))
    g = model.graph
    g.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4))
    g.initializer.append(helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]))
    g.node.insert(0, helper.make_node("Mul", ["x", "s"], ["xs"], name="scale"))
    g.node[1].input[0] = "xs"
    g.node[1].name = name
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("opset,order", [(13, "mlas"), (17, "mlas"), (19, "rows"),
                                         (21, "rows")])
def test_frontend_picks_onnxruntimes_order_by_opset(tmp_path, opset, order):
    path = _scaled_pool_model(tmp_path / "m.onnx", (3, 3), (1, 1), (1, 1, 1, 1), False, opset)
    m = edge_sdk.load(path, input_range=(0, 255))
    (pool,) = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    assert pool.float_kernel == order
    x = np.random.default_rng(opset).integers(0, 256, (20, 4, 8, 8)).astype(np.float32)
    ref = run_onnxruntime(path, x)
    np.testing.assert_array_equal(m.run(x), ref)
    frac = m.ir.infos()[pool.output].frac
    assert np.abs(m.run(x, fixed_point=True) - ref).max() <= 2 * 2.0 ** -frac + 1e-5


@pytest.mark.parametrize("opset", [13, 19])
@pytest.mark.parametrize("auto_pad,kernel,strides", [("SAME_UPPER", (3, 3), (2, 2)),
                                                     ("SAME_LOWER", (2, 2), (1, 1)),
                                                     ("VALID", (3, 2), (2, 2))])
@pytest.mark.parametrize("include", [False, True])
def test_auto_pad_windows_equal_onnxruntime(tmp_path, opset, auto_pad, kernel, strides,
                                            include):
    import onnx

    path = _scaled_pool_model(tmp_path / "m.onnx", kernel, strides, (0, 0, 0, 0), include,
                              opset)
    model = onnx.load(path)
    node = model.graph.node[1]
    for attr in list(node.attribute):
        if attr.name == "pads":
            node.attribute.remove(attr)
    node.attribute.append(onnx.helper.make_attribute("auto_pad", auto_pad))
    onnx.save(model, path)
    m = edge_sdk.load(path, input_range=(0, 255))
    x = np.random.default_rng(7).integers(0, 256, (10, 4, 8, 8)).astype(np.float32)
    ref = run_onnxruntime(path, x)
    np.testing.assert_array_equal(m.run(x), ref)
    (pool,) = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    frac = m.ir.infos()[pool.output].frac
    assert np.abs(m.run(x, fixed_point=True) - ref).max() <= 2 * 2.0 ** -frac + 1e-5


def _exact_rule(x, kernel, strides, pads, include):
    """The fixed-point rule with Python integers and Fractions, position by position."""
    n_, c_, h, w = x.shape
    (kh, kw), (sh, sw), (t, lft, b, r) = kernel, strides, pads
    oh, ow = (h + t + b - kh) // sh + 1, (w + lft + r - kw) // sw + 1
    out = np.zeros((n_, c_, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            rows = [y for y in range(i * sh - t, i * sh - t + kh) if 0 <= y < h]
            cols = [v for v in range(j * sw - lft, j * sw - lft + kw) if 0 <= v < w]
            n = kh * kw if include else len(rows) * len(cols)
            mult = round(Fraction(2 ** fx.GAP_SHIFT, n))  # half to even: ties never occur
            for a in range(n_):
                for cc in range(c_):
                    s = sum(int(x[a, cc, y, v]) for y in rows for v in cols)
                    out[a, cc, i, j] = (s * mult + 2 ** (fx.GAP_SHIFT - 1)) >> fx.GAP_SHIFT
    return out


@pytest.mark.parametrize("kernel,strides,pads,include", WINDOWS)
def test_fixed_rule_is_the_documented_integer_rule(kernel, strides, pads, include):
    rng = np.random.default_rng(5)
    x = rng.integers(-(2**30), 2**30, size=(2, 3, 7, 8))
    x[0, 0] = 2**30 - 1
    x[1, 1] = -(2**30)
    got = fx.avg_pool(x, kernel, strides, pads, include)
    np.testing.assert_array_equal(got, _exact_rule(x, kernel, strides, pads, include))
    # within half a step (plus the multiplier's rounding) of the exact mean
    counts = fx.avg_pool_counts((7, 8), kernel, strides, pads, include)
    sums = fx.window_sums(x, kernel, strides, pads)
    assert np.abs(got - sums / counts).max() <= 0.5 + np.abs(sums).max() * 2.0 ** -fx.GAP_SHIFT


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("kernel,strides,pads,ceil,match", [
    ((2, 2), (2, 2), (2, 0, 0, 0), 0, r"pads .* smaller than the kernel"),
    ((3, 3), (2, 2), (0, 0, 0, 0), 1, r"ceil_mode=1"),
])
def test_bad_windows_are_refused_naming_the_node(tmp_path, kernel, strides, pads, ceil, match):
    path = _scaled_pool_model(tmp_path / "m.onnx", kernel, strides, pads, False, 13, ceil)
    with pytest.raises(EdgeError, match=match) as err:
        edge_sdk.load(path, input_range=(0, 15))
    assert "\n" not in str(err.value) and "pool_node" in str(err.value)


# ---------------------------------------------------------------------------- TFLite
def _tflite_pool_model(path, kernel, stride, padding: int, channels: int = 3, seed: int = 0,
                       pooled_out: bool = False):
    """image [1, 8, 8, 1] -> CONV_2D 3x3 (±1) + bias (real-valued [1, 8, 8, C]) ->
    AVERAGE_POOL_2D -> RESHAPE -> SIGN -> FULLY_CONNECTED 3 (±1). padding: 0 SAME, 1 VALID.
    `pooled_out`: the flattened pooled map is the output (no sign after it)."""
    from test_tflite import CONV, FC, RESHAPE, SIGN, Writer, conv_opts, pool_opts

    rng = np.random.default_rng(seed)
    w = Writer()
    x = w.tensor([1, 8, 8, 1], name="image")
    y = w.tensor([1, 8, 8, channels], name="conv_out")
    filt = rng.choice([-1.0, 1.0], (channels, 3, 3, 1)).astype(np.float32)
    bias = rng.normal(0, 2, channels).astype(np.float32)
    w.op(CONV, [x, w.const(filt), w.const(bias)], [y], conv_opts(0, (1, 1), (1, 1)))
    if padding == 0:
        oh, ow = -(-8 // stride[0]), -(-8 // stride[1])
    else:
        oh, ow = (8 - kernel[0]) // stride[0] + 1, (8 - kernel[1]) // stride[1] + 1
    p = w.tensor([1, oh, ow, channels], name="pool_out")
    w.op(1, [y], [p], pool_opts(padding, stride, kernel))  # 1 = AVERAGE_POOL_2D
    n = oh * ow * channels
    flat = w.tensor([1, n])
    w.op(RESHAPE, [p, w.const(np.int32([1, n]))], [flat])
    if pooled_out:
        path.write_bytes(w.build([x], [flat]))
        return path
    s = w.tensor([1, n])
    w.op(SIGN, [flat], [s])
    out = w.tensor([1, 3], name="logits")
    w.op(FC, [s, w.const(rng.choice([-1.0, 1.0], (3, n)).astype(np.float32)), -1], [out])
    path.write_bytes(w.build([x], [out]))
    return path


TFLITE_WINDOWS = [((2, 2), (2, 2), 1), ((3, 3), (1, 1), 1), ((3, 3), (1, 1), 0),
                  ((3, 3), (2, 2), 0), ((2, 3), (2, 1), 0)]


@pytest.mark.parametrize("kernel,stride,padding", TFLITE_WINDOWS)
def test_tflite_average_pool_golden_equals_reference(tmp_path, kernel, stride, padding):
    from edge_sdk.converters.tflite.reference import run_reference

    path = _tflite_pool_model(tmp_path / "m.tflite", kernel, stride, padding)
    m = edge_sdk.load(path)
    (pool,) = [la for la in m.ir.layers if isinstance(la, L.AvgPool)]
    assert pool.float_kernel == "rows" and not pool.count_include_pad
    assert any(pool.pads) == (padding == 0 and kernel != stride)  # SAME pads these
    xs = np.random.default_rng(1).integers(0, 17, (64, 8, 8, 1)).astype(np.float32)
    ref = run_reference(path, xs)
    assert_close_to_reference(m.run(xs), ref, exact=True)
    assert m.check(xs, m.run(xs)).ok  # `run --check`: against the same NumPy reference
    # the pooled map itself, value for value (the sign after it hides small differences)
    env = golden.run_all(m.ir, xs)
    got = env[pool.output].transpose(0, 2, 3, 1)
    want = _tflite_order_average(env[pool.inputs[0]].transpose(0, 2, 3, 1), kernel, stride,
                                 padding)
    np.testing.assert_array_equal(got, want)
    assert float(np.mean(m.run(xs, fixed_point=True).argmax(1) == ref.argmax(1))) >= 0.95


def _tflite_order_average(x, kernel, stride, padding):
    """TFLite's optimized float AveragePool written out: the output starts at 0, every input
    pixel (row by row) is added to each output window that holds it, then / count."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    if padding == 0:
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0) // 2
        pw = max((ow - 1) * sw + kw - w, 0) // 2
    else:
        oh, ow, ph, pw = (h - kh) // sh + 1, (w - kw) // sw + 1, 0, 0
    out = np.zeros((n, oh, ow, c), np.float32)
    count = np.zeros((oh, ow), np.float32)
    for yy in range(h):
        for xx in range(w):
            for i in range(oh):
                for j in range(ow):
                    if 0 <= yy + ph - i * sh < kh and 0 <= xx + pw - j * sw < kw:
                        out[:, i, j] = (out[:, i, j] + x[:, yy, xx]).astype(np.float32)
                        count[i, j] += 1
    return (out / count[None, :, :, None]).astype(np.float32)


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@needs_icarus
@pytest.mark.parametrize("kernel,stride", [((3, 3), (1, 1)), ((3, 3), (2, 2))])
def test_tflite_same_pool_on_both_backends_bit_exact(tmp_path, kernel, stride):
    """TFLite SAME windows (padding excluded from the divisor, n per position): every tensor
    on the Cortex-M (debug firmware under unicorn) and every stage's output in the Verilog
    (probes, Icarus), the pooled map included, equals the fixed-point golden model."""
    from edge_sdk.converters.cortexm import debug_dumps
    from edge_sdk.converters.fpga import probes

    path = _tflite_pool_model(tmp_path / "m.tflite", kernel, stride, 0, seed=3)
    ir = edge_sdk.load(path).ir
    (pool,) = [la for la in ir.layers if isinstance(la, L.AvgPool)]
    assert len(np.unique(fx.avg_pool_counts((8, 8), pool.kernel, pool.strides, pool.pads,
                                            False))) > 1
    xs = np.random.default_rng(2).integers(0, 17, (3, 8, 8, 1)).astype(np.float32)
    env = golden.run_all(ir, xs, fixed_point=True)
    for got in (debug_dumps.dump(ir, xs, tmp_path / "debug"), probes.dump(ir, xs)):
        assert pool.output in got
        for tensor, value in got.items():
            np.testing.assert_array_equal(value, env[tensor], err_msg=tensor)


def test_tflite_int8_and_whole_map_paths_unchanged(tmp_path):
    """A whole-map window stays a GlobalAvgPool."""
    path = _tflite_pool_model(tmp_path / "m.tflite", (8, 8), (1, 1), 1)
    m = edge_sdk.load(path)
    assert any(isinstance(la, L.GlobalAvgPool) for la in m.ir.layers)
    assert not any(isinstance(la, L.AvgPool) for la in m.ir.layers)


# ---------------------------------------------------------------------------- Cortex-M
@pytest.mark.parametrize("name", list(MODELS))
def test_cortexm_host_bit_exact_with_fixed_point_golden(onnx_paths, tmp_path, name):
    m = _load(onnx_paths(name)[1])
    cm = assert_host_bit_exact(m.ir, _inputs(200, seed=3), tmp_path / "host")
    assert any("average pool" in line for line in cm.files["model.c"].splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("make", [
    lambda seed: BiRealDown(c=40, seed=10 + seed),
    lambda seed: PoolSign(nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), c=40,
                          seed=20 + seed),
    lambda seed: PoolOut(nn.AvgPool2d(3, 2, padding=1), c=40, seed=30 + seed),
], ids=["bireal_down_40", "pool3_exclude_40", "out_pool3_include_40"])
def test_cortexm_host_many_seeds_and_inputs(tmp_path, make, seed):
    """Other random weights at 40 channels (two words per packed pixel), 2000 inputs each:
    faithful mode vs onnxruntime exactly, and the C vs the fixed-point golden model."""
    path = tn.export(make(seed), torch.zeros((2, *SHAPE)), tmp_path / "m.onnx", False)
    m = _load(path)
    x = _inputs(2000, seed=seed)
    np.testing.assert_array_equal(m.run(x), run_onnxruntime(path, x))
    assert_host_bit_exact(m.ir, x, tmp_path / "host")


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", ["bireal_down_conv", "out_pool3_exclude"])
def test_cortexm_qemu_bit_exact_with_fixed_point_golden(onnx_paths, tmp_path, name):
    assert_qemu_bit_exact(_load(onnx_paths(name)[1]), _inputs(12, seed=5), tmp_path / "out")


# ---------------------------------------------------------------------------- FPGA
def _fpga_check(ir, x, scores):
    env = golden.run_all(ir, x, fixed_point=True)
    want = env[ir.producer(ir.outputs[0]).inputs[0]]
    assert scores.dtype == np.int64 and scores.shape == want.shape
    np.testing.assert_array_equal(scores, want)


@pytest.mark.parametrize("name", ["pool2_sign", "pool3_pad_include", "out_pool2",
                                  "out_pool3_include", "out_pool3_exclude",
                                  "bireal_down_conv", "acc_pool"])
def test_fpga_amaranth_bit_exact_with_fixed_point_golden(onnx_paths, name):
    from edge_sdk.converters.fpga import simulate_amaranth

    ir = _load(onnx_paths(name)[1]).ir
    x = _inputs(3, seed=8)
    scores, _, _ = simulate_amaranth(ir, x)
    _fpga_check(ir, x, scores)


@needs_icarus
@pytest.mark.parametrize("name", ["bireal_down", "out_pool3_exclude",
                                  pytest.param("pool3_s1", marks=pytest.mark.slow),
                                  pytest.param("out_pool3_include", marks=pytest.mark.slow)])
def test_fpga_verilog_bit_exact_with_fixed_point_golden(onnx_paths, name):
    from edge_sdk.converters.fpga import generate, simulate

    ir = _load(onnx_paths(name)[1]).ir
    files, sched = generate(ir)
    assert any("avgpool" in st.name for st in sched.stages)
    x = _inputs(3, seed=7)
    scores, cycles, ii = simulate(files, ir, x)
    _fpga_check(ir, x, scores)
    # the schedule: II exact, latency an estimate within 5 %
    assert ii == sched.initiation_interval
    assert abs(cycles - sched.cycles_per_inference) <= 0.05 * cycles


def test_average_of_signs_is_refused_naming_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    path = _scaled_pool_model(tmp_path / "m.onnx", (2, 2), (2, 2), (0, 0, 0, 0), False, 13)
    model = onnx.load(path)
    model.graph.node[0].CopyFrom(helper.make_node("Sign", ["x"], ["xs"], name="sign"))
    del model.graph.initializer[:]
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, path)
    with pytest.raises(EdgeError, match=r"pool_node.*AveragePool of ±1 data") as err:
        edge_sdk.load(path, input_range=(-8, 8))
    assert "\n" not in str(err.value)


def test_tflite_fused_activation_is_refused_naming_the_operator(tmp_path):
    from test_tflite import CONV, Writer, conv_opts

    def opts(b):  # Pool2DOptions: padding VALID, strides 2, filter 2x2, fused RELU
        b.StartObject(6)
        b.PrependInt8Slot(0, 1, 0)
        b.PrependInt32Slot(1, 2, 0)
        b.PrependInt32Slot(2, 2, 0)
        b.PrependInt32Slot(3, 2, 0)
        b.PrependInt32Slot(4, 2, 0)
        b.PrependInt8Slot(5, 1, 0)
        return 5, b.EndObject()

    w = Writer()
    x = w.tensor([1, 4, 4, 1], name="image")
    y = w.tensor([1, 4, 4, 2])
    w.op(CONV, [x, w.const(np.ones((2, 3, 3, 1), np.float32)),
                w.const(np.float32([0.5, -0.5]))], [y], conv_opts(0, (1, 1), (1, 1)))
    out = w.tensor([1, 2, 2, 2], name="pool_out")
    w.op(1, [y], [out], opts)
    path = tmp_path / "bad.tflite"
    path.write_bytes(w.build([x], [out]))
    with pytest.raises(EdgeError) as err:
        edge_sdk.load(path)
    msg = str(err.value)
    assert "\n" not in msg and "AVERAGE_POOL_2D" in msg and "RELU" in msg, msg


# ---------------------------------------------------------------------------- the stage alone
@pytest.mark.parametrize("kernel,strides,pads,include,lanes,channels", [
    ((2, 2), (2, 2), (0, 0, 0, 0), False, 4, 6),
    ((3, 3), (1, 1), (1, 1, 1, 1), False, 3, 3),
    ((3, 3), (2, 2), (1, 1, 1, 1), True, 2, 5),
    ((2, 3), (1, 2), (1, 0, 0, 1), False, 1, 2),
    ((2, 2), (1, 1), (0, 0, 1, 1), False, 7, 9),  # 2 multipliers, 4 groups of lanes
    ((1, 2), (1, 2), (0, 0, 0, 0), False, 5, 5),  # 3 multipliers for 5 lanes, 2 taps
])
def test_avg_pool_engine_equals_the_rule_with_backpressure(kernel, strides, pads, include,
                                                          lanes, channels):
    """hw/avg_pool.AvgPoolEngine on its own (Amaranth simulator): random values up to the
    extremes of their range, bubbles on the input and backpressure on the output, two frames;
    every output equals fixedpoint.avg_pool."""
    import math

    from edge_sdk.hw.avg_pool import AvgPoolEngine, AvgPoolSpec
    from edge_sdk.hw.simtools import run_streams
    from edge_sdk.hw.specs import FrameSpec, Values, WindowSpec

    h, w, bound = 5, 6, (1 << 20) - 1
    words = math.ceil(channels / lanes)
    counts = fx.avg_pool_counts((h, w), kernel, strides, pads, include)
    oh, ow = counts.shape
    out_bound = max(fx.gap_bound(bound, int(n)) for n in np.unique(counts))
    spec = AvgPoolSpec(
        frame=FrameSpec(h, w, channels, lanes, Values("int", -bound, bound), lanes, words),
        window=WindowSpec(kernel=kernel, strides=strides, pads=pads, out_hw=(oh, ow)),
        avg_values=Values("int", -out_bound, out_bound),
        mults=tuple((int(n), fx.gap_multiplier(int(n))) for n in np.unique(counts)))
    rng = np.random.default_rng(sum(kernel) + lanes)
    x = rng.integers(-bound, bound + 1, (2, channels, h, w))
    x[0, 0], x[1, -1] = bound, -bound  # sums at the extremes
    vb, ob = spec.frame.values.bits, spec.avg_values.bits

    def pack(vals, bits):
        return sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(vals))

    padded = np.zeros((2, words * lanes, h, w), dtype=np.int64)
    padded[:, :channels] = x
    beats = [pack(padded[f, j * lanes:(j + 1) * lanes, r, c], vb)
             for f in range(2) for r in range(h) for c in range(w) for j in range(words)]
    dut = AvgPoolEngine(spec)
    out, _, _ = run_streams(dut, dut.i, dut.o, beats, 2 * oh * ow * words,
                            ready=lambda t: t % 3 != 1, valid=lambda t: t % 4 != 2,
                            max_cycles=200_000)
    got = np.zeros((2, words * lanes, oh, ow), dtype=np.int64)
    for k, word in enumerate(out):
        f, rest = divmod(k, oh * ow * words)
        p, j = divmod(rest, words)
        for lane in range(lanes):
            v = (word >> (lane * ob)) & ((1 << ob) - 1)
            got[f, j * lanes + lane, p // ow, p % ow] = v - (1 << ob) if v >> (ob - 1) else v
    np.testing.assert_array_equal(got[:, :channels],
                                  fx.avg_pool(x, kernel, strides, pads, include))

