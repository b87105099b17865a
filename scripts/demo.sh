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
fz=examples/attributes/attributes_factorizer.onnx
echo "== $fz: a binary CNN ending in a block-code factorizer head (512 classes = 8^3)"
$sdk inspect "$fz"
.venv/bin/python -c "import numpy as np; np.save('out/attr_x.npy', np.load('examples/attributes/test_x.npy')[:16])"
$sdk run "$fz" --input out/attr_x.npy --output out/attr_fixed.npz --fixed-point
echo "== $fz on Cortex-M (network + integer block softmax + decoder in one firmware)"
$sdk convert "$fz" --target cortex-m -o out/attr_cortexm
$sdk report out/attr_cortexm
$sdk simulate out/attr_cortexm --input out/attr_x.npy --output out/attr_cortexm.npz --check
echo "== $fz on FPGA (--board sim: its 0.3 Mbit of weights exceed the UP5K's block RAM)"
$sdk convert "$fz" --target fpga --board sim -o out/attr_fpga
$sdk simulate out/attr_fpga --input out/attr_x.npy --output out/attr_fpga.npz --check
echo "== examples/resnets: Bi-Real (8-bit stem and head by calibration) and ReActNet networks"
.venv/bin/python -c "import numpy as np; np.save('out/resnet_x.npy', np.load('examples/resnets/test_x.npy')[:16])"
for net in bireal reactnet; do
  model=examples/resnets/${net}_digits.onnx
  opts=(--input-range 0,16)
  [[ $net == bireal ]] && opts+=(--calibrate examples/resnets/calib_x.npy)
  $sdk inspect "$model" "${opts[@]}"
  $sdk run "$model" "${opts[@]}" --input out/resnet_x.npy --output "out/${net}_y.npy" --check
  $sdk run "$model" "${opts[@]}" --input out/resnet_x.npy --output "out/${net}_fixed.npy" --fixed-point
  echo "== $model on Cortex-M and FPGA, each checked against run --fixed-point"
  $sdk convert "$model" "${opts[@]}" --target cortex-m -o "out/${net}_cortexm"
  $sdk simulate "out/${net}_cortexm" --input out/resnet_x.npy --output "out/${net}_cortexm_y.npy" --check
  # --board sim: their real-valued stages synthesise beyond the UP5K (examples/README.md)
  $sdk convert "$model" "${opts[@]}" --target fpga --board sim -o "out/${net}_fpga"
  $sdk simulate "out/${net}_fpga" --input out/resnet_x.npy --output "out/${net}_fpga_y.npy" --check
done
