#!/usr/bin/env python3
"""Check stardump's backtraces of a Xen lab run.

For every guest of the run, `stardump bt --json` must
- unwind the snapshot that stardump-capture wrote (NAME.sdump) and the
  `xl dump-core` file (NAME.core) completely, to the thread entry point;
- print the same frames (function, file, line) from both files;
- print the frames of the guest's end mode (crash_halt, the trap frame and
  trigger_MODE for a crash, spin_here for spin);
- agree with gdb's backtrace of the vCPU (NAME.gdb-bt.txt, written by
  check-gdb.sh from the dump-core).

A guest paused with `xl pause` before the capture (paused) must still be
paused after it, as dom0 records in timings.tsv. A guest that shuts down
with reason suspend after its crash (suspend) must have been in that state
(the shut-down step) and is checked as a crash.

A guest whose P2M is not published (nop2m) has no dump-core, because
`xl dump-core` cannot write one; its snapshot is still checked.

A guest that shuts down through the hypercall page (hcall) stops in a stub
that has no CFI. gdb cannot unwind out of it, so its frames are not
compared with gdb's; stardump must step out of the stub to crash_halt and
on to thread_start.

A guest that got SIGTERM while its capture held it paused (sigterm) must
have passed dom0's checks: the capture failed, resumed the domain and wrote
nothing, and the domain runs after it.

A PVH guest (pvh-MODE, the QEMU build unikernel-O2-fp.elf, configured
with two vCPUs) has only a snapshot, because the lab does not run
`xl dump-core` on it. `stardump bt` must print no warning and unwind every
captured vCPU completely: vCPU 0 through the frames of its end mode, any
other vCPU in cpu_relax_loop and ap_idle. In a crash mode, vCPU 0's
innermost frames must be crash_halt, trap_handler, the trap frame and
trigger_MODE, in that order, and its outermost frame thread_start.
pvh-hcall crashes like pvh-ud2 but stops in the sched_op stub of the
hypercall page Xen filled for it, which issues vmmcall and has no CFI:
stardump must step out of the stub by its layout (found_by
hypercall-page) to crash_halt.
pvh-preempt crashes like pvh-ud2, and `stardump threads` must also unwind
its cruncher thread, preempted by the timer inside a stub without CFI,
through the interrupt frame to thread_start.

The guests are those with a create step in timings.tsv or a console log.

Usage: check-stardump.py RESULTS_DIR STARDUMP_BINARY
"""

import json
import os
import re
import subprocess
import sys

FRAME = re.compile(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*?\)(?: at (\S+):(\d+))?")


def image_of(results, name):
    """Returns the image a guest ran, as run.sh's plan assigns them."""
    if name.startswith("pvh-"):
        return os.path.join(results, "unikernel-O2-fp.elf")
    variant = "O0-fp" if name.startswith("o0-") else "O2-nofp"
    return os.path.join(results, f"unikernel-xen-pv-{variant}.elf")


def guest_names(results):
    """Returns the guests of the run: each create step of timings.tsv and each console log."""
    names = {entry.removesuffix(".console.log") for entry in os.listdir(results)
             if entry.endswith(".console.log")}
    timings = os.path.join(results, "timings.tsv")
    if os.path.exists(timings):
        with open(timings) as text:
            for line in text.read().splitlines()[1:]:
                fields = line.split("\t")
                if len(fields) >= 2 and fields[1] == "create":
                    names.add(fields[0])
    return sorted(names)


def stardump_bt(stardump, path, image):
    """Runs `stardump bt --json` and returns (exit status, report or None, error)."""
    result = subprocess.run([stardump, "bt", path, "--image", image, "--json"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode not in (0, 2):
        return result.returncode, None, f"stardump bt failed with {result.returncode}: {result.stderr.strip()}"
    return result.returncode, json.loads(result.stdout), None


def thread_frames(thread):
    """Returns a thread's frames as (function, file, line), a trap frame as gdb names it."""
    frames = []
    for frame in thread["frames"]:
        if frame["kind"] == "trap":
            frames.append(("<signal handler called>", None, None))
        else:
            frames.append((frame["function"], frame["file"], frame["line"]))
    return frames


def stardump_frames(stardump, path, image):
    """Runs `stardump bt --json` and returns (frames of vCPU 0, stop reason, warnings)."""
    _, report, error = stardump_bt(stardump, path, image)
    if report is None:
        return None, error, []
    thread = report["threads"][0]
    return thread_frames(thread), thread["stop_reason"], report["warnings"]


def gdb_frames(path):
    """Parses the first thread (the vCPU, LWP 1) of gdb's `thread apply all bt`."""
    with open(path) as text:
        lines = text.read().splitlines()
    frames, in_vcpu = [], False
    for line in lines:
        if line.startswith("Thread "):
            in_vcpu = "(LWP 1)" in line
            continue
        if not in_vcpu:
            continue
        if "<signal handler called>" in line:
            frames.append(("<signal handler called>", None, None))
            continue
        match = FRAME.match(line)
        if match:
            frames.append((match.group(2), match.group(3), int(match.group(4)) if match.group(4) else None))
    return frames


def same_frames(ours, theirs):
    """Compares frames; stardump prints the DWARF file name as gdb does."""
    if len(ours) != len(theirs):
        return False
    for (function, file, line), (their_function, their_file, their_line) in zip(ours, theirs):
        if function != their_function or line != their_line:
            return False
        if file != their_file and not (file or "").endswith("/" + (their_file or "")):
            return False
    return True


def expected_functions(name):
    mode = name.split("-", 1)[1]
    if mode in ("spin", "nop2m", "int3", "paused"):
        return ["spin_here", "worker_main", "thread_start"]
    if mode == "suspend":
        mode = "ud2"
    if mode == "hcall":
        return ["hypercall_page", "crash_halt", "<signal handler called>", "trigger_ud2", "worker_main", "thread_start"]
    return ["crash_halt", "<signal handler called>", f"trigger_{mode}", "worker_main", "thread_start"]


def pvh_expected_functions(name):
    """Returns the functions expected on vCPU 0 of a PVH guest as (innermost, later).

    `innermost` lists the innermost frames in order. `later` lists functions
    that must follow them in order, and its last one is the outermost frame.
    """
    mode = name.split("-", 1)[1]
    # pvh-hcall's crash_halt calls the hypercall stub from an inline
    # function, which is the innermost frame once the stub is stepped out of.
    inlined = ["xen_hvm_hypercall2"] if mode == "hcall" else []
    if mode in ("preempt", "hcall"):
        mode = "ud2"
    if mode == "spin":
        return [], ["spin_here", "worker_main", "thread_start"]
    # The QEMU build's trap handler calls crash_halt, so trap_handler sits
    # between crash_halt and the trap frame.
    innermost = inlined + ["crash_halt", "trap_handler", "<signal handler called>", f"trigger_{mode}"]
    return innermost, ["worker_main", "thread_start"]


def follow_in_order(expected, functions):
    """Returns whether `expected` occurs in `functions` in the same order, not necessarily adjacent."""
    remaining = iter(functions)
    return all(function in remaining for function in expected)


def describe(frames):
    return "\n".join(f"    {function} at {file}:{line}" for function, file, line in frames or [])


def check_pvh(stardump, results, name):
    """Checks a PVH guest's snapshot on every vCPU and returns the failures."""
    snapshot = os.path.join(results, f"{name}.sdump")
    if not os.path.exists(snapshot):
        return [f"{name}: no snapshot: stardump-capture failed (see {name}.capture.log)"]
    status, report, error = stardump_bt(stardump, snapshot, image_of(results, name))
    if report is None:
        return [f"{name}: snapshot: {error}"]

    failures = []
    if status != 0:
        failures.append(f"{name}: stardump bt exited with {status}, not 0: a backtrace is incomplete")
    if report["warnings"]:
        failures.append(f"{name}: stardump bt warned: {' '.join(report['warnings'])}")
    if os.path.exists(os.path.join(results, f"{name}.core")):
        failures.append(f"{name}: the lab ran xl dump-core on a PVH guest, which takes about 10 minutes")

    # The unikernel starts vCPU 1 through the ACPI MADT that Xen gives a PVH
    # domain, so both vCPUs are in the snapshot. vCPU 1 is checked as an AP.
    threads = {thread["vcpu"]: thread for thread in report["threads"]}
    if sorted(threads) != [0, 1]:
        failures.append(f"{name}: the snapshot has vCPUs {sorted(threads)}, expected [0, 1]")
    for vcpu, thread in sorted(threads.items()):
        innermost, later = pvh_expected_functions(name) if vcpu == 0 else ([], ["cpu_relax_loop", "ap_idle"])
        frames = thread_frames(thread)
        if name.endswith("-hcall") and vcpu == 0:
            found_by = [frame["found_by"] for frame in thread["frames"]]
            if frames[:1] != [("hypercall_page", None, None)] or found_by[1:2] != ["hypercall-page"]:
                failures.append(f"{name}: vCPU 0 did not stop in the hypercall page, or stardump did not step "
                                f"out of it by the stub's layout: {found_by}\n{describe(frames)}")
            frames = frames[1:]
        if not thread["complete"] or thread["stop_reason"]:
            failures.append(f"{name}: vCPU {vcpu}: the backtrace is incomplete: {thread['stop_reason']}\n"
                            f"{describe(frames)}")
        present = [function for function, _, _ in frames]
        missing = [function for function in innermost + later if function not in present]
        if missing:
            failures.append(f"{name}: vCPU {vcpu}: the backtrace lacks {missing}:\n{describe(frames)}")
            continue
        if present[:len(innermost)] != innermost:
            failures.append(f"{name}: vCPU {vcpu}: the innermost frames are not {innermost}:\n{describe(frames)}")
        if not follow_in_order(later, present[len(innermost):]):
            failures.append(f"{name}: vCPU {vcpu}: {later} do not follow in this order:\n{describe(frames)}")
        if vcpu == 0 and present[-1] != later[-1]:
            failures.append(f"{name}: vCPU 0: the outermost frame is not {later[-1]}:\n{describe(frames)}")
    return failures


def check_preempted(stardump, results, name):
    """Checks the cruncher thread of a PVH guest run with `preempt` and returns the failures."""
    snapshot = os.path.join(results, f"{name}.sdump")
    result = subprocess.run([stardump, "threads", snapshot, "--image", image_of(results, name), "--json"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return [f"{name}: stardump threads failed with {result.returncode}: {result.stderr.strip()}"]
    threads = [thread for thread in json.loads(result.stdout)["threads"] if thread["name"] == "cruncher"]
    if len(threads) != 1:
        return [f"{name}: stardump threads lists {len(threads)} threads named cruncher, expected 1"]
    cruncher = threads[0]
    frames = thread_frames(cruncher)
    found_by = [frame["found_by"] for frame in cruncher["frames"]]
    failures = []
    if cruncher["state"] != "sleeping" or not cruncher["complete"]:
        failures.append(f"{name}: cruncher is {cruncher['state']}, complete {cruncher['complete']}: "
                        f"{cruncher.get('stop_reason')}\n{describe(frames)}")
    if "interrupt-frame" not in found_by:
        failures.append(f"{name}: no cruncher frame was found by the interrupt frame: {found_by}\n{describe(frames)}")
    present = [function for function, _, _ in frames]
    expected = ["switch_context", "schedule", "<signal handler called>", "cruncher_main", "thread_main", "thread_start"]
    if not follow_in_order(expected, present) or present[-1] != "thread_start":
        failures.append(f"{name}: the cruncher's frames do not follow {expected}:\n{describe(frames)}")
    return failures


def below_spin(frames):
    """Returns the frames below spin_here, or all frames when there is none.

    A spinning guest keeps running between stardump-capture and xl dump-core,
    so its innermost frames (spin_here, or cpu_relax inlined into it) differ
    between the two files; the frames that called spin_here do not.
    """
    functions = [function for function, _, _ in frames]
    if "spin_here" not in functions:
        return frames
    return frames[functions.index("spin_here") + 1:]


def step_status(results, name, step):
    """Returns the exit status dom0 recorded for a guest's step, or None."""
    with open(os.path.join(results, "timings.tsv")) as text:
        for line in text:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 3 and fields[0] == name and fields[1] == step:
                return fields[2]
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    results, stardump = sys.argv[1], sys.argv[2]
    names = guest_names(results)
    failures, checked = [], 0
    for name in names:
        if name.endswith("-exit"):
            continue
        if name.endswith("-suspend") and step_status(results, name, "shut-down") != "0":
            failures.append(f"{name}: step shut-down has status {step_status(results, name, 'shut-down')}, expected 0")
        if name.endswith("-paused"):
            # The capture must undo only its own pause.
            for step in ("xl-pause", "still-paused"):
                if step_status(results, name, step) != "0":
                    failures.append(f"{name}: step {step} has status {step_status(results, name, step)}, expected 0")
        if name.endswith("-sigterm"):
            for step in ("sigterm-while-paused", "running-after-sigterm"):
                if step_status(results, name, step) != "0":
                    failures.append(f"{name}: step {step} has status {step_status(results, name, step)}, expected 0 "
                                    f"(see {name}.capture.log and the lab's console log)")
            checked += 1
            continue
        if name.startswith("pvh-"):
            failures.extend(check_pvh(stardump, results, name))
            if name.endswith("-preempt") and os.path.exists(os.path.join(results, f"{name}.sdump")):
                failures.extend(check_preempted(stardump, results, name))
            checked += 1
            continue
        image = image_of(results, name)
        snapshot = os.path.join(results, f"{name}.sdump")
        core = os.path.join(results, f"{name}.core")
        if not os.path.exists(snapshot):
            failures.append(f"{name}: no snapshot: stardump-capture failed (see {name}.capture.log)")
            continue
        ours, stop, warnings = stardump_frames(stardump, snapshot, image)
        if ours is None or stop or warnings:
            failures.append(f"{name}: snapshot: {stop or ''} {' '.join(warnings)}\n{describe(ours)}")
            continue
        functions = [function for function, _, _ in ours]
        missing = [function for function in expected_functions(name) if function not in functions]
        if missing:
            failures.append(f"{name}: snapshot backtrace lacks {missing}:\n{describe(ours)}")
        checked += 1

        if name.endswith("-nop2m"):
            if os.path.exists(core) and os.path.getsize(core) > 0:
                failures.append(f"{name}: xl dump-core wrote a core although the P2M is not published")
            continue
        from_core, stop, warnings = stardump_frames(stardump, core, image)
        if from_core is None or stop:
            failures.append(f"{name}: dump-core: {stop}\n{describe(from_core)}")
            continue
        if not same_frames(below_spin(ours), below_spin(from_core)):
            failures.append(f"{name}: the snapshot and the dump-core differ:\n"
                            f"  snapshot:\n{describe(ours)}\n  dump-core:\n{describe(from_core)}")
        gdb_bt = os.path.join(results, f"{name}.gdb-bt.txt")
        if name.endswith("-hcall"):
            # gdb cannot unwind out of the hypercall page; stardump must do
            # it by the stub's layout, not by a stack scan.
            _, report, error = stardump_bt(stardump, snapshot, image)
            found_by = [frame["found_by"] for frame in report["threads"][0]["frames"]] if report else [error]
            if "hypercall-page" not in found_by:
                failures.append(f"{name}: no frame was found by the hypercall page's layout: {found_by}")
            continue
        if os.path.exists(gdb_bt):
            theirs = gdb_frames(gdb_bt)
            if not same_frames(from_core, theirs):
                failures.append(f"{name}: stardump and gdb differ on the dump-core:\n"
                                f"  stardump:\n{describe(from_core)}\n  gdb:\n{describe(theirs)}")
        else:
            failures.append(f"{name}: no gdb backtrace ({gdb_bt})")

    for failure in failures:
        print(f"!! {failure}")
    print(f"check-stardump: {checked} guests checked, {len(failures)} failures")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
