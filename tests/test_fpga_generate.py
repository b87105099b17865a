"""generate(): deterministic single-file Verilog, sanitised names, folding options and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge_sdk
from edge_sdk.converters.fpga import MANIFEST, VERILOG, generate
from edge_sdk.converters.fpga.plan import plan
from edge_sdk.errors import EdgeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo

EVIL = 'x"; system("rm -rf /"); //'


def load_model(model: onnx.ModelProto, input_range=(0, 15)):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, str(path))
        return edge_sdk.load(path, input_range=input_range).ir


@pytest.fixture(scope="module")
def tie_graph():
    return load_model(zoo.tie_mlp(1))


def test_one_verilog_file_and_manifest(tie_graph):
    files, sched = generate(tie_graph)
    assert sorted(files) == sorted([VERILOG, MANIFEST])
    text = files[VERILOG]
    assert text.count("module edge_net(") == 1
    info = json.loads(files[MANIFEST])
    assert info["schedule"]["initiation_interval"] == sched.initiation_interval
    assert sched.cycles_per_inference > sched.initiation_interval > 0
    assert [s.kind for s in sched.stages] == ["dense", "dense", "dense"]


def test_generation_is_byte_identical_across_processes(tie_graph):
    """Two generations (different hash seeds, separate interpreters) give the same bytes."""
    tests = str(Path(__file__).resolve().parent)
    script = (
        f"import sys, tempfile, onnx, hashlib; sys.path.insert(0, {tests!r})\n"
        "import zoo, edge_sdk\n"
        "from edge_sdk.converters.fpga import generate\n"
        "p = tempfile.mktemp(suffix='.onnx'); onnx.save(zoo.cnn(3, channels=(3, 4)), p)\n"
        "files, _ = generate(edge_sdk.load(p, input_range=(0, 15)).ir)\n"
        "print(hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    a, _ = generate(tie_graph)
    b, _ = generate(tie_graph)
    assert a == b


def test_model_identifiers_never_reach_verilog_unsanitised():
    model = zoo.mlp(2, sizes=(16, 8, 4))
    for node in model.graph.node:
        node.name = EVIL
    graph = load_model(model)
    for layer in graph.layers:  # an IR folder can carry any names: try those too
        layer.source = EVIL
    graph.name = EVIL
    files, _sched = generate(graph)
    for text in (files[VERILOG],):
        assert EVIL not in text and "system(" not in text and "rm -rf" not in text
        for line in text.splitlines():
            if line.startswith("//"):
                assert '"' not in line
    names = dict(zip([layer.name for layer in graph.layers], range(len(graph.layers))))
    evil_names = {name: EVIL + str(k) for name, k in names.items()}
    for layer in graph.layers:
        layer.name = evil_names[layer.name]
    files2, _ = generate(graph, pe={evil_names["dense0"]: 2})
    assert EVIL not in files2[VERILOG] and "system(" not in files2[VERILOG]


def test_pe_simd_trade_area_for_cycles():
    graph = load_model(zoo.mlp(3, sizes=(32, 64, 10)))
    _, slow = generate(graph, pe=1, simd=4)
    _, fast = generate(graph, pe=8, simd=32)
    assert slow.initiation_interval > 4 * fast.initiation_interval
    assert [(s.pe, s.simd) for s in slow.stages] == [(1, 4), (1, 4)]
    assert [(s.pe, s.simd) for s in fast.stages] == [(8, 32), (8, 32)]
    # global values are clamped to each layer; the II is the slowest stage
    assert slow.initiation_interval == max(s.compute_cycles for s in slow.stages)


def test_padding_is_reported(tie_graph):
    p = plan(tie_graph, pe=[5, 5, 3], simd=[5, 7, 4])
    assert any("padded" in note for note in p.notes)


@pytest.mark.parametrize("pe,simd,match", [
    ([100, 1, 1], None, "PE 100 exceeds its 24 output channels"),
    (None, [1, 99, 1], "SIMD 99 exceeds the 24 input channels"),
    ([1, 2], None, "lists 2 values for 3"),
    (0, None, "outside 1..4096"),
    ({"nope": 2}, None, "unknown layer"),
    ([1, "2", 1], None, "not an integer"),
    ([24, 17, 10], [12, 24, 17], None),
])
def test_bad_folding_is_one_line_edge_error(tie_graph, pe, simd, match):
    if match is None:  # the largest legal folding of this model is accepted
        assert plan(tie_graph, pe=pe, simd=simd).stages
        return
    with pytest.raises(EdgeError, match=match) as err:
        plan(tie_graph, pe=pe, simd=simd)
    assert "\n" not in str(err.value)


def test_too_many_lanes_is_refused():
    graph = load_model(zoo.mlp(1, sizes=(256, 256, 10)))
    with pytest.raises(EdgeError, match="65536 parallel lanes exceeds 16384"):
        plan(graph, pe=[256, 1], simd=[256, 1])


def test_unsupported_graph_is_edge_error(tie_graph):
    from edge_sdk.ir import layers as L
    g = load_model(zoo.tie_mlp(2))
    g.layers[2].inputs = [g.layers[0].output]  # not a chain any more
    with pytest.raises(EdgeError, match="chains"):
        plan(g)
    g2 = load_model(zoo.tie_mlp(2))
    g2.layers = [g2.layers[0], g2.layers[-1]]
    g2.layers[-1].inputs = [g2.layers[0].output]
    with pytest.raises(EdgeError, match="no dense or conv"):
        plan(g2)
    assert isinstance(g2.layers[-1], L.Scores)


def test_default_folding_of_example_mlp_targets_up5k():
    graph = edge_sdk.load(Path(__file__).resolve().parents[1] / "examples" / "mlp_digits.onnx").ir
    p = plan(graph)
    for stage in p.stages:
        assert stage.pe * stage.simd <= 128  # no layer is unrolled beyond what fits
    assert np.isclose(sum(1 for _ in p.stages), 3)
