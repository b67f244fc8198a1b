"""Container images: TF Serving built from source with the patches, packed into a runtime image; the sidecar's.

Public: `build` (tag -> source -> patches -> bazel -> image), `pack` (Docker API builds and pushes of
the server and sidecar images) and `sidecar_context` (the sidecar image's build context). Imports the
shared leaves and `patches.series` (which series a release gets).
"""
