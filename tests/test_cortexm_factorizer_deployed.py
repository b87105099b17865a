"""One Cortex-M firmware for a whole factorizer model: network -> block softmax -> decoder.

Golden: `FactorizerModel.run_outputs(x, fixed_point=True)` (the golden network's integer
scores, `BlockSoftmax.apply`, `fixed.decode`, all NumPy); the firmware runs under QEMU. The
softmax kernel alone is also compiled for the host and checked against `BlockSoftmax.apply`.
"""

import ctypes
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

import edge_sdk
import edge_sdk.factorizer as fz
from edge_sdk import golden
from edge_sdk.converters.cortexm.factorizer import deployed, softmax
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import block_softmax

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ROOT / "examples" / "attributes"
ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not ARM, reason="arm-none-eabi-gcc / qemu-system-arm missing")
F32 = np.float32
F, M, B, L = 3, 8, 4, 8
HIDDEN, INPUTS = 64, 16


def _bn_params(rng, c, acc_std):
    """(gamma, beta, mean, var): float statistics on the accumulator's scale."""
    return (rng.uniform(0.5, 2.0, c), rng.normal(0, 0.5, c),
            rng.normal(0, 0.5, c) * acc_std, acc_std**2 * rng.uniform(0.5, 1.5, c))


def _bn_inits(params, hint):
    return [nh.from_array(np.asarray(v, F32), f"{hint}.{k}") for k, v in zip("gbmv", params,
                                                                              strict=True)]


def small_model(path, cb, protos, products, net_seed=0, **attrs):
    """x -> Gemm(+-1) -> BN -> Sign -> Gemm(+-1) -> BN -> Reshape -> Softmax -> Reshape ->
    BlockCodeFactorizer: a binary dense network that computes the factorizer's query.

    The second layer's rows are built so that the prototype inputs `protos` give block-wise
    peaks at the hot positions of `products` (so the decoder converges on them in a few
    iterations), while other inputs give unstructured queries (it runs to max_iters)."""
    rng = np.random.default_rng(net_seed)
    d = B * L
    w0 = rng.choice(np.array([-1.0, 1.0], F32), size=(HIDDEN, INPUTS))
    bn0 = _bn_params(rng, HIDDEN, 4.0 * np.sqrt(INPUTS))
    g0, b0, m0, v0 = (np.asarray(v, np.float64) for v in bn0)
    hidden = np.sign(g0 * (protos @ w0.T - m0) / np.sqrt(v0 + 1e-5) + b0)  # design only
    pos = np.stack([cb.indices[f, products[:, f]] for f in range(F)]).sum(axis=0) % L  # [K, B]
    w1 = np.empty((d, HIDDEN), F32)
    for b in range(B):
        for l in range(L):
            votes = hidden[pos[:, b] == l].sum(axis=0) + rng.normal(0, 0.1, HIDDEN)
            w1[b * L + l] = np.where(votes >= 0, 1.0, -1.0)
    # sharp logits, small offsets: the prototypes' peaks survive the block softmax
    bn1 = (rng.uniform(2.0, 3.0, d), rng.normal(0, 0.1, d), rng.normal(0, 0.5, d),
           HIDDEN * rng.uniform(0.8, 1.2, d))
    inits = [nh.from_array(w0, "w0"), nh.from_array(w1, "w1"), *_bn_inits(bn0, "bn0"),
             *_bn_inits(bn1, "bn1"),
             nh.from_array(cb.as_dense().reshape(F, M, d).astype(F32), "cb"),
             nh.from_array(np.array([-1, B, L], np.int64), "shape3"),
             nh.from_array(np.array([-1, d], np.int64), "shape2")]
    nodes = [
        oh.make_node("Gemm", ["x", "w0"], ["a0"], name="fc0", transB=1),
        oh.make_node("BatchNormalization", ["a0", "bn0.g", "bn0.b", "bn0.m", "bn0.v"], ["n0"],
                     name="bn0"),
        oh.make_node("Sign", ["n0"], ["s0"], name="sign0"),
        oh.make_node("Gemm", ["s0", "w1"], ["a1"], name="fc1", transB=1),
        oh.make_node("BatchNormalization", ["a1", "bn1.g", "bn1.b", "bn1.m", "bn1.v"], ["n1"],
                     name="bn1"),
        oh.make_node("Reshape", ["n1", "shape3"], ["r"], name="to_blocks"),
        oh.make_node("Softmax", ["r"], ["p"], name="softmax", axis=-1),
        oh.make_node("Reshape", ["p", "shape2"], ["q"], name="to_query"),
        oh.make_node("BlockCodeFactorizer", ["q", "cb"], ["idx", "it"], domain="edge_sdk",
                     name="head", blocks=B, block_len=L, **attrs),
    ]
    outs = [oh.make_tensor_value_info("idx", TP.INT64, ["N", F]),
            oh.make_tensor_value_info("it", TP.INT64, ["N"])]
    g = oh.make_graph(nodes, "small", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", INPUTS])],
                      outs, inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def distinct_products(cb, k, rng):
    """k products whose hot positions differ in every block (one prototype per row)."""
    chosen, taken = [], np.zeros((B, L), bool)
    for flat in rng.permutation(M**F):
        prod = np.array(np.unravel_index(flat, (M,) * F))
        pos = sum(cb.indices[f, prod[f]] for f in range(F)) % L
        if not taken[np.arange(B), pos].any():
            taken[np.arange(B), pos] = True
            chosen.append(prod)
            if len(chosen) == k:
                return np.array(chosen)
    raise AssertionError("no such products")


def decoder_only_model(path, cb, **attrs):
    """The factorizer node alone: its query is the model input."""
    d = B * L
    node = oh.make_node("BlockCodeFactorizer", ["x", "cb"], ["idx", "it"], domain="edge_sdk",
                        name="head", blocks=B, block_len=L, **attrs)
    g = oh.make_graph([node], "only", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", d])],
                      [oh.make_tensor_value_info("idx", TP.INT64, ["N", F]),
                       oh.make_tensor_value_info("it", TP.INT64, ["N"])],
                      [nh.from_array(cb.as_dense().reshape(F, M, d).astype(F32), "cb")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def assert_same(idx, its, want, head):
    w_idx, w_its = want[head.outputs[0]], want.get(head.outputs[1]) if len(head.outputs) > 1 \
        else None
    bad = np.nonzero((idx != w_idx).any(axis=1))[0]
    assert bad.size == 0, f"{bad.size} samples differ, first {bad[0]}: {idx[bad[0]]} vs " \
                          f"{w_idx[bad[0]]}"
    if w_its is not None:
        assert np.array_equal(its, w_its), np.nonzero(its != w_its)[0][:5]


def sources(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
            if p.suffix in (".c", ".h")}


# --- the softmax kernel on the host -------------------------------------------------------------

_BATCH = """\
#include <stdint.h>
#include "edge_block_softmax.h"

void edge_bs_host_batch(int n, const int32_t *z, uint16_t *q)
{
    int i;
    for (i = 0; i < n; ++i) {
        edge_block_softmax(z + (long)i * EDGE_BS_SIZE, q + (long)i * EDGE_BS_SIZE);
    }
}
"""


def tails():
    """The attributes model's record and synthetic ones: wide logits (shift 0, where the
    block's max - t exceeds 2^31) and negative scales."""
    rng = np.random.default_rng(3)
    _ir, dep = edge_sdk.load(ATTRIBUTES / "attributes_factorizer.onnx").deployed()
    yield "attributes", dep.tail
    a, b = rng.normal(0, 0.3, 64), rng.normal(0, 2, 64)
    yield "moderate", block_softmax.from_affine(a, b, 8, 8, -2048, 2048)
    a = rng.choice([-1, 1], 60) * rng.uniform(500, 1000, 60)
    yield "wide", block_softmax.from_affine(a, rng.normal(0, 1e3, 60), 5, 12, -30000, 30000)
    yield "one_block", block_softmax.from_affine(-np.ones(16) / 7, np.zeros(16), 1, 16, -5, 99)


@pytest.mark.parametrize("name,tail", list(tails()), ids=lambda v: v if isinstance(v, str) else "")
def test_softmax_kernel_on_host_equals_block_softmax(tmp_path, name, tail):
    lib = compile_shared({**softmax.files(tail), "batch.c": _BATCH}, tmp_path / name)
    run = lib.edge_bs_host_batch
    run.restype = None
    run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    bl = tail.B * tail.L
    rng = np.random.default_rng(1)
    z = rng.integers(tail.z_lo, tail.z_hi + 1, size=(200, bl))
    z[0], z[1] = tail.z_lo, tail.z_hi  # all at one extreme: d = 0 everywhere
    z[2::3] = rng.choice([tail.z_lo, tail.z_hi], size=z[2::3].shape)  # extremes mixed
    z[3] = 0
    z = np.ascontiguousarray(z.astype(np.int32))
    q = np.zeros(z.shape, dtype=np.uint16)
    run(len(z), z.ctypes.data, q.ctypes.data)
    want = tail.apply(z.astype(np.int64))
    assert np.array_equal(q.astype(np.int64), want)
    if name == "wide":
        t = tail.logits(z.astype(np.int64)).reshape(-1, tail.B, tail.L)
        assert (t.max(axis=2, keepdims=True) - t).max() >= 1 << 31  # the uint32 path matters


def test_generated_sources_are_deterministic_and_names_do_not_clash():
    m = edge_sdk.load(ATTRIBUTES / "attributes_factorizer.onnx")
    ir, dep = m.deployed()
    one, info, sp = deployed.generate(ir, dep)
    two, _, _ = deployed.generate(*edge_sdk.load(ATTRIBUTES / "attributes_factorizer.onnx")
                                  .deployed())
    assert one == two
    assert sp.F == 3 and info.output_size == sp.BL
    # the network's entry point is renamed: one edge_model_run in the whole firmware
    defs = [n for n, t in one.items() if "int edge_model_run(const EDGE_IN_T *in, int32_t *out)\n{"
            in t]
    assert defs == ["model.c"]
    assert "int edge_net_run(const EDGE_NET_IN_T *in, int32_t *out)" in one["edge_net.h"]


@pytest.mark.parametrize("options,words", [({"library": True}, "--library"),
                                           ({"io": "uart"}, "uart")])
def test_refused_options(tmp_path, options, words):
    ir, dep = edge_sdk.load(ATTRIBUTES / "attributes_factorizer.onnx").deployed()
    with pytest.raises(EdgeError, match=words) as err:
        deployed.convert(ir, dep, options, tmp_path)
    assert "head" in str(err.value) or dep.node_name in str(err.value)


# --- whole firmware under QEMU ------------------------------------------------------------------

@pytest.fixture(scope="module")
def attributes(tmp_path_factory):
    m = edge_sdk.load(ATTRIBUTES / "attributes_factorizer.onnx")
    ir, dep = m.deployed()
    folder = tmp_path_factory.mktemp("attributes")
    report = deployed.convert(ir, dep, {}, folder)
    return m, ir, dep, folder, report


def _check_attributes(attributes, x):
    m, ir, dep, folder, _report = attributes
    q = golden.quantise_input(ir.layers[0], x)
    idx, its, facts = deployed.simulate(folder, {"options": {}}, ir, dep, q)
    assert facts["samples"] == len(x)
    assert_same(idx, its, m.run_outputs(x, fixed_point=True), dep)
    return idx


@needs_arm
def test_attributes_model_under_qemu_equals_fixed_point(attributes):
    x = np.load(ATTRIBUTES / "test_x.npy")[:48]
    idx = _check_attributes(attributes, x)
    y = np.load(ATTRIBUTES / "test_y.npy")[:48]
    assert (idx == y).all(axis=1).mean() > 0.2  # a working model (chance: 1/512)
    report = attributes[4]
    assert (report["F"], report["M"], report["B"], report["L"]) == (3, 8, 8, 16)
    assert report["method"] == "default" and report["max_iters"] == 1
    assert report["flash_bytes"] > report["weight_bytes"] + report["head_flash_bytes"]
    assert report["ram_bytes"] > report["arena_bytes"] + report["head_ram_bytes"] > 0
    assert report["output_elements"] == 4
    ipi, net, head = (report[k] for k in ("instructions_per_inference", "instructions_network",
                                          "instructions_head"))
    assert ipi["min"] <= ipi["mean"] <= ipi["max"] and ipi["samples"] == deployed.REPORT_SAMPLES
    assert 0 < head["mean"] < net["mean"] < ipi["mean"]
    assert (Path(attributes[3]) / "build" / "qemu-mps2-an386" / "model.elf").is_file()


@needs_arm
@pytest.mark.slow
def test_attributes_model_all_test_images_under_qemu(attributes):
    x = np.load(ATTRIBUTES / "test_x.npy")
    assert len(x) == 512
    _check_attributes(attributes, x)


@needs_arm
def test_small_published_model_under_qemu_equals_fixed_point(tmp_path):
    cb = fz.random_sbc(F, M, B, L, seed=5)
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 9, size=(40, INPUTS)).astype(F32)
    products = distinct_products(cb, 6, rng)  # the first 6 inputs are prototypes
    path = small_model(tmp_path / "small.onnx", cb, x[:6], products, decoder="published",
                       max_iters=25, threshold=0.2, sampling_width=2, seed=3)
    m = edge_sdk.load(path, input_range=(-8, 8))
    ir, dep = m.deployed()
    assert dep.tail is not None and dep.method == "published"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    report = deployed.convert(ir, dep, {"popcount": "builtin"}, one)
    assert report["method"] == "published" and report["max_iters"] == 25
    idx, its, _ = deployed.simulate(one, {"options": {"popcount": "builtin"}}, ir, dep,
                                    golden.quantise_input(ir.layers[0], x))
    want = m.run_outputs(x, fixed_point=True)
    assert_same(idx, its, want, dep)
    assert len(set(its.tolist())) > 2  # iterations vary: the count itself is checked
    assert (idx[:6] == products).all(axis=1).sum() >= 3  # the prototypes mostly decode
    # a second convert (another process would do the same) writes byte-identical sources
    deployed.convert(ir, dep, {"popcount": "builtin"}, two)
    assert sources(one) == sources(two) and len(sources(one)) >= 8


@needs_arm
def test_decoder_only_model_under_qemu_equals_fixed_point(tmp_path):
    cb = fz.random_sbc(F, M, B, L, seed=9)
    path = decoder_only_model(tmp_path / "only.onnx", cb, decoder="resonator", max_iters=30)
    m = edge_sdk.load(path)
    ir, dep = m.deployed()
    assert ir is None and dep.tail is None
    folder = tmp_path / "fw"
    folder.mkdir()
    report = deployed.convert(ir, dep, {}, folder)
    assert report["F"] == F and report["flash_bytes"] > 0
    x, _ = fz.make_queries(cb, 30, "moved0.3", seed=4)
    x = x.reshape(len(x), -1)
    idx, its, facts = deployed.simulate(folder, {"options": {}}, None, dep, dep.queries(x))
    assert facts["samples"] == 30
    assert_same(idx, its, m.run_outputs(x, fixed_point=True), dep)
