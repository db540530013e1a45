"""Where a PyPy server spends its JIT-compiled time, by Python source line.

`perf` sees PyPy's machine code only as addresses. With the JIT's own log of
the same run (the traces, their addresses and their code), each sample is
put back on the Python line whose operations it hit. This is how issue 13's
PyPy losses were found (docs/benchmarks.md): one line, ``len()`` of the
payload history let go of, held a third of the JIT samples (a cache miss).

Recipe (the server pinned to CPU 0, the harness's load generator on CPU 1)::

    PYPYLOG=jit-log-opt,jit-backend-addr,jit-backend-dump:/tmp/jit.log \\
      taskset -c 0 .venv-pypy/bin/twistd -n --pidfile= txpubsub --admin none \\
      --port tcp:24000:interface=127.0.0.1 --max-publish-rate 0 --max-publish-bytes 0 &
    # warm it up with one loadgen run, then record another:
    perf record -e cpu-clock -F 2000 -p $SERVER_PID -o /tmp/perf.data &
    taskset -c 1 python ../shared/bench/loadgen.py run --adapter txpubsub \\
      --port 24000 --pid $SERVER_PID --workload channels
    kill -INT %perf
    python bench/pypy_jitmap.py /tmp/jit.log /tmp/perf.data

``perf report --sort dso`` first says how much is JIT code at all; the rest is
libpypy (the GC, mostly: ``PYPYLOG=gc-minor,gc-collect-step`` gives its time
and the bytes surviving each minor collection) and the kernel.
"""
from __future__ import annotations

import bisect
import collections
import re
import subprocess
import sys

_OP = re.compile(r"\+(\d+): (.*)")
_MERGE = re.compile(r"debug_merge_point\(\d+, \d+, '([^']*)'")
_WHERE = re.compile(r"([^;]+);(.*?):(\d+)-(\d+)")


def code_blocks(log: str) -> list[tuple[int, int]]:
    """(start, end) of each block of machine code the backend dumped."""
    ends: dict[int, int] = {}
    for m in re.finditer(r"CODE_DUMP @([0-9a-f]+) \+(\d+)\s+([0-9A-F]+)", log):
        size = len(m.group(3)) // 2
        if size >= 64:  # smaller dumps are patches inside a block
            start = int(m.group(1), 16)
            ends[start] = max(ends.get(start, 0), start + int(m.group(2)) + size)
    return sorted(ends.items())


def traces(log: str) -> tuple[list[tuple[int, int, str]], dict[str, list[tuple[int, str, str]]]]:
    """Each loop or bridge's address range, and its operations as (offset
    in its block, source line, operation)."""
    ranges = [
        (int(m.group(3), 16), int(m.group(4), 16), m.group(1))
        for m in re.finditer(r"^(Loop \d+|bridge out of Guard (0x[0-9a-f]+)).*? has address "
                             r"(0x[0-9a-f]+) to (0x[0-9a-f]+)", log, re.M)
    ]
    listings: dict[str, list[tuple[int, str, str]]] = {}
    for m in re.finditer(r"^# (Loop \d+|bridge out of Guard 0x[0-9a-f]+)[^\n]*\n(.*?)"
                         r"^\+\d+: --end of the loop--", log, re.M | re.S):
        ops: list[tuple[int, str, str]] = []
        where = "(trace entry)"
        for line in m.group(2).splitlines():
            merge = _MERGE.match(line)
            if merge:
                w = _WHERE.match(merge.group(1))
                where = (f"{w.group(1)} {w.group(2).rsplit('/', 1)[-1]}:{w.group(4)}"
                         if w else merge.group(1))
                continue
            op = _OP.match(line)
            if op:
                ops.append((int(op.group(1)), where, op.group(2)[:70]))
        listings.setdefault(m.group(1), ops)
    return ranges, listings


def main(log_path: str, perf_data: str, top: int = 40) -> None:
    with open(log_path) as f:
        log = f.read()
    blocks = code_blocks(log)
    starts = [start for start, _ in blocks]
    ranges, listings = traces(log)
    script = subprocess.run(["perf", "script", "-G", "-i", perf_data, "-F", "ip,dso"],
                            capture_output=True, text=True, check=True).stdout
    by_line: collections.Counter[str] = collections.Counter()
    by_op: collections.Counter[tuple[str, str]] = collections.Counter()
    samples = jit = 0
    for row in script.splitlines():
        if not row.strip():
            continue
        samples += 1
        if "perf-" not in row and "JIT" not in row:
            continue
        jit += 1
        address = int(row.split()[0], 16)
        # A block's code may be freed and reused: the newest trace there wins.
        name = next((n for s, e, n in reversed(ranges) if s <= address < e), None)
        i = bisect.bisect_right(starts, address) - 1
        ops = listings.get(name or "")
        if name is None or i < 0 or not ops:
            by_line["(not in a logged trace)"] += 1
            continue
        k = bisect.bisect_right([o[0] for o in ops], address - starts[i]) - 1
        where, op = ops[k][1:] if k >= 0 else ("(trace entry)", "")
        by_line[where] += 1
        by_op[(where, op)] += 1
    print(f"{samples} samples, {jit} in JIT code")
    for where, n in by_line.most_common(top):
        print(f"{n:6d}  {where}")
    print("hottest operations:")
    for (where, op), n in by_op.most_common(20):
        print(f"{n:6d}  {where} | {op}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
