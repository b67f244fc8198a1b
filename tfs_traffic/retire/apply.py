"""`retire apply`: a plan carried out, one model at a time, watched, and undone on the first sign
of a client (README, "Retiring versions"; the steps are numbered as there):

1. refuse a plan whose models config changed since (sha256) or older than `--max-plan-age`, and
   one the fleet no longer matches (each target must serve what the plan saw);
2. re-check, fresh, that nobody called a planned version (`recheck`): a call drops it;
3. per model: the file written (journal first), and with `--reload` pushed to the first server (the
   canary), verified there, then pushed to the others (`push`);
4. verified on every target within `--timeout` (`verify`);
5. soaked for `--soak` (`soak`): from the first write on, any sign that a client wants a retired
   version restores the previous config at once (`rollback`);
6. every step in the journal (`journal`).

Exit statuses (README): 0 done or nothing to do, 1 could not complete (previous config restored),
2 plan refused, 3 rolled back because a client still wanted a retired version.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tfs_traffic import modelconfig
from tfs_traffic.durations import format_duration, rfc3339
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.files import read_user_text
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire import lock, push, recheck, rollback, verify
from tfs_traffic.retire import plan as plans
from tfs_traffic.retire.journal import FAILED, OK, START, Journal
from tfs_traffic.retire.outcome import (
    DONE,
    EXIT,
    FAILED_STATUS,
    INTERRUPTED,
    NOTHING,
    ROLLED_BACK,
    ModelOutcome,
    Outcome,
)
from tfs_traffic.retire.servers import Refused, Server, Target, Unreachable
from tfs_traffic.retire.soak import ClientWants, Watch


class PlanRefused(UsageError):
    """The plan no longer fits the file or the fleet (exit status 2): nothing was changed."""


@dataclass
class Options:
    models_config: str
    client: Querier
    reload: list[str]
    targets: list[Target]
    recheck: float
    soak: float
    timeout: float
    max_plan_age: float
    journal: str


def refuse_stale(plan: plans.Plan, text: str, max_age: float, now: float) -> None:
    """Step 1: PlanRefused unless FILE is what the plan was made from and the plan is recent."""
    found = plans.sha256_text(text)
    if found != plan.models_config_sha256:
        raise PlanRefused(
            f"{plan.models_config} changed since the plan (sha256 {found[:12]}, the plan has "
            f"{plan.models_config_sha256[:12]}): make the plan again; nothing was changed"
        )
    age = now - plan.created_at
    if age > max_age:
        raise PlanRefused(
            f"the plan is {format_duration(age)} old, more than --max-plan-age {format_duration(max_age)}: "
            "make it again; nothing was changed"
        )


def preflight(servers: Sequence[Server], models: Sequence[plans.ModelPlan]) -> None:
    """Step 1, on the fleet: every target serves what the plan saw (PlanRefused), and answers
    (ToolError once one has not for verify.UNREACHABLE_GRACE: a busy server is not a gone one)."""
    reach = verify.Reachability()
    for server in servers:
        for model in models:
            while True:
                try:
                    problem, _ = verify.check_server(server, verify.restored(model), strict=True)
                    break
                except Unreachable as e:
                    try:
                        reach.failed(server.address, str(e))
                    except verify.VerifyFailed as gone:
                        raise ToolError(f"could not complete: {gone}; nothing was changed") from None
                    time.sleep(verify.POLL)
            if problem:
                raise PlanRefused(f"the fleet changed since the plan: {server.address}: {problem}; nothing was changed")


def apply(plan: plans.Plan, opts: Options, say: Callable[[str], None]) -> Outcome:
    """Steps 1 to 6; the Outcome of a run that ended (PlanRefused and ToolError for one that did not start)."""
    started = time.time()
    refuse_stale(plan, read_user_text(opts.models_config, "models config"), opts.max_plan_age, started)
    changed = plan.changed()
    if not changed:
        return Outcome(NOTHING, "the plan retires nothing", [], started_at=started)
    reload = [Server(a) for a in opts.reload]
    checked = [Server(t.grpc) for t in opts.targets] or reload
    try:
        with lock.held(opts.models_config):
            text = read_user_text(opts.models_config, "models config")  # again, now that no other run writes it
            refuse_stale(plan, text, opts.max_plan_age, started)
            preflight(checked, changed)
            with Journal(opts.journal) as journal:
                return _run(plan, opts, say, journal, text, changed, reload, checked, started)
    finally:
        for server in {id(s): s for s in [*reload, *checked]}.values():
            server.close()


def _run(
    plan: plans.Plan,
    opts: Options,
    say: Callable[[str], None],
    journal: Journal,
    text: str,
    changed: list[plans.ModelPlan],
    reload: list[Server],
    checked: list[Server],
    started: float,
) -> Outcome:
    journal.write(
        "begin",
        START,
        targets=[t.grpc for t in opts.targets],
        plan_created_at=rfc3339(plan.created_at),
        models_config=opts.models_config,
        previous_config=text,
        previous_sha256=plans.sha256_text(text),
        reload=list(opts.reload),
        pages=[p for t in opts.targets for p in t.pages],
        prometheus=plan.prometheus,
        selector=plan.selector,
        models=[
            {"expect_restored": verify.restored(m).as_json(), "retire": [str(v) for v in m.retire]} for m in changed
        ],
    )
    outcomes = {m.model_name: ModelOutcome(m.model_name) for m in changed}
    pages = [p for t in opts.targets for p in t.pages]
    say(f"re-checking {sum(len(m.retire) for m in changed)} version(s) over the last {format_duration(opts.recheck)}")
    try:
        fresh = recheck.recheck(
            opts.client, {m.model_name: m.retire for m in changed}, opts.recheck, pages, plan.selector
        )
    except ToolError as e:  # Prometheus or a page did not answer: nothing was written yet
        message = f"could not complete: {e}; nothing was changed"
        journal.write("recheck", FAILED, message=str(e))
        journal.write("end", OK, status=FAILED_STATUS, exit_status=1, message=message)
        raise ToolError(message) from None
    for note in fresh.notes:
        say(f"note: {note}")
    todo: list[tuple[plans.ModelPlan, list[int]]] = []
    for model in changed:
        retire = [v for v in model.retire if (model.model_name, str(v)) not in fresh.dropped]
        for v in model.retire:
            reasons = fresh.dropped.get((model.model_name, str(v)))
            if reasons:
                outcomes[model.model_name].dropped[str(v)] = reasons
                say(f"dropped {model.model_name}:{v} from the change: {reasons[0]}")
        journal.write(
            "recheck",
            OK,
            model=model.model_name,
            versions=[str(v) for v in retire],
            dropped={v: r for v, r in outcomes[model.model_name].dropped.items()},
            seconds=opts.recheck,
        )
        if retire:
            todo.append((model, retire))
    if not todo:
        journal.write("end", OK, status=NOTHING, exit_status=0)
        return Outcome(
            NOTHING,
            "every planned version was called since the plan: nothing to retire",
            list(outcomes.values()),
            opts.journal,
            started_at=started,
            seconds=time.time() - started,
        )
    reach = verify.Reachability()
    owners = {p: t.grpc for t in opts.targets for p in t.pages}
    watched = {m.model_name: vs for m, vs in todo}
    watch = Watch(watched, fresh.readings, fresh.at, opts.client, plan.selector, owners, reach)
    config = modelconfig.parse_text(text, opts.models_config)
    done: list[plans.ModelPlan] = []
    try:
        for model, retire in todo:
            done.append(model)
            config = _change(
                journal, opts, model, retire, config, reload, checked, plan, watch, say, outcomes[model.model_name]
            )
            outcomes[model.model_name].retired = retire
        say(f"soaking for {format_duration(opts.soak)}")
        journal.write("soak", START, versions=_names(todo), seconds=opts.soak)
        watch.soak(opts.soak)
        journal.write("soak", OK, versions=_names(todo), seconds=opts.soak)
    except ClientWants as e:
        journal.write("watch", FAILED, signals=[s.as_json() for s in e.signals], message=str(e))
        say(f"a client still wants {e}; rolling back")
        found = [s.as_json() for s in e.signals]
        status, reason = ROLLED_BACK, f"rolled back: a client still wants {e}"
    except (verify.VerifyFailed, Unreachable, Refused, ToolError) as e:
        say(f"could not complete: {e}; restoring the previous config")
        found, status, reason = [], FAILED_STATUS, f"could not complete: {e}"
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (`retire apply` turns it into this)
        say("interrupted: restoring the previous config")
        found, status, reason = [], INTERRUPTED, "interrupted"
    else:
        found, status, reason = [], DONE, ""
    if status != DONE:
        back = _restore(journal, opts, plan, text, done, reload, checked, watch.reach)
        message = f"{reason}; {back.summary(len(checked) or 1)}"
        result = OK if back.complete else FAILED  # the fleet verified in the state the run left it in
        journal.write("end", result, status=status, exit_status=EXIT[status], message=message)
        for model in done:
            o = outcomes[model.model_name]
            o.restored, o.retired = watched[model.model_name], []
        return Outcome(
            status,
            message,
            list(outcomes.values()),
            opts.journal,
            found,
            started_at=started,
            seconds=time.time() - started,
        )
    retired = sum(len(vs) for _, vs in todo)
    soaked = format_duration(opts.soak)
    message = f"retired {retired} version(s) of {len(todo)} model(s); no client asked for them in {soaked}"
    journal.write("end", OK, status=DONE, exit_status=0, message=message)
    return Outcome(
        DONE,
        message,
        list(outcomes.values()),
        opts.journal,
        soak_seconds=opts.soak,
        started_at=started,
        seconds=time.time() - started,
    )


def _names(todo: Sequence[tuple[plans.ModelPlan, list[int]]]) -> list[str]:
    return [f"{m.model_name}:{v}" for m, vs in todo for v in vs]


def _change(
    journal: Journal,
    opts: Options,
    model: plans.ModelPlan,
    retire: list[int],
    config: Any,
    reload: list[Server],
    checked: list[Server],
    plan: plans.Plan,
    watch: Watch,
    say: Callable[[str], None],
    outcome: ModelOutcome,
) -> Any:
    """Step 3 and 4 for one model; the config now in the file."""
    new_config = plans.config_with(config, model, retire)
    new_text = modelconfig.to_text(new_config)
    names = [f"{model.model_name}:{v}" for v in retire]
    say(f"retiring {', '.join(names)}: writing {opts.models_config}")
    push.write_config(journal, opts.models_config, new_text, model.model_name, retire, "write")
    written_at = time.time()
    expect = verify.expectations(model, retire)
    if reload:
        canary, rest = reload[0], reload[1:]
        say(f"pushing to the canary {canary.address}")
        push.push(journal, canary, new_config, model.model_name, retire, "canary")
        _verify(journal, [canary], expect, opts, plan, watch, written_at, "canary")
        for server in rest:
            push.push(journal, server, new_config, model.model_name, retire, "rest")
    say(f"verifying {model.model_name} on {len(checked) or 'Prometheus'}{' targets' if checked else ''}")
    outcome.verified_seconds = _verify(journal, checked, expect, opts, plan, watch, written_at, "all")
    return new_config


def _verify(
    journal: Journal,
    servers: list[Server],
    expect: verify.Expect,
    opts: Options,
    plan: plans.Plan,
    watch: Watch,
    since: float,
    role: str,
) -> float:
    where = [s.address for s in servers] or ["prometheus"]
    versions = [str(v) for v in expect.gone]
    journal.write("verify", START, model=expect.model, versions=versions, targets=where, role=role)
    try:
        if servers:
            seconds = verify.on_targets(servers, [expect], opts.timeout, between=watch.check, reach=watch.reach)
        else:
            model = plan.model(expect.model)
            seconds = verify.on_prometheus(
                opts.client,
                [expect],
                since,
                opts.timeout,
                selector=plan.selector,
                instances={expect.model: model.instances},
                between=watch.check,
            )
    except (verify.VerifyFailed, ToolError) as e:
        journal.write("verify", FAILED, model=expect.model, versions=versions, targets=where, role=role, message=str(e))
        raise
    journal.write(
        "verify", OK, model=expect.model, versions=versions, targets=where, role=role, seconds=round(seconds, 3)
    )
    return seconds


def _restore(
    journal: Journal,
    opts: Options,
    plan: plans.Plan,
    text: str,
    done: Sequence[plans.ModelPlan],
    reload: Sequence[Server],
    checked: Sequence[Server],
    reach: verify.Reachability,
) -> rollback.Restored:
    return rollback.restore(
        journal,
        opts.models_config,
        text,
        [verify.restored(m) for m in done],
        reload=reload,
        servers=checked,
        client=opts.client,
        selector=plan.selector,
        timeout=opts.timeout,
        reach=reach,
    )
