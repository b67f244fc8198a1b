"""The relay counts from a backlog: calls are timed by when their bytes passed, not when parsed.

A relay runs in this process (the worker's own listeners and `relay.serve`) in front of a real
stand-in over 127.0.0.1, counting into a private registry, so the test can hold the backlog back
(a long --count-delay) and flush it itself, as a scrape has a worker do.
"""

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry
from sidecar_support import Sim, write_models

from tfs_traffic.sidecar import backlog as backlog_module
from tfs_traffic.sidecar import relay, worker
from tfs_traffic.sidecar.backlog import Backlog
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.view import ModelView, View, ViewHolder

MODEL_SECONDS = 0.03  # the stand-in's --latency-ms, as seconds
HELD = 1.5  # how long the test leaves a finished call in the backlog before flushing it


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("backlog")
    with Sim(write_models(root, {"m": [1]}), root / "sim.log", extra=["--latency-ms", "30"]) as server:
        yield server


def _calls(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value(
        "tfserving_model_calls_total", {"model_name": "m", "model_version": "1", "api": "predict", "code": "OK"}
    )
    return value or 0.0


def _seconds(registry: CollectorRegistry) -> float:
    labels = {"model_name": "m", "model_version": "1", "api": "predict"}
    return registry.get_sample_value("tfserving_model_call_duration_seconds_sum", labels) or 0.0


async def _relayed_calls(
    sim: Sim, backlog: Backlog, registry: CollectorRegistry, calls: int, connections: int = 1, flush: bool = True
) -> list[float]:
    """Make `calls` REST predict calls on each of `connections` connections through an in-process relay;
    the call count after each response, and after HELD seconds more (and a flush, with `flush`)."""
    config = worker.WorkerConfig(
        index=0,
        multiproc_dir="",
        view_path="",
        upstream_grpc=("127.0.0.1", 1),
        upstream_rest=("127.0.0.1", sim.rest_port),
        listen_grpc=None,
        listen_rest=("127.0.0.1", 0),
        reuse_port=False,
    )
    holder = ViewHolder(View({"m": ModelView(available=frozenset({1}), seen={1})}))
    [(listener, _)] = worker.listeners(config, holder, CallMetrics(registry), backlog)
    server = await relay.serve(listener, "127.0.0.1", 0, False)
    port = server.sockets[0].getsockname()[1]
    body = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    request = (
        b"POST /v1/models/m/versions/1:predict HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    counted = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(calls):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                counted.append(_calls(registry))
            await asyncio.sleep(HELD)  # the connection stays open: only the backlog's timer or a flush counts
        finally:
            writer.close()

    try:
        await asyncio.gather(*(client() for _ in range(connections)))
        if flush:
            backlog.flush()  # what a worker does when a scrape asks
        counted.append(_calls(registry))
    finally:
        server.close()
    return counted


def test_a_call_waits_in_the_backlog_and_is_timed_by_its_bytes(sim: Sim) -> None:
    registry = CollectorRegistry()
    counted = asyncio.run(_relayed_calls(sim, Backlog(delay=60.0), registry, calls=2))
    assert counted == [0.0, 0.0, 2.0]
    # Both calls took the model's 30 ms and a little more; they waited HELD seconds more before parsing.
    assert 2 * MODEL_SECONDS <= _seconds(registry) < 2 * MODEL_SECONDS + 0.5 < HELD
    labels = {"model_name": "m", "model_version": "1", "api": "predict"}
    buckets = {
        le: registry.get_sample_value("tfserving_model_call_duration_seconds_bucket", {**labels, "le": le})
        for le in ("0.025", "1.0", "+Inf")
    }
    assert buckets == {"0.025": 0.0, "1.0": 2.0, "+Inf": 2.0}


def test_past_its_byte_limit_the_backlog_is_parsed_at_once(sim: Sim) -> None:
    registry = CollectorRegistry()
    counted = asyncio.run(_relayed_calls(sim, Backlog(delay=60.0, limit=1), registry, calls=3))
    assert counted == [1.0, 2.0, 3.0, 3.0]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_batch_writes_what_each_call_would_have() -> None:
    calls = [
        ("m", "1", "predict", "OK", 0.0004),
        ("m", "1", "predict", "OK", 0.0005),  # on a bucket's bound: that bucket
        ("m", "1", "predict", "OK", 0.003),
        ("m", "1", "predict", "NOT_FOUND", 0.0001),
        ("m", "2", "classify", "OK", 45.0),  # past the last bound: +Inf only
        ("n", "__other__", "regress", "INVALID_ARGUMENT", 0.2),
    ]
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    each = CallMetrics(one_by_one)
    for call in calls:
        each.record(*call)
    together = CallMetrics(batched)
    with together.batch():
        for call in calls:
            together.record(*call)
        assert sum(v for (name, _), v in _samples(batched).items() if name == "tfserving_model_calls_total") == 0
    assert _samples(batched) == _samples(one_by_one)
    bucket = ("le", "0.0005"), ("model_name", "m"), ("model_version", "1"), ("api", "predict")
    # 0.0001 (the failed call: durations carry no code), 0.0004 and 0.0005, not 0.003.
    assert _samples(batched)[("tfserving_model_call_duration_seconds_bucket", tuple(sorted(bucket)))] == 3.0


def test_a_timed_batch_is_counted_in_slices_without_a_scrape(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """--count-delay after the first chunk waited, the backlogs are parsed one connection a slice here."""
    monkeypatch.setattr(backlog_module, "SLICE_SECONDS", 0.0)
    registry = CollectorRegistry()
    counted = asyncio.run(_relayed_calls(sim, Backlog(delay=0.3), registry, calls=2, connections=3, flush=False))
    assert counted[-1] == 6.0
