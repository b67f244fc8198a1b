"""tfs-traffic: per-version traffic for TensorFlow Serving, and safe decisions about unloading versions.

One subpackage per component (prometheus, report, queries, k8s, image, patches, sim, sidecar); the
modules beside them are the shared leaves every component may import (README: Layout).
"""

__version__ = "0.1.0"
