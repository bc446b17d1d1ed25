"""How often a directional claim about the average ("higher by more than the margin") is
called supported or contradicted, against the true mean effect, by simulation through the
hypothesis code itself (``stats.hypotheses.evaluate_hypotheses`` on tables from
``stats.simulate.simulate_results``).

Each replicate simulates an 8-condition table (2 datasets x 2 imbalance ratios x 2 learning
rates, ``grid_protocol``; 6 seeds, within-arm residual SD 1 pp, condition effects
N(mean, tau^2) with tau 0.3 pp) and judges one pre-registered hypothesis,
``expect: higher, margin: 1``. With the true mean on the margin, "supported" is a false
claim and must stay at or below alpha / 2 = 2.5% (the test is two-sided at 5%); with the
true mean at 0 "supported" must not happen and "contradicted" (the CI wholly short of +1)
is the right call. Before 2026-12-07 the margin took no part in an average claim: the
"before" column is the same replicates tested against 0.

Run: python benchmarks/margin_claim_rate.py [replicates] [workers]
(output: margin_claim_rate.txt)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from bnstudy.execution.devices import cpu_model
from bnstudy.spec.design import HypothesisDesign
from bnstudy.stats.hypotheses import evaluate_hypotheses
from bnstudy.stats.simulate import grid_protocol, simulate_results

MARGIN = 1.0
TAU = 0.3
GRID = dict(datasets=("d0", "d1"), ratios=(1.0, 100.0), lrs=(0.01, 0.1))
MEANS = (0.0, 0.5, 1.0, 1.5, 2.0)


def hypothesis(margin: float | None) -> HypothesisDesign:
    return HypothesisDesign(
        id="h", claim="higher by more than the margin", metric="balanced_acc", variant="bn",
        control="plain", where={}, expect="higher", margin=margin, estimand="fixed",
        sha256="h",
    )  # fmt: skip


def replicate(args: tuple[float, int]) -> tuple[str, str]:
    """The verdict with the margin (now) and against 0 (before), on one simulated table."""
    mean, seed = args
    protocol = grid_protocol(6, **GRID)
    table = simulate_results(protocol, effect=mean, tau=TAU, sigma=1.0, seed=seed)
    now = evaluate_hypotheses(table, protocol.design(), [hypothesis(MARGIN)], {"h"})
    # margin None on a metric with one would be resolved by the protocol; here it is the
    # old behaviour's threshold, 0
    before = evaluate_hypotheses(table, protocol.design(), [hypothesis(None)], {"h"})
    return now["verdict"].iloc[0], before["verdict"].iloc[0]


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1
    start = time.perf_counter()
    lines = [
        f"expect: higher, margin {MARGIN:g} pp; {reps} replicates per true mean; 8 conditions,"
        f" 6 seeds, residual SD 1 pp, tau {TAU:g} pp.",
        "now: tested against the margin; before: against 0 (the old rule for an average claim).",
        "",
        f"{'true mean':>9}  {'now: supported':>14}  {'now: contradicted':>17}"
        f"  {'before: supported':>17}",
    ]
    with ProcessPoolExecutor(workers) as pool:
        for mean in MEANS:
            jobs = [(mean, 1000 * i + int(10 * mean)) for i in range(reps)]
            out = list(pool.map(replicate, jobs))
            now_s = sum(n == "supported" for n, _ in out) / reps
            now_c = sum(n == "contradicted" for n, _ in out) / reps
            before_s = sum(b == "supported" for _, b in out) / reps
            lines.append(f"{mean:>9.1f}  {now_s:>14.3f}  {now_c:>17.3f}  {before_s:>17.3f}")
    took = time.perf_counter() - start
    lines += ["", f"({took:.0f} s on {workers} worker processes; {cpu_model()}, "
              f"Python {platform.python_version()})"]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(os.path.dirname(__file__), "margin_claim_rate.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
