"""Cortex-M backend: lowered IR -> plain C99 (TVM-generated kernels + model.c / model.h).

Entry points: `generate(graph, popcount="swar") -> {file name: text}` and
`build(graph, popcount) -> CModel(files, info)` (codegen.py). Files: `model.h` (EDGE_IN_T,
sizes, arena/weight bytes, `int edge_model_run(const EDGE_IN_T *in, int32_t *out)`),
`model.c` (flash tables, one static arena, the kernel calls), `edge_kernels.h/.c`.

How the C is made: each kernel kind is a TVMScript `@T.prim_func` generator (kernels_*.py;
shared TIR macros in popsum.py and kernel_io.py) specialised per layer (constant loop
bounds), lowered with an explicit TIR pass list and printed by TVM's `c` code generator with
the TVM preamble stripped (tir_to_c.py); popcount gets a `c`-target lowering, portable SWAR
or `__builtin_popcount` (popcount.py). The plan (plan.py) maps layers to kernels and tensors
to buffers, fusing a Threshold into the Dense/Conv that feeds it (so int32 accumulator maps
never occupy RAM); arena.py places buffers by liveness; emit.py writes the files. host.py
compiles them with gcc for bit-exact tests on the host.

Layouts (bit conventions from `edge_sdk.bitpack`: bit 1 = +1, LSB first, pad bits 0):

- Integer tensors (the input, accumulators): the IR's C order, int32 in the arena; the input
  is EDGE_IN_T (int8 when its range fits, else int16).
- ±1 / ternary tensors: packed per position over channels, [P][ceil(C/32)] uint32 words
  (P = H*W for CHW maps, 1 for vectors), channel c at bit c % 32 of word c // 32; a ternary
  tensor (a Threshold with `zero` ties upstream) adds a mask plane of the same shape after
  the sign plane (bit 1 = nonzero; a 0 has sign bit 0 and mask bit 0).
- Flatten / Reshape are free: they keep the C-order flat index, so value i of any view is
  channel i // P at position i % P of its producer's layout.
- Weights (flash): binary conv [O][KH][KW][ceil(C/32)] words, channels packed per tap; dense
  after a packed tensor [O][P*ceil(C/32)] words with columns moved from the IR's C order to
  the packed positions (channel padding 0 in weights and activations, so it XORs to 0);
  multi-bit-input layers keep the IR's column order, [O][ceil(K/32)] words. Ternary weights
  add a mask plane after the sign plane. Wide binary x binary dense layers use the transposed
  layout instead (kernels_dense_t.py): [ceil(O/32)][K' + 1] words, 32 output rows per word, then
  each row's weight popcount.
- Thresholds: int32 table thr = s * tau (s = -1 for flipped channels), then s if any channel
  flips, then the packed `zero` flags if any channel ties (kernels_threshold.py).

Kernels: binary dense, transposed where it pays (plan.transposed_pays: bit-sliced row counters
over the rarer half of the inputs) or row by row (carry-save adders over straight-line 32-word
chunks, one shared SWAR count of the leftover level words per row; always SWAR, whatever
`popcount` says), and its masked
(ternary weights and/or activations) variant, binary/ternary conv2d (receptive field
gathered once per pixel; stride, dilation, pads whose taps contribute 0), multi-bit-input
dense and conv (add/and selection from weight bits); each of these with int32 output or a
fused threshold + pack; standalone threshold + pack, max-pool on bits (OR; OR/AND with mask
planes) and on integers (per-channel min via a sign table), and the output copy / unpack.
Real-valued layers between binary layers (issue #11; plan_fixed.py): fixed-point tensors are
int32 [C][P] arena buffers like accumulators (a residual's two inputs are two live buffers);
Requant, AddTensors, PRelu, GlobalAvgPool, Concat (kernels_fixed.py, kernels_concat.py) follow
sdk/fixedpoint.py in int64 exactly (gcc's `>>` on negative values is arithmetic = floor, as
NumPy's); FixedThreshold is the threshold + pack kernel; grouped / depthwise binary convs use a
lane-parallel kernel (kernels_group.py) or the ordinary conv with block-diagonal weights.
"""

__all__ = ["CModel", "ModelInfo", "build", "generate"]


def __getattr__(name: str):
    """codegen's names on first use: importing TVM takes seconds, and the tools that only read
    ELFs, run QEMU or talk to a board over its UART (`edge-sdk infer`) never need it."""
    if name in __all__:
        from . import codegen

        return getattr(codegen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
