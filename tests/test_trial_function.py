"""A protocol's own trial function (``trial: my_trial.py:run``) through ``bnstudy run``: loky
and Dask-local workers, resume, its registered metric in a hypothesis, read back where the
plugin is gone.

Each test runs ``bnstudy`` in a fresh process, so the metric the plugin registers never
leaks into this test session's catalogue.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

TRIAL = '''\
"""A trial function of one's own: numpy only, its randomness from bnstudy's paired streams."""

import numpy as np

from bnstudy.catalogue import register_metric

register_metric("score", "higher", unit="pt", margin=0.1, chance=0.0)

#: What each optimiser adds to the score: the effect the study should find.
EFFECT = {"sgd": 0.0, "adamw": 1.0}


def run(trial, ctx):
    shared = np.random.default_rng(ctx.seed("noise")).normal()  # the same in both arms
    own = np.random.default_rng(ctx.seed("noise/" + trial.optimizer)).normal(scale=0.01)
    return {
        "score": 5.0 + shared + own + EFFECT[trial.optimizer],
        "train_images": len(ctx.data.y_train),
    }
'''

PROTOCOL = """\
name: own_trial
seeds: {seeds}
trial: my_trial.py:run
factors:
  architecture: mlp
  head: plain
  dataset: synthetic
  train_per_class: 20
  optimizer: [sgd, adamw]
treatment: {{factor: optimizer, control: sgd}}
analysis:
  metrics: [score]
hypotheses:
  - id: adamw_higher
    claim: adamw scores higher than sgd
    metric: score
    variant: adamw
    control: sgd
    expect: higher
"""

#: Every command's wall-clock limit: a hung worker fails the test instead of the suite.
LIMIT_S = 240


def bnstudy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnstudy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
    )


def run(study: Path, *options: str, code: int = 0) -> subprocess.CompletedProcess:
    done = bnstudy(
        "run", "own.yaml", "--jobs", "2", "--threads", "1", "--devices", "cpu",
        "--results", "r.parquet", "--no-report", *options, cwd=study,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    return done


@pytest.fixture
def study(tmp_path: Path) -> Path:
    (tmp_path / "my_trial.py").write_text(TRIAL)
    (tmp_path / "own.yaml").write_text(PROTOCOL.format(seeds=2))
    return tmp_path


@pytest.mark.parametrize("backend", ["loky", "dask-local"])
def test_a_trial_function_runs_resumes_and_its_metric_is_judged(study: Path, backend: str):
    if backend == "dask-local":
        pytest.importorskip("distributed", reason="dask.distributed is not installed")
    first = run(study, "--backend", backend)
    assert "4 trials: 0 already done, 4 run (4 ok)" in first.stdout, first.stdout
    # two more seeds: the finished trials are not run again
    (study / "own.yaml").write_text(PROTOCOL.format(seeds=4))
    resumed = run(study, "--backend", backend)
    assert "8 trials: 4 already done, 4 run (4 ok)" in resumed.stdout, resumed.stdout

    table = pq.read_table(study / "r.parquet")
    rows = table.to_pandas()
    assert len(rows) == 8 and set(rows["status"]) == {"ok"}
    assert set(rows["trial_function"]) == {"my_trial.py:run"}
    assert rows["balanced_acc"].isna().all()  # a catalogue metric it does not return: NaN
    assert (rows["train_images"] == 200).all()  # ctx.data: 20 images of each of 10 classes
    assert all(list(c) == [20] * 10 for c in rows["class_counts"])  # the classes, for chance
    # the arms of a block drew the same stream "noise": they differ by the effect alone
    arms = rows.pivot(index="seed", columns="optimizer", values="score")
    assert ((arms["adamw"] - arms["sgd"]) - 1.0).abs().max() < 0.1
    assert arms["sgd"].std() > 0.3  # while seeds differ by the whole noise
    metadata = table.schema.metadata
    assert json.loads(metadata[b"bnstudy.metrics"])["score"]["direction"] == "higher"
    assert str(study / "my_trial.py") in json.loads(metadata[b"bnstudy.plugins"])

    # analysed where the plugin is gone: the recorded declaration stands in for it
    (study / "my_trial.py").unlink()
    analysed = bnstudy("analyze", "r.parquet", cwd=study)
    assert analysed.returncode == 0, analysed.stderr
    assert "adamw - sgd on score (pt)" in analysed.stdout
    assert "adamw_higher: supported" in analysed.stdout, analysed.stdout


def test_a_trial_function_that_breaks_the_contract_fails_its_trials_with_the_cause(
    study: Path,
):
    (study / "my_trial.py").write_text(
        TRIAL.replace('"score": 5.0', '"lr": 1.0, "score": 5.0')  # a setting's column
    )
    run(study, code=1)  # trials failed: the run says so in its exit status
    rows = pd.read_parquet(study / "r.parquet")
    assert set(rows["status"]) == {"failed"}
    assert rows["error"].str.contains("metric 'lr' would overwrite").all()


@pytest.mark.parametrize(
    ("trial", "message"),
    [
        ("my_trial", "trial: expected CODE:FUNCTION"),
        ("my_trial.py:nope", "my_trial.py has no function 'nope'"),
        ("my_trial.py:EFFECT", "my_trial.py:EFFECT is a dict, not a function"),
        ("gone.py:run", r"own\.yaml: trial: .*gone\.py: no such file"),
    ],
)
def test_a_trial_function_that_cannot_be_found_is_one_line(study: Path, trial, message):
    text = PROTOCOL.format(seeds=2).replace("trial: my_trial.py:run", f"trial: {trial}")
    if trial == "my_trial":  # then no plugin registers the metric either
        text = text.replace("metrics: [score]", "metrics: [balanced_acc]")
        text = text.split("hypotheses:")[0]
    (study / "own.yaml").write_text(text)
    checked = bnstudy("validate", "own.yaml", cwd=study)
    assert checked.returncode == 2
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert re.search(message, lines[0]), lines[0]


def test_the_trial_function_s_missing_code_is_said_of_trial_and_a_plugin_s_of_plugins(
    study: Path,
):
    """The code of ``trial:`` is imported as a plugin, but the user wrote it as ``trial:``."""
    from bnstudy import study as verbs
    from bnstudy.spec import plugins, trial_function
    from bnstudy.spec.errors import ProtocolError

    text = PROTOCOL.format(seeds=2).split("analysis:")[0]
    (study / "own.yaml").write_text(text.replace("my_trial.py:run", "gone.py:run"))
    with pytest.raises(ProtocolError, match=r"own\.yaml: trial: .*gone\.py: no such file$"):
        verbs.load(study / "own.yaml")
    (study / "own.yaml").write_text(text + "plugins: [lost.py]\n")
    with pytest.raises(ProtocolError, match=r"own\.yaml: plugins: .*lost\.py: no such file$"):
        verbs.load(study / "own.yaml")
    # where a worker or validate loads the function itself
    with pytest.raises(plugins.PluginError, match=r"^trial: .*gone\.py: no such file$"):
        trial_function.load(trial_function.resolve("gone.py:run", study))
