"""A trial is named, paired and seeded with the standard library alone: workers, table readers
and schedulers import ``bnstudy.spec.trial`` without pydantic, YAML, NumPy or torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("pydantic", "yaml", "numpy", "pandas", "torch")


def test_importing_the_trial_loads_nothing_heavy():
    code = textwrap.dedent(
        f"""
        import sys
        from bnstudy.spec.trial import Trial
        trial = Trial(
            seed=0, architecture="mlp", head="bn", dataset="synthetic", imbalance_ratio=1.0,
            train_per_class=10, epochs=1, batch_size=8, lr=0.05, optimizer="sgd",
            weight_decay=5e-4,
        )
        assert len(trial.trial_id) == 16 and trial.stream_seed("subset") > 0
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
