#!/usr/bin/env python3
"""Benchmark `stardump bt` against gdb's `thread apply all bt` on Linux cores.

Builds the Linux fixture programs (tests/fixtures/linux) into a temporary
directory, makes a kernel core and a gdb `gcore` of a few of them, and runs
side by side on each core:

- `stardump bt CORE` against `gdb -batch -nx -ex 'thread apply all bt' PROG CORE`;
- `stardump bt --full CORE` against `... -ex 'thread apply all bt full' ...`.

Each command runs --runs times with its output sent to /dev/null. The
script prints the median wall time, the peak RSS (GNU time's %M, the
ru_maxrss of the command's process), and the ratios of stardump's figures
to gdb's. The peak RSS comes from /usr/bin/time, not from this script's
own wait4, because a child forked from Python starts with Python's RSS
(about 14 MiB), which would hide anything smaller.
Absolute figures depend on the machine and on the page cache, so compare
ratios. The first run of each command also warms the page cache and is
not counted when --runs is above 1.

Usage:
    scripts/bench-analyze.py [--runs N] [--stardump PATH]
                             [--fixtures threads-O2-nofp throw-O2-nofp ...]

Build the analyzer first (`cargo build --release -p stardump`). The kernel
cores need a `kernel.core_pattern` that writes `core` files into the
working directory, such as `core`. Needs gcc, g++, make and gdb. Only
processes this script started are ended, by PID, and each is bounded by a
timeout.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES_DIR = os.path.join(ROOT, "tests", "fixtures", "linux")
DEFAULT_FIXTURES = ["threads-O2-nofp", "throw-O2-nofp", "deep-O2-nofp"]
TIMEOUT_SECONDS = 120
# GNU time (Debian package time), which reports its child's peak RSS.
GNU_TIME = "/usr/bin/time"


def fail(message):
    print(f"bench-analyze: {message}", file=sys.stderr)
    sys.exit(1)


def run_checked(command, **kwargs):
    """Run `command` to completion under the timeout and return its result."""
    try:
        return subprocess.run(command, capture_output=True, timeout=TIMEOUT_SECONDS, **kwargs)
    except subprocess.TimeoutExpired:
        fail(f"{command[0]} timed out after {TIMEOUT_SECONDS} s: {' '.join(command)}")


def build_corpus(out_dir, fixtures):
    targets = [os.path.join(out_dir, name) for name in fixtures]
    result = run_checked(["make", "-C", FIXTURES_DIR, f"OUT={out_dir}"] + targets)
    if result.returncode != 0:
        fail(f"building the fixtures failed:\n{result.stdout.decode()}{result.stderr.decode()}")


def kernel_core(program, run_dir):
    """Run `program` with RLIMIT_CORE raised and return the core it leaves."""
    os.makedirs(run_dir)
    script = f"ulimit -c unlimited && exec '{program}'"
    result = run_checked(["timeout", "-s", "KILL", str(TIMEOUT_SECONDS), "sh", "-c", script], cwd=run_dir)
    if result.returncode == 0:
        fail(f"{program} did not crash")
    cores = [name for name in os.listdir(run_dir) if name.startswith("core")]
    if not cores:
        fail(f"{program} crashed but left no core in {run_dir}; set kernel.core_pattern to `core`")
    return os.path.join(run_dir, cores[0])


def gdb_core(program, core):
    """Run `program` under gdb to its fatal signal and write `core` with gcore."""
    command = ["timeout", "-s", "KILL", str(TIMEOUT_SECONDS), "gdb", "-batch", "-nx",
               "-ex", "set startup-with-shell off", "-ex", "handle SIGUSR1 nostop noprint pass",
               "-ex", "run", "-ex", f"gcore {core}", "-ex", "kill", program]
    result = run_checked(command)
    if not os.path.isfile(core):
        fail(f"gdb's gcore wrote no {core}:\n{result.stdout.decode()}{result.stderr.decode()}")
    return core


def measure(command):
    """Run `command` once and return its wall time in seconds and peak RSS in KiB."""
    rss_file = tempfile.NamedTemporaryFile(prefix="bench-analyze-rss-")
    command_line = command
    command = [GNU_TIME, "-f", "%M", "-o", rss_file.name] + command
    start = time.perf_counter()
    # A session of its own, so a timeout ends GNU time and the command.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    timed_out = threading.Event()

    def kill_child():
        timed_out.set()
        # The child has not been waited for, so its PID still names its
        # process group.
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(TIMEOUT_SECONDS, kill_child)
    timer.start()
    stderr = process.stderr.read()
    _, status, _ = os.wait4(process.pid, 0)
    timer.cancel()
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        fail(f"timed out after {TIMEOUT_SECONDS} s: {' '.join(command_line)}")
    # stardump exits with 2 when a backtrace or a variable is incomplete,
    # and still prints every thread. Exit status 1 is an error. GNU time
    # passes the command's exit status on.
    if process.returncode not in (0, 2):
        fail(f"exit status {process.returncode}: {' '.join(command_line)}\n{stderr.decode(errors='replace')}")
    peak_rss_kib = int(rss_file.read().split()[-1])
    return elapsed, peak_rss_kib


def median_of(command, runs):
    samples = [measure(command) for _ in range(runs + (1 if runs > 1 else 0))]
    if runs > 1:
        samples = samples[1:]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each command (default 5)")
    parser.add_argument("--stardump", default=os.path.join(ROOT, "target", "release", "stardump"),
                        help="the analyzer binary (default target/release/stardump)")
    parser.add_argument("--fixtures", nargs="+", default=DEFAULT_FIXTURES,
                        help=f"fixture programs to crash (default {' '.join(DEFAULT_FIXTURES)})")
    args = parser.parse_args()
    if args.runs < 1:
        fail("--runs must be at least 1")
    if not os.access(args.stardump, os.X_OK):
        fail(f"{args.stardump} not found: run `cargo build --release -p stardump` first")
    if not os.access(GNU_TIME, os.X_OK):
        fail(f"{GNU_TIME} not found: install the Debian package time")
    with open("/proc/sys/kernel/core_pattern") as pattern_file:
        pattern = pattern_file.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        fail(f"kernel.core_pattern is {pattern!r}: set it to `core` so cores land in the working directory")

    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as temp:
        out_dir = os.path.join(temp, "build")
        build_corpus(out_dir, args.fixtures)
        cores = []
        for name in args.fixtures:
            program = os.path.join(out_dir, name)
            cores.append((name, "kernel", program, kernel_core(program, os.path.join(temp, f"run-{name}"))))
            cores.append((name, "gcore", program, gdb_core(program, os.path.join(temp, f"{name}.gcore"))))

        header = (f"{'fixture':<18} {'core':<6} {'command':<8} {'stardump s':>10} {'gdb s':>7} {'ratio':>6}"
                  f" {'stardump MiB':>12} {'gdb MiB':>8} {'ratio':>6}")
        print(f"median of {args.runs} runs; peak RSS from GNU time's %M")
        print(header)
        print("-" * len(header))
        time_ratios, rss_ratios = [], []
        for name, kind, program, core in cores:
            for label, stardump_args, gdb_command in [("bt", ["bt"], "thread apply all bt"),
                                                      ("bt full", ["bt", "--full"], "thread apply all bt full")]:
                ours = median_of([args.stardump] + stardump_args + [core], args.runs)
                theirs = median_of(["gdb", "-batch", "-nx", "-ex", gdb_command, program, core], args.runs)
                time_ratio, rss_ratio = ours[0] / theirs[0], ours[1] / theirs[1]
                time_ratios.append(time_ratio)
                rss_ratios.append(rss_ratio)
                print(f"{name:<18} {kind:<6} {label:<8} {ours[0]:>10.3f} {theirs[0]:>7.3f} {time_ratio:>6.2f}"
                      f" {ours[1] / 1024:>12.1f} {theirs[1] / 1024:>8.1f} {rss_ratio:>6.2f}")
        print(f"geometric mean of the ratios: time {statistics.geometric_mean(time_ratios):.2f},"
              f" peak RSS {statistics.geometric_mean(rss_ratios):.2f}")


if __name__ == "__main__":
    main()
