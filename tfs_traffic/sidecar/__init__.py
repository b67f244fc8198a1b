"""The sidecar: per-version traffic and availability beside a stock TF Serving (status poller and relay).

Public: `main` (SidecarOptions, run). Imports only the shared leaves (contract, errors, files,
modelconfig): it ships alone in the sidecar image, without the report's or the renderers'
dependencies. `python -m tfs_traffic.sidecar` is its container's entry point, beside `cli`.
"""
