"""`tfs-traffic retire plan|apply|verify|rollback`: idle versions unloaded, re-checked, watched, undone."""

import argparse
import sys
from pathlib import Path
from typing import Any

from tfs_traffic.commands import Subcommands, add_actions, add_command, one_line_errors, print_help

DESCRIPTION = """\
Take idle model versions out of service without breaking a client (README, "Retiring versions").

plan      runs the report and writes the change: per model the versions to retire (with their
          evidence), kept (and why) and refused (and why), the new models config and its diff.
apply     carries a plan out: re-checks that nobody called a planned version since, writes the
          models config (and pushes it with --reload), verifies every target, soaks, and restores
          the previous config at once if a client still asks for a retired version.
verify    checks a plan's change without making it (the GitOps path: commit, let it roll, verify).
rollback  restores, and verifies, the config a journal recorded before an apply.

Progress goes to stderr, results to stdout (a table, or --format json). Exit status: 0 done (or
nothing to do); 1 could not complete (unreachable, timeout), with the previous config restored;
2 usage error or a plan refused; 3 rolled back because a client still wanted a retired version.
"""

EPILOG = """\
examples:
  tfs-traffic retire plan --prometheus http://prometheus:9090 --models-config models.config --output plan.json
  tfs-traffic retire apply plan.json --models-config models.config --targets 10.0.0.5:8500,http://10.0.0.5:9102/metrics
  tfs-traffic retire apply plan.json --models-config models.config --reload 10.0.0.5:8500 --reload 10.0.0.6:8500
  tfs-traffic retire verify plan.json --prometheus http://prometheus:9090 --soak 30m
  tfs-traffic retire rollback --journal plan.journal.jsonl
"""

TARGETS_HELP = (
    "a TF Serving to verify: its gRPC HOST:PORT, then the metrics pages that count its calls, comma-separated "
    "(its /monitoring/prometheus/metrics, its sidecar's /metrics); repeatable"
)


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "retire",
        run=lambda args: print_help(parser),
        help="unload idle versions: plan, apply (re-checked, verified, soaked), verify, rollback",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    actions = add_actions(parser)
    _register_plan(actions)
    _register_apply(actions)
    _register_verify(actions)
    _register_rollback(actions)


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="stdout (default: table)")


def _duration(parser: Any, flag: str, default: str, help: str) -> None:
    parser.add_argument(flag, default=default, metavar="DURATION", help=f"{help} (default: %(default)s)")


def _prometheus_and_targets(parser: argparse.ArgumentParser, url_help: str) -> None:
    """`apply`'s and `verify`'s Prometheus (optional: the plan names one) and `--targets`."""
    from tfs_traffic.prometheus.api import add_access_arguments

    add_access_arguments(parser, required=False, timeout_flag="--prometheus-timeout", url_help=url_help)
    parser.add_argument(
        "--targets", action="extend", nargs="+", default=[], metavar="HOST:PORT[,URL...]", help=TARGETS_HELP
    )


def _reload(parser: argparse.ArgumentParser, help: str) -> None:
    """`--reload HOST:PORT`: TF Serving's own gRPC port (the sidecar relay refuses the reload RPC)."""
    parser.add_argument("--reload", action="extend", nargs="+", default=[], metavar="HOST:PORT", help=help)


def _register_plan(actions: Subcommands) -> None:
    from tfs_traffic.commands.report import add_judging_arguments

    parser = add_command(
        actions,
        "plan",
        run=run_plan,
        help="the report turned into a change of the models config (nothing is applied)",
        description=(
            "Run the report (every report flag) and plan the change: the versions to retire, kept and refused.\n"
            "Refused beyond the report's verdict: a model whose policy is not `specific` (--convert-policy),\n"
            "the last version, the latest or a labelled one, one called within --lookback\n"
            "(--allow-recent-caller), and every version of a model where fleet and config disagree."
        ),
        epilog="example:\n  tfs-traffic retire plan --prometheus URL --models-config models.config -o plan.json\n",
    )
    what = add_judging_arguments(parser)
    what.add_argument("--model", action="append", default=[], metavar="NAME", help="plan only this model (repeatable)")
    what.add_argument(
        "--convert-policy",
        action="store_true",
        help="plan models under `latest {N}` or `all` too: their policy becomes `specific` with the versions "
        "AVAILABLE now (new versions are then no longer picked up by themselves)",
    )
    what.add_argument(
        "--allow-recent-caller", action="store_true", help="retire idle versions called within --lookback too"
    )
    out = parser.add_argument_group("output")
    _format(out)  # type: ignore[arg-type]
    out.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan (JSON) to this file, atomically")
    out.add_argument(
        "--values",
        metavar="VALUES.yaml",
        help="a Helm values file whose modelsConfig is the models config (then --models-config may be left out): "
        "also write a copy of it with the new config as modelsConfig and nothing else changed (the GitOps change)",
    )
    out.add_argument(
        "--values-output", metavar="FILE", help="where the copy goes (default: VALUES.retired.yaml beside it)"
    )


def _register_apply(actions: Subcommands) -> None:
    parser = add_command(
        actions,
        "apply",
        run=run_apply,
        help="carry a plan out: re-check, write (and push), verify, soak; roll back on a client",
        description=(
            "Carry out PLAN.json, one model at a time, with every step in the journal (README, 'The journal')."
        ),
        epilog=(
            "examples:\n"
            "  tfs-traffic retire apply plan.json --models-config models.config \\\n"
            "      --targets 10.0.0.5:8500,http://10.0.0.5:8501/monitoring/prometheus/metrics,http://10.0.0.5:9102/metrics\n"
            "  tfs-traffic retire apply plan.json --models-config models.config --reload 10.0.0.5:8500 10.0.0.6:8500\n"
        ),
    )
    one_line_errors(parser)
    parser.add_argument("plan", metavar="PLAN.json", help="a plan written by `retire plan --output`")
    parser.add_argument("--models-config", required=True, metavar="FILE", help="the models config to change")
    _prometheus_and_targets(parser, "Prometheus (default: the plan's)")
    _reload(parser, "also push the config to TF Serving's gRPC port (HandleReloadConfigRequest), the first as a canary")
    _duration(parser, "--recheck", "15m", "zero calls to each planned version over this long, up to now")
    _duration(parser, "--soak", "10m", "then watch this long for a client that still wants a retired version")
    _duration(parser, "--timeout", "10m", "verify each step within this long")
    _duration(parser, "--max-plan-age", "1h", "refuse an older plan")
    parser.add_argument("--journal", metavar="FILE", help="the journal (default: PLAN.journal.jsonl beside the plan)")
    _format(parser)


def _register_verify(actions: Subcommands) -> None:
    parser = add_command(
        actions,
        "verify",
        run=run_verify,
        help="check a plan's change without making it (steps 4-5 of apply), e.g. after a GitOps roll",
        description=(
            "Verify that every target serves the plan's change, then soak: nothing is changed, nothing rolled\n"
            "back. Without --targets, from Prometheus' availability gauges (scraped from now on)."
        ),
        epilog="example:\n  tfs-traffic retire verify plan.json --prometheus http://prometheus:9090 --soak 30m\n",
    )
    one_line_errors(parser)
    parser.add_argument("plan", metavar="PLAN.json", help="a plan written by `retire plan --output`")
    _prometheus_and_targets(parser, "Prometheus (default: the plan's, unless --targets are given)")
    _duration(parser, "--soak", "10m", "watch this long for a client that still wants a retired version")
    _duration(parser, "--timeout", "10m", "the change must be served within this long")
    _format(parser)


def _register_rollback(actions: Subcommands) -> None:
    parser = add_command(
        actions,
        "rollback",
        run=run_rollback,
        help="restore and verify the config a journal recorded before an apply",
        description=(
            "Write back the models config the journal's last apply recorded before its change, push it with\n"
            "--reload (default: the servers that apply pushed to), and verify that every target serves again\n"
            "every version it served before. Refused when the file changed since that apply."
        ),
        epilog="example:\n  tfs-traffic retire rollback --journal plan.journal.jsonl\n",
    )
    one_line_errors(parser)
    parser.add_argument("--journal", required=True, metavar="FILE", help="the journal of `retire apply`")
    _reload(parser, "push the restored config to these gRPC ports (default: those the apply pushed to)")
    _duration(parser, "--timeout", "10m", "verify within this long")
    _format(parser)


# --- the actions ---


def _say(line: str) -> None:
    print(f"tfs-traffic: {line}", file=sys.stderr, flush=True)


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run_plan(args: argparse.Namespace) -> int:
    import time

    from tfs_traffic.commands.report import announce, judging_options
    from tfs_traffic.files import write_atomic
    from tfs_traffic.prometheus.api import PrometheusClient, access_from_args
    from tfs_traffic.report import progress
    from tfs_traffic.report import verdicts as rep
    from tfs_traffic.retire import plan as plans
    from tfs_traffic.retire import render, values

    config, source, values_text = _plan_inputs(args)
    options = judging_options(args, config.labels)
    access = access_from_args(args)
    created = time.time()
    announce(access, options, args.window)
    report = rep.run(PrometheusClient(access), options, progress.for_stderr(sys.stderr.isatty()))
    plan = plans.build(
        report,
        config.message,
        config.text,
        source,
        created,
        models=args.model,
        convert_policy=args.convert_policy,
        allow_recent_caller=args.allow_recent_caller,
    )
    for model in plan.models:
        if model.refused:
            _say(f"refused {model.model_name}: {model.refused}")
        if model.converted:
            _say(f"{model.model_name}: policy {model.policy} becomes specific {model.new_versions} (--convert-policy)")
    if values_text is not None:
        plan.values = {"input": args.values, "output": None}
        if plan.changed():
            copy = args.values_output or values.copy_path(args.values)
            write_atomic(copy, values.rewrite_models_config(values_text, plan.new_config))
            plan.values["output"] = copy
            _say(f"wrote {copy}: {args.values} with the new models config, to commit")
    if args.output:
        write_atomic(args.output, plan.to_text())
        _say(f"wrote the plan to {args.output}")
    _write_stdout(render.render_plan(plan, args.format))
    _say(render.plan_summary(plan))
    return 0


def _plan_inputs(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """The models config a plan starts from (`--models-config`, or `--values`' modelsConfig), its name
    in the plan, and the values file's text. Both given: they must hold the same config."""
    from tfs_traffic import modelconfig
    from tfs_traffic.commands.report import ModelsConfig, read_models_config
    from tfs_traffic.errors import UsageError
    from tfs_traffic.files import read_user_text
    from tfs_traffic.retire import values

    if args.values_output and not args.values:
        raise UsageError("--values-output needs --values")
    if not args.values:
        if not args.models_config:
            raise UsageError("give --models-config FILE (or --values VALUES.yaml holding it as modelsConfig)")
        return read_models_config(args.models_config), args.models_config, None
    values_text = read_user_text(args.values, "values file")
    held = values.models_config_of(values_text, args.values)
    if held is None:
        raise UsageError(f"{args.values} sets no modelsConfig: give --models-config FILE")
    if not args.models_config:
        return ModelsConfig.of(held, f"{args.values} (modelsConfig)"), f"{args.values} (modelsConfig)", values_text
    config = read_models_config(args.models_config)
    if modelconfig.parse_text(held, f"{args.values} (modelsConfig)") != config.message:
        raise UsageError(f"{args.values}: its modelsConfig is not the config of {args.models_config}")
    return config, args.models_config, values_text


def _load_plan(path: str) -> Any:
    from tfs_traffic.files import read_user_text
    from tfs_traffic.retire import plan as plans

    return plans.load(path, read_user_text(path, "plan"))


def _client(args: argparse.Namespace, default_url: str) -> Any:
    from tfs_traffic.prometheus.api import PrometheusClient, access_from_args

    if not args.prometheus:
        args.prometheus = default_url
    return PrometheusClient(access_from_args(args))


def _targets(values: list[str]) -> list[Any]:
    from tfs_traffic.retire.servers import parse_target

    return [parse_target(v) for v in values]


def _finish(outcome: Any, fmt: str) -> int:
    """Print the outcome; a failed one also ends with its one line on stderr (and its exit status)."""
    from tfs_traffic.errors import ToolError
    from tfs_traffic.retire import render

    _write_stdout(render.render_outcome(outcome, fmt))
    if outcome.exit_status == 0:
        _say(outcome.message)
        return 0
    error = ToolError(outcome.message)
    error.exit_code = outcome.exit_status
    raise error


def run_apply(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration
    from tfs_traffic.retire import apply
    from tfs_traffic.retire.servers import parse_address

    reload = [parse_address(a, "--reload") for a in args.reload]
    targets = _targets(args.targets)
    durations = {f: parse_duration(getattr(args, f)) for f in ("recheck", "soak", "timeout", "max_plan_age")}
    plan = _load_plan(args.plan)
    journal = args.journal or str(Path(args.plan).with_suffix("")) + ".journal.jsonl"
    options = apply.Options(
        models_config=args.models_config,
        client=_client(args, plan.prometheus),
        reload=reload,
        targets=targets,
        journal=journal,
        **durations,
    )
    _interrupt_on_sigterm()
    return _finish(apply.apply(plan, options, _say), args.format)


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a cancelled CI job, `kill`) ends `apply` as Ctrl-C does: the previous config restored."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_verify(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration
    from tfs_traffic.retire.verify_plan import verify_plan

    targets = _targets(args.targets)
    soak, timeout = parse_duration(args.soak), parse_duration(args.timeout)
    plan = _load_plan(args.plan)
    client = _client(args, plan.prometheus) if (args.prometheus or not targets) else None
    return _finish(verify_plan(plan, client, targets, soak, timeout, _say), args.format)


def run_rollback(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration
    from tfs_traffic.retire import rollback
    from tfs_traffic.retire.servers import parse_address

    reload = [parse_address(a, "--reload") for a in args.reload]
    timeout = parse_duration(args.timeout)
    return _finish(rollback.from_journal(args.journal, reload, timeout, _say), args.format)
