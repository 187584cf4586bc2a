#!/usr/bin/env python3
"""Benchmark stardump against the tools a user would otherwise reach for.

Runs the test unikernel under QEMU (TCG) with 64 MiB of RAM, halted in its
exception handler, and measures, side by side on the same guest:

- `stardump-capture` (wall time, pause time, file size) against QEMU's own
  `dump-guest-memory` (paging=false) over QMP, and against `zstd -3` of that
  dump, the cheapest way to make it small;
- `stardump bt` on the snapshot against `gdb -batch` running `thread apply
  all bt` on the live guest.

Figures are medians over --runs runs and are reported as ratios, because
absolute times depend on the machine. Only processes this script started are
ended, by PID, and QEMU runs under `timeout`.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(command, **kwargs):
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start, result


class Qmp:
    """A minimal QMP client over a Unix socket: enough for one command."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.reader = self.sock.makefile("r")
        self.reader.readline()  # greeting
        self.execute("qmp_capabilities")

    def execute(self, command, arguments=None):
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = json.loads(self.reader.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command} failed: {reply['error']}")


def start_guest(image, work, memory_mib):
    port = free_port()
    qmp_path = os.path.join(work, "qmp.sock")
    serial = os.path.join(work, "serial.log")
    process = subprocess.Popen(
        ["timeout", "-s", "KILL", "600", "qemu-system-x86_64", "-machine", "microvm",
         "-accel", "tcg", "-cpu", "qemu64,+pdpe1gb", "-m", f"{memory_mib}M", "-smp", "2",
         "-display", "none", "-monitor", "none", "-no-reboot",
         "-serial", f"file:{serial}", "-qmp", f"unix:{qmp_path},server=on,wait=off",
         "-kernel", image, "-append", "mode=ud2", "-gdb", f"tcp:127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(serial, "rb") as log:
                if b"halted in crash_halt" in log.read():
                    return process, port, qmp_path
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    process.terminate()
    process.wait()
    sys.exit("the guest did not reach crash_halt within 60 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    parser.add_argument("--memory-mib", type=int, default=64, help="guest RAM in MiB")
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "stardump", "-p", "stardump-capture"],
                   cwd=ROOT, check=True)
    capture = os.path.join(ROOT, "target/release/stardump-capture")
    stardump = os.path.join(ROOT, "target/release/stardump")

    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tests/unikernel"), f"OUT={work}/build"],
                       check=True)
        image = os.path.join(work, "build/unikernel-O2-fp.elf")
        process, port, qmp_path = start_guest(image, work, args.memory_mib)
        try:
            snapshot = os.path.join(work, "guest.sdump")
            capture_times, pause_times = [], []
            for _ in range(args.runs):
                elapsed, result = timed([capture, f"gdb:127.0.0.1:{port}", "-o", snapshot, "--json"])
                summary = json.loads(result.stdout)
                capture_times.append(elapsed)
                pause_times.append(summary["pause_time_us"] / 1e6)
            snapshot_bytes = os.path.getsize(snapshot)

            qmp = Qmp(qmp_path)
            dump = os.path.join(work, "guest.qemu-dump")
            dump_times = []
            for _ in range(args.runs):
                if os.path.exists(dump):
                    os.unlink(dump)
                start = time.perf_counter()
                qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{dump}"})
                dump_times.append(time.perf_counter() - start)
            dump_bytes = os.path.getsize(dump)
            zstd_times = []
            for _ in range(args.runs):
                elapsed, _ = timed(["zstd", "-3", "-q", "-f", dump, "-o", dump + ".zst"])
                zstd_times.append(elapsed)
            zstd_bytes = os.path.getsize(dump + ".zst")

            gdb_times = []
            for _ in range(args.runs):
                elapsed, _ = timed(["gdb", "-batch", "-nx", "-ex", "set pagination off",
                                    "-ex", f"target remote 127.0.0.1:{port}",
                                    "-ex", "thread apply all bt", "-ex", "disconnect", image])
                gdb_times.append(elapsed)
        finally:
            process.terminate()
            process.wait()

        bt_times = []
        for _ in range(args.runs):
            elapsed, _ = timed([stardump, "bt", snapshot, "--image", image])
            bt_times.append(elapsed)

    median = statistics.median
    guest_bytes = args.memory_mib << 20
    rows = [
        ("stardump-capture wall time", median(capture_times), None),
        ("  pause time", median(pause_times), None),
        ("QEMU dump-guest-memory wall time", median(dump_times), None),
        ("zstd -3 of that dump", median(zstd_times), None),
        ("stardump bt on the snapshot", median(bt_times), None),
        ("gdb -batch bt on the live guest", median(gdb_times), None),
    ]
    print(f"guest: {args.memory_mib} MiB, 2 vCPUs, QEMU TCG; medians of {args.runs} runs")
    for name, seconds, _ in rows:
        print(f"{name:36} {seconds * 1000:10.1f} ms")
    print(f"{'snapshot size':36} {snapshot_bytes:10d} bytes ({guest_bytes / snapshot_bytes:.0f}:1 of guest RAM)")
    print(f"{'QEMU dump size':36} {dump_bytes:10d} bytes")
    print(f"{'QEMU dump + zstd -3 size':36} {zstd_bytes:10d} bytes")
    print("ratios:")
    print(f"  capture time / (dump-guest-memory + zstd) time: "
          f"{median(capture_times) / (median(dump_times) + median(zstd_times)):.2f}")
    print(f"  snapshot size / (dump + zstd) size: {snapshot_bytes / zstd_bytes:.2f}")
    print(f"  stardump bt time / gdb bt time: {median(bt_times) / median(gdb_times):.2f}")


if __name__ == "__main__":
    main()
