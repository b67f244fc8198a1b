"""`tfs-traffic retire`: from "safe to unload" to unloaded, re-checked, staged, watched and undone.

One module per job (README, "Retiring versions"): `plan` (the report's verdicts turned into a
change, with the refusals), `servers` (TF Serving's gRPC API as retire speaks it), `signals` (calls
and NOT_FOUND answers from Prometheus and from metrics pages), `recheck` (no call since the plan),
`push` (the file and the reload pushes), `verify` (the fleet serves what the plan says), `soak` (no
client asks for a retired version), `journal` (the audit trail), `rollback` (the config before the
change, restored and verified) and `apply`, which runs them in order.
"""
