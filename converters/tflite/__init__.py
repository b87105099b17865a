"""TFLite / Larq Compute Engine frontend: a pure-Python .tflite reader mapped onto the IR."""

from .frontend import import_tflite

__all__ = ["import_tflite"]
