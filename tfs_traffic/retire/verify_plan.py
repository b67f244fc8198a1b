"""`retire verify`: steps 4 and 5 of `apply` with no change, for a change made elsewhere (the GitOps
path, README "The three paths": the plan's values committed, the pods rolled). Nothing is written and
nothing rolled back: a client that still wants a retired version ends it with exit status 3, and
reverting the commit is the operator's."""

import time
from collections.abc import Callable, Sequence

from tfs_traffic.durations import format_duration
from tfs_traffic.errors import ToolError
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire import plan as plans
from tfs_traffic.retire import verify
from tfs_traffic.retire.outcome import CLIENT_WANTS, FAILED_STATUS, NOTHING, VERIFIED, ModelOutcome, Outcome
from tfs_traffic.retire.servers import Server, Target
from tfs_traffic.retire.soak import ClientWants, Watch
from tfs_traffic.retire.soak import baseline as soak_baseline


def verify_plan(
    plan: plans.Plan,
    client: Querier | None,
    targets: Sequence[Target],
    soak: float,
    timeout: float,
    say: Callable[[str], None],
) -> Outcome:
    """Steps 4 and 5 with no change (the GitOps path: the plan's config committed, the pods rolled):
    every target (or Prometheus' gauges scraped from now on) serves the plan's change, and no
    client asks for a retired version for `soak`. Nothing is rolled back: CLIENT_WANTS says revert."""
    started = time.time()
    changed = plan.changed()
    if not changed:
        return Outcome(NOTHING, "the plan retires nothing", [], started_at=started)
    outcomes = {m.model_name: ModelOutcome(m.model_name, list(m.retire)) for m in changed}
    expects = [verify.expectations(m, m.retire) for m in changed]
    servers = [Server(t.grpc) for t in targets]
    pages = [p for t in targets for p in t.pages]
    try:
        owners = {p: t.grpc for t in targets for p in t.pages}
        watched = {m.model_name: m.retire for m in changed}
        watch = Watch(watched, soak_baseline(pages), started, client, plan.selector, owners)
        say(f"verifying {len(expects)} model(s) on " + (f"{len(servers)} targets" if servers else "Prometheus"))
        try:
            if servers:
                seconds = verify.on_targets(servers, expects, timeout, between=watch.check, reach=watch.reach)
            else:
                assert client is not None
                seconds = verify.on_prometheus(
                    client, expects, started, timeout, selector=plan.selector, between=watch.check
                )
            for o in outcomes.values():
                o.verified_seconds = seconds
            say(f"verified; soaking for {format_duration(soak)}")
            watch.soak(soak)
        except ClientWants as e:
            message = f"a client still wants {e}: revert the change (verify changed nothing)"
            return Outcome(
                CLIENT_WANTS,
                message,
                list(outcomes.values()),
                signals=[s.as_json() for s in e.signals],
                started_at=started,
                seconds=time.time() - started,
            )
        except (verify.VerifyFailed, ToolError) as e:
            return Outcome(
                FAILED_STATUS,
                f"not verified: {e}",
                list(outcomes.values()),
                started_at=started,
                seconds=time.time() - started,
            )
    finally:
        for server in servers:
            server.close()
    message = (
        f"verified {sum(len(m.retire) for m in changed)} retired version(s); no client asked for them in "
        f"{format_duration(soak)}"
    )
    return Outcome(
        VERIFIED, message, list(outcomes.values()), soak_seconds=soak, started_at=started, seconds=time.time() - started
    )
