"""Shared data loading for the edge-sdk digits examples.

Both example models (MLP and CNN) must be trained and evaluated on exactly the
same split so their accuracies are comparable and the exported sample files
match the README numbers. Keeping the loading/splitting in one module is the
only way to guarantee that.

The pixels are deliberately *not* normalised: the digits set stores them as
integers 0..16, and the SDK executes the first layer as multi-bit integer
inputs times binary weights, so the model must be trained on exactly the
integer values it will see on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: Seed used for the train/test split (and reused by the training scripts).
SEED = 0
#: Fraction of the 1797 digits kept aside for testing (450 images).
TEST_SIZE = 0.25
#: Number of test images exported as the reference sample for the SDK.
SAMPLE_SIZE = 64


@dataclass(frozen=True)
class DigitsSplit:
    """Fixed train/test split of the digits set.

    Images are float32 holding raw integer values 0..16, shape [N, 64];
    labels are int64, shape [N].
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split() -> DigitsSplit:
    """Return the fixed, stratified train/test split used by all examples."""
    digits = load_digits()
    x = digits.data.astype(np.float32)  # raw 0..16 integers, no scaling
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    return DigitsSplit(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
    )


def as_images(x: np.ndarray) -> np.ndarray:
    """Reshape flat [N, 64] pixels to [N, 1, 8, 8] for the CNN.

    The reshape lives in the data pipeline rather than in the model so that the
    exported CNN graph starts directly with a convolution.
    """
    return np.ascontiguousarray(x.reshape(-1, 1, 8, 8))


def save_sample(out_dir: Path) -> None:
    """Write the first ``SAMPLE_SIZE`` test images and labels as .npy files.

    These are the reference inputs the SDK's C/RTL test benches replay, so they
    are regenerated from the fixed split rather than stored by hand:
    ``digits_mlp_x.npy`` [64, 64] float32, ``digits_cnn_x.npy`` [64, 1, 8, 8]
    float32 and ``digits_y.npy`` [64] int64.
    """
    split = load_split()
    x = split.x_test[:SAMPLE_SIZE]
    np.save(out_dir / "digits_mlp_x.npy", x)
    np.save(out_dir / "digits_cnn_x.npy", as_images(x))
    np.save(out_dir / "digits_y.npy", split.y_test[:SAMPLE_SIZE])


if __name__ == "__main__":
    save_sample(Path(__file__).resolve().parent)
