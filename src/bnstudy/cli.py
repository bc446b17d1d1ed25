"""Command line: a thin shell over :mod:`bnstudy.study`.

Exit codes: 0 success; 1 a run finished but some trials failed or ran out of memory (they
are retried by the next run) or timed out; 2 bad input (a one-line message per problem, no
traceback); 3 the results hold no estimate (no metric x variant had two complete pairs:
every trial diverged, say); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bnstudy import __version__, study, terminal
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.protocol import Protocol
from bnstudy.store import StoreError

if TYPE_CHECKING:
    from bnstudy.execution.progress import ProgressBar, ProgressLines

EXIT_FAILED_TRIALS = 1
EXIT_USAGE = 2
EXIT_NO_ESTIMATE = 3
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `bnstudy plan ... | head`: the reader left; not an error
        # Point stdout at /dev/null so the interpreter's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ProtocolError, StoreError, OSError) as exc:  # OSError: a directory, no permission
        for line in str(exc).splitlines():  # one line per problem
            print(f"bnstudy: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bnstudy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnstudy",
        description="Paired, many-seed studies of classifier head variants.",
    )
    parser.add_argument("--version", action="version", version=f"bnstudy {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser(
        "validate", help="check a protocol file (imports the plugins it names: their code runs)"
    )
    p.add_argument("protocol", type=Path)
    p.set_defaults(func=_validate)

    p = verbs.add_parser("plan", help="show the trials a protocol expands to")
    p.add_argument("protocol", type=Path)
    p.add_argument("--first", type=int, default=5, help="how many trials to list (default 5)")
    p.add_argument("--pilot", type=Path, help="results of a pilot study, to plan seeds from")
    p.add_argument(
        "--halfwidth",
        action="append",
        metavar="METRIC=VALUE",
        help="target CI half-width of a metric in its units, e.g. balanced_acc=1 (pp) or "
        "nll=0.02 (nats); repeat per metric; default: each metric's equivalence margin",
    )
    p.add_argument(
        "--effect",
        action="append",
        metavar="METRIC=VALUE",
        help="effect to detect with --power, per metric in its units; repeat per metric",
    )
    p.add_argument("--power", type=float, default=0.8)
    p.set_defaults(func=_plan)

    p = verbs.add_parser("run", help="train missing trials, then analyse and report")
    p.add_argument("protocol", type=Path)
    p.add_argument("--jobs", "-j", type=int, help="parallel workers (default: one per device slot)")
    p.add_argument(
        "--devices",
        "--device",
        dest="devices",
        default="auto",
        metavar="auto|cpu|cuda:0,cuda:1,...",
        help="devices to train on (default auto: every visible GPU, honouring "
        "CUDA_VISIBLE_DEVICES, else the CPU); --device is the older spelling",
    )
    p.add_argument(
        "--per-device",
        type=int,
        metavar="K",
        help="trials at once on each device (default: one per core on the CPU, 4 per GPU)",
    )
    p.add_argument(
        "--pack",
        default="auto",
        metavar="K|auto|off",
        help="train up to K seeds of one arm as one packed model (default auto: 16 on GPUs, "
        "off on the CPU)",
    )
    p.add_argument(
        "--fast-nondeterministic",
        action="store_true",
        help="allow nondeterministic GPU kernels: faster (1.6x measured), but the same command "
        "can give different numbers; each row records which way it ran",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="train every trial of this run at this precision: it replaces the levels of the "
        "protocol's precision factor (default: the protocol's, fp32 unless it says otherwise); "
        "bf16 runs the forward passes under torch.autocast in bfloat16 (meant for CUDA; the "
        "CPU runs it slowly). Part of each trial's id and recorded per row",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per CPU trial (default: the cores divided among the CPU workers; "
        "with one job, torch's own setting); CPU numbers can differ in the last digits by N",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop a trial after this long and record it as 'timeout', which a resume retries "
        "only with a longer limit (default: no limit)",
    )
    p.add_argument(
        "--backend",
        choices=["loky", "dask-local", "dask"],
        help="where workers run: loky processes here (default), a Dask cluster started here "
        "(dask-local), or an existing one (dask, with --scheduler)",
    )
    p.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="the Dask scheduler of --backend dask"
    )
    p.add_argument("--results", type=Path, help="results file (default data/results/NAME.parquet)")
    p.add_argument("--report", type=Path, help="report file (default reports/NAME.html)")
    p.add_argument("--no-report", action="store_true", help="only train and store")
    p.add_argument(
        "--adopt-foreign",
        action="store_true",
        help="merge into a results file that another study wrote (refused by default)",
    )
    p.add_argument(
        "--extend-grid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="grow every tuning factor with positive numeric levels past the grid's edges "
        "where an arm's choice lies (by its analysis.tune factor, else x3, within its bounds); "
        "--no-extend-grid: none; default: the factors the protocol declares extend: true",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no line per trial")
    p.set_defaults(func=_run)

    p = verbs.add_parser("status", help="trials done, failed and missing for a protocol")
    p.add_argument("protocol", type=Path)
    p.add_argument("--results", type=Path)
    p.set_defaults(func=_status)

    p = verbs.add_parser("analyze", help="print the effect estimates of a results file")
    p.add_argument("results", type=Path)
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table or csv: the estimates; json: every table of the analysis, named",
    )
    p.set_defaults(func=_analyze)

    p = verbs.add_parser("report", help="write the report of a results file")
    p.add_argument("results", type=Path)
    p.add_argument("-o", "--output", type=Path, help="report file (default reports/NAME.html|md)")
    p.add_argument(
        "--format",
        choices=["html", "md"],
        default="html",
        help="one self-contained HTML file, or Markdown with a NAME_figures/ folder",
    )
    p.add_argument("--figures", type=Path, help="also write every figure as SVG, PNG and PDF here")
    p.add_argument("--latex", type=Path, help="also write the estimates as a LaTeX table here")
    p.set_defaults(func=_report)
    return parser


def _load(path: Path) -> Protocol:
    """Load a protocol, with its warnings on stderr (unusually large, an untuned lr, ...)."""
    protocol = study.load(path)
    for line in protocol.warnings():
        print(f"bnstudy: warning: {path}: {line}", file=sys.stderr)
    return protocol


def _validate(args: argparse.Namespace) -> int:
    protocol = _load(args.protocol)
    print(f"{args.protocol}: ok ({protocol.name!r}, {protocol.n_trials} trials)")
    print(study.arms_line(protocol))
    if protocol.plugins:  # their code ran to validate the names: say whose
        print(f"plugins imported (their code ran): {', '.join(protocol.plugin_entries())}")
    return 0


def _per_metric(values: list[str] | None, option: str) -> dict[str, float] | None:
    """``["balanced_acc=1", "nll=0.02"]`` -> ``{"balanced_acc": 1.0, "nll": 0.02}``."""
    if not values:
        return None
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise ProtocolError(
                f"{option}: expected METRIC=VALUE (e.g. balanced_acc=1), got {value!r}"
            )
    return out


def _plan(args: argparse.Namespace) -> int:
    protocol = _load(args.protocol)
    print(study.plan(protocol).describe(first=args.first))
    halfwidth = _per_metric(args.halfwidth, "--halfwidth")
    effect = _per_metric(args.effect, "--effect")
    if args.pilot is None:
        if halfwidth or effect:
            raise ProtocolError("--halfwidth and --effect need --pilot RESULTS to plan from")
        return 0
    from bnstudy.stats import plan_seeds

    pilot = study.read_results(args.pilot)
    try:
        needed = plan_seeds(
            pilot.table, protocol, halfwidth=halfwidth, power=args.power, effect=effect
        )
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    conditions = needed["n_conditions"].iloc[0] if len(needed) else 0
    print(f"\nseeds per cell from the pilot {args.pilot} ({conditions} conditions):")
    print(terminal.seed_plan(needed))
    return 0


def _run(args: argparse.Namespace) -> int:
    protocol = _load(args.protocol)
    if args.precision is not None:
        protocol = study.with_precision(protocol, args.precision)
    from bnstudy.execution.runner import plan_execution

    try:
        execution = plan_execution(
            jobs=args.jobs,
            devices=args.devices,
            per_device=args.per_device,
            pack=args.pack,
            deterministic=not args.fast_nondeterministic,
            timeout_s=args.timeout,
            backend=args.backend,
            scheduler=args.scheduler,
            threads=args.threads,
        )
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    # The heading is printed by the display as the run starts: once it holds the results
    # file (another run's lock refuses it first) and only if trials are left to train.
    heading = f"training on {execution.describe()}"
    display = None if args.quiet else _progress_printer(protocol, heading)
    try:
        outcome = study.run(
            protocol,
            results=args.results,
            report=args.report,
            analyse=not args.no_report,
            on_progress=display,
            adopt_foreign=args.adopt_foreign,
            execution=execution,
            extend_grid=args.extend_grid,
            on_round=print if display is None else display.message,
            on_message=print if display is None else display.message,
        )
    finally:
        if display is not None:
            display.close()
    summary = outcome.summary
    if args.quiet:
        for note in summary.notes:
            print(f"note: {note}")
    print(summary.describe())
    if outcome.results_path.exists():  # not when interrupted before any trial was stored
        print(f"results: {outcome.results_path}")
    if summary.interrupted:
        print("interrupted: finished trials are saved; run the same command to resume")
        return EXIT_INTERRUPTED
    if summary.aborted:
        print(
            f"bnstudy: error: run stopped, a worker died ({summary.aborted}); finished trials "
            "are saved; run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_FAILED_TRIALS
    if outcome.report_path is not None:
        print(f"report:  {outcome.report_path}")
    headline = outcome.analysis.headline() if outcome.analysis is not None else {}
    if outcome.analysis is not None:
        print(headline.get("text", "no effect could be estimated; see the report's diagnostics"))
    if summary.unfinished:
        print(_unfinished(summary.statuses), file=sys.stderr)
        return EXIT_FAILED_TRIALS
    if outcome.analysis is not None and not headline:
        return EXIT_NO_ESTIMATE
    return 0


def _unfinished(statuses: dict[str, int]) -> str:
    """What became of the trials that gave no metrics, and what a resume does with them."""
    counts = [
        (statuses.get("failed", 0), "failed"),
        (statuses.get("oom", 0), "ran out of memory"),
        (statuses.get("timeout", 0), "timed out"),
    ]
    said = []
    for n, what in counts:
        if n:
            noun = "" if said else (" trial" if n == 1 else " trials")
            said.append(f"{n}{noun} {what}")
    retried = [p for p in said if not p.endswith("timed out")]
    parts = [f"{' and '.join(retried)} (retried by the next run)"] if retried else []
    if said[-1].endswith("timed out"):
        parts.append(f"{said[-1]} (retried only with a longer --timeout)")
    return f"{'; '.join(parts)}; see the 'error' column"


def _progress_printer(protocol: Protocol, heading: str = "") -> ProgressLines | ProgressBar:
    """A bar on a terminal; elsewhere (a log, a pipe) a line per finished trial: what varied,
    the outcome, the first metric, the time left. Both count from the trials already done,
    and print ``heading`` first when the run starts training."""
    from bnstudy.execution.progress import ProgressBar, ProgressLines

    shown = list(protocol.factors.varying())
    if sys.stdout.isatty():
        return ProgressBar(shown, heading=heading)
    return ProgressLines(shown, next(iter(protocol.analysis.metrics)), heading=heading)


def _status(args: argparse.Namespace) -> int:
    protocol = _load(args.protocol)
    results = args.results or study.results_path(protocol)
    counts = study.status(protocol, results)
    n_trials = study.grown_protocol(protocol, results).n_trials  # with the grid's growth
    print(f"study {protocol.name!r}: {n_trials} trials; results {results}")
    print(terminal.status(counts))
    for line in study.grown_levels(protocol, results):
        print(line)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    analysis = study.analyze(args.results)
    estimates = analysis.estimates
    if estimates.empty and args.format == "table":
        reasons = "; ".join(dict.fromkeys(analysis.diagnostics["message"])) or "no complete pairs"
        print(f"no estimates: {reasons}")
    elif args.format == "csv":
        print(estimates.to_csv(index=False), end="")
    elif args.format == "json":  # every table, named: estimates, equivalence, failures, ...
        print(analysis.to_json())
    else:
        print(terminal.estimates(analysis))
    if args.format == "table" and not analysis.hypotheses.empty:
        # The pre-registered claims, judged: what a reader of the protocol asked first.
        print("\nhypotheses:")
        print(terminal.hypotheses(analysis))
    return EXIT_NO_ESTIMATE if estimates.empty else 0


def _report(args: argparse.Namespace) -> int:
    out = study.report(args.results, args.output, args.format, args.figures, args.latex)
    print(f"report: {out}")
    if args.figures is not None:
        print(f"figures: {args.figures}")
    if args.latex is not None:
        print(f"latex: {args.latex}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
