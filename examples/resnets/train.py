"""Train and export the Bi-Real-style and ReActNet-style digits networks (issue #11 item 4).

Both train on the fixed digits split of ``examples/digits_data.py`` (8x8 images, raw integer
pixels 0..16, no download) with ``edge_sdk.train`` layers, on one thread with fixed seeds, and
are exported with ``edge_sdk.train.export_onnx`` (BatchNormalization kept as its own node, so
every float op reads an exact integer accumulator).

``bireal_digits.onnx`` (Bi-Real style, 8-bit first and last layers by calibration):
  float conv 3x3 1->16 -> BN                      (8-bit: the SDK calibrates it, --calibrate)
  block  x + BN(binconv3x3(sign(x)))              16ch 8x8
  down   cat(maxpool(x), maxpool(BN(binconv1x1(sign(x))))) + BN(binconv3x3 stride 2(sign(x)))
                                                  16 -> 32ch 4x4
  block  x + BN(binconv3x3(sign(x)))              32ch 4x4
  global average pool -> float Linear 32->10      (8-bit: calibrated, its input quantised)
The two float layers train with their weights on the 8-bit grid `--calibrate` uses (per output
channel, max|w| / 127, straight-through rounding) and are exported with the rounded values, so
the SDK's 8-bit codes are the trained ones. Without it (plain float layers, measured on an
earlier version of this network with a parameter-free shortcut), the rounded stem
flipped 0.14 % of the first signs and `run --fixed-point` agreed with `run` on only 98.2 % of
the test images; with it, on all of them.
The downsampling shortcut keeps the real-valued map (max-pooled) for the first 16 channels and
adds a 1x1 binary path for the 16 new ones.

``reactnet_digits.onnx`` (ReActNet style, binary first and last layers, so the FPGA takes it
without 8-bit support):
  binconv3x3 1->32 on the integer pixels -> BN
  3 blocks  RPReLU(x + BN(conv(RSign(x))))        conv = 3x3 dense, 3x3 depthwise, 1x1 dense
  global average pool -> BN -> RSign -> binary Linear 32->10 -> BN
RSign is sign(x - t_c) with a learned per-channel threshold; RPReLU is ReActNet's
shift -> per-channel PReLU -> shift. The BatchNorm before the head's RSign matters: without it
the averages sit far outside the STE's |x| <= 1 window, the head gets no gradient and the
network reached 42 % (with it, ~97 %). The SDK folds BN + RSign into one integer threshold.

Also written: ``test_x.npy`` (all 450 test images [450, 1, 8, 8] float32), ``test_y.npy``
(int64) and ``calib_x.npy`` (the first 128 TRAIN images: the Bi-Real model's calibration set).

Run from the repository root: ``python examples/resnets/train.py`` (a few seconds of training per model on one thread).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from digits_data import SEED, as_images, load_split
from train_common import TrainConfig, accuracy, onnx_logits, train

from edge_sdk.train import BinaryActivation, BinaryConv2d, BinaryLinear, export_onnx
from edge_sdk.train.estimators import STE, binarize

#: Calibration set for the Bi-Real model's 8-bit layers: this many first TRAIN images.
CALIB_SIZE = 128
#: Pixel range of the digits (the SDK's --input-range).
INPUT_RANGE = (0, 16)


# ---------------------------------------------------------------------------- building blocks
class GroupedBinaryConv2d(BinaryConv2d):
    """BinaryConv2d with `groups` (edge_sdk.train's layer has no groups argument): the same
    sign(W) quantiser and STE, a weight of shape [out, in / groups, k, k]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups,
                                               kernel_size, kernel_size))
        self.reset_parameters()


class _RoundSTE(torch.autograd.Function):
    """round() forward (half to even, as the SDK's calibration rounds), identity backward."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    """w on the SDK's calibration grid: per output channel s = max|w| / 127, q = round(w / s).

    Why: `--calibrate` quantises a float layer's weights exactly this way. Training on the
    grid (straight-through rounding) and exporting the rounded values makes the SDK's 8-bit
    codes equal the trained ones, so `run --fixed-point` computes the trained first layer
    instead of a perturbed one (a perturbed stem flips signs that the binary layers amplify).
    """
    top = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12)
    s = (top / 127).reshape((-1,) + (1,) * (w.dim() - 1))
    return _RoundSTE.apply(w / s) * s


class _Int8Grid:
    """Shared by Int8Conv2d / Int8Linear: grid weights while training, plain after `snap`."""

    weight: nn.Parameter
    snapped: bool = False

    def grid_weight(self) -> torch.Tensor:
        return self.weight if self.snapped else int8_weight(self.weight)

    def snap(self) -> None:
        """Store the rounded weights and stop rounding: the export is a plain float Conv/Gemm
        holding grid values (no rounding subgraph in the file), the same function."""
        with torch.no_grad():
            self.weight.copy_(int8_weight(self.weight))
        self.snapped = True


class Int8Conv2d(nn.Conv2d, _Int8Grid):
    """Float Conv2d whose weights are trained on the 8-bit calibration grid (`int8_weight`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.grid_weight(), self.bias)


class Int8Linear(nn.Linear, _Int8Grid):
    """Float Linear whose weights are trained on the 8-bit calibration grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.grid_weight(), self.bias)


class RSign(nn.Module):
    """ReActNet's RSign: sign(x - t_c), t_c learned per channel; exported as Sub -> Sign."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.zeros(channels))
        self.est = STE()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.t.reshape((1, -1) + (1,) * (x.dim() - 2))
        return binarize(x - t, self.est, False)


class RPReLU(nn.Module):
    """ReActNet's RPReLU: PReLU(x - a_c) + b_c (shift, per-channel PReLU, shift)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(x - self.a) + self.b


class BiRealBlock(nn.Module):
    """x + BN(binary_conv3x3(sign(x))): Bi-Real's real-valued shortcut around each binary conv.

    With stride 2 (channels doubled) the shortcut is cat(maxpool(x), maxpool(BN(binary
    conv1x1(sign(x))))): the real-valued map pooled, beside a 1x1 binary path for the new
    channels. (cat(maxpool(x), maxpool(x)), the parameter-free form, stalls the FPGA pipeline
    after two images: see README.md.)
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.sign = BinaryActivation()
        self.conv = BinaryConv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.down = stride != 1
        if self.down:
            self.pool = nn.MaxPool2d(stride)
            self.short = BinaryConv2d(cin, cout - cin, 1)
            self.short_bn = nn.BatchNorm2d(cout - cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.sign(x)
        y = self.bn(self.conv(b))
        if self.down:
            x = torch.cat([self.pool(x), self.pool(self.short_bn(self.short(b)))], 1)
        return x + y


class BiRealNet(nn.Module):
    """Float stem (calibrated to 8 bits) -> 3 Bi-Real blocks (one downsampling) -> GAP ->
    float Linear (calibrated to 8 bits)."""

    def __init__(self, c: int = 16, n_out: int = 10) -> None:
        super().__init__()
        self.stem = Int8Conv2d(1, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(BiRealBlock(c, c), BiRealBlock(c, 2 * c, stride=2),
                                    BiRealBlock(2 * c, 2 * c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = Int8Linear(2 * c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn0(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ReActBlock(nn.Module):
    """RPReLU(x + BN(conv(RSign(x)))), conv a binary 3x3 (groups 1 or depthwise) or 1x1."""

    def __init__(self, c: int, k: int = 3, groups: int = 1) -> None:
        super().__init__()
        self.rsign = RSign(c)
        if groups == 1:
            self.conv = BinaryConv2d(c, c, k, padding=k // 2)
        else:
            self.conv = GroupedBinaryConv2d(c, c, k, groups, padding=k // 2)
        self.bn = nn.BatchNorm2d(c)
        self.act = RPReLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.bn(self.conv(self.rsign(x))))


class ReActNet(nn.Module):
    """Binary stem on the integer pixels -> 3 ReAct blocks (3x3, depthwise 3x3, 1x1) -> GAP ->
    RSign -> binary Linear -> BN scores."""

    def __init__(self, c: int = 32, n_out: int = 10) -> None:
        super().__init__()
        self.stem = BinaryConv2d(1, c, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(ReActBlock(c), ReActBlock(c, groups=c), ReActBlock(c, k=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bnp = nn.BatchNorm1d(c)
        self.rsign = RSign(c)
        self.fc = BinaryLinear(c, n_out)
        self.bnf = nn.BatchNorm1d(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn0(self.stem(x)))
        x = self.bnp(torch.flatten(self.pool(x), 1))
        return self.bnf(self.fc(self.rsign(x)))


MODELS = {"bireal_digits": BiRealNet, "reactnet_digits": ReActNet}


# ---------------------------------------------------------------------------- driver
def seed_everything(seed: int = SEED) -> None:
    """Fixed RNGs, deterministic kernels and one thread: reruns give identical files."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def train_one(name: str, cfg: TrainConfig) -> dict:
    """Seed, train, export `name` and check the file with onnxruntime on the test split."""
    seed_everything()
    split = load_split()
    x_train = torch.from_numpy(as_images(split.x_train))
    y_train = torch.from_numpy(split.y_train)
    x_test_np = as_images(split.x_test)
    x_test = torch.from_numpy(x_test_np)
    model = MODELS[name]()
    seconds = train(model, x_train, y_train, cfg)
    torch_acc = accuracy(model, x_test, torch.from_numpy(split.y_test))
    with torch.no_grad():
        torch_scores = model(x_test).numpy()
    for mod in model.modules():
        if isinstance(mod, _Int8Grid):
            mod.snap()
    path = HERE / f"{name}.onnx"
    dynamic = export_onnx(model, x_test[:2], path)
    scores = onnx_logits(path, x_test_np, dynamic)
    onnx_acc = float((scores.argmax(1) == split.y_test).mean())
    diff = float(np.abs(scores - torch_scores).max())
    print(f"{name}: train {seconds:.1f} s, torch acc {torch_acc:.4f}, onnx acc {onnx_acc:.4f},"
          f" max |torch - onnx| {diff:.2e}, {path.stat().st_size} B")
    return {"train_seconds": seconds, "torch_acc": torch_acc, "onnx_acc": onnx_acc}


def save_data() -> None:
    """The test split (inputs, labels) and the calibration set (first TRAIN images)."""
    split = load_split()
    np.save(HERE / "test_x.npy", as_images(split.x_test))
    np.save(HERE / "test_y.npy", split.y_test)
    np.save(HERE / "calib_x.npy", as_images(split.x_train[:CALIB_SIZE]))


def main() -> None:
    """Train both models (or those named on the command line) and write the data files."""
    names = sys.argv[1:] or list(MODELS)
    cfg = TrainConfig(epochs=30, lr=1e-2)
    start = time.perf_counter()
    for name in names:
        train_one(name, cfg)
    save_data()
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
