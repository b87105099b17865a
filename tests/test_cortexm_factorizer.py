"""Cortex-M factorizer decoder: generated C == edge_sdk.factorizer.fixed, query by query.

The golden outputs are `fixed.decode` (itself checked against an independent plain-Python
reading of the spec in test_factorizer_fixed.py); the generated C runs on the host (strict
gcc), under QEMU (mps2-an386 firmware) and under unicorn (instruction counts).
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper as oh

import edge_sdk
import edge_sdk.factorizer as fz
from edge_sdk.converters.cortexm import factorizer as cf
from edge_sdk.converters.cortexm.factorizer import head, kernels, report
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.tir_to_c import to_c
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed

SIZES = [(3, 16, 8, 64), (2, 64, 4, 128)]
ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not ARM, reason="arm-none-eabi-gcc / qemu-system-arm missing")


def queries(cb, n, noise, seed):
    q, _ = fz.make_queries(cb, n, noise, seed=seed)
    return fixed.quantise(q, cb).reshape(n, -1)


def golden(sp, q, cb):
    opts = {} if sp.method == "default" else {
        "similarity": sp.kind, "A": sp.A, "T": sp.T, "max_iters": sp.max_iters, "seed": sp.seed}
    return fixed.decode(q, cb, sp.method, **opts)


def assert_same(got, want):
    (gi, gt), (wi, wt) = got, want
    bad = np.nonzero((gi != wi).any(axis=1) | (gt != wt))[0]
    assert bad.size == 0, (f"{bad.size} queries differ, first {bad[0]}: "
                           f"got {gi[bad[0]]}/{gt[bad[0]]}, want {wi[bad[0]]}/{wt[bad[0]]}")


# --- host: strict C, exact on random queries ---------------------------------------------------

OPTIONS = [
    {"method": "published"},  # the paper's A, T at these sizes (A = 0, T = 0)
    {"method": "published", "A": 3, "T": 0.3},  # threshold, LFSR draws, pull-up
    {"method": "published", "similarity": "dot", "A": 2, "T": 0.2, "seed": 7},
    {"method": "published", "A": 1000, "T": 0.6, "max_iters": 9},  # A >= M: all activated
    {"method": "default"},
]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_host_build_equals_fixed_point(tmp_path, size, options):
    cb = fz.random_sbc(*size, seed=11)
    sp = cf.decoder_spec(cb, **options)
    host = cf.HostDecoder(sp, tmp_path)  # gcc -Wall -Wextra -Werror -std=c99 -pedantic
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 1 << 16, size=(20, sp.BL))  # any integers, not only quantised ones
    raw[::4, : sp.L] = 0  # empty first blocks: Q // L everywhere
    raw[1::4] = rng.integers(0, 3, size=(5, sp.BL))  # tiny integers: many ties
    for q in (queries(cb, 60, "moved0.05", 1), queries(cb, 30, "moved0.3", 2), raw):
        assert_same(host.decode(q), golden(sp, q, cb))


def compile_kernel(tmp_path, kernel):
    """One kernel alone, compiled with the project's strict flags, as a ctypes function."""
    src = "#include <stdbool.h>\n#include <stdint.h>\n\n" + to_c(kernel)
    fn = getattr(compile_shared({"k.c": src}, tmp_path), kernel.name)
    fn.argtypes = [ctypes.c_void_p] * len(kernel.params)
    fn.restype = None
    return fn


def ptr(a):
    return a.ctypes.data


def test_kernels_equal_the_spec_steps(tmp_path):
    """Steps 1, 3, 4 and 6 one at a time on dense random operands (every branch taken)."""
    F, M, B, L = 2, 24, 3, 20
    cb = fz.random_sbc(F, M, B, L, seed=2)
    rng = np.random.default_rng(3)
    Q = X = 1 << 12
    for n, kind in enumerate(("linf", "dot")):
        sp = cf.decoder_spec(cb, similarity=kind)
        d = tmp_path / str(n)
        norm = compile_kernel(d / "n", kernels.normalise("k_norm", sp))
        corr = compile_kernel(d / "c", kernels.correlate("k_corr", sp))
        sim = compile_kernel(d / "s", kernels.similarity("k_sim", sp))
        bund = compile_kernel(d / "b", kernels.bundle("k_bund", sp))
        for trial in range(40):
            q = rng.integers(0, 1 << 16, size=(B, L)) >> rng.integers(0, 16, size=(B, 1))
            q[trial % B] *= trial % 2  # empty blocks too
            y = np.zeros(B * L, np.int32)
            norm(ptr(np.ascontiguousarray(q.astype(np.uint16))), ptr(y))
            assert np.array_equal(y, fixed.normalise_queries(q).reshape(-1))
            u = rng.integers(0, Q + 1, size=(B, L)) >> rng.integers(0, 4)
            u[0, :3] = u[0].max()  # a repeated maximum
            x = rng.multinomial(X, np.ones(L) / L, size=B) * (rng.random((B, L)) < 0.4)
            ui, xi, yi = (np.ascontiguousarray(a.reshape(-1), np.int32) for a in (u, x, y))
            corr(ptr(ui), ptr(xi), ptr(yi))
            assert np.array_equal(yi, fixed.correlate(u, x, 12).reshape(-1))
            h = np.ascontiguousarray(cb.indices[trial % F].reshape(-1), np.uint8)
            s = np.zeros(M, np.int32)
            sim(ptr(ui), ptr(h), ptr(s))
            assert np.array_equal(s, fixed.similarity(u[None], cb.indices[trial % F], kind, 12)[0])
            act = np.where(rng.random(M) < 0.3, s, 0).astype(np.int32)
            e = np.ascontiguousarray(rng.integers(0, X, size=B * L), np.uint16)
            out = np.zeros(B * L, np.int32)
            bund(ptr(act), ptr(h), ptr(e), ptr(out))
            c = fixed.bundle(act[None].astype(np.int64), cb.indices[trial % F], L)[0]
            tot = c.sum(axis=-1, keepdims=True)
            want = np.where(tot > 0, (c * X) // np.maximum(tot, 1), e.reshape(B, L))
            assert np.array_equal(out, want.reshape(-1))


SIZES_AND_OPTIONS = {
    "F": st.integers(1, 3), "M": st.integers(2, 9), "B": st.integers(1, 5),
    "L": st.integers(2, 24), "A": st.integers(0, 4), "T": st.sampled_from([0.0, 0.2, 0.5]),
    "kind": st.sampled_from(["linf", "dot"]),
    "method": st.sampled_from(["published", "default"]), "seed": st.integers(0, 2**32),
}


def check_random_size(tmp, F, M, B, L, A, T, kind, method, seed):
    cb = fz.random_sbc(F, M, B, L, seed=seed % 1000)
    sp = cf.decoder_spec(cb, method, similarity=kind, A=A, T=T, seed=seed, max_iters=12)
    host = cf.HostDecoder(sp, tmp)
    rng = np.random.default_rng(seed)
    q = np.concatenate([queries(cb, 20, "moved0.2", seed % 97),
                        rng.integers(0, 4, size=(20, B * L))])
    assert_same(host.decode(q), golden(sp, q, cb))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**SIZES_AND_OPTIONS)
def test_random_sizes_equal_fixed_point(tmp_path_factory, **case):
    check_random_size(tmp_path_factory.mktemp("fz"), **case)


@pytest.mark.slow
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**SIZES_AND_OPTIONS)
def test_random_sizes_equal_fixed_point_many(tmp_path_factory, **case):
    check_random_size(tmp_path_factory.mktemp("fz"), **case)


def digests(files):
    return "".join(f"{n} {hashlib.sha256(files[n].encode()).hexdigest()}\n" for n in sorted(files))


def generate_in_subprocess(hash_seed):
    code = (
        "import hashlib\n"
        "import edge_sdk.factorizer as fz\n"
        "from edge_sdk.converters.cortexm import factorizer as cf\n"
        "cb = fz.random_sbc(3, 16, 8, 64, seed=3)\n"
        "for method in ('published', 'default'):\n"
        "    files = cf.firmware_files(cf.decoder_spec(cb, method))\n"
        "    for name in sorted(files):\n"
        "        print(name, hashlib.sha256(files[name].encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env).stdout


def test_generated_c_is_byte_identical_across_generations():
    cb = fz.random_sbc(3, 16, 8, 64, seed=3)
    mine = "".join(digests(cf.firmware_files(cf.decoder_spec(cb, m)))
                   for m in ("published", "default"))
    assert generate_in_subprocess(12345) == mine  # another process, another hash seed


def test_tables_are_flash_index_tables():
    cb = fz.random_sbc(2, 64, 4, 128, seed=3)
    src = cf.files(cf.decoder_spec(cb))["edge_factorizer.c"]
    assert "static const uint8_t edge_fz_h[512]" in src  # [F, M, B] hot positions
    assert "static const uint16_t edge_fz_e[1024]" in src  # start estimates [F, B, L]
    first = [int(v) for v in src.split("edge_fz_h[512] = {")[1].split("}")[0].split(",")[:8]]
    assert first == cb.indices.reshape(-1)[:8].tolist()


def test_two_decoders_in_one_workdir_stay_apart(tmp_path):
    cb = fz.random_sbc(2, 8, 2, 8, seed=1)
    q = queries(cb, 30, "moved0.3", 1)
    for A in (0, 2):  # the second build must not reuse the first one's loaded library
        sp = cf.decoder_spec(cb, A=A, T=0.3)
        assert_same(cf.HostDecoder(sp, tmp_path).decode(q), golden(sp, q, cb))


def test_bad_input_is_one_line_edge_error(tmp_path):
    cb = fz.random_sbc(2, 8, 2, 8, seed=1)
    sp = cf.decoder_spec(cb)
    host = cf.HostDecoder(sp, tmp_path)
    with pytest.raises(EdgeError, match="< 2\\^16"):
        host.decode(np.full((1, 16), 1 << 16))
    with pytest.raises(EdgeError, match="non-negative"):
        host.decode(-np.ones((1, 16), np.int64))
    with pytest.raises(EdgeError, match="B=2, L=8"):
        host.decode(np.ones((1, 15), np.int64))
    with pytest.raises(EdgeError, match="one-hot"):
        cf.decoder_spec(fz.random_gsbc(2, 5, 2, 8, seed=1).dense)
    with pytest.raises(EdgeError, match="bit words"):
        cf.decoder_spec(cb, qbits=20)
    with pytest.raises(EdgeError, match="exceeds"):
        cf.decoder_spec(fz.random_sbc(5, 60, 2, 8, seed=1), "default")
    with pytest.raises(EdgeError, match="unknown method"):
        cf.decoder_spec(cb, "magic")


# --- QEMU and unicorn ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """One ELF per (size, method), built once for the module."""
    built = {}

    def get(size, method):
        if (size, method) not in built:
            cb = fz.random_sbc(*size, seed=21)
            sp = cf.decoder_spec(cb, method)
            elf = cf.build_firmware(sp, tmp_path_factory.mktemp("fw"))
            built[size, method] = (cb, sp, elf)
        return built[size, method]

    return get


def check_qemu(firmware, size, method, noise, n):
    cb, sp, elf = firmware(size, method)
    q = queries(cb, n, noise, seed=100 + n)
    assert_same(cf.run_qemu(sp, elf, q), golden(sp, q, cb))


@needs_arm
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("method", ["published", "default"])
@pytest.mark.parametrize("noise", ["clean", "moved0.05"])
def test_qemu_equals_fixed_point(firmware, size, method, noise):
    check_qemu(firmware, size, method, noise, 16)


@pytest.mark.slow
@needs_arm
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("method", ["published", "default"])
@pytest.mark.parametrize("noise", ["clean", "moved0.05"])
def test_qemu_equals_fixed_point_1000(firmware, size, method, noise):
    check_qemu(firmware, size, method, noise, 1000)


@needs_arm
def test_firmware_refuses_queries_beyond_int16(firmware):
    _cb, sp, elf = firmware(SIZES[1], "default")
    with pytest.raises(EdgeError, match="< 2\\^15"):
        cf.run_qemu(sp, elf, np.full((1, sp.BL), 1 << 15))


@needs_arm
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_instruction_counts_per_query(firmware, tmp_path, size):
    cb, sp, elf = firmware(size, "published")
    q = queries(cb, 3, "moved0.05", seed=4)
    idx, its, ins = cf.instructions_per_query(sp, elf, q)
    assert_same((idx, its), golden(sp, q, cb))
    assert (ins > 0).all()
    # a longer decode costs more: instructions grow with the iteration count
    order = np.argsort(its, kind="stable")
    assert its[order[0]] == its[order[-1]] or ins[order[0]] < ins[order[-1]]
    figures = report.measure(sp, q, tmp_path / "m")
    assert figures.queries == 3 and figures.instructions_mean == pytest.approx(ins.mean())
    assert figures.flash_bytes > sp.indices.size  # the index table is in flash
    assert 4 * sp.L <= figures.stack_bytes <= 64 << 10  # a kernel's L-word scratch, < mps2's stack


# --- a model that is only the ONNX factorizer node ----------------------------------------------


def head_only_model(path, cb, **attrs):
    """x (the query itself) -> BlockCodeFactorizer: the minimal graph cortex-m converts."""
    F, M, B, L = cb.shape
    node = oh.make_node("BlockCodeFactorizer", ["x", "cb"], ["idx", "it"], domain="edge_sdk",
                        name="head", blocks=B, block_len=L, **attrs)
    g = oh.make_graph(
        [node], "fz", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", B * L])],
        [oh.make_tensor_value_info("idx", onnx.TensorProto.INT64, ["N", F]),
         oh.make_tensor_value_info("it", onnx.TensorProto.INT64, ["N"])],
        [onnx.numpy_helper.from_array(cb.as_dense().reshape(F, M, B * L).astype(np.float32),
                                      "cb")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


@needs_arm
@pytest.mark.parametrize("attrs", [{"decoder": "default"},
                                   {"decoder": "resonator", "max_iters": 20},
                                   {"decoder": "published", "sampling_width": 2,
                                    "threshold": 0.3, "seed": 3}],
                         ids=lambda a: "-".join(map(str, a.values())))
def test_factorizer_node_folder_equals_run_fixed_point(tmp_path, attrs):
    cb = fz.random_sbc(2, 64, 4, 128, seed=9)
    model = edge_sdk.load(head_only_model(tmp_path / "m.onnx", cb, **attrs))
    report = head.convert(model, tmp_path / "out")
    assert report["F"] == 2 and report["flash_bytes"] > 0
    q, _ = fz.make_queries(cb, 12, "moved0.05", seed=2)  # float queries, as `run` takes them
    got = head.simulate(tmp_path / "out", q)
    want = model.run_outputs(q, fixed_point=True)
    assert np.array_equal(got["indices"], want["idx"])
    assert np.array_equal(got["iterations"], want["it"])


def test_factorizer_node_after_a_network_is_refused(tmp_path):
    cb = fz.random_sbc(2, 5, 2, 8, seed=1)
    path = head_only_model(tmp_path / "m.onnx", cb)
    m = onnx.load(path)
    m.graph.node.insert(0, oh.make_node("Relu", ["x"], ["r"], name="relu"))
    m.graph.node[1].input[0] = "r"
    onnx.save(m, path)
    with pytest.raises(EdgeError, match="only the factorizer node"):
        head.convert(edge_sdk.load(path), tmp_path / "out")


@needs_arm
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps2-an385"])
def test_qemu_64_bit_bundling_divide_and_draws_on_m4_and_m3(tmp_path, board):
    """dot similarity at F=2, M=64, B=4 needs c * X up to 2^32: the uint64 divide (libgcc on
    the target); A > 0 and T > 0 exercise the LFSR draws and the threshold on the device."""
    cb = fz.random_sbc(2, 64, 4, 128, seed=4)
    sp = cf.decoder_spec(cb, similarity="dot", A=3, T=0.25, seed=5)
    assert sp.bundle_dtype == "uint64"
    elf = cf.build_firmware(sp, tmp_path, board)
    q = np.concatenate([queries(cb, 12, "moved0.05", 8), queries(cb, 12, "moved0.3", 9)])
    assert_same(cf.run_qemu(sp, elf, q, board), golden(sp, q, cb))
