#!/usr/bin/env python3
"""Benchmark `stardump-capture pid:` against gdb's `gcore` on the same process.

Builds a small C program with gcc that touches --memory-mib MiB of anonymous
memory (the first half random bytes, the second half zeroes written by the
program, so every page is resident) and then waits. Each run captures the
same running process with both tools and measures:

- wall time of the whole command;
- size of the file written;
- peak resident memory of the command (ru_maxrss from wait4, which covers
  gcore's gdb child too);
- for stardump-capture, the time the process stayed stopped, from its
  --json summary (gcore keeps the process stopped for its whole run).

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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t len = (size_t)atol(argv[1]) << 20;
    unsigned char *data = malloc(len);
    if (!data) return 1;
    unsigned long long state = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < len / 2; i += 8) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        memcpy(data + i, &state, 8);
    }
    memset(data + len / 2, 0, len - len / 2);
    printf("ready\n");
    fflush(stdout);
    char c;
    (void)!read(0, &c, 1);
    return 0;
}
"""


def run_with_rusage(command, timeout_s=600):
    """Runs `command` and returns (wall seconds, peak RSS in KiB, stdout)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen(["timeout", "-s", "KILL", str(timeout_s)] + command, stdout=out, stderr=err)
    _, status, rusage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with {process.returncode}:\n{err.read().decode()}")
    return wall, rusage.ru_maxrss, out.read()


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
    parser.add_argument("--runs", type=int, default=5, help="runs per tool; the medians are reported")
    parser.add_argument("--capture", default=os.path.join(ROOT, "target", "release", "stardump-capture"),
                        help="the stardump-capture binary (build it with cargo build --release -p stardump-capture)")
    parser.add_argument("--zstd-level", type=int, default=3, help="stardump-capture's zstd level")
    args = parser.parse_args()

    if not os.access(args.capture, os.X_OK):
        sys.exit(f"{args.capture} not found: run cargo build --release -p stardump-capture")
    gcore = shutil.which("gcore")
    if gcore is None:
        sys.exit("gcore not found: install the Debian package gdb")

    with tempfile.TemporaryDirectory(prefix="bench-ptrace-") as work:
        exe = build_program(work)
        # The program exits when its stdin closes, so it ends with this
        # script even when the script is killed.
        program = subprocess.Popen([exe, str(args.memory_mib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if program.stdout.readline().strip() != b"ready":
                sys.exit("the benchmark program did not start")
            pid = program.pid
            print(f"process {pid}: {args.memory_mib} MiB touched, half random; {args.runs} runs per tool",
                  file=sys.stderr)

            results = {"stardump-capture": [], "gcore": []}
            for run in range(args.runs):
                output = os.path.join(work, "capture.sdump")
                wall, rss, stdout = run_with_rusage(
                    [args.capture, f"pid:{pid}", "-o", output, "--json", "--zstd-level", str(args.zstd_level)])
                summary = json.loads(stdout)
                results["stardump-capture"].append({
                    "wall_s": wall, "size_bytes": os.path.getsize(output), "peak_rss_kib": rss,
                    "stopped_s": summary["pause_time_us"] / 1e6})
                os.remove(output)

                prefix = os.path.join(work, "core")
                wall, rss, _ = run_with_rusage([gcore, "-o", prefix, str(pid)])
                core = f"{prefix}.{pid}"
                results["gcore"].append({
                    "wall_s": wall, "size_bytes": os.path.getsize(core), "peak_rss_kib": rss,
                    "stopped_s": wall})
                os.remove(core)
                print(f"run {run + 1}: stardump-capture {results['stardump-capture'][-1]['wall_s']:.3f} s, "
                      f"gcore {results['gcore'][-1]['wall_s']:.3f} s", file=sys.stderr)
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
        ("peak RSS (MiB)", "peak_rss_kib", 1 / 1024),
    ]
    print(f"{'median of ' + str(args.runs) + ' runs':<22} {'stardump-capture':>17} {'gcore':>10} {'ratio':>8}")
    for label, key, scale in rows:
        ours = median("stardump-capture", key)
        theirs = median("gcore", key)
        ratio = ours / theirs if theirs else float("nan")
        print(f"{label:<22} {ours * scale:>17.3f} {theirs * scale:>10.3f} {ratio:>8.3f}")


if __name__ == "__main__":
    main()
