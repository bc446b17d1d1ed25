"""End to end through the command line: protocol in, Parquet table and HTML report out."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bnstudy.cli import main
from bnstudy.stats.analysis import ESTIMATE_COLUMNS
from tiny_protocol import tiny_text

TINY = tiny_text(
    description="'an <b>unsafe</b> description & more <script>alert(1)</script>'",
    seeds=3,
    extra="analysis:\n  metrics: [balanced_acc, nll]\n  bootstrap: {replicates: 200}\n",
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, str]:
    """Run the tiny protocol once through the CLI (in its own working directory)."""
    root = tmp_path_factory.mktemp("study")
    (root / "protocols").mkdir()
    (root / "protocols" / "tiny.yaml").write_text(TINY)
    out = subprocess.run(
        [sys.executable, "-m", "bnstudy", "run", "protocols/tiny.yaml", "--jobs", "2"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return root, out.stdout


def test_run_prints_where_outputs_went_and_the_headline(finished_run):
    root, stdout = finished_run
    assert "results: data/results/tiny.parquet" in stdout
    assert "report:  reports/tiny.html" in stdout
    assert re.search(r"bn − plain on balanced_acc: −?\d+\.\d+ pp \(95% CI", stdout), stdout
    assert "12 trials: 0 already done, 12 run" in stdout


def test_results_table_columns_and_metadata(finished_run):
    root, _ = finished_run
    table = pd.read_parquet(root / "data/results/tiny.parquet")
    assert len(table) == 12
    for column in [
        "trial_id", "block_id", "status", "error", "seed", "architecture", "head", "dataset",
        "imbalance_ratio", "test_acc", "balanced_acc", "macro_f1", "nll", "train_loss",
        "wall_s", "started_at", "ended_at",
    ]:  # fmt: skip
        assert column in table.columns, column
    assert table["imbalance_ratio"].dtype == "float64"
    assert table["seed"].dtype == "int64"
    assert table.groupby("block_id").size().eq(2).all()


def test_report_is_self_contained_and_escapes_user_text(finished_run):
    root, _ = finished_run
    html = (root / "reports/tiny.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>unsafe</b>" not in html and "&lt;b&gt;unsafe&lt;/b&gt;" in html
    assert "<script" not in html.lower()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "external URL"
    assert "<svg" in html  # inline figures
    assert "What the evidence shows" in html
    assert "95% CI" in html
    for words in ["Estimates", "Trials and failures", "Protocol", "torch"]:
        assert words in html


def test_analyze_formats(finished_run, capsys, monkeypatch):
    root, _ = finished_run
    monkeypatch.chdir(root)
    path = "data/results/tiny.parquet"
    assert main(["analyze", path, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    for table in ["estimates", "equivalence", "heterogeneity", "robustness", "failures"]:
        assert table in document["tables"], table  # every table, not only the estimates
    records = document["tables"]["estimates"]
    assert records and all(list(r) == ESTIMATE_COLUMNS for r in records)
    overall = [r for r in records if r["scope"] == "overall"]
    assert {(r["metric"], r["variant"]) for r in overall} == {("balanced_acc", "bn"), ("nll", "bn")}

    assert main(["analyze", path, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(ESTIMATE_COLUMNS)
    assert main(["analyze", path]) == 0
    assert "overall" in capsys.readouterr().out


def test_report_verb_and_status_and_resume(finished_run, capsys, monkeypatch, tmp_path):
    root, _ = finished_run
    monkeypatch.chdir(root)
    out = tmp_path / "r.html"
    assert main(["report", "data/results/tiny.parquet", "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["status", "protocols/tiny.yaml"]) == 0
    status = capsys.readouterr().out
    assert "missing" not in status and "total" in status
    assert main(["run", "protocols/tiny.yaml", "-q", "--no-report"]) == 0
    assert "12 already done, 0 run" in capsys.readouterr().out


def test_validate_and_plan(tmp_path: Path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["plan", str(path), "--first", "2"]) == 0
    out = capsys.readouterr().out
    assert "12 trials" in out and "imbalance_ratio" in out and "6 pairing blocks" in out


def test_bad_protocol_exits_2_with_one_line_and_no_traceback(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace("[plain, bn]", "[plain, bnn]"))
    exe = shutil.which("bnstudy") or sys.executable
    cmd = [exe] if exe != sys.executable else [sys.executable, "-m", "bnstudy"]
    out = subprocess.run([*cmd, "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert f"{path}: factors.head[1]: unknown name 'bnn'" in out.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("train_per_class: 40", "train_per_class: 2"), "factors.batch_size: 32 exceeds the"),
        (
            ("architecture: mlp", "architecture: cnn1d"),
            "factors.architecture: architecture 'cnn1d'",
        ),
        (("train_per_class: 40", "train_per_class: 5000"), "factors.train_per_class: 5000 images"),
        (("imbalance_ratio: [1, 10]", "imbalance_ratio: [1, 1000]"), "1000 leaves a class of"),
        (("dataset: synthetic", "dataset: cifar10"), "datasets.cifar10: nowhere"),
    ],
)
def test_what_cannot_train_is_refused_before_training(edit, expected, tmp_path: Path, capsys):
    # Before, these failed every trial at run time, and again on every resume.
    path = tmp_path / "p.yaml"
    path.write_text(
        TINY.replace(*edit) + "datasets: {cifar10: {path: nowhere}}\n" * ("cifar" in edit[1])
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert err.startswith(f"bnstudy: error: {path}: ")


def test_corrupt_results_file_exits_2(tmp_path: Path, capsys):
    path = tmp_path / "r.parquet"
    path.write_text("garbage")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable results file" in err and err.count("\n") == 1


def test_failed_trials_are_recorded_and_the_run_exits_1(tmp_path: Path, monkeypatch, capsys):
    """Every trial raises (in-process, so the patch reaches it): no pair to analyse."""
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(TINY.replace("seeds: 3", "seeds: 1"))

    def broken(*args, **kwargs):
        raise RuntimeError("simulated fault in building the model")

    monkeypatch.setattr("bnstudy.training.train.build_model", broken)
    assert main(["run", "bad.yaml", "--jobs", "1", "-q"]) == 1
    captured = capsys.readouterr()
    assert "4 trials failed" in captured.err
    assert "no effect could be estimated" in captured.out
    table = pd.read_parquet("data/results/tiny.parquet")
    assert (table["status"] == "failed").all()
    assert table["error"].str.contains("simulated fault").all()
    assert "No effect could be estimated" in Path("reports/tiny.html").read_text()
    assert main(["analyze", "data/results/tiny.parquet"]) == 3
    assert capsys.readouterr().out.startswith("no estimates: ")
    assert main(["analyze", "data/results/tiny.parquet", "--format", "json"]) == 3
    assert json.loads(capsys.readouterr().out)["tables"]["estimates"] == []


def test_a_run_with_nothing_to_estimate_exits_3(tmp_path: Path, monkeypatch, capsys):
    """Every trial diverges (a huge learning rate): the run finished, but it answers nothing."""
    monkeypatch.chdir(tmp_path)
    Path("div.yaml").write_text(
        TINY.replace("epochs: 2", "epochs: 2\n  lr: 1.0e+12").replace("seeds: 3", "seeds: 2")
    )
    assert main(["run", "div.yaml", "--jobs", "1", "-q"]) == 3
    assert "no effect could be estimated" in capsys.readouterr().out
    table = pd.read_parquet("data/results/tiny.parquet")
    assert (table["status"] == "diverged").all()


def test_plan_takes_a_half_width_per_metric(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    for bad, expected in [
        (["--halfwidth", "1"], "--halfwidth: expected METRIC=VALUE"),
        (["--halfwidth", "balanced_acc=-1", "--pilot", "p.parquet"], "balanced_acc"),
        (["--halfwidth", "balanced_acc=1"], "need --pilot"),
    ]:
        if "--pilot" in bad:
            _pilot("p.parquet")
        assert main(["plan", "tiny.yaml", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    args = ["--pilot", "p.parquet", "--halfwidth", "balanced_acc=2", "--halfwidth", "nll=0.05"]
    assert main(["plan", "tiny.yaml", *args]) == 0
    out = capsys.readouterr().out
    assert "seeds per cell from the pilot" in out and "nats" in out


def _pilot(path: str, text: str = TINY) -> None:
    """Simulated results of the protocol ``text``, recorded as a run records them."""
    from bnstudy.protocol import parse_protocol
    from bnstudy.stats.simulate import simulate_results
    from bnstudy.store import ResultStore

    protocol = parse_protocol(text)
    store = ResultStore(path)
    for row in simulate_results(protocol, effect=1.0).to_dict("records"):
        store.append(row)
    store.consolidate({"protocol": text, "protocol_name": protocol.name})


COMMITTED = Path(__file__).parents[1] / "data/results/study_claim3.parquet"


def _fits_a_terminal(out: str) -> None:
    """At most 100 characters a line, a blank (not NaN or None) for a missing value."""
    assert out.strip()
    for line in out.splitlines():
        assert len(line) <= 100, line
        assert not any(bad in line for bad in ("NaN", "None", "nan")), line


def test_plan_pilot_prints_a_table_that_fits_100_columns(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    _pilot("pilot.parquet")
    assert main(["plan", "tiny.yaml", "--pilot", "pilot.parquet"]) == 0
    out = capsys.readouterr().out
    _fits_a_terminal(out)
    assert "\n  imbalance_profile       1  exp\n" in out  # in line with the other factors
    # nll cannot reach its margin: no seed count (was NaN), and the note says why
    assert re.search(r"\n  nll +bn +nats +half-width 0.02 \(margin\) +0 ", out), out
    assert "note: nll, bn: target 0.02 needs more than 100000 seeds per condition" in out


def test_status_prints_a_table_that_fits_100_columns(tmp_path: Path, monkeypatch, capsys):
    from bnstudy.protocol import parse_protocol
    from bnstudy.stats.simulate import simulate_results
    from bnstudy.store import ResultStore

    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    rows = simulate_results(parse_protocol(TINY), effect=1.0)
    rows.loc[0, "status"] = "failed"
    store = ResultStore("partial.parquet")
    for row in rows.iloc[:-3].to_dict("records"):  # part-way: three trials not run yet
        store.append(row)
    store.consolidate({"protocol": TINY, "protocol_name": "tiny"})
    assert main(["status", "tiny.yaml", "--results", "partial.parquet"]) == 0
    out = capsys.readouterr().out
    _fits_a_terminal(out)
    lines = out.splitlines()
    assert lines[0] == "study 'tiny': 12 trials; results partial.parquet"
    assert lines[1].split() == ["head", "ok", "failed", "missing", "total"]
    assert [line.split()[0] for line in lines[3:]] == ["plain", "bn", "total"]
    assert lines[-1].split() == ["total", "8", "1", "3", "12"]


def test_analyze_prints_tables_that_fit_100_columns(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _pilot("pilot.parquet")
    assert main(["analyze", "pilot.parquet"]) == 0
    out = capsys.readouterr().out
    _fits_a_terminal(out)
    assert "bn - plain on balanced_acc (pp), intention-to-treat" in out
    assert "bn - plain on nll (nats), ok only" in out

    assert main(["analyze", str(COMMITTED)]) == 0  # a real study, with hypotheses
    out = capsys.readouterr().out
    _fits_a_terminal(out)
    assert "bn_noaffine - plain on balanced_acc_precise (pp), intention-to-treat" in out
    assert "\nhypotheses:\n  c3_bn_fails_more: contradicted\n" in out


def test_a_large_protocol_is_warned_about(tmp_path: Path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text(TINY.replace("seeds: 3", "seeds: 3000"))
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "12,000 trials (more than 10,000)" in captured.err
    assert "ok ('tiny', 12000 trials)" in captured.out


def test_rows_of_trials_no_longer_in_the_protocol_are_not_analysed():
    from bnstudy import study
    from bnstudy.protocol import parse_protocol
    from bnstudy.stats.simulate import simulate_results
    from bnstudy.store import Results

    table = simulate_results(parse_protocol(TINY), effect=1.0, seed=0)
    edited = TINY.replace("imbalance_ratio: [1, 10]", "imbalance_ratio: [1]")
    results = Results(table, {"protocol": edited}, Path("r.parquet"))
    current = study.current_trials(results, parse_protocol(edited))
    assert len(current.table) == len(table) // 2
    assert (current.table["imbalance_ratio"] == 1.0).all()
    assert current.metadata["ignored_rows"] == str(len(table) // 2)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["analyze", "other.parquet"], "other.parquet: not a bnstudy results file"),
        (["report", "other.parquet"], "other.parquet: not a bnstudy results file"),
        (["status", "tiny.yaml", "--results", "other.parquet"], "not a bnstudy results file"),
        (["analyze", "results"], "results: is a directory"),
        (["run", "tiny.yaml", "--results", "results"], "results: is a directory"),
        (["run", "tiny.yaml", "--device", "nope"], "device 'nope' is not usable here"),
        (["run", "tiny.yaml", "--device", "mps"], "device 'mps' is not usable here"),
        (["validate", "empty.yaml"], "empty.yaml: the protocol is empty"),
        (["report", "tiny.parquet", "-o", "results"], "Is a directory: 'results'"),
        (["status", "tiny.yaml", "--results", "results"], "results: is a directory"),
        # Another study's results are not counted as this study's (run refuses them too).
        (
            ["status", "tiny.yaml", "--results", "foreign.parquet"],
            "foreign.parquet: holds results of study 'other', not 'tiny'",
        ),
        # A file of the wrong kind, told by its content: a hint naming the right command.
        (
            ["status", "tiny.parquet"],
            "tiny.parquet: is a results file, not a protocol; try `bnstudy analyze "
            "tiny.parquet` or `bnstudy report tiny.parquet`",
        ),
        (["run", "tiny.parquet"], "tiny.parquet: is a results file, not a protocol"),
        (["validate", "misnamed.yaml"], "misnamed.yaml: is a results file, not a protocol"),
        (
            ["analyze", "tiny.yaml"],
            "tiny.yaml: is a protocol, not a results file; try `bnstudy run tiny.yaml` or "
            "`bnstudy status tiny.yaml` (it writes data/results/tiny.parquet)",
        ),
        (["report", "tiny.yaml"], "tiny.yaml: is a protocol, not a results file"),
        (["plan", "tiny.yaml", "--pilot", "tiny.yaml"], "tiny.yaml: is a protocol"),
        (["status", "tiny.yaml", "--results", "tiny.yaml"], "tiny.yaml: is a protocol"),
        (["analyze", "misnamed.parquet"], "misnamed.parquet: is a protocol, not a results"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, expected, tmp_path, monkeypatch, capsys):

    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    Path("misnamed.parquet").write_text(TINY)
    Path("empty.yaml").write_text("# nothing yet\n")
    pd.DataFrame({"a": [1, 2]}).to_parquet("other.parquet")
    Path("results").mkdir()
    _pilot("tiny.parquet")
    shutil.copy("tiny.parquet", "misnamed.yaml")
    _pilot("foreign.parquet", TINY.replace("name: tiny", "name: other"))
    shutil.copy("tiny.parquet", "results/a.parquet")
    shutil.copy("tiny.parquet", "results/b.parquet")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert len(err) < 400, err  # torch's message for "mps" ran to 1,300 characters
    assert not list(Path("results").glob("*.pending")) and not Path("results.pending").exists()


def test_rows_written_before_a_setting_existed_take_its_default():
    from bnstudy import study
    from bnstudy.protocol import parse_protocol
    from bnstudy.stats.simulate import simulate_results
    from bnstudy.store import Results

    table = simulate_results(parse_protocol(TINY), effect=1.0, seed=0)
    old = table.drop(columns=["imbalance_profile", "steps"], errors="ignore")
    old.loc[old.index[:4], "label_smoothing"] = None  # a table concatenated with older rows
    current = study.current_trials(
        Results(old, {"protocol": TINY}, Path("r")), parse_protocol(TINY)
    )
    assert (current.table["imbalance_profile"] == "exp").all()
    assert (current.table["steps"] == 0).all()
    assert (current.table["label_smoothing"] == 0.0).all()


def test_report_exports_markdown_figures_and_latex(finished_run, capsys, monkeypatch, tmp_path):
    root, _ = finished_run
    monkeypatch.chdir(root)
    out, figures, latex = tmp_path / "r.md", tmp_path / "figs", tmp_path / "est.tex"
    argv = ["report", "data/results/tiny.parquet", "--format", "md", "-o", str(out)]
    assert main([*argv, "--figures", str(figures), "--latex", str(latex)]) == 0
    text = out.read_text()
    assert text.startswith("# tiny") and "What the evidence shows" in text
    prose = text.split("```")[::2]  # outside code blocks (the protocol text is one)
    assert not any("<script>" in part for part in prose)  # the description's markup is escaped
    svgs = {p.stem for p in figures.glob("*.svg")}
    assert svgs and svgs == {p.stem for p in figures.glob("*.png")} == {
        p.stem for p in figures.glob("*.pdf")
    }
    assert list((tmp_path / "r_figures").glob("*.svg"))  # the Markdown's own figures
    assert "\\begin{tabular" in latex.read_text()


def test_a_reader_that_leaves_early_is_no_error():
    # `bnstudy plan p.yaml | head -1` used to end with "bnstudy: error: [Errno 32] Broken pipe".
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        f"'{sys.executable}' -m bnstudy plan protocols/quick.yaml | head -c 1",
        shell=True,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "error" not in done.stderr, done.stderr
