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

Every tree but one without ``--max-publish-rate`` (``--old NAME``, default
the first) runs with the publish-rate limits off, as the harness publishes
far past their defaults. ``--out`` keeps run_all.sh's logs; ``--report DIR``
reads an earlier ``--out`` again.
"""
from __future__ import annotations

import argparse
import os
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


def read_rounds(out: str) -> list[dict[tuple[str, str], float]]:
    """Server CPU seconds per million deliveries, by (workload, system), per round."""
    rounds = []
    logs = sorted(Path(out).glob("r*.log"), key=lambda p: int(p.stem[1:]))
    for log in logs:
        workload, figures = None, {}
        for line in log.read_text().splitlines():
            heading = re.match(r"## (\w+)", line)
            if heading:
                workload = heading.group(1)
            elif workload and line.startswith("| ") and not line.startswith("| system"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                try:
                    figures[(workload, cells[0])] = float(cells[3])
                except (IndexError, ValueError):
                    pass
        rounds.append(figures)
    return rounds


def report(rounds: list[dict[tuple[str, str], float]], first: str) -> None:
    """Per system: the median of its figures, and of each round's first/it ratio."""
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    figures: dict[tuple[str, str], list[float]] = defaultdict(list)
    for figure in rounds:
        for (workload, system), value in figure.items():
            figures[(workload, system)].append(value)
            base = (workload, system.split("-")[0] + "-" + first)
            if base in figure:
                ratios[(workload, system)].append(figure[base] / value)
    print("| workload | system | rounds | CPU s/M deliveries (median) | "
          f"{first} / it, per round (median) | mean |")
    print("|---|---|---|---|---|---|")
    for key in sorted(figures):
        r = ratios.get(key) or [float("nan")]
        print(f"| {key[0]} | {key[1]} | {len(figures[key])} | "
              f"{statistics.median(figures[key]):.3f} | "
              f"{statistics.median(r):.3f} | {statistics.mean(r):.3f} |")


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
        rounds = read_rounds(args.report)
        first = args.trees[0] if args.trees else "before"
        report(rounds, first.split("=")[0])
        return
    if len(args.trees) < 2:
        sys.exit("name at least two trees: NAME=PATH NAME=PATH")
    trees = [(spec.split("=", 1)[0], spec.split("=", 1)[1]) for spec in args.trees]
    args.old = args.old or trees[0][0]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for number in range(1, args.rounds + 1):
        run_round(args, trees, number)
        print(f"round {number} of {args.rounds} done", file=sys.stderr)
    report(read_rounds(args.out), trees[0][0])


if __name__ == "__main__":
    main()
