"""``bnstudy plan``'s device-time estimate (bnstudy.execution.cost): hand computations from a
small table, the committed table, and the plan's lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.execution.cost import TABLE, duration, estimate, read_table, step_ms
from bnstudy.spec.loading import parse_protocol
from bnstudy.terminal import WIDTH

PROTOCOL = """\
name: tiny
seeds: 3
factors:
  architecture: [cnn, mlp]
  head: [plain, bn]
  dataset: synthetic
  train_per_class: 20
  epochs: 2
  batch_size: 32
control: plain
"""

TABLE_TEXT = """\
# a test table
device,kind,network,input,batch,pack,ms_per_step,precision,source
G1,gpu,cnn,3x16x16,16,1,2.0,fp32,test
G1,gpu,cnn,3x16x16,32,4,10.0,fp32,test
G1,gpu,cnn,3x16x16,32,4,1.0,bf16,test (ignored: not fp32)
C1,cpu,cnn,3x16x16,32,1,5.0,fp32,test
C1,cpu,mlp,3x16x16,64,1,8.0,fp32,test
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "step_times.csv"
    path.write_text(TABLE_TEXT)
    return path


def test_estimate_is_the_hand_computation(table: Path):
    protocol = parse_protocol(PROTOCOL, known=study.known_names())
    gpu, cpu = estimate(protocol, table=table, pack=16)
    # 10 classes x 20 images (ratio 1) = 200; 200 // 32 = 6 steps a pass, 2 passes: 12 steps.
    steps = 12
    # cnn: 6 trials; G1 has batch 16 only (unpacked): 2.0 ms x 32/16 = 4.0 ms per step.
    assert gpu.unpacked_s == pytest.approx(6 * steps * 4.0 / 1e3)
    assert dict(gpu.missing) == {"mlp": 6}
    # packed: 2 arms of 3 seeds, packs of 3; K=3 between K=1 (4.0) and K=4 (10.0): 8.0 ms.
    assert gpu.pack == 16
    assert gpu.packed_s == pytest.approx(2 * steps * 8.0 / 1e3)
    # C1: cnn 5.0 ms at 32; mlp 8.0 ms at 64 scaled to 32: 4.0 ms; no packing on a CPU.
    assert cpu.unpacked_s == pytest.approx(6 * steps * (5.0 + 4.0) / 1e3)
    assert not cpu.missing and cpu.pack == 0
    lines = study.plan(protocol).cost_lines(table)
    assert lines == [
        "tiny: 12 trials, ≈ 0.3 GPU-s unpacked on G1, ≈ 0.2 GPU-s packed (K=16); "
        "no measurement for mlp (6 trials)",
        "tiny: 12 trials, ≈ 0.6 CPU-s on C1",
    ]


def test_trials_the_runner_cannot_pack_are_priced_one_at_a_time(table: Path):
    """A plugin's optimiser (like a plugin network, a pre-trained body or head dropout) makes
    the runner train each trial alone, so the packed estimate prices six K=1 runs."""
    import dataclasses

    protocol = parse_protocol(PROTOCOL, known=study.known_names())
    cnn = [t for t in protocol.expand() if t.architecture == "cnn"]
    alone = [dataclasses.replace(t, optimizer="my_lab_lion") for t in cnn]
    (gpu, _) = estimate(protocol, trials=alone, table=table, pack=16)
    assert gpu.packed_s == pytest.approx(gpu.unpacked_s) == pytest.approx(6 * 12 * 4.0 / 1e3)
    (packed, _) = estimate(protocol, trials=cnn, table=table, pack=16)
    assert packed.packed_s == pytest.approx(2 * 12 * 8.0 / 1e3)  # two packs of three
    # A protocol's own trial function has no packed form: the runner packs none of it.
    own = protocol.model_copy(update={"trial": "mylab.train:run"})
    (gpu, _) = estimate(own, trials=cnn, table=table, pack=16)
    assert gpu.packed_s == pytest.approx(gpu.unpacked_s)


def test_steps_follow_the_trial_settings(table: Path):
    text = PROTOCOL.replace("epochs: 2", "steps: 100")
    (gpu, _) = estimate(parse_protocol(text, known=study.known_names()), table=table)
    assert gpu.unpacked_s == pytest.approx(6 * 100 * 4.0 / 1e3)


def test_a_network_or_input_missing_from_the_table_is_not_guessed(table: Path):
    rows = read_table(table)
    assert step_ms(rows, "cnn", (3, 32, 32), 32) is None  # another input size
    assert step_ms(rows, "vgg11", (3, 16, 16), 32) is None
    assert step_ms([r for r in rows if r.pack > 1], "cnn", (3, 16, 16), 32) is None
    assert step_ms(rows, "cnn", (3, 16, 16), 32, pack=8) == pytest.approx(20.0)  # 10 x 8/4


def test_durations():
    assert duration(41616) == "11.6 GPU-h"
    assert duration(150, "CPU") == "2.5 CPU-min"
    assert duration(22.7) == "22.7 GPU-s"


def test_the_committed_table_reads_and_covers_the_gpu_protocol():
    rows = read_table(TABLE)
    assert {"H100", "H200"} <= {r.device for r in rows}
    assert any(r.kind == "cpu" for r in rows)
    protocol = study.load("protocols/quick.yaml")
    h100 = next(e for e in estimate(protocol) if e.device == "H100")
    assert h100.unpacked_s > 0 and dict(h100.missing) == {"mlp": 30}


def test_plan_prints_a_line_per_device_within_100_columns():
    text = study.plan(study.load("protocols/quick.yaml")).describe()
    assert "quick: 60 trials, ≈ " in text and "on H100" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert len(read_table(TABLE)) and text.count("quick: 60 trials") == len(
        {r.device for r in read_table(TABLE)}
    )


@pytest.mark.parametrize(
    "overrides",
    [{}, {"imbalance_ratio": 10.0, "imbalance_profile": "step"}, {"steps": 7, "epochs": 0}],
)
def test_the_cost_model_counts_the_steps_a_trial_trains(make_trial, overrides):
    """cost.trial_steps is computed without torch; it must agree with the training loop."""
    from bnstudy.execution.cost import trial_steps
    from bnstudy.training.train import run_trial

    trial = make_trial(**{"epochs": 1, **overrides})
    assert trial_steps(trial, 10) == run_trial(trial).metrics["steps_run"]
