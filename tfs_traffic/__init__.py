"""tfs-traffic: per-version traffic for TensorFlow Serving, and safe decisions about unloading versions."""

__version__ = "0.1.0"
