"""Read a .tflite file into plain dataclasses: the part of the TFLite schema edge-sdk uses.

Field ids follow TFLite's `schema.fbs` (a union takes two ids: its type, then its value).
Sizes are bounded before anything is allocated: the file size, every tensor's declared shape,
and each constant buffer's length against its tensor's shape and type. Names come from the
file and are sanitised before they reach a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError

from . import flatbuf, flexbuf
from .flatbuf import FormatError, Table
from .opnames import builtin_name

MAX_FILE_BYTES = 2 * 1024**3 - 1  # FlatBuffers' own 2 GiB limit
MAX_ELEMENTS = 1 << 28  # per tensor, as for ONNX (loader.py)
MAX_DIM = 1 << 24
CUSTOM = 32

# TensorType -> NumPy dtype (the types a constant of a binary network may have)
DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
          7: "int16", 9: "int8", 10: "float64"}
TYPE_NAMES = {0: "FLOAT32", 1: "FLOAT16", 2: "INT32", 3: "UINT8", 4: "INT64", 5: "STRING",
              6: "BOOL", 7: "INT16", 8: "COMPLEX64", 9: "INT8", 10: "FLOAT64",
              11: "COMPLEX128", 12: "UINT64", 13: "RESOURCE", 14: "VARIANT", 15: "UINT32",
              16: "UINT16", 17: "INT4", 18: "BFLOAT16"}


def safe_name(name: str | None, limit: int = 64) -> str:
    """Printable, bounded version of a name read from the file (for messages and IR sources)."""
    text = "".join(c if c.isprintable() else "?" for c in (name or ""))
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Tensor:
    index: int
    name: str  # sanitised
    shape: tuple[int, ...]
    type_code: int
    buffer: int
    data: np.ndarray | None = None  # constant contents, shaped
    quantized: bool = False
    signature: tuple[int, ...] | None = None  # shape_signature (-1 = dynamic)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type_code, f"type {self.type_code}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Operator:
    index: int
    name: str  # builtin name (CONV_2D) or custom code (LceBconv2d), sanitised
    custom: bool
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    options_type: int = 0
    options: Table | None = None  # builtin options table (read with the helpers below)
    custom_options: dict = field(default_factory=dict)


@dataclass
class Model:
    file: str
    version: int
    description: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


# ---------------------------------------------------------------------------- reading
def _slice(buf: bytes, offset: int, size: int, what: str) -> bytes:
    if offset < 0 or size < 0 or offset + size > len(buf):
        raise FormatError(f"{what} [{offset}, {offset + size}) lies outside the file")
    return buf[offset:offset + size]


def _buffer_bytes(buf: bytes, t: Table) -> bytes | None:
    data = t.bytes(0)
    if data:
        return data
    offset, size = t.scalar(1, "Q"), t.scalar(2, "Q")
    if offset > 1 and size:  # data appended after the FlatBuffer (models over 2 GiB)
        return _slice(buf, offset, size, "buffer")
    return None


def _tensor(buf: bytes, i: int, t: Table, buffers: list[Table]) -> Tensor:
    name = safe_name(t.string(3)) or f"#{i}"
    raw_shape = t.array(0, "int32")
    shape = tuple(int(d) for d in raw_shape) if raw_shape is not None else ()
    if any(d < 0 or d > MAX_DIM for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise EdgeError(f"tensor '{name}' declares shape {list(shape)}, outside the limits "
                        f"(dimensions 0..{MAX_DIM}, at most {MAX_ELEMENTS} elements)")
    sig = t.array(7, "int32")
    type_code = t.scalar(1, "b")
    buffer = t.scalar(2, "I")
    q = t.table(4)
    scale = q.array(2, "float32") if q is not None else None
    tensor = Tensor(i, name, shape, type_code, buffer, quantized=scale is not None and len(scale) > 0,
                    signature=tuple(int(d) for d in sig) if sig is not None else None)
    if buffer >= len(buffers):
        raise EdgeError(f"tensor '{name}' refers to buffer {buffer}; the file has {len(buffers)}")
    data = _buffer_bytes(buf, buffers[buffer]) if buffer else None
    if data is not None:
        dtype = DTYPES.get(type_code)
        if dtype is None:
            raise EdgeError(f"tensor '{name}': constant of type {tensor.type_name} is not supported")
        need = math.prod(shape) * np.dtype(dtype).itemsize
        if len(data) != need:
            raise EdgeError(f"tensor '{name}' declares shape {list(shape)} ({tensor.type_name}) "
                            f"but its buffer holds {len(data)} bytes, not {need}")
        tensor.data = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(
            shape).astype(dtype)
    return tensor


def _operator(buf: bytes, i: int, t: Table, codes: list[tuple[str, bool]]) -> Operator:
    idx = t.scalar(0, "I")
    if idx >= len(codes):
        raise EdgeError(f"operator #{i} uses operator code {idx}; the file has {len(codes)}")
    name, custom = codes[idx]
    inputs = t.array(1, "int32")
    outputs = t.array(2, "int32")
    op = Operator(i, name, custom, tuple(int(v) for v in (inputs if inputs is not None else ())),
                  tuple(int(v) for v in (outputs if outputs is not None else ())),
                  options_type=t.scalar(3, "B"), options=t.table(4))
    if custom:
        raw = t.bytes(5)
        if not raw:
            offset, size = t.scalar(9, "Q"), t.scalar(10, "Q")
            raw = _slice(buf, offset, size, "custom options") if size else b""
        if raw:
            if t.scalar(6, "b") != 0:
                raise EdgeError(f"operator #{i} ({name}): custom options are not FlexBuffers")
            opts = flexbuf.loads(raw)
            if not isinstance(opts, dict):
                raise EdgeError(f"operator #{i} ({name}): custom options are not a map")
            op.custom_options = opts
    return op


def _codes(model: Table) -> list[tuple[str, bool]]:
    codes = []
    for oc in model.tables(1):
        code = max(oc.scalar(0, "b"), oc.scalar(3, "i"))
        if code == CUSTOM:
            codes.append((safe_name(oc.string(1)) or "<unnamed custom op>", True))
        else:
            codes.append((builtin_name(code), False))
    return codes


def parse(buf: bytes, file: str) -> Model:
    """Parse the bytes of a .tflite file; every problem is a one-line EdgeError."""
    try:
        model = flatbuf.root(buf, b"TFL3")
        version = model.scalar(0, "I")
        subgraphs = model.tables(2)
        if len(subgraphs) != 1:
            raise EdgeError(f"{file}: {len(subgraphs)} subgraphs; only single-subgraph models "
                            "(no control flow) are supported")
        g = subgraphs[0]
        buffers = model.tables(4)
        codes = _codes(model)
        tensors = [_tensor(buf, i, t, buffers) for i, t in enumerate(g.tables(0))]
        operators = [_operator(buf, i, t, codes) for i, t in enumerate(g.tables(3))]
        ins, outs = g.array(1, "int32"), g.array(2, "int32")
        inputs = tuple(int(v) for v in ins) if ins is not None else ()
        outputs = tuple(int(v) for v in outs) if outs is not None else ()
        description = safe_name(model.string(3))
    except FormatError as exc:
        raise EdgeError(f"{file}: not a valid TFLite FlatBuffer: {exc}") from None
    except EdgeError as exc:
        msg = str(exc)
        raise EdgeError(msg if msg.startswith(file) else f"{file}: {msg}") from None
    n = len(tensors)
    for op in operators:
        for t in op.inputs + op.outputs:
            if t < -1 or t >= n:
                raise EdgeError(f"{file}: operator #{op.index} ({op.name}) refers to tensor {t}; "
                                f"the model has {n}")
    for t in inputs + outputs:
        if t < 0 or t >= n:
            raise EdgeError(f"{file}: model input/output refers to tensor {t}; the model has {n}")
    return Model(file, version, description, tensors, operators, inputs, outputs)


def load(path: str | Path) -> Model:
    """Read and parse a .tflite file, bounding its size first."""
    p = Path(path)
    file = str(p)
    if not p.exists():
        raise EdgeError(f"{file}: no such file")
    if not p.is_file():
        raise EdgeError(f"{file}: not a file")
    size = p.stat().st_size
    if size == 0:
        raise EdgeError(f"{file}: empty file, cannot parse as a TFLite model")
    if size > MAX_FILE_BYTES:
        raise EdgeError(f"{file}: file of {size} bytes exceeds the 2 GiB FlatBuffers limit")
    return parse(p.read_bytes(), file)


# ---------------------------------------------------------------------------- builtin options
PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
               5: "SIGN_BIT", 6: "SIGMOID"}


@dataclass(frozen=True)
class ConvOptions:
    padding: str
    stride: tuple[int, int]  # h, w
    dilation: tuple[int, int]
    activation: str


@dataclass(frozen=True)
class PoolOptions:
    padding: str
    stride: tuple[int, int]
    kernel: tuple[int, int]
    activation: str


def _opts(op: Operator, expected: int) -> Table | None:
    if op.options is not None and op.options_type != expected:
        raise EdgeError(f"operator #{op.index} ({op.name}) carries options of type "
                        f"{op.options_type}, expected {expected}")
    return op.options


def _padding(code: int, op: Operator) -> str:
    if code not in PADDING:
        raise EdgeError(f"operator #{op.index} ({op.name}): unknown padding {code}")
    return PADDING[code]


def activation_name(code: int) -> str:
    return ACTIVATIONS.get(code, f"activation {code}")


def conv_options(op: Operator) -> ConvOptions:
    t = _opts(op, 1)
    g = (lambda i, fmt, d=0: d if t is None else t.scalar(i, fmt, d))
    return ConvOptions(_padding(g(0, "b"), op), (g(2, "i"), g(1, "i")), (g(5, "i", 1), g(4, "i", 1)),
                       activation_name(g(3, "b")))


def pool_options(op: Operator) -> PoolOptions:
    t = _opts(op, 5)
    g = (lambda i, fmt, d=0: d if t is None else t.scalar(i, fmt, d))
    return PoolOptions(_padding(g(0, "b"), op), (g(2, "i"), g(1, "i")), (g(4, "i"), g(3, "i")),
                       activation_name(g(5, "b")))


def fc_options(op: Operator) -> tuple[str, int, bool]:
    """(fused activation, weights format (0 = DEFAULT), keep_num_dims)."""
    t = _opts(op, 8)
    if t is None:
        return "NONE", 0, False
    return activation_name(t.scalar(0, "b")), t.scalar(1, "b"), bool(t.scalar(2, "?"))


def softmax_beta(op: Operator) -> float:
    t = _opts(op, 9)
    return 1.0 if t is None else float(t.scalar(0, "f", 0.0))


ELEMENTWISE_OPTIONS = {"ADD": 11, "MUL": 21, "SUB": 28, "DIV": 29}


def elementwise_activation(op: Operator) -> str:
    t = _opts(op, ELEMENTWISE_OPTIONS[op.name])
    return "NONE" if t is None else activation_name(t.scalar(0, "b"))


def reshape_new_shape(op: Operator) -> list[int] | None:
    t = _opts(op, 17)
    arr = None if t is None else t.array(0, "int32")
    return None if arr is None else [int(v) for v in arr]


@dataclass(frozen=True)
class DepthwiseOptions:
    padding: str
    stride: tuple[int, int]  # h, w
    dilation: tuple[int, int]
    multiplier: int
    activation: str


def depthwise_options(op: Operator) -> DepthwiseOptions:
    """DepthwiseConv2DOptions: padding, stride_w, stride_h, depth_multiplier, activation,
    dilation_w, dilation_h (fields 0..6)."""
    t = _opts(op, 2)
    g = (lambda i, fmt, d=0: d if t is None else t.scalar(i, fmt, d))
    return DepthwiseOptions(_padding(g(0, "b"), op), (g(2, "i"), g(1, "i")),
                            (g(6, "i", 1), g(5, "i", 1)), g(3, "i", 1),
                            activation_name(g(4, "b")))


def concat_options(op: Operator) -> tuple[int, str]:
    """ConcatenationOptions: (axis, fused activation)."""
    t = _opts(op, 10)
    if t is None:
        return 0, "NONE"
    return t.scalar(0, "i", 0), activation_name(t.scalar(1, "b"))


def reducer_keep_dims(op: Operator) -> bool:
    """ReducerOptions (MEAN, SUM...): keep_dims."""
    t = _opts(op, 27)
    return False if t is None else bool(t.scalar(0, "?", False))
