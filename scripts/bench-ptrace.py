#!/usr/bin/env python3
"""Benchmark `stardump-capture pid:` against gdb's `gcore` on the same process.

Builds a small C program with gcc that touches --memory-mib MiB of anonymous
memory (the first --nonzero-fraction of it random bytes, the rest zeroes
written by the program, so every page is resident) and then waits. Each run
captures the same running process with both tools and measures:

- wall time of the whole command;
- size of the file written;
- peak resident memory, two ways: the peak RSS of the largest single process
  of the command (GNU time's %M: ru_maxrss, which covers gcore's gdb child
  too but never adds processes together), and the peak of the RSS summed over the
  command's process tree, sampled from /proc every 10 ms (a shorter peak can
  be missed). Neither counts the page cache of the file being written;
- for stardump-capture, the time the process stayed stopped, from its
  --json summary (gcore keeps the process stopped for its whole run).

stardump-capture holds up to --memory-budget of non-zero pages in memory
and spills the rest to an unnamed file next to the snapshot until it is
written, so its peak grows with the non-zero fraction up to the budget: run
with --nonzero-fraction 1.0 for the worst case. Give --memory-budget more
than once to compare budgets in the same run, for example
`--memory-budget 64M --memory-budget 1G`.

Figures are medians over --runs runs, printed with the ratio
stardump-capture / gcore, because absolute values depend on the machine.
Only processes this script started are ended, by PID, and every command
runs under `timeout`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GNU time (Debian package time), which reports its child's peak RSS.
GNU_TIME = "/usr/bin/time"

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t len = (size_t)atol(argv[1]) << 20;
    /* argv[2]: the random part, in millionths of len, rounded down to 8 bytes. */
    size_t random_len = (size_t)((double)len * atol(argv[2]) / 1e6) / 8 * 8;
    unsigned char *data = malloc(len);
    if (!data) return 1;
    unsigned long long state = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < random_len; i += 8) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        memcpy(data + i, &state, 8);
    }
    memset(data + random_len, 0, len - random_len);
    printf("ready\n");
    fflush(stdout);
    char c;
    (void)!read(0, &c, 1);
    return 0;
}
"""


def process_tree_rss_kib(root):
    """Returns the summed VmRSS, in KiB, of `root` and all its descendants."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so the fields
        # after it are split from the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        parents[int(name)] = int(fields[1])
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as file:
                for line in file:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process tree every 10 ms until stopped."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.peak_kib = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, process_tree_rss_kib(self.root))
            self.done.wait(0.01)


def run_with_rusage(command, timeout_s=600):
    """Runs `command` and returns (wall seconds, peak RSS of its largest
    process in KiB, sampled peak RSS of its process tree in KiB, stdout).

    The largest process's peak comes from GNU time rather than from this
    script's wait4: a child forked from Python starts with Python's RSS
    (about 14 MiB), which ru_maxrss keeps even after the exec."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    rss_file = tempfile.NamedTemporaryFile(prefix="bench-ptrace-rss-")
    start = time.perf_counter()
    process = subprocess.Popen(
        ["timeout", "-s", "KILL", str(timeout_s), GNU_TIME, "-f", "%M", "-o", rss_file.name] + command,
        stdout=out, stderr=err)
    sampler = TreeRssSampler(process.pid)
    sampler.start()
    _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with {process.returncode}:\n{err.read().decode()}")
    return wall, int(rss_file.read().split()[-1]), sampler.peak_kib, out.read()


def build_program(work):
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("gcc not found: install the Debian package gcc")
    source = os.path.join(work, "touch.c")
    with open(source, "w") as file:
        file.write(PROGRAM)
    exe = os.path.join(work, "touch")
    subprocess.run([gcc, "-O2", "-o", exe, source], check=True)
    return exe


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-mib", type=int, default=300, help="memory the process touches, in MiB")
    parser.add_argument("--nonzero-fraction", type=float, default=0.5,
                        help="fraction of the touched memory filled with random bytes, from 0 to 1; the rest is zeroes")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool; the medians are reported")
    parser.add_argument("--capture", default=os.path.join(ROOT, "target", "release", "stardump-capture"),
                        help="the stardump-capture binary (build it with cargo build --release -p stardump-capture)")
    parser.add_argument("--zstd-level", type=int, default=3, help="stardump-capture's zstd level")
    parser.add_argument("--memory-budget", action="append",
                        help="stardump-capture's --memory-budget (default: its own default); repeatable")
    args = parser.parse_args()
    budgets = args.memory_budget or [None]
    tools = [f"budget {budget}" if budget else "stardump-capture" for budget in budgets]
    if not 0.0 <= args.nonzero_fraction <= 1.0:
        sys.exit(f"invalid --nonzero-fraction {args.nonzero_fraction}: expected a number from 0 to 1")

    if not os.access(args.capture, os.X_OK):
        sys.exit(f"{args.capture} not found: run cargo build --release -p stardump-capture")
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} not found: install the Debian package time")
    gcore = shutil.which("gcore")
    if gcore is None:
        sys.exit("gcore not found: install the Debian package gdb")

    with tempfile.TemporaryDirectory(prefix="bench-ptrace-") as work:
        exe = build_program(work)
        # The program exits when its stdin closes, so it ends with this
        # script even when the script is killed.
        program = subprocess.Popen([exe, str(args.memory_mib), str(int(args.nonzero_fraction * 1e6))], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if program.stdout.readline().strip() != b"ready":
                sys.exit("the benchmark program did not start")
            pid = program.pid
            print(f"process {pid}: {args.memory_mib} MiB touched, {args.nonzero_fraction:.0%} random; "
                  f"{args.runs} runs per tool", file=sys.stderr)

            results = {tool: [] for tool in tools + ["gcore"]}
            for run in range(args.runs):
                for tool, budget in zip(tools, budgets):
                    output = os.path.join(work, "capture.sdump")
                    command = [args.capture, f"pid:{pid}", "-o", output, "--json", "--zstd-level", str(args.zstd_level)]
                    if budget:
                        command += ["--memory-budget", budget]
                    wall, rss, tree_rss, stdout = run_with_rusage(command)
                    summary = json.loads(stdout)
                    results[tool].append({
                        "wall_s": wall, "size_bytes": os.path.getsize(output), "peak_rss_kib": rss,
                        "tree_rss_kib": tree_rss, "stopped_s": summary["pause_time_us"] / 1e6})
                    os.remove(output)

                prefix = os.path.join(work, "core")
                wall, rss, tree_rss, _ = run_with_rusage([gcore, "-o", prefix, str(pid)])
                core = f"{prefix}.{pid}"
                results["gcore"].append({
                    "wall_s": wall, "size_bytes": os.path.getsize(core), "peak_rss_kib": rss,
                    "tree_rss_kib": tree_rss, "stopped_s": wall})
                os.remove(core)
                times = ", ".join(f"{tool} {results[tool][-1]['wall_s']:.3f} s" for tool in tools + ["gcore"])
                print(f"run {run + 1}: {times}", file=sys.stderr)
        finally:
            if program.poll() is None:
                program.stdin.write(b"x")
                program.stdin.close()
                try:
                    program.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    program.kill()
                    program.wait()

    def median(tool, key):
        return statistics.median(result[key] for result in results[tool])

    rows = [
        ("wall time (s)", "wall_s", 1),
        ("process stopped (s)", "stopped_s", 1),
        ("file size (MiB)", "size_bytes", 1 / (1024 * 1024)),
        ("peak RSS, largest (MiB)", "peak_rss_kib", 1 / 1024),
        ("peak RSS, tree (MiB)", "tree_rss_kib", 1 / 1024),
    ]
    print(f"{args.memory_mib} MiB touched, {args.nonzero_fraction:.0%} non-zero")
    header = f"{'median of ' + str(args.runs) + ' runs':<24}"
    header += "".join(f" {tool:>17} {'ratio':>6}" for tool in tools)
    print(header + f" {'gcore':>10}")
    for label, key, scale in rows:
        theirs = median("gcore", key)
        line = f"{label:<24}"
        for tool in tools:
            ours = median(tool, key)
            ratio = ours / theirs if theirs else float("nan")
            line += f" {ours * scale:>17.3f} {ratio:>6.2f}"
        print(line + f" {theirs * scale:>10.3f}")
    print("ratio: stardump-capture / gcore")


if __name__ == "__main__":
    main()
