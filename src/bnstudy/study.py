"""The verbs of bnstudy as plain functions: what the CLI calls, and what a notebook can call.

    protocol = study.load("protocols/quick.yaml")
    outcome = study.run(protocol)            # trains, stores, analyses, reports
    analysis = study.analyze("data/results/quick.parquet")

Default locations: ``protocols/NAME.yaml`` -> ``data/results/NAME.parquet`` ->
``reports/NAME.html``, relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bnstudy.catalogue import COLLAPSED, DIVERGED, FAILED, OK, OOM, TIMEOUT
from bnstudy.results_format import HEAD_OPTIONS, IGNORED_ROWS, PROTOCOL
from bnstudy.spec import grow, head_options, plugins, trial_function
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.factors import Factors, spelled_level, spelled_levels
from bnstudy.spec.feasibility import check_feasible
from bnstudy.spec.fields import STUDY_NAME
from bnstudy.spec.loading import (
    load_protocol,
    parse_protocol,
    plugins_of,
    protocol_fields,
    trial_code_of,
    with_factor_levels,
)
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.trial import ARM, Trial, arm_of
from bnstudy.store import Results, ResultStore, StoreError, is_parquet
from bnstudy.store import read_results as read_store

if TYPE_CHECKING:  # keep torch out of analysis-only imports
    from bnstudy.execution.cost import DeviceEstimate
    from bnstudy.execution.runner import RunSummary
    from bnstudy.stats import Analysis

RESULTS_DIR = Path("data/results")
REPORTS_DIR = Path("reports")


def known_names() -> dict[str, list[str]]:
    """Registered architectures, heads, datasets and optimisers (protocol names are checked
    against these)."""
    from bnstudy.data import dataset_names
    from bnstudy.models import architecture_names, head_names
    from bnstudy.training.optimizers import optimizer_names

    return {
        "architecture": architecture_names(),
        "head": head_names(),
        "dataset": dataset_names(),
        "optimizer": optimizer_names(),
    }


def load(path: str | Path) -> Protocol:
    """Read and fully validate a protocol file (raises ProtocolError).

    Beyond the schema, everything that can be checked before training is: the dataset files
    exist and parse, each network accepts its data's input shape, each dataset's pool holds
    ``train_per_class`` images per class and each training set fills a batch; the plugins'
    networks pass the built-in trial on a batch of 2 and the ``trial:`` function is found
    (:mod:`bnstudy.training.plugin_check`). Such a problem would otherwise fail every trial
    at run time, and again on every resume (see :mod:`bnstudy.spec.feasibility`).
    """
    if is_parquet(path):  # told by content: a results file keeps its table whatever its name
        raise ProtocolError(
            f"{path}: is a results file, not a protocol; try `bnstudy analyze {path}` or "
            f"`bnstudy report {path}`"
        )
    protocol = _with_plugins(path)
    check_feasible(protocol, str(path))
    if protocol.plugins:  # their networks and trial function, in seconds (torch: only then)
        from bnstudy.training.plugin_check import check_plugins

        check_plugins(protocol, str(path))
    return protocol


def with_precision(protocol: Protocol, precision: str) -> Protocol:
    """``protocol`` with every trial at ``precision`` (``fp32`` or ``bf16``): the factor
    ``precision``'s levels replaced by this one (``bnstudy run --precision``). The protocol
    text a run records says so (see :func:`bnstudy.spec.loading.with_factor_levels`)."""
    if list(protocol.factors.precision) == [precision]:
        return protocol
    why = f"bnstudy run --precision {precision}: factors.precision set to [{precision}]"
    return with_factor_levels(protocol, "precision", [precision], why)


def _with_plugins(path: str | Path) -> Protocol:
    """The protocol, validated after importing its ``plugins`` (see
    :mod:`bnstudy.spec.plugins`): the networks they register are then known names, with their
    head options."""
    plugin_entries = plugins_of(path)
    if plugin_entries:
        try:
            plugins.load(plugin_entries)
        except plugins.PluginError as exc:
            # the trial function's code is a plugin, but the user wrote it as trial:
            said = trial_function.named(exc, trial_code_of(path))
            raise ProtocolError(f"{path}: {said}") from None
    return load_protocol(path, known=known_names())


def results_path(protocol: Protocol) -> Path:
    return RESULTS_DIR / f"{protocol.name}.parquet"


def read_results(path: str | Path) -> Results:
    """Read a results file (see :func:`bnstudy.store.read_results`); a protocol given in its
    place is refused with a message naming the commands that take one."""
    _refuse_protocol(path)
    return read_store(path)


def _refuse_protocol(path: str | Path) -> None:
    """Raise StoreError when ``path`` holds a protocol, not results (told by its content)."""
    if is_parquet(path):
        return
    fields = protocol_fields(path)
    if fields is None:
        return  # not a protocol either: the reader says what is wrong with it
    name = fields.get("name")
    writes = (
        f" (it writes {RESULTS_DIR / f'{name}.parquet'})"
        if isinstance(name, str) and re.fullmatch(STUDY_NAME, name)
        else ""
    )
    raise StoreError(
        f"{path}: is a protocol, not a results file; try `bnstudy run {path}` or "
        f"`bnstudy status {path}`{writes}"
    )


def report_path(protocol: Protocol, format: str = "html") -> Path:
    return REPORTS_DIR / f"{protocol.name}.{format}"


# -- plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    protocol: Protocol
    trials: list[Trial]

    @property
    def levels(self) -> dict[str, list]:
        """Each factor's levels (and the seeds), in protocol order."""
        factors = self.protocol.factors
        out = {name: spelled_levels(name, getattr(factors, name)) for name in Factors.model_fields}
        return {"seed": list(self.protocol.seeds), **out}

    @property
    def n_blocks(self) -> int:
        return len({t.block_id for t in self.trials})

    def cost(self, table: str | Path | None = None) -> list[DeviceEstimate]:
        """Estimated device time per device of the step-time table (default: the committed
        one, ``bnstudy/execution/step_times.csv``); see :mod:`bnstudy.execution.cost`."""
        from bnstudy.execution import cost

        return cost.estimate(self.protocol, self.trials, table or cost.TABLE)

    def cost_lines(self, table: str | Path | None = None) -> list[str]:
        """One line per device of the table (``quick: 60 trials, ≈ 4.3 GPU-min ...``)."""
        return [e.line(self.protocol.name) for e in self.cost(table)]

    def describe(self, first: int = 5) -> str:
        """The trial count, each factor's levels, the arms and the first trials, each shown
        by the settings that vary (the rest are in the factor table)."""
        from bnstudy.terminal import table, wrapped

        lines = [f"protocol {self.protocol.name!r}: {len(self.trials)} trials"]
        lines.append("estimated device time (benchmarks/step_times.py adds this machine's rows):")
        lines += [wrapped(line, first="  ", indent="    ") for line in self.cost_lines()]
        levels = pd.DataFrame(
            [
                (
                    name,
                    len(values),
                    ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else ""),
                )
                for name, values in self.levels.items()
            ],
            columns=["factor", "levels", "values"],
        )
        lines.append(table(levels, wrap=["values"]))
        design = self.protocol.design()  # arms, not heads: head options can make more
        arms = (
            f"{arms_line(self.protocol)}; {self.n_blocks} pairing blocks of "
            f"{1 + len(design.variants)} arms"
        )
        lines.append(wrapped(arms, first="  ", indent="  "))
        varying = self.protocol.factors.varying()
        shown = ["seed", *varying] if len(self.protocol.seeds) > 1 else varying
        lines.append(f"first {min(first, len(self.trials))} trials (the settings that vary):")
        for t in self.trials[:first]:
            settings = t.settings()
            varied = " ".join(f"{k}={spelled_level(k, settings[k])}" for k in shown)
            line = f"{t.trial_id}  block {t.block_id}  {varied}"
            lines.append(wrapped(line, first="  ", indent="    "))
        return "\n".join(lines)


def plan(protocol: Protocol) -> Plan:
    return Plan(protocol, protocol.expand())


def arms_line(protocol: Protocol) -> str:
    """What is compared with what, e.g. ``treatment optimizer: control 'sgd'; variants
    adamw`` (the arms, not the heads: head options can make more)."""
    design = protocol.design()
    return (
        f"treatment {design.treatment_name}: control {design.control!r}; variants "
        f"{', '.join(design.variants)}"
    )


# -- run --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What ``run`` produced: the run summary, and where the table and report went."""

    summary: RunSummary
    results_path: Path
    analysis: Analysis | None
    report_path: Path | None


def run(
    protocol: Protocol,
    results: str | Path | None = None,
    report: str | Path | None = None,
    analyse: bool = True,
    **options: Any,
) -> Outcome:
    """Train every missing trial, then (unless ``analyse`` is False) analyse and report.

    ``options`` are those of :func:`bnstudy.execution.runner.run_protocol`, passed on as they
    are: ``execution`` (a planned :class:`~bnstudy.execution.plan.Execution`) or the options
    of :func:`~bnstudy.execution.plan.plan_execution` (``jobs``, ``devices``, ``pack``, ...),
    and ``on_result``, ``on_progress``, ``adopt_foreign`` (a results file written by another
    study is refused unless ``adopt_foreign``). The tuning grid grows past its open edges as
    :func:`bnstudy.execution.grow.run_growing` says (``extend_grid``: None, as the protocol
    declares; True or False, forced; ``on_round``: a line per round; ``max_rounds``).
    """
    from bnstudy.execution.grow import run_growing

    results = Path(results) if results else results_path(protocol)
    summary = run_growing(protocol, results, _open_edges, **options)
    if summary.interrupted or summary.aborted or not analyse:
        return Outcome(summary, results, None, None)
    recorded = load_results(results)
    analysis = analyze_with_protocol(recorded)
    out = Path(report) if report else report_path(protocol)
    write_report(recorded, analysis, out)
    return Outcome(summary, results, analysis, out)


def _open_edges(results: Path) -> list[grow.Edge]:
    """Every selection (arm x base condition x fold) at an edge of its tuning grid in the
    results so far, as the analysis selects (intention to treat): where the grid grows."""
    from bnstudy.stats.tuning import edge_sides, select_levels

    recorded = load_results(results)
    design = recorded.protocol.design()
    if not design.tuning or recorded.results.table.empty:
        return []
    selection = select_levels(recorded.results.table, design)
    return [
        grow.Edge(
            factor,
            side,
            grow.plain(row[factor]),
            tuple((c, grow.plain(row[c])) for c in selection.base_columns),
        )
        for row in selection.table.to_dict("records")
        for factor, side in edge_sides(str(row["at_edge"]), selection.tuning_columns)
    ]


def grown_protocol(protocol: Protocol, results: str | Path | None = None) -> Protocol:
    """``protocol`` with the levels its results file records as grown past the tuning
    grid's edges (:mod:`bnstudy.spec.grow`): it then expands to their trials too."""
    from bnstudy.execution.runner import with_recorded_growth

    store = ResultStore(Path(results) if results else results_path(protocol))
    return with_recorded_growth(protocol, store.metadata()) if store.exists() else protocol


def grown_levels(protocol: Protocol, results: str | Path | None = None) -> list[str]:
    """One line per grown factor, e.g. ``lr grown: 0.01 (round 1), 0.00333 (round 2)``
    (none when the grid never grew)."""
    return grow.describe(grown_protocol(protocol, results).grown)


# -- analyse and report -----------------------------------------------------------------


def protocol_of(results: Results) -> Protocol:
    """The protocol recorded in a results file's metadata."""
    text = results.metadata.get(PROTOCOL)
    if text is None:
        raise StoreError(
            f"{results.path}: no protocol in the file's metadata (not a bnstudy file?)"
        )
    # A plugin's head takes the options recorded with the results (its code need not be
    # importable here): expanded without them, its trials would not match their rows.
    try:
        recorded_options = json.loads(results.metadata.get(HEAD_OPTIONS, "{}"))
        for head, options in recorded_options.items():
            head_options.recall(head, options)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise StoreError(
            f"{results.path}: unreadable head options in its metadata ({exc})"
        ) from None
    try:  # likewise the options of its architectures and the metrics it registered
        plugins.recall(results.metadata)
    except ValueError as exc:
        raise StoreError(f"{results.path}: unreadable plugin declarations ({exc})") from None
    protocol = parse_protocol(text, source=f"{results.path} (recorded protocol)")
    try:  # levels grown past the tuning grid's edges are the protocol's too
        return protocol.with_grown(grow.recorded(results.metadata))
    except ValueError as exc:
        raise StoreError(f"{results.path}: {exc}") from None


@dataclass(frozen=True)
class ResultsWithProtocol:
    """A results file read back with the protocol it records, restricted to that protocol."""

    protocol: Protocol
    results: Results


def current_trials(results: Results, protocol: Protocol) -> Results:
    """Only the rows of trials ``protocol`` declares, with the derived metric columns.

    A protocol edited between runs (a level dropped, epochs changed) leaves rows of trials
    it no longer contains; they are kept in the file but not analysed. Their count is in
    ``metadata["ignored_rows"]``.
    """
    from bnstudy.stats.derived import with_derived_metrics

    planned = {t.trial_id for t in protocol.expand()}
    keep = results.table["trial_id"].isin(planned)
    metadata = {**results.metadata, IGNORED_ROWS: str(int((~keep).sum()))}
    table = _with_default_settings(results.table[keep].reset_index(drop=True))
    table = with_derived_metrics(table)  # ``failure`` for the report's levels too
    return Results(table, metadata, results.path)


def _with_default_settings(table: pd.DataFrame) -> pd.DataFrame:
    """Rows written before a setting existed hold its default (their ids say so too).

    Without this, one condition would split in two: the old rows (no value) and the new
    ones (the default).
    """
    for field in dataclasses.fields(Trial):
        if field.default is dataclasses.MISSING:
            continue
        if field.name not in table.columns:
            table[field.name] = field.default
        elif table[field.name].isna().any():
            table[field.name] = table[field.name].fillna(field.default)
    # The arm (the treatment's level plus its arm options) is derived, not stored: older
    # tables get it too, and a design whose treatment is ``arm`` reads it like any other
    # column. Every setting is a scalar (the list columns are left out: they are large).
    settings = [f.name for f in dataclasses.fields(Trial) if f.name in table.columns]
    table[ARM] = [arm_of(row) for row in table[settings].to_dict("records")]
    return table


def load_results(path: str | Path) -> ResultsWithProtocol:
    """Read a results file and its recorded protocol (the rows it declares only)."""
    results = read_results(path)
    protocol = protocol_of(results)
    return ResultsWithProtocol(protocol, current_trials(results, protocol))


def analyze_with_protocol(recorded: ResultsWithProtocol) -> Analysis:
    from bnstudy.spec.claims import designs, registered_hashes
    from bnstudy.stats import analyze as stats_analyze
    from bnstudy.stats.hypotheses import evaluate_hypotheses

    table, design = recorded.results.table, recorded.protocol.design()
    analysis = stats_analyze(table, design)
    hypotheses = designs(recorded.protocol)
    if not hypotheses:
        return analysis
    # Which hypotheses came before the results is known only from the file's registration.
    registered = registered_hashes(recorded.results.metadata)
    judged = evaluate_hypotheses(table, design, hypotheses, registered)
    return dataclasses.replace(analysis, hypotheses=judged)


def analyze(path: str | Path) -> Analysis:
    """Read a results file and analyse it with the protocol it records."""
    return analyze_with_protocol(load_results(path))


def write_report(
    recorded: ResultsWithProtocol,
    analysis: Analysis,
    out: str | Path,
    format: str = "html",
    figures: str | Path | None = None,
    latex: str | Path | None = None,
) -> Path:
    """Write the report as one self-contained HTML file, or as Markdown with its figures in
    ``OUT_figures/``; optionally every figure as SVG, PNG and PDF into ``figures`` and the
    estimates as a LaTeX table into ``latex``."""
    from bnstudy import report as R

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results, protocol = recorded.results, recorded.protocol
    if format == "md":
        text = R.render_markdown(
            analysis,
            results.table,
            protocol,
            results.metadata,
            figures_dir=out.with_name(out.stem + "_figures"),
        )
    elif format == "html":
        text = R.render(analysis, results.table, protocol, results.metadata)
    else:
        raise ValueError(f"unknown report format {format!r}; allowed: html, md")
    out.write_text(text, encoding="utf-8")
    if figures is not None:
        R.write_figures(analysis, results.table, protocol, Path(figures), results.metadata)
    if latex is not None:
        Path(latex).write_text(R.estimates_latex(analysis), encoding="utf-8")
    return out


def report(
    path: str | Path,
    out: str | Path | None = None,
    format: str = "html",
    figures: str | Path | None = None,
    latex: str | Path | None = None,
) -> Path:
    """Analyse a results file and write its report (default ``reports/NAME.html`` or ``.md``)."""
    recorded = load_results(path)
    analysis = analyze_with_protocol(recorded)
    out = out or report_path(recorded.protocol, format)
    return write_report(recorded, analysis, out, format, figures, latex)


#: The ``status`` of a planned trial with no row yet.
MISSING = "missing"
#: Outcome columns of :func:`status`, best first (any other status follows them).
_STATUS_ORDER = (OK, COLLAPSED, DIVERGED, FAILED, OOM, TIMEOUT, MISSING)


def status(protocol: Protocol, results: str | Path | None = None) -> pd.DataFrame:
    """Trials per arm by outcome (works mid-run): a row per arm (a head, a head with its
    arm options, e.g. ``bn[bn_momentum=0.01]``, or a level of another treatment, e.g.
    ``adamw``) in protocol order, then ``total``; a column per outcome, ``ok`` first, then
    ``missing`` (not yet run) and ``total``. The index is named as the design names the
    treatment (``head``, ``arm`` with arm options, or the treatment factor, ``optimizer``).
    A protocol given for ``results``, or another study's results file, is refused
    (StoreError), as ``run`` does."""
    path = Path(results) if results else results_path(protocol)
    _refuse_protocol(path)
    trials = grown_protocol(protocol, path).expand()  # with the levels the grid grew
    planned = pd.DataFrame([{"trial_id": t.trial_id, ARM: t.arm} for t in trials])
    store = ResultStore(path)
    if store.exists():
        store.check_study(protocol.name, "give this study's own results file (--results)")
        table = store.read().table[["trial_id", "status"]]
    else:
        table = pd.DataFrame({"trial_id": pd.Series(dtype=str), "status": pd.Series(dtype=str)})
    merged = planned.merge(table, on="trial_id", how="left")
    merged["status"] = merged["status"].fillna(MISSING)
    counts = merged.groupby([ARM, "status"]).size().unstack(fill_value=0)
    outcomes = [s for s in _STATUS_ORDER if s in counts.columns]
    counts = counts[outcomes + sorted(set(counts.columns) - set(outcomes))]
    counts = counts.reindex([a for a in _arm_order(protocol, trials) if a in counts.index])
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum()
    counts.columns.name = None  # the outcomes need no "status" label above them
    counts.index.name = protocol.design().treatment_name
    return counts


def _arm_order(protocol: Protocol, trials: list[Trial]) -> list[str]:
    """The arms in the order of their treatment levels in the protocol, each level's in
    expansion order."""
    factor = protocol.treatment_factor
    levels = list(getattr(protocol.factors, factor))
    level_of = {t.arm: getattr(t, factor) for t in trials}
    return sorted(level_of, key=lambda arm: levels.index(level_of[arm]))
