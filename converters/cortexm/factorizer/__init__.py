"""The fixed-point factorizer decoder (edge_sdk.factorizer.fixed) as generated C for Cortex-M.

spec.py fixes sizes, integer levels and word types; kernels.py holds the decoder's loops as
TVMScript kernels; emit.py writes edge_factorizer.h/.c (and a firmware wrapper); run.py runs
the result on the host, under QEMU, and under unicorn for instruction counts; report.py gives
flash, RAM, stack and instructions per query; head.py turns a model that is only the ONNX
BlockCodeFactorizer node into such a folder and simulates float queries on it (what
`convert --target cortex-m` / `simulate` are to call for those models); softmax.py is the
integer block softmax between a network's scores and the decoder as a generated kernel, and
deployed.py builds ONE firmware for a whole model (network -> block softmax -> decoder, or the
decoder alone) from a DeployedHead: the `convert`/`simulate` pair sdk/targets.py calls.
"""

from .emit import files, firmware_files
from .run import HostDecoder, build_firmware, instructions_per_query, run_qemu
from .spec import DecoderSpec, decoder_spec

__all__ = ["DecoderSpec", "HostDecoder", "build_firmware", "decoder_spec", "files",
           "firmware_files", "instructions_per_query", "run_qemu"]
