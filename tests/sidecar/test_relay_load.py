"""Counts under load equal the requests sent: h2load for gRPC, wrk for REST, through two relay workers.

The load tools are C programs (Debian's nghttp2-client and wrk). Each run sends an exact number of
calls of each kind — by version number, by label, latest, another model, and three that fail — at
once over many connections (h2load multiplexing several streams on each), and the sidecar's
per-version, per-code counts must equal those numbers; the successful ones also equal what the
stand-in server itself counted.
"""

import re
import signal
import subprocess
from pathlib import Path

from sidecar_support import Sidecar, Sim, delta
from tfs_api import METHODS, grpc_predict
from waiting import wait_for

from tfs_traffic.contract import OTHER, UNRESOLVED

PREDICT = METHODS["predict"]
MODELS = {"m": [1, 2, 3], "n": [5]}
LABELS = {"m": {"stable": 1}}
WORKERS = 2  # the stack's sidecar: calls spread over two relay workers


def _body(root: Path, name: str, version: int | None = None, label: str | None = None) -> Path:
    path = root / f"grpc-{name}-{version}-{label}.bin"
    path.write_bytes(grpc_predict(name, version, label, x=[1.0] * 256))
    return path


def test_h2load_calls_are_all_counted(stack: tuple[Sim, Sidecar], tmp_path: Path) -> None:
    sim, sidecar = stack
    # (request, calls sent, the counted (model, version, code) it must produce)
    kinds = [
        (_body(tmp_path, "m", version=2), 400, ("m", "2", "OK")),
        (_body(tmp_path, "m", label="stable"), 300, ("m", "1", "OK")),
        (_body(tmp_path, "m"), 200, ("m", "3", "OK")),
        (_body(tmp_path, "n"), 100, ("n", "5", "OK")),
        (_body(tmp_path, "m", version=9), 60, ("m", OTHER, "NOT_FOUND")),
        (_body(tmp_path, "zz"), 40, (OTHER, UNRESOLVED, "NOT_FOUND")),
        (_body(tmp_path, "m", label="nope"), 20, ("m", OTHER, "INVALID_ARGUMENT")),
    ]
    sim_before, before = sim.call_counts(), _by_code(sidecar, "predict")
    command = ["h2load", "-c4", "-m4", "-H", "content-type: application/grpc", "-H", "te: trailers"]
    url = f"http://{sidecar.grpc}{PREDICT}"
    runs = [
        subprocess.Popen(
            [*command, f"-n{calls}", "-d", str(body), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for body, calls, _ in kinds
    ]
    for run, (_, calls, _) in zip(runs, kinds, strict=True):
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out
        assert re.search(rf"requests: {calls} total, {calls} started, {calls} done, {calls} succeeded", out), out
    expected = {key: float(calls) for _, calls, key in kinds}
    assert delta(_by_code(sidecar, "predict"), before) == expected
    ok = {(m, v): n for (m, v, code), n in expected.items() if code == "OK"}
    assert delta(sim.call_counts(), sim_before) == ok


# wrk sends the planned calls in a round-robin mix, then only status GETs (never counted) until every
# planned call has been answered, and stops: no counted call is left cut off in flight. (Its main
# thread sleeps out -d regardless; SIGINT ends it early, with its summary.)
WRK_SCRIPT = """
local plan = {PLAN}
local queue = {}
local left = true
while left do
  left = false
  for _, kind in ipairs(plan) do
    if kind[3] > 0 then
      kind[3] = kind[3] - 1
      local headers = {["Host"] = "localhost", ["Content-Type"] = "application/json"}
      table.insert(queue, wrk.format("POST", kind[1], headers, kind[2]))
      left = true
    end
  end
end
local total = #queue
-- wrk calls request() once to check the script, and never sends what it got: a status GET.
table.insert(queue, 1, wrk.format("GET", "/v1/models/m", {["Host"] = "localhost"}))
local sent = 0
counted = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  if sent <= total then
    sent = sent + 1
    return queue[sent]
  end
  return wrk.format("GET", "/v1/models/m", {["Host"] = "localhost"})
end
function response(status, headers, body)
  if not string.find(body, "model_version_status", 1, true) then
    counted = counted + 1
    if counted >= total then
      local marker = io.open("{MARKER}", "w")  -- wrk's main thread sleeps out -d: the test interrupts it
      marker:close()
      wrk.thread:stop()
    end
  end
end
function done()
  for _, thread in ipairs(threads) do io.write("counted " .. thread:get("counted") .. "\\n") end
end
"""


def test_wrk_calls_are_all_counted(stack: tuple[Sim, Sidecar], tmp_path: Path) -> None:
    sim, sidecar = stack
    predict_body = '{"instances": [1.0, 2.0, 5.0]}'
    classify_body = '{"signature_name": "classify_x_to_y", "examples": [{"x": 4.0}]}'
    kinds = [
        ("/v1/models/m/versions/2:predict", predict_body, 300, ("m", "2", "predict", "OK")),
        ("/v1/models/m/labels/stable:predict", predict_body, 200, ("m", "1", "predict", "OK")),
        ("/v1/models/m:predict", predict_body, 150, ("m", "3", "predict", "OK")),
        ("/v1/models/n:predict", predict_body, 100, ("n", "5", "predict", "OK")),
        ("/v1/models/m/versions/2:classify", classify_body, 50, ("m", "2", "classify", "OK")),
        ("/v1/models/m/versions/9:predict", predict_body, 40, ("m", OTHER, "predict", "NOT_FOUND")),
        ("/v1/models/zz:predict", predict_body, 30, (OTHER, UNRESOLVED, "predict", "NOT_FOUND")),
        ("/v1/models/m/labels/nope:predict", predict_body, 20, ("m", OTHER, "predict", "INVALID_ARGUMENT")),
    ]
    plan = ", ".join(f'{{"{path}", [[{body}]], {calls}}}' for path, body, calls, _ in kinds)
    script = tmp_path / "mix.lua"
    marker = tmp_path / "wrk-done"
    script.write_text(WRK_SCRIPT.replace("{PLAN}", "{" + plan + "}").replace("{MARKER}", str(marker)))
    sim_before, before = sim.call_counts(), _by_api_code(sidecar)
    run = subprocess.Popen(
        ["wrk", "-t1", "-c8", "-d120s", "-s", str(script), sidecar.rest],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert wait_for(marker.exists, timeout=120, interval=0.1)
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=60)
    total = sum(calls for _, _, calls, _ in kinds)
    assert f"counted {total}\n" in out, out
    expected = {key: float(calls) for _, _, calls, key in kinds}
    assert delta(_by_api_code(sidecar), before) == expected
    ok: dict[tuple[str, str], float] = {}
    for (model, version, _, code), calls in expected.items():
        if code == "OK":
            ok[(model, version)] = ok.get((model, version), 0.0) + calls
    assert delta(sim.call_counts(), sim_before) == ok


def _by_code(sidecar: Sidecar, api: str) -> dict[tuple[str, str, str], float]:
    return {k[:2] + k[3:]: v for k, v in _by_api_code(sidecar).items() if k[2] == api}  # type: ignore[misc]


def _by_api_code(sidecar: Sidecar) -> dict[tuple[str, str, str, str], float]:
    out = {}
    for name, labels, value in sidecar.samples():
        if name == "tfserving_model_calls_total":
            out[(labels["model_name"], labels["model_version"], labels["api"], labels["code"])] = value
    return out
