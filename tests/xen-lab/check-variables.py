#!/usr/bin/env python3
"""Check stardump's arguments and locals of a Xen lab run against gdb's.

For every crash guest of the run (NAME.core exists and the guest ended in
ud2, null or div0), gdb's `thread apply all bt full` on NAME.gdb-core (the
dump-core's memory as an ELF core, written by check-gdb.sh) is the oracle.
`stardump bt --full --json` runs on the dump-core (NAME.core) and on the
snapshot (NAME.sdump), and for every frame of the vCPU's thread (gdb's
LWP 1) every argument and every local is compared by name and value.

gdb runs with `set print frame-arguments all`, so the frame line shows
aggregate arguments in full instead of `...`. Only formatting that is
documented to differ is normalized before comparing:
- gdb's `<error: Cannot access memory at address 0x…>` and stardump's
  `<unreadable at 0x…: reason>` both become `<unreadable>`;
- gdb prints `name=name@entry=V` when the entry value equals the value and
  `name=V, name@entry=E` when it differs; the comparison takes V. When only
  the entry value is known gdb prints `name@entry=E` alone, and that is
  compared as `<optimized out>`, which is what stardump's JSON then
  contains (it has no entry values).

The unikernel's sleeping threads, which gdb lists as LWP 2 and up, are
compared too: `stardump threads --json` gives each thread's frames with
their arguments, and each thread is matched to the gdb thread with the same
functions. `stardump threads` prints no locals, so only arguments are
compared there.

Each difference fails the check unless KNOWN_DIFFERENCES lists it with its
cause. The script prints the agreement rate per optimization level.

Usage: check-variables.py RESULTS_DIR STARDUMP_BINARY
"""

import json
import os
import re
import subprocess
import sys

CRASH_MODES = ("ud2", "null", "div0")
FRAME_LINE = re.compile(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(\S+) \(")
UNREADABLE = [
    re.compile(r"<error: Cannot access memory at address 0x[0-9a-f]+>"),
    re.compile(r"<unreadable at 0x[0-9a-f]+: [^>]*>"),
]

# (optimization level prefix, function, variable, cause).
KNOWN_DIFFERENCES = [
    ("o2", "finish_transform", "checksum",
     "finish_transform is inlined into transform_values and passes its checksum argument on "
     "unchanged. At the return address of the call to dispatch_end_mode its location is "
     "DW_OP_entry_value(DW_OP_reg2), because the code xors rcx in place. stardump resolves the "
     "entry value through compute_checksum's call site and prints the value gdb itself shows as "
     "transform_values' checksum@entry one frame up. gdb 13 prints 1561, which is the sum of "
     "`scaled` (finish_transform's `total`), not a checksum"),
]


def normalize(value):
    for pattern in UNREADABLE:
        value = pattern.sub("<unreadable>", value)
    return value


def image_of(results, name):
    """Returns the image a PV guest ran, as run.sh's plan assigns them."""
    variant = "O0-fp" if name.startswith("o0-") else "O2-nofp"
    return os.path.join(results, f"unikernel-xen-pv-{variant}.elf")


def split_top_level(text):
    """Splits `a=1, b={x = 1, y = 2}, c="a, b"` at the commas outside braces, brackets and quotes."""
    parts, depth, quote, start, index = [], 0, None, 0, 0
    while index < len(text):
        c = text[index]
        if quote:
            if c == "\\":
                index += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == "," and depth == 0 and text.startswith(", ", index):
            parts.append(text[start:index])
            start = index + 2
            index += 1
        index += 1
    if text[start:]:
        parts.append(text[start:])
    return parts


def argument_text(line):
    """Returns the text between a frame line's argument parentheses."""
    open_at = FRAME_LINE.match(line).end() - 1
    depth, quote, index = 0, None, open_at
    while index < len(line):
        c = line[index]
        if quote:
            if c == "\\":
                index += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
            if depth == 0:
                return line[open_at + 1:index]
        index += 1
    return line[open_at + 1:]


def parse_arguments(text):
    """Returns [(name, value)] from gdb's frame-line arguments, with entry values folded as the module docstring describes."""
    arguments = []
    for part in split_top_level(text):
        name, _, value = part.partition("=")
        if name.endswith("@entry"):
            base = name.removesuffix("@entry")
            if arguments and arguments[-1][0] == base:
                continue  # `a=6, a@entry=5`: the value came first.
            arguments.append((base, "<optimized out>"))
            continue
        if value.startswith(f"{name}@entry="):
            value = value.removeprefix(f"{name}@entry=")
        arguments.append((name, normalize(value)))
    return arguments


def gdb_threads(results, name, image):
    """Runs gdb's `thread apply all bt full` and returns {LWP: frames}, each frame a dict."""
    core = os.path.join(results, f"{name}.gdb-core")
    command = ["timeout", "-s", "KILL", "120", "gdb", "-batch", "-nx", "-ex", "set pagination off",
               "-ex", "set width 0", "-ex", "set osabi GNU/Linux", "-ex", "set print frame-arguments all",
               "-ex", f"core-file {core}", "-ex", "thread apply all bt full", image]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    threads, frames = {}, None
    for line in result.stdout.splitlines():
        if line.startswith("Thread "):
            match = re.search(r"\(LWP (\d+)\)", line)
            frames = threads.setdefault(int(match.group(1)), []) if match else None
            continue
        if frames is None:
            continue
        if line.startswith("#"):
            if "<signal handler called>" in line:
                frames.append({"function": "<signal handler called>", "arguments": [], "locals": []})
                continue
            match = FRAME_LINE.match(line)
            if not match:
                frames.append({"function": f"<unparsed: {line}>", "arguments": [], "locals": []})
                continue
            frames.append({"function": match.group(2), "arguments": parse_arguments(argument_text(line)),
                           "locals": []})
        elif line.startswith("        ") and frames and " = " in line:
            local_name, _, value = line.strip().partition(" = ")
            frames[-1]["locals"].append((local_name, normalize(value)))
    return threads, result.stdout + result.stderr


def stardump_sleeping_threads(stardump, path, image):
    """Runs `stardump threads --json` and returns the sleeping threads' frames, or an error."""
    result = subprocess.run([stardump, "threads", path, "--image", image, "--json"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode not in (0, 2):
        return None, f"stardump threads failed with {result.returncode}: {result.stderr.strip()}"
    threads = []
    for thread in json.loads(result.stdout)["threads"]:
        if thread["vcpu"] is not None:
            continue
        threads.append((thread["name"], [{
            "function": frame["function"],
            "arguments": [(v["name"], normalize(v["value"])) for v in frame.get("arguments", [])],
        } for frame in thread["frames"]]))
    return threads, None


def compare_sleeping(label, name, gdb, ours, tally):
    """Compares the arguments of each sleeping thread with gdb's thread of the same functions."""
    by_functions = {tuple(frame["function"] for frame in frames): frames
                    for lwp, frames in gdb.items() if lwp != 1}
    for thread_name, frames in ours:
        functions = tuple(frame["function"] for frame in frames)
        theirs = by_functions.get(functions)
        if theirs is None:
            tally["unexplained"].append(f"{label} thread {thread_name}: no gdb thread with the functions {functions}")
            continue
        compare_frames(f"{label} thread {thread_name}", name,
                       [{**frame, "locals": []} for frame in theirs],
                       [{**frame, "locals": []} for frame in frames], tally)


def stardump_vcpu_frames(stardump, path, image):
    """Runs `stardump bt --full --json` and returns vCPU 0's frames as dicts, or an error."""
    result = subprocess.run([stardump, "bt", path, "--image", image, "--full", "--json"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode not in (0, 2):
        return None, f"stardump bt --full failed with {result.returncode}: {result.stderr.strip()}"
    report = json.loads(result.stdout)
    frames = []
    for frame in report["threads"][0]["frames"]:
        if frame["kind"] == "trap":
            frames.append({"function": "<signal handler called>", "arguments": [], "locals": []})
            continue
        frames.append({
            "function": frame["function"],
            "arguments": [(v["name"], normalize(v["value"])) for v in frame.get("arguments", [])],
            "locals": [(v["name"], normalize(v["value"])) for v in frame.get("locals", [])],
        })
    return frames, None


def known_cause(name, function, variable):
    for prefix, known_function, known_variable, cause in KNOWN_DIFFERENCES:
        if name.startswith(prefix) and function == known_function and variable == known_variable:
            return cause
    return None


def compare_frames(label, name, gdb, ours, tally):
    """Compares the frames pairwise, counting each argument and local and recording each difference in `tally`."""
    if len(gdb) != len(ours):
        tally["unexplained"].append(f"{label}: gdb has {len(gdb)} frames, stardump {len(ours)}")
    for index, (theirs, mine) in enumerate(zip(gdb, ours)):
        if theirs["function"] != mine["function"]:
            tally["unexplained"].append(
                f"{label} #{index}: gdb's function is {theirs['function']}, stardump's {mine['function']}")
            continue
        for kind in ("arguments", "locals"):
            their_values, my_values = theirs[kind], mine[kind]
            for position in range(max(len(their_values), len(my_values))):
                expected = their_values[position] if position < len(their_values) else None
                actual = my_values[position] if position < len(my_values) else None
                tally["compared"] += 1
                if expected == actual:
                    tally["agreed"] += 1
                    continue
                variable = (expected or actual)[0]
                difference = f"{label} #{index} {theirs['function']} {kind} {variable}: gdb {expected}, stardump {actual}"
                cause = known_cause(name, theirs["function"], variable)
                if cause:
                    tally["known"].append(f"{difference} (known: {cause})")
                else:
                    tally["unexplained"].append(difference)


def crash_guests(results):
    names = []
    for entry in sorted(os.listdir(results)):
        if not entry.endswith(".core"):
            continue
        name = entry.removesuffix(".core")
        if name.split("-", 1)[-1] in CRASH_MODES and os.path.getsize(os.path.join(results, entry)) > 0:
            names.append(name)
    return names


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    results, stardump = sys.argv[1], sys.argv[2]
    names = crash_guests(results)
    tallies = {}
    failures = []
    for name in names:
        image = image_of(results, name)
        level = name.split("-", 1)[0]
        tally = tallies.setdefault(level, {"compared": 0, "agreed": 0, "known": [], "unexplained": []})
        if not os.path.exists(os.path.join(results, f"{name}.gdb-core")):
            failures.append(f"{name}: no {name}.gdb-core: check-gdb.sh did not convert the dump-core")
            continue
        gdb_by_lwp, gdb_output = gdb_threads(results, name, image)
        gdb = gdb_by_lwp.get(1)
        if not gdb:
            failures.append(f"{name}: gdb printed no frames for LWP 1:\n{gdb_output}")
            continue
        for kind, suffix in (("dump-core", "core"), ("snapshot", "sdump")):
            path = os.path.join(results, f"{name}.{suffix}")
            if not os.path.exists(path):
                failures.append(f"{name}: no {kind} {path}")
                continue
            ours, error = stardump_vcpu_frames(stardump, path, image)
            if ours is None:
                failures.append(f"{name} {kind}: {error}")
                continue
            compare_frames(f"{name} {kind}", name, gdb, ours, tally)
            sleeping, error = stardump_sleeping_threads(stardump, path, image)
            if sleeping is None:
                failures.append(f"{name} {kind}: {error}")
                continue
            if not sleeping:
                failures.append(f"{name} {kind}: stardump threads found no sleeping thread")
            compare_sleeping(f"{name} {kind}", name, gdb_by_lwp, sleeping, tally)

    for level, tally in sorted(tallies.items()):
        rate = 100.0 * tally["agreed"] / max(tally["compared"], 1)
        print(f"check-variables: {level}: {tally['agreed']} of {tally['compared']} values agree with gdb ({rate:.1f}%)")
        for known in tally["known"]:
            print(f"   {known}")
        failures.extend(tally["unexplained"])
    for failure in failures:
        print(f"!! {failure}")
    print(f"check-variables: {len(names)} guests checked, {len(failures)} failures")
    sys.exit(1 if failures or not names else 0)


if __name__ == "__main__":
    main()
