#!/usr/bin/env python3
"""Two or more source trees of txpubsub in the side-by-side harness, round
after round, each round's order reversed from the last, and the ratio to
the first tree taken within each round (issue 13's "before and after in
one run").

Fresh servers on this machine move by ±5% (CPython) to 2x (PyPy) between
rounds of one run, in step for every system of a round more than across
rounds; a ratio within a round, then the median over many rounds, is what
stays put. Needs ../shared/bench (run_all.sh, set up with setup.sh):

    git worktree add /tmp/before 59e80a9 --detach       # before the seams
    mkdir /tmp/now && git archive HEAD txpubsub twisted | tar -x -C /tmp/now
    python bench/ab_rounds.py --rounds 10 --workloads "fanout channels" \\
        before=/tmp/before now=/tmp/now
    python bench/ab_rounds.py --interpreters pypy ...   # cp, pypy or both (default)

The report gives both of the harness's figures, deliveries/s (its headline)
and server CPU per delivery, as ratios to the first tree (above 1: better),
with a 90% bootstrap interval of each median: on a 2-core machine one round
of PyPy channels moves by +-15%, so 12 rounds still leave +-5%.

Every tree but one without ``--max-publish-rate`` (``--old NAME``, default
the first) runs with the publish-rate limits off, as the harness publishes
far past their defaults. ``--out`` keeps run_all.sh's logs; ``--report DIR``
reads an earlier ``--out`` again.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "run_all.sh"
SERVER = ("-n --pidfile= txpubsub --port tcp:PORT:interface=127.0.0.1:backlog=1024 "
          "--admin none")
VENVS = {"cp": ".venv", "pypy": ".venv-pypy"}


def run_round(args: argparse.Namespace, trees: list[tuple[str, str]], number: int) -> None:
    """One run of run_all.sh with every tree on every interpreter asked for."""
    venvs = os.environ.get("BENCH_VENVS", str(Path.home() / ".cache" / "pubsub-bench"))
    order = trees if number % 2 else trees[::-1]
    systems, targets = [], []
    for name, tree in order:
        flags = "" if name == args.old else " --max-publish-rate 0 --max-publish-bytes 0"
        for interp in args.interpreters.split():
            system = f"{interp}-{name}"
            systems.append(system)
            twistd = f"{venvs}/{VENVS[interp]}/bin/twistd"
            targets += ["--target", system, "--cmd",
                        f"PYTHONPATH={tree} {twistd} {SERVER}{flags} {args.server_args}"]
    log = Path(args.out) / f"r{number}.log"
    command = ["bash", args.harness, "--systems", " ".join(systems), "--workloads",
               args.workloads, "--cwd", "/tmp", "--out", str(Path(args.out) / f"r{number}"),
               *targets]
    with open(log, "w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False,
                       env=dict(os.environ, BENCH_VENVS=venvs))


# The columns of run_all.sh's fanout and channels tables read here, and
# whether more is better.
METRICS = {"deliv/s": True, "srv CPU s/M deliv": False}


def read_rounds(out: str, metric: str = "srv CPU s/M deliv"
                ) -> list[dict[tuple[str, str], float]]:
    """One column of the tables (default: server CPU seconds per million
    deliveries), by (workload, system), per round."""
    rounds = []
    logs = sorted(Path(out).glob("r*.log"), key=lambda p: int(p.stem[1:]))
    for log in logs:
        workload: str | None = None
        column: int | None = None
        figures: dict[tuple[str, str], float] = {}
        for line in log.read_text().splitlines():
            heading = re.match(r"## (\w+)", line)
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if heading:
                workload, column = heading.group(1), None
            elif workload and line.startswith("| system"):
                column = cells.index(metric) if metric in cells else None
            elif workload and column is not None and line.startswith("| "):
                try:
                    figures[(workload, cells[0])] = float(cells[column].replace(",", ""))
                except (IndexError, ValueError):
                    pass
        rounds.append(figures)
    return rounds


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 90% bootstrap interval for the median of ``values``: how far the
    median of this many rounds may be from the true one."""
    pick = random.Random(0)
    medians = sorted(statistics.median(pick.choices(values, k=len(values)))
                     for _ in range(draws))
    return medians[draws // 20], medians[draws - draws // 20 - 1]


def report(out: str, first: str) -> None:
    """Per system and metric: the median of its figures, and of each round's
    ratio of it to the first tree (above 1: better than the first), with
    that median's 90% interval."""
    print(f"| workload | system | metric | rounds | median | it vs {first}, "
          "per round (median) | 90% interval | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for metric, more_is_better in METRICS.items():
        ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
        figures: dict[tuple[str, str], list[float]] = defaultdict(list)
        for figure in read_rounds(out, metric):
            for (workload, system), value in figure.items():
                figures[(workload, system)].append(value)
                base = figure.get((workload, system.split("-")[0] + "-" + first))
                if base:
                    ratios[(workload, system)].append(
                        value / base if more_is_better else base / value)
        for key in sorted(figures):
            r = ratios.get(key) or [float("nan")]
            low, high = median_interval(r)
            middle = statistics.median(figures[key])
            print(f"| {key[0]} | {key[1]} | {metric} | {len(figures[key])} | "
                  f"{middle:,.{3 if middle < 100 else 0}f} | {statistics.median(r):.3f} | "
                  f"{low:.3f}-{high:.3f} | {statistics.mean(r):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", help="NAME=PATH, the first is the reference")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workloads", default="channels")
    parser.add_argument("--interpreters", default="cp pypy")
    parser.add_argument("--old", help="the tree without the publish-rate options "
                        "(default: the first)")
    parser.add_argument("--server-args", default="", help="added to every server")
    parser.add_argument("--out", default="/tmp/ab-rounds")
    parser.add_argument("--harness", default=str(HARNESS), help="run_all.sh (default: %(default)s)")
    parser.add_argument("--report", help="only read the logs of an earlier --out")
    args = parser.parse_args()
    if args.report:
        first = args.trees[0] if args.trees else "before"
        report(args.report, first.split("=")[0])
        return
    if len(args.trees) < 2:
        sys.exit("name at least two trees: NAME=PATH NAME=PATH")
    trees = [(spec.split("=", 1)[0], spec.split("=", 1)[1]) for spec in args.trees]
    args.old = args.old or trees[0][0]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for number in range(1, args.rounds + 1):
        run_round(args, trees, number)
        print(f"round {number} of {args.rounds} done", file=sys.stderr)
    report(args.out, trees[0][0])


if __name__ == "__main__":
    main()
