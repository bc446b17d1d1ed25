"""Regenerate every figure the README quotes, on this machine, and print them as Markdown.

    python benchmarks/readme_figures.py              # quick study + analysis speed
    python benchmarks/readme_figures.py --heads      # also the 270-trial heads study (~4 min)

Each study runs from scratch in a temporary directory (nothing in data/ is touched), through
the installed ``bnstudy`` command, exactly as a user would run it. The trained numbers depend
on the CPU model (floating-point kernels differ), so the script prints the machine first:
compare a README figure with the output of this script on the machine it names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def run_study(protocol: str) -> dict[str, str | float]:
    """``bnstudy run`` on a shipped protocol in a fresh directory; wall time and headline."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "protocols").mkdir()
        shutil.copy(ROOT / "protocols" / f"{protocol}.yaml", work / "protocols")
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "bnstudy", "run", f"protocols/{protocol}.yaml", "-q"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        wall_s = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"bnstudy run {protocol} exited {out.returncode}:\n{out.stderr}")
        summary = next(line for line in out.stdout.splitlines() if " trials: " in line)
        headline = out.stdout.strip().splitlines()[-1]
        training_s = float(re.search(r"in ([\d.]+) s", summary).group(1))
        return dict(summary=summary, headline=headline, wall_s=wall_s, training_s=training_s)


def analysis_speed() -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_analyze.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", action="store_true", help="also run protocols/heads.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args()

    figures: dict[str, object] = {"machine": machine()}
    figures["quick"] = run_study("quick")
    if args.heads:
        figures["heads"] = run_study("heads")
    figures["analysis_speed"] = analysis_speed()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"Machine: {figures['machine']}\n")
    for name in ("quick", "heads"):
        if name in figures:
            f = figures[name]
            print(f"## protocols/{name}.yaml")
            print(f"- `bnstudy run protocols/{name}.yaml`: {f['wall_s']:.1f} s wall "
                  f"({f['training_s']:.1f} s training)")  # fmt: skip
            print(f"- {f['summary']}")
            print(f"- headline: {f['headline']}\n")
    print("## bnstudy.stats.analyze speed (benchmarks/bench_analyze.py)\n")
    print(figures["analysis_speed"])


if __name__ == "__main__":
    main()
