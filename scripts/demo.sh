#!/usr/bin/env bash
# The main job on the shipped example models: set up, inspect, run the golden model and check it
# against onnxruntime, convert. Outputs go to out/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
sdk=.venv/bin/edge-sdk
mkdir -p out
for name in mlp cnn; do
  model=examples/${name}_digits.onnx
  echo "== $model"
  $sdk inspect "$model"
  $sdk run "$model" --input "examples/digits_${name}_x.npy" --output "out/${name}_y.npy" --check
  $sdk convert "$model" --target ir -o "out/${name}_ir"
  .venv/bin/python - "$name" <<'PY'
import sys
import numpy as np
name = sys.argv[1]
y = np.load(f"out/{name}_y.npy")
labels = np.load("examples/digits_y.npy")
print(f"{name}: {(y.argmax(1) == labels).mean():.1%} of the 64 sample digits right")
PY
done
for name in mlp cnn; do
  model=examples/${name}_digits.onnx
  echo "== $model on Cortex-M (QEMU mps2-an386, Cortex-M4)"
  $sdk convert "$model" --target cortex-m -o "out/${name}_cortexm"
  $sdk report "out/${name}_cortexm"
  $sdk simulate "out/${name}_cortexm" --input "examples/digits_${name}_x.npy" \
    --output "out/${name}_cortexm_y.npy" --check
  echo "== $model on FPGA (Verilog under cocotb + Icarus)"
  $sdk convert "$model" --target fpga -o "out/${name}_fpga"
  $sdk simulate "out/${name}_fpga" --input "examples/digits_${name}_x.npy" \
    --output "out/${name}_fpga_y.npy" --check
done
echo "== FPGA resources and Fmax of the MLP (yosys synth_ice40 + nextpnr-ice40, about 1.5 min)"
$sdk report out/mlp_fpga
