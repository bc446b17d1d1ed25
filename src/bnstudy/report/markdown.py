"""The report as Markdown with a folder of SVG figures (``bnstudy report --format md``).

The same content as the HTML page (:mod:`bnstudy.report.content`), for a repository, a wiki
or a paper draft: GitHub-flavoured pipe tables and image links relative to the Markdown file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bnstudy.report import content as content_module
from bnstudy.report import figures
from bnstudy.report.content import Content
from bnstudy.report.tables import markdown_table, md_text
from bnstudy.spec.protocol import Protocol
from bnstudy.stats import Analysis


def render_markdown(
    analysis: Analysis,
    table: pd.DataFrame,
    protocol: Protocol,
    metadata: Mapping[str, str] | None = None,
    *,
    figures_dir: str | Path,
    figures_href: str | None = None,
    generated_at: str | None = None,
) -> str:
    """The report as Markdown text; writes every figure as ``figures_dir/ID.svg``.

    ``figures_href``: how the Markdown file refers to ``figures_dir`` (default: the folder's
    name, right for a Markdown file written next to it). Returns the Markdown; the caller
    writes it (e.g. ``reports/NAME.md`` beside ``reports/NAME_figures/``).
    """
    c = content_module.build(analysis, table, protocol, metadata, generated_at)
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for f in c.figures:
        figures.save(f.draw(), folder / f.id, ("svg",))
    href = (figures_href if figures_href is not None else folder.name).rstrip("/")
    return _markdown(c, href)


def _para(text: str) -> str:
    return md_text(" ".join(str(text).split()))


def _figures(c: Content, section: str, href: str) -> list[str]:
    out = []
    for f in c.figures_in(section):
        out += [f"![{_para(f.title)}]({href}/{f.id}.svg)", "", f"_{_para(f.caption)}_", ""]
    out += [f"_{_para(note)}_\n" for note in c.missing.get(section, [])]
    return out


def _hypotheses(c: Content) -> list[str]:
    """The hypotheses table that opens the report; each id links to its evidence."""
    hyp = c.hypotheses_table
    if hyp.empty:
        return []
    if c.hypotheses_registered_at:
        when = (
            f"The results file registered their hashes with its first results "
            f"({c.hypotheses_registered_at}); one added or changed since is exploratory "
            "(unadjusted, outside the confirmatory family)."
        )
    else:
        when = "The results file has no registration, so every hypothesis is exploratory."
    # Markdown has heading anchors only (GitHub slugs), so a figure link becomes its section.
    # The id is a safe name and the anchor one of ours: no user text in the link syntax.
    anchors = ["what-the-evidence-shows" if a != "estimates" else a for a in hyp["href"]]
    shown = hyp.drop(columns="href").assign(
        id=[f"[{i}](#{a})" for i, a in zip(hyp["id"], anchors, strict=True)]
    )
    intro = (
        "The claims the protocol stated, each judged on its own subset (intention to treat); "
        f"the pre-registered ones Holm-adjusted together at alpha = {c.alpha}. {when}"
    )
    return ["## Pre-registered hypotheses", "", _para(intro), "", markdown_table(shown), ""]


def _markdown(c: Content, href: str) -> str:
    sections = (
        _header(c),
        _hypotheses(c),
        _evidence(c, href),
        _levels(c, href),
        _estimates(c),
        _equivalence_and_heterogeneity(c, href),
        _mechanisms(c, href),
        _trials(c),
        _diagnostics(c),
        _provenance(c),
    )
    return "\n".join(line for lines in sections for line in lines)


def _header(c: Content) -> list[str]:
    lines = [f"# {_para(c.name)}", ""]
    meta = (
        f"bnstudy report · {c.n_trials} trials · protocol sha256 {c.protocol_sha[:12]} · "
        f"report written {c.generated_at}"
    )
    if c.run_written_at:
        meta += f" · run started {c.run_written_at}"
    lines += [meta, ""]
    if c.description:
        lines += [_para(c.description), ""]
    lines += ["Contents: " + " · ".join(title for _, title in c.sections), ""]
    return lines


def _evidence(c: Content, href: str) -> list[str]:
    """The verdict, the grid of overall effects, intention to treat and the moderators."""
    t = _para
    lines = ["## What the evidence shows", "", t(c.treatment_sentence), ""]
    if c.headline:
        h = c.headline
        multiplicity = f" {t(h['multiplicity'])}" if h["multiplicity"] else ""
        lines += [f"> {t(h['sentence'])} **{t(h['verdict_words'])}**{multiplicity}", ""]
        if h["sensitivity"]:
            lines += [f"> {t(h['sensitivity'])}", ""]
    else:
        lines += [f"> No effect could be estimated: {t(c.no_estimate_reason)}", ""]
    if c.edge_warning:
        lines += [f"**Warning.** {t(c.edge_warning)}", ""]
    if not c.verdict_grid.empty:
        lines += [
            f"Overall effect of each variant on each primary metric, with its {c.conf_pct}% CI "
            "and verdict:",
            "",
            markdown_table(c.verdict_grid),
            "",
        ]
    lines += _intention_to_treat(c)
    for s in c.moderator_sentences:
        lines += [f"- {t(s['sentence'])} **{t(s['verdict'])}** ({t(s['method'])})"]
    if c.moderator_sentences:
        lines.append("")
    return lines + _figures(c, "evidence", href)


def _intention_to_treat(c: Content) -> list[str]:
    t, itt = _para, c.itt
    collapsed = (
        f"{itt['n_collapsed']} collapsed trial(s) ({itt['collapsed_by_arm']}) count with their "
        "measured metrics."
        if itt["n_collapsed"]
        else "No trial collapsed."
    )
    no_metrics = (
        f"{itt['n_no_metrics']} trial(s) ended without metrics ({itt['no_metrics_by_status']}); "
        f"`failed_score: {itt['rule']}` scores them at {itt['rule_words']}."
        if itt["n_no_metrics"]
        else "No trial ended without metrics."
    )
    lines = [f"**Intention to treat.** {t(collapsed)} {t(no_metrics)}", ""]
    lines += [f"- {t(line)}" for line in itt["per_metric"]]
    if itt["per_metric"]:
        lines.append("")
    return lines + [markdown_table(c.itt_table, "No overall effect in either population."), ""]


def _levels(c: Content, href: str) -> list[str]:
    lines = ["## How each arm did", ""]
    lines += [f"- {_para(s)}" for s in c.levels_sentences] + [""]
    lines += _figures(c, "levels", href)
    for table in c.levels_tables:
        lines += [f"### {_para(table.title)} per condition", "", markdown_table(table.table), ""]
    return lines


def _estimates(c: Content) -> list[str]:
    lines = ["## Estimates", "", markdown_table(c.estimates_table, "No estimates."), ""]
    if c.methods:
        lines += ["Methods:", "", *[f"- {_para(m)}" for m in c.methods], ""]
    lines += ["### Sensitivity analysis: ok trials only", ""]
    lines += [markdown_table(c.sensitivity_table, "No ok-only estimates."), ""]
    lines += ["### Effect sizes", "", markdown_table(c.effect_sizes_table, "None."), ""]
    lines += ["### Robustness checks", "", markdown_table(c.robustness_table, "None."), ""]
    return lines


def _equivalence_and_heterogeneity(c: Content, href: str) -> list[str]:
    lines = ["## Equivalence", ""]
    lines += [markdown_table(c.equivalence_table, "No equivalence tests."), ""]
    lines += _figures(c, "equivalence", href)
    lines += ["## Heterogeneity across conditions", ""]
    lines += [f"- {_para(line)}" for line in c.regime_lines]
    lines += [""] if c.regime_lines else []
    lines += [markdown_table(c.heterogeneity_table, "No heterogeneity estimates."), ""]
    if c.variance_sentences:
        lines += ["### Which factor explains the spread", ""]
        lines += [f"- {_para(line)}" for line in c.variance_sentences] + [""]
        lines += [markdown_table(c.moderator_variance_table), ""]
    lines += _figures(c, "heterogeneity", href)
    if not c.per_condition_table.empty:
        lines += ["### Verdict per condition", "", markdown_table(c.per_condition_table), ""]
    return lines


def _mechanisms(c: Content, href: str) -> list[str]:
    lines = ["## Training and mechanisms", ""]
    if not c.mechanism_table.empty:
        lines += [markdown_table(c.mechanism_table), ""]
    return lines + _figures(c, "mechanisms", href)


def _trials(c: Content) -> list[str]:
    lines = ["## Trials and failures", "", markdown_table(c.status_table, "No trials."), ""]
    return lines + ["### Failure rate by arm", "", markdown_table(c.failures_table, "None."), ""]


def _diagnostics(c: Content) -> list[str]:
    lines = ["## Diagnostics", ""]
    for d in c.diagnostics:
        count = f"{d['count']}× " if d["count"] > 1 else ""
        # (_para would strip the space before the parenthesis)
        context = f" ({_para(d['context'])})" if d["context"] else ""
        lines.append(f"- {count}[{d['level']}] {_para(d['text'])}{context}")
    if not c.diagnostics:
        lines.append("No warnings or notes from the model fits.")
    lines.append("")
    return lines


def _provenance(c: Content) -> list[str]:
    lines = ["## How this was made", "", markdown_table(c.provenance_table), ""]
    # A fence longer than any run of backticks in the text (code is shown as is, unescaped).
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall("`+", c.protocol_text)), default=0))
    lines += ["### Protocol", "", fence + "yaml", c.protocol_text.rstrip("\n"), fence, ""]
    return lines
