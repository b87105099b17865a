"""Issue #11's constructs in the forms training tools write them, 8-bit edges included.

1. A Brevitas Bi-Real / ReActNet-style network exported with `export_qonnx`: an 8-bit input
   quantiser and 8-bit per-channel QuantConv2d stem, binary QuantConv2d blocks (BipolarQuant
   weights and activations) with real-valued residual Adds and BatchNorm, a grouped binary conv,
   nn.PReLU, an RSign (sign(x - t)) before a depthwise binary conv concatenated with its input,
   a global average and an 8-bit per-channel QuantLinear head behind an 8-bit activation,
   exported through torch.export (dynamo=True) and through TorchScript (dynamo=False).
   References: qonnx's own executor (`run` equal to float32 rounding, `--fixed-point` argmax),
   then the Cortex-M C (host build, QEMU) and the FPGA Verilog (cocotb + Icarus) bit-exact with
   the golden model's fixed-point mode.
2. Float torch models (float stem conv, binary blocks, float head) exported by torch's
   TorchScript exporter (dynamo=False) and by its dynamo exporter (dynamo=True: BatchNorm folded
   into the convs and Gemms, the weights' Sign constant-folded) and quantised with a calibration set: `run` against onnxruntime,
   `--fixed-point` argmax, the Cortex-M host build bit-exact.

Why here and not in test_int8_layers.py: those models have one construct each; these have them
all at once, in the exporters' own spellings, so a frontend rule that only works alone fails.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import assert_close_to_reference

import edge_sdk
from edge_sdk import golden
from edge_sdk.converters.onnx.frontend import import_model
from edge_sdk.converters.onnx.loader import load as load_onnx
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.ir import layers as L
from edge_sdk.model import Model
from edge_sdk.passes.pipeline import lower

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")
pytest.importorskip("brevitas", reason="the [train] extra (brevitas) is not installed")
pytest.importorskip("qonnx", reason="the [qonnx] extra is not installed")

import test_int8_layers as t8
import torch_nets as tn
from torch import nn

from edge_sdk.converters.onnx.qonnx_reference import run_qonnx

LO, HI = t8.LO, t8.HI
IMG = (1, 6, 6)
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
HAVE_ICARUS = shutil.which("iverilog") is not None


# ---------------------------------------------------------------------------- Brevitas model
def _brevitas_net(c: int, gen: torch.Generator) -> nn.Module:
    """The Brevitas network (classes built lazily: brevitas is an optional extra)."""
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import (
        Int8ActPerTensorFloat,
        Int8WeightPerChannelFloat,
        Uint8ActPerTensorFloat,
    )
    from brevitas.quant.binary import (
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
    )

    def sign() -> nn.Module:
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)

    def bconv(cin: int, cout: int, groups: int = 1) -> nn.Module:
        return QuantConv2d(cin, cout, 3, padding=1, groups=groups, bias=False,
                           weight_quant=SignedBinaryWeightPerTensorConst)

    class Block(nn.Module):
        """Bi-Real: x + BN(binary_conv(sign(x)))."""

        def __init__(self, groups: int = 1):
            super().__init__()
            self.sign, self.conv, self.bn = sign(), bconv(c, c, groups), nn.BatchNorm2d(c)

        def forward(self, x):
            return self.bn(self.conv(self.sign(x))) + x

    class Net(nn.Module):
        """8-bit input Quant -> 8-bit stem -> BN -> block -> grouped block -> PReLU ->
        cat([x, BN(depthwise_binary_conv(sign(x - t)))]) -> GAP -> 8-bit Quant -> 8-bit FC."""

        def __init__(self):
            super().__init__()
            self.inq = QuantIdentity(act_quant=Uint8ActPerTensorFloat)
            self.stem = QuantConv2d(1, c, 3, padding=1, bias=False,
                                    weight_quant=Int8WeightPerChannelFloat)
            self.bn0 = nn.BatchNorm2d(c)
            self.b1, self.b2 = Block(), Block(groups=2)
            self.prelu = nn.PReLU(c)
            self.t = nn.Parameter(torch.randn(1, c, 1, 1, generator=gen) * 0.3)
            self.rsign, self.dw, self.bnd = sign(), bconv(c, c, groups=c), nn.BatchNorm2d(c)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.aq = QuantIdentity(act_quant=Int8ActPerTensorFloat)
            self.fc = QuantLinear(2 * c, 10, bias=True, weight_quant=Int8WeightPerChannelFloat)
            with torch.no_grad():
                self.prelu.weight.copy_(torch.rand(c, generator=gen) * 0.5)

        def forward(self, x):
            x = self.bn0(self.stem(self.inq(x)))
            x = self.prelu(self.b2(self.b1(x)))
            x = torch.cat([x, self.bnd(self.dw(self.rsign(x - self.t)))], 1)
            return self.fc(self.aq(torch.flatten(self.pool(x), 1)))

    return Net()


def export_brevitas_net(folder, c: int = 8, seed: int = 0, dynamo: bool = True):
    """Random weights, BN statistics and activation scales settled on data, exported QONNX
    through torch.export (dynamo=True, as examples/brevitas_digits.py does: ReduceMean + Reshape
    for the average) or the TorchScript exporter (GlobalAveragePool + Flatten)."""
    from brevitas.export import export_qonnx

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = t8._settle(_brevitas_net(c, gen), IMG, gen)
    path = folder / f"bireal_react_{c}_{seed}_{'dynamo' if dynamo else 'ts'}.qonnx.onnx"
    names = {"input_names": ["input"], "output_names": ["logits"]}
    if dynamo:
        export_qonnx(model, args=torch.zeros(1, *IMG), export_path=str(path), dynamo=True,
                     optimize=True, external_data=False, **names,
                     dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        export_qonnx(model, args=torch.zeros(1, *IMG), export_path=str(path), dynamo=False,
                     **names, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def real_inputs(n: int, seed: int) -> np.ndarray:
    """Real-valued images (the model quantises its own input), a little outside its range."""
    return np.random.default_rng(seed).uniform(LO - 1, HI + 1, size=(n, *IMG)).astype(np.float32)


@pytest.fixture(scope="module")
def brevitas_paths(tmp_path_factory):
    """The network exported once per exporter, when a test first asks for it."""
    folder = tmp_path_factory.mktemp("trained_brevitas")
    cache: dict = {}

    def get(dynamo: bool):
        if dynamo not in cache:
            cache[dynamo] = export_brevitas_net(folder, dynamo=dynamo)
        return cache[dynamo]

    return get


@pytest.fixture(scope="module")
def brevitas_path(brevitas_paths):
    """The torch.export form (the one the QEMU and FPGA checks use)."""
    return brevitas_paths(True)


@pytest.mark.parametrize("dynamo", [True, False])
def test_brevitas_net_has_every_construct(brevitas_paths, dynamo):
    """The source holds the constructs and the IR keeps them (no silent fold to something else)."""
    import onnx

    path = brevitas_paths(dynamo)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Quant", "BipolarQuant", "Conv", "BatchNormalization", "Add", "PRelu", "Sub",
            "Concat", "Gemm"} <= ops
    assert ("ReduceMean" if dynamo else "GlobalAveragePool") in ops
    m = edge_sdk.load(path)
    kinds = [type(layer).__name__ for layer in m.ir.layers]
    for kind in ("AddTensors", "PRelu", "FixedThreshold", "GroupConv2d", "Concat",
                 "GlobalAvgPool", "Quantize"):
        assert kind in kinds, kinds
    int8 = [layer for layer in m.ir.layers if isinstance(layer, (L.Dense, L.Conv2d))
            and L.is_int8(layer.weights)]
    assert len(int8) == 2 and m.ir.consumers(int8[-1].output)[0].kind == "scores"
    assert m.ir.layers[0].rounding == "half_even" and (m.ir.layers[0].lo, m.ir.layers[0].hi) == (
        0, 255)
    _signs_split(m, real_inputs(100, seed=0))


def _signs_split(m: Model, x: np.ndarray) -> None:
    """Every sign (Threshold / FixedThreshold) gives both values on `x`: the settled BN
    statistics put the thresholds inside the data, so the binary layers are really tested."""
    env = golden.run_all(m.ir, x, fixed_point=True)
    signs = [layer for layer in m.ir.layers if isinstance(layer, (L.Threshold, L.FixedThreshold))]
    assert signs
    for layer in signs:
        assert len(np.unique(env[layer.output])) == 2, layer.name


@pytest.mark.parametrize("dynamo", [True, False])
def test_brevitas_run_equals_qonnx_executor(brevitas_paths, dynamo):
    path = brevitas_paths(dynamo)
    m = edge_sdk.load(path)
    x = real_inputs(300, seed=1)
    x[0], x[1] = LO, HI
    ref = run_qonnx(path, x).astype(np.float32)
    y = m.run(x)
    assert_close_to_reference(y, ref, exact=False)
    np.testing.assert_array_equal(y.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("dynamo", [True, False])
def test_brevitas_fixed_point_argmax_agrees(brevitas_paths, dynamo):
    path = brevitas_paths(dynamo)
    m = edge_sdk.load(path)
    x = real_inputs(200, seed=2)
    ref = run_qonnx(path, x)
    got = m.run(x, fixed_point=True)
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agree >= 0.99, agree


def _host_check(m: Model, x: np.ndarray, tmp_path) -> None:
    """The C compiled for the host equals the golden fixed-point tensor feeding Scores, and
    the output rebuilt from it equals `run --fixed-point`."""
    from host_check import host_bit_exact
    from test_cortexm_fixed_point import _scores_to_output

    _cm, y = host_bit_exact(m.ir, x, tmp_path / "host")
    out = m.run(x, fixed_point=True)
    np.testing.assert_array_equal(_scores_to_output(m.ir, y, out), out)


@pytest.mark.parametrize("dynamo", [True, False])
def test_brevitas_cortexm_host_bit_exact(brevitas_paths, tmp_path, dynamo):
    x = real_inputs(300, seed=3)
    x[0], x[1] = LO - 1, HI + 1  # clipped by the input quantiser
    _host_check(edge_sdk.load(brevitas_paths(dynamo)), x, tmp_path)


def test_brevitas_both_exporters_give_the_same_model(brevitas_paths):
    """The same network through either exporter: identical `run --fixed-point` integers."""
    from host_check import golden_scores_input

    x = real_inputs(200, seed=6)
    a, b = edge_sdk.load(brevitas_paths(True)), edge_sdk.load(brevitas_paths(False))
    np.testing.assert_array_equal(golden_scores_input(a.ir, x), golden_scores_input(b.ir, x))


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_brevitas_cortexm_qemu_bit_exact(brevitas_path, tmp_path):
    m = edge_sdk.load(brevitas_path)
    x = real_inputs(6, seed=4)
    sim = m.convert("cortex-m", tmp_path / "cm").simulate(x, check=True)
    assert sim.ok, sim.mismatch
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))


@pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog not installed")
def test_brevitas_fpga_sim_bit_exact(brevitas_path, tmp_path):
    m = edge_sdk.load(brevitas_path)
    x = real_inputs(2, seed=5)
    sim = m.convert("fpga", tmp_path / "fpga", board="sim").simulate(x, check=True)
    assert sim.ok, sim.mismatch
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_brevitas_other_seeds_wider(tmp_path, seed):
    """Other random weights at 20 channels: qonnx agreement, fixed-point argmax, host C."""
    path = export_brevitas_net(tmp_path, c=20, seed=seed)
    m = edge_sdk.load(path)
    x = real_inputs(1000, seed=seed)
    ref = run_qonnx(path, x).astype(np.float32)
    assert_close_to_reference(m.run(x), ref, exact=False)
    assert float(np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1))) >= 0.99
    _host_check(m, x, tmp_path)


# ---------------------------------------------------------------------------- float + calibration
class FloatBiReal(nn.Module):
    """Float stem conv (bias) -> BN -> two Bi-Real blocks (binary convs, the second grouped,
    real-valued residual adds) -> PReLU -> mean over H, W -> float Linear head."""

    def __init__(self, c: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv0 = nn.Conv2d(1, c, 3, padding=1)
        with torch.no_grad():
            self.conv0.weight.copy_(torch.randn(self.conv0.weight.shape, generator=gen) * 0.3)
        self.bn0 = nn.BatchNorm2d(c)
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for groups in (1, 2):
            conv = tn.BinConv(c, c, 3, padding=1, bias=False, groups=groups)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            bn = nn.BatchNorm2d(c)
            tn._randomise_bn(bn, gen, c // groups * 9)
            self.convs.append(conv)
            self.bns.append(bn)
        self.prelu = nn.PReLU(c)
        with torch.no_grad():
            self.prelu.weight.copy_(torch.rand(c, generator=gen) * 0.5)
        self.fc = nn.Linear(c, 10)
        t8._settle_bn0(self, gen)

    def forward(self, x):
        x = self.bn0(self.conv0(x))
        for conv, bn in zip(self.convs, self.bns):
            x = bn(conv(torch.sign(x))) + x
        return self.fc(self.prelu(x).mean(dim=(2, 3)))


FLOAT = {"float_conv_gap": t8.FloatConvGap, "float_mlp_signs": t8.FloatMlpSigns,
         "float_bireal": FloatBiReal}
SHAPES = {"float_conv_gap": IMG, "float_mlp_signs": (t8.FLAT,), "float_bireal": IMG}
CASES = [(name, dynamo) for name in FLOAT for dynamo in (False, True)]


@pytest.fixture(scope="module")
def float_paths(tmp_path_factory):
    """Each float model exported once per exporter, when a test first asks for it."""
    folder = tmp_path_factory.mktemp("trained_float")
    cache: dict = {}

    def get(name: str, dynamo: bool):
        if (name, dynamo) not in cache:
            path = folder / f"{name}_{'dynamo' if dynamo else 'ts'}.onnx"
            torch.manual_seed(0)  # nn.Conv2d / nn.Linear initialise from the global generator
            cache[name, dynamo] = tn.export(FLOAT[name](seed=0),
                                            torch.zeros((2, *SHAPES[name])), path, dynamo)
        return cache[name, dynamo]

    return get


def _calibrated(path, name: str) -> Model:
    cal = t8.inputs(SHAPES[name], 64, seed=7)
    source = import_model(load_onnx(path), str(path), input_range=(LO, HI), calibration=cal)
    return Model(source, lower(source), str(path))


@pytest.mark.parametrize("name, dynamo", CASES)
def test_calibrated_run_equals_onnxruntime(float_paths, name, dynamo):
    path = float_paths(name, dynamo)
    m = _calibrated(path, name)
    int8 = [layer for layer in m.ir.layers if isinstance(layer, (L.Dense, L.Conv2d))
            and L.is_int8(layer.weights)]
    assert len(int8) == 2
    x = t8.inputs(SHAPES[name], 300, seed=8)
    _signs_split(m, x)
    ref = run_onnxruntime(path, x)
    assert_close_to_reference(m.run(x), ref, exact=False)


@pytest.mark.parametrize("name, dynamo", CASES)
def test_calibrated_fixed_point_argmax_agrees(float_paths, name, dynamo):
    path = float_paths(name, dynamo)
    m = _calibrated(path, name)
    x = t8.inputs(SHAPES[name], 400, seed=9)
    ref = run_onnxruntime(path, x)
    agree = float(np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1)))
    assert agree >= 0.97, agree


@pytest.mark.parametrize("name, dynamo", CASES)
def test_calibrated_cortexm_host_bit_exact(float_paths, tmp_path, name, dynamo):
    m = _calibrated(float_paths(name, dynamo), name)
    _host_check(m, t8.inputs(SHAPES[name], 200, seed=10), tmp_path)


@pytest.mark.parametrize("name", list(FLOAT))
def test_both_exporters_give_the_same_model(float_paths, name):
    """Same weights through either exporter: the same integers into Scores under
    `run --fixed-point` (the float epilogue may differ by float32 rounding: Gemm vs MatMul + Add)."""
    from host_check import golden_scores_input

    x = t8.inputs(SHAPES[name], 200, seed=11)
    a = _calibrated(float_paths(name, False), name)
    b = _calibrated(float_paths(name, True), name)
    np.testing.assert_array_equal(golden_scores_input(a.ir, x), golden_scores_input(b.ir, x))
    ya, yb = a.run(x, fixed_point=True), b.run(x, fixed_point=True)
    np.testing.assert_allclose(ya, yb, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog not installed")
@pytest.mark.parametrize("dynamo", [False, True])
def test_calibrated_bireal_fpga_sim_bit_exact(float_paths, tmp_path, dynamo):
    m = _calibrated(float_paths("float_bireal", dynamo), "float_bireal")
    x = t8.inputs(IMG, 3, seed=12)
    sim = m.convert("fpga", tmp_path / "fpga", board="sim").simulate(x, check=True)
    assert sim.ok, sim.mismatch
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("dynamo", [False, True])
def test_calibrated_bireal_cortexm_qemu_bit_exact(float_paths, tmp_path, dynamo):
    m = _calibrated(float_paths("float_bireal", dynamo), "float_bireal")
    x = t8.inputs(IMG, 8, seed=13)
    sim = m.convert("cortex-m", tmp_path / "cm").simulate(x, check=True)
    assert sim.ok, sim.mismatch
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))
