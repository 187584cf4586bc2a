//! Entry values (`x@entry`) of a C program built with gcc -O2, compared
//! with gdb's on the same kernel cores and gcore files.
//!
//! The program crashes in one of four ways, chosen by its argument:
//! - `constants`: main calls scale(6, 7), which changes its first
//!   parameter before the call that crashes;
//! - `tail`: main ends in a jump to scale, so scale's frame sits above
//!   glibc's call of main, whose call site gives main's arguments, not
//!   scale's;
//! - `qsort`: glibc's msort calls a comparator through a pointer, and
//!   glibc's qsort jumps to __qsort_r;
//! - `thread`: glibc's start_thread calls a thread's start routine.
//!
//! main's argc and argv come from glibc's call of main. gdb stops at main
//! by default, so it cannot resolve them and prints `<optimized out>`.
//! stardump always unwinds into glibc, so gdb runs here with `set
//! backtrace past-main on`. main's entry values are also checked against
//! the command line the program ran with.
//!
//! For every frame with a source line, stardump's `bt --full` lines and
//! `frame --frame N --args` must print what gdb's `bt full`, `frame N` and
//! `info args` print. For every parameter of the program's own frames,
//! `print --frame N x` and `print --frame N x@entry` must print what gdb's
//! `print x` and `print x@entry` print, and `<optimized out>` where gdb
//! reports that it cannot find the entry value.
//!
//! One difference is deliberate (analyze/JSON.md lists it): a value in a
//! caller-saved register of an outer frame prints `<not saved>`, where gdb
//! 13 takes the inner frame's register as unchanged. There the test checks
//! that stardump prints `<not saved>`, and that its entry value is gdb's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use stardump_tests::linux::{
    build_program, gdb_commands, gdb_core_with_arguments, kernel_core_with_arguments, require_libc_debug_info,
};
use stardump_tests::require_program;

/// The program under test. scale, compare and worker crash through
/// crash(), whose parameter gcc describes at the call as the register it
/// arrives in (`DW_OP_breg5 (rdi): 0`), because crash() keeps rdi.
const SOURCE: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile int sink;
/* Set once pthread_create has returned, so the worker crashes while main
   waits in pthread_join rather than while it is still creating the thread. */
volatile int created;
int *volatile null_pointer;

__attribute__((noinline)) void crash(long value)
{
	*null_pointer = (int)value;
}

__attribute__((noinline)) int scale(int value, int factor)
{
	value = value * factor + sink;
	crash(value);
	return value;
}

static int compare(const void *left, const void *right)
{
	int a = *(const int *)left, b = *(const int *)right;
	if (a == 13 || b == 13)
		crash(a + b);
	return (a > b) - (a < b);
}

struct job {
	int id;
	long limit;
};

/* At file scope: a function's static would be the ELF symbol job.0, which
   stardump prints where gdb prints the DWARF name job. */
static struct job job = { 4, 99 };

static void *worker(void *arg)
{
	struct job *job = arg;
	while (!created)
		usleep(1000);
	usleep(100000);
	crash(job->id + job->limit);
	return arg;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "constants";
	if (strcmp(mode, "constants") == 0) {
		sink = scale(6, 7);
		return 0;
	}
	if (strcmp(mode, "tail") == 0)
		return scale(6, 7);
	if (strcmp(mode, "qsort") == 0) {
		int values[] = { 5, 3, 13, 8, 1 };
		qsort(values, 5, sizeof values[0], compare);
		return values[0];
	}
	if (strcmp(mode, "thread") == 0) {
		pthread_t thread;
		pthread_create(&thread, NULL, worker, &job);
		created = 1;
		pthread_join(thread, NULL);
	}
	return 0;
}
"#;

/// The source file's name, which the program's frames show.
const SOURCE_NAME: &str = "entry.c";

/// Marker lines that separate the output of gdb's commands.
const MARKER: &str = "@@";

/// Returns the program, built once.
fn program() -> &'static Path {
    static PROGRAM: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, program) = PROGRAM.get_or_init(|| {
        require_program("gcc", "gcc");
        require_program("gdb", "gdb");
        require_libc_debug_info();
        let dir = tempfile::tempdir().expect("creating a build directory");
        let program = build_program(dir.path(), "entry", "gcc", SOURCE, &["-g", "-O2", "-pthread"]);
        (dir, program)
    });
    program
}

/// Runs `stardump COMMAND CORE ARGUMENTS...` and returns stdout and stderr.
fn stardump(command: &str, core: &Path, arguments: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
        .arg(command)
        .arg(core)
        .args(arguments)
        .output()
        .expect("running stardump");
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// One argument of a frame line: its value and its entry value, each as
/// printed, `None` where the line does not show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Argument {
    name: String,
    value: Option<String>,
    entry: Option<String>,
}

/// A frame line, `#N  [0x… in ]function (arguments) at file:line`, without
/// the address, which gdb leaves out for a pc at the start of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameLine {
    function: String,
    arguments: Vec<Argument>,
    location: String,
}

/// Splits `text` at each `, ` outside quotes, parentheses, brackets and
/// braces.
fn split_arguments(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let bytes = text.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'"' if index == 0 || bytes[index - 1] != b'\\' => quoted = !quoted,
            b'(' | b'[' | b'{' | b'<' if !quoted => depth += 1,
            b')' | b']' | b'}' | b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 && bytes.get(index + 1) == Some(&b' ') => {
                parts.push(&text[start..index]);
                start = index + 2;
            }
            _ => {}
        }
    }
    if !text.is_empty() {
        parts.push(&text[start..]);
    }
    parts
}

/// Parses the arguments of a frame line as gdb's `print entry-values
/// default` writes them: `x=5`, `x=x@entry=5`, `x=6, x@entry=5` and
/// `x=<optimized out>, x@entry=5`.
fn parse_arguments(text: &str) -> Vec<Argument> {
    let mut arguments: Vec<Argument> = Vec::new();
    for part in split_arguments(text) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if let Some(name) = name.strip_suffix("@entry") {
            match arguments.last_mut() {
                Some(last) if last.name == name => last.entry = Some(value.to_owned()),
                _ => arguments.push(Argument { name: name.to_owned(), value: None, entry: Some(value.to_owned()) }),
            }
            continue;
        }
        let both = value.strip_prefix(&format!("{name}@entry=")).map(str::to_owned);
        arguments.push(Argument {
            name: name.to_owned(),
            value: Some(both.clone().unwrap_or_else(|| value.to_owned())),
            entry: both,
        });
    }
    arguments
}

/// Parses a frame line of gdb or stardump, without stardump's
/// `[found_by]` suffix.
fn parse_frame_line(line: &str) -> Option<FrameLine> {
    let line = match line.rfind(" [") {
        Some(at) if line.ends_with(']') => &line[..at],
        _ => line,
    };
    let rest = line.strip_prefix('#')?.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
    let rest = match rest.split_once(" in ") {
        Some((address, rest)) if address.starts_with("0x") => rest,
        _ => rest,
    };
    let open = rest.find(" (")?;
    let mut depth = 0;
    let mut close = None;
    for (offset, character) in rest[open + 1..].char_indices() {
        match character {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + 1 + offset);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    Some(FrameLine {
        function: rest[..open].to_owned(),
        arguments: parse_arguments(&rest[open + 2..close]),
        location: rest[close + 1..].trim().to_owned(),
    })
}

/// The agreement of one core with gdb.
#[derive(Default)]
struct Report {
    compared: usize,
    /// Values where stardump prints `<not saved>` for gdb's value.
    not_saved: Vec<String>,
    differences: Vec<String>,
}

impl Report {
    /// Compares a value, which may be stardump's `<not saved>` for gdb's
    /// value (see the module documentation).
    fn value(&mut self, context: &str, gdb: Option<&str>, ours: Option<&str>) {
        self.compared += 1;
        if gdb == ours {
            return;
        }
        if ours == Some("<not saved>") && gdb.is_some() {
            self.not_saved.push(format!("{context}: gdb {gdb:?}"));
            return;
        }
        self.differences.push(format!("{context}: gdb {gdb:?}, stardump {ours:?}"));
    }

    /// Compares an entry value, which must be gdb's.
    fn entry(&mut self, context: &str, gdb: Option<&str>, ours: Option<&str>) {
        self.compared += 1;
        if gdb != ours {
            self.differences.push(format!("{context}: entry value: gdb {gdb:?}, stardump {ours:?}"));
        }
    }

    /// Compares two frame lines.
    fn frame_line(&mut self, context: &str, gdb: &str, ours: &str) {
        let (Some(theirs), Some(mine)) = (parse_frame_line(gdb), parse_frame_line(ours)) else {
            self.differences.push(format!("{context}: unreadable frame line:\n  gdb:      {gdb}\n  stardump: {ours}"));
            return;
        };
        self.compared += 1;
        let names = |line: &FrameLine| line.arguments.iter().map(|argument| argument.name.clone()).collect::<Vec<_>>();
        if theirs.function != mine.function || theirs.location != mine.location || names(&theirs) != names(&mine) {
            self.differences.push(format!("{context}: frame line:\n  gdb:      {gdb}\n  stardump: {ours}"));
            return;
        }
        for (their, my) in theirs.arguments.iter().zip(&mine.arguments) {
            let context = format!("{context} {} argument {}", theirs.function, their.name);
            self.value(&context, their.value.as_deref(), my.value.as_deref());
            self.entry(&context, their.entry.as_deref(), my.entry.as_deref());
        }
    }

    /// Compares lists of `name = value` lines.
    fn named_lines(&mut self, context: &str, gdb: &[String], ours: &[String]) {
        if gdb.len() != ours.len() {
            self.differences.push(format!("{context}: gdb printed {gdb:?}, stardump {ours:?}"));
            return;
        }
        for (theirs, mine) in gdb.iter().zip(ours) {
            match (theirs.split_once(" = "), mine.split_once(" = ")) {
                (Some((their_name, their_value)), Some((my_name, my_value))) if their_name.trim() == my_name.trim() => {
                    self.value(&format!("{context} {}", their_name.trim()), Some(their_value), Some(my_value));
                }
                _ => {
                    self.compared += 1;
                    if theirs.trim() != mine.trim() {
                        self.differences.push(format!("{context}: gdb `{theirs}`, stardump `{mine}`"));
                    }
                }
            }
        }
    }
}

/// One frame of `bt full`: its line and the lines of its locals.
#[derive(Debug, Default)]
struct FullFrame {
    line: String,
    locals: Vec<String>,
}

/// Parses the text of `bt full` for each thread into frames, by thread
/// number (gdb's, from 1).
fn parse_bt_full(text: &str) -> BTreeMap<usize, Vec<FullFrame>> {
    let mut threads: BTreeMap<usize, Vec<FullFrame>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            current = number.parse().ok();
            continue;
        }
        let Some(thread) = current else { continue };
        let frames = threads.entry(thread).or_default();
        if line.starts_with('#') {
            frames.push(FullFrame { line: line.to_owned(), locals: Vec::new() });
        } else if let Some(frame) = frames.last_mut() {
            if !line.trim().is_empty() && !line.starts_with("Backtrace stopped") {
                frame.locals.push(line.trim().to_owned());
            }
        }
    }
    threads
}

/// A frame to check: the thread (gdb's number), its level and function,
/// and its parameters.
struct Checked {
    thread: usize,
    level: usize,
    function: String,
    in_program: bool,
    parameters: Vec<String>,
}

/// Returns the frames with a source line of every thread of `core`, from
/// stardump's `bt --json`.
fn frames_with_lines(core: &Path) -> Vec<Checked> {
    let (json, warnings) = stardump("bt", core, &["--json"]);
    let report: Value = serde_json::from_str(&json).unwrap_or_else(|error| panic!("bt printed no JSON ({error}): {warnings}"));
    let mut checked = Vec::new();
    for (index, thread) in report["threads"].as_array().expect("threads").iter().enumerate() {
        for (level, frame) in thread["frames"].as_array().expect("frames").iter().enumerate() {
            if frame["kind"] == "trap" || !frame["line"].is_u64() {
                continue;
            }
            let parameters = frame["arguments"]
                .as_array()
                .map(|arguments| arguments.iter().filter_map(|argument| argument["name"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            checked.push(Checked {
                thread: index + 1,
                level,
                function: frame["function"].as_str().unwrap_or("??").to_owned(),
                in_program: frame["file"].as_str().is_some_and(|file| file.ends_with(SOURCE_NAME)),
                parameters,
            });
        }
    }
    checked
}

/// gdb's output for each frame: the frame line of `frame N`, the lines of
/// `info args`, and for each parameter `print x` and `print x@entry`,
/// `None` where gdb printed an error instead.
#[derive(Default)]
struct GdbFrame {
    line: String,
    arguments: Vec<String>,
    values: BTreeMap<String, Option<String>>,
}

/// Runs gdb's `bt full` and, for each frame of `checked`, `frame N`,
/// `info args`, and `print` of each parameter and its entry value, with
/// each output after a marker line.
fn gdb_view(core: &Path, checked: &[Checked]) -> (BTreeMap<usize, Vec<FullFrame>>, Vec<GdbFrame>) {
    let mut commands = vec![
        "set width 0".to_owned(),
        "set pagination off".to_owned(),
        "set backtrace past-main on".to_owned(),
        "set print entry-values default".to_owned(),
        format!("echo {MARKER}bt\\n"),
        "thread apply all bt full".to_owned(),
    ];
    for (index, frame) in checked.iter().enumerate() {
        // `thread N` prints the thread's frame 0; the marker comes first so
        // that it lands in this frame's section, which keeps the last
        // frame line only.
        commands.push(format!("echo {MARKER}frame {index}\\n"));
        commands.push(format!("thread {}", frame.thread));
        commands.push(format!("frame {}", frame.level));
        commands.push(format!("echo {MARKER}args\\n"));
        commands.push("info args".to_owned());
        if frame.in_program {
            for parameter in &frame.parameters {
                for expression in [parameter.clone(), format!("{parameter}@entry")] {
                    commands.push(format!("echo {MARKER}print {expression}\\n"));
                    commands.push(format!("print {expression}"));
                }
            }
        }
    }
    commands.push(format!("echo {MARKER}end\\n"));
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    let output = gdb_commands(program(), core, &commands);

    let mut bt_full = String::new();
    let mut frames: Vec<GdbFrame> = Vec::new();
    let mut section = String::new();
    for line in output.lines() {
        if let Some(marker) = line.strip_prefix(MARKER) {
            section = marker.to_owned();
            if section.starts_with("frame ") {
                frames.push(GdbFrame::default());
            }
            if let Some(expression) = section.strip_prefix("print ") {
                frames.last_mut().expect("a frame before its prints").values.insert(expression.to_owned(), None);
            }
            continue;
        }
        if section == "bt" {
            bt_full.push_str(line);
            bt_full.push('\n');
            continue;
        }
        let Some(frame) = frames.last_mut() else { continue };
        if section.starts_with("frame ") && line.starts_with('#') {
            frame.line = line.to_owned();
        } else if section == "args" {
            frame.arguments.push(line.to_owned());
        } else if let Some(expression) = section.strip_prefix("print ") {
            if let Some((_, value)) = line.split_once(" = ").filter(|(history, _)| history.starts_with('$')) {
                frame.values.insert(expression.to_owned(), Some(value.to_owned()));
            }
        }
    }
    assert_eq!(frames.len(), checked.len(), "gdb printed:\n{output}");
    (parse_bt_full(&bt_full), frames)
}

/// Returns what stardump's `print` printed after `$1 = `, or the error.
fn stardump_print(core: &Path, frame: &Checked, expression: &str) -> Result<String, String> {
    let vcpu = (frame.thread - 1).to_string();
    let level = frame.level.to_string();
    let (out, err) = stardump("print", core, &["--vcpu", &vcpu, "--frame", &level, expression]);
    match out.trim().strip_prefix("$1 = ") {
        Some(value) => Ok(value.to_owned()),
        None => Err(err.trim().to_owned()),
    }
}

/// Compares every checked frame of `core` with gdb and returns the report.
fn compare_core(kind: &str, core: &Path) -> Report {
    let checked = frames_with_lines(core);
    assert!(checked.iter().any(|frame| frame.in_program), "{kind}: no frame of the program: {}", stardump("bt", core, &[]).0);
    let (gdb_bt_full, gdb_frames) = gdb_view(core, &checked);
    let (our_text, _) = stardump("bt", core, &["--full"]);
    let our_bt_full = parse_bt_full(&our_text);
    let mut report = Report::default();

    for (frame, gdb) in checked.iter().zip(&gdb_frames) {
        let context = format!("{kind} thread {} frame {}", frame.thread, frame.level);

        // bt full: the frame line and the locals below it.
        let theirs = gdb_bt_full.get(&frame.thread).and_then(|frames| frames.get(frame.level));
        let mine = our_bt_full.get(&frame.thread).and_then(|frames| frames.get(frame.level));
        match (theirs, mine) {
            (Some(theirs), Some(mine)) => {
                report.frame_line(&format!("{context} bt full"), &theirs.line, &mine.line);
                // gdb lists the locals of some nested blocks (glibc's
                // syscall macros) in another order than their declarations,
                // which stardump follows. The order is not what this test
                // is about.
                let sorted = |locals: &[String]| {
                    let mut locals = locals.to_vec();
                    locals.sort();
                    locals
                };
                report.named_lines(&format!("{context} bt full locals"), &sorted(&theirs.locals), &sorted(&mine.locals));
            }
            _ => report.differences.push(format!("{context}: bt full has no such frame:\n{our_text}")),
        }

        // frame N --args and info args.
        let vcpu = (frame.thread - 1).to_string();
        let level = frame.level.to_string();
        let (text, warnings) = stardump("frame", core, &["--vcpu", &vcpu, "--frame", &level, "--args"]);
        let mut lines = text.lines();
        let line = lines.next().unwrap_or_default();
        report.frame_line(&format!("{context} frame"), &gdb.line, line);
        // The source line that follows the frame line, `17\t  crash(value);`, as in gdb's `frame N`.
        let is_source_line = |line: &str| line.split_once('\t').is_some_and(|(number, _)| number.parse::<u32>().is_ok());
        let arguments: Vec<String> = lines.filter(|line| !is_source_line(line)).map(str::to_owned).collect();
        report.named_lines(&format!("{context} info args"), &gdb.arguments, &arguments);
        if line.is_empty() {
            report.differences.push(format!("{context}: frame printed nothing: {warnings}"));
        }

        // print x and print x@entry in the program's frames.
        for (expression, expected) in &gdb.values {
            let context = format!("{context} {} print {expression}", frame.function);
            let ours = stardump_print(core, frame, expression);
            match (expression.ends_with("@entry"), expected, ours) {
                (true, Some(expected), Ok(ours)) => report.entry(&context, Some(expected), Some(&ours)),
                // gdb reports why it cannot find the entry value;
                // stardump prints it as optimized out.
                (true, None, Ok(ours)) => report.entry(&context, Some("<optimized out>"), Some(&ours)),
                (false, expected, Ok(ours)) => report.value(&context, expected.as_deref(), Some(&ours)),
                (_, _, Err(error)) => report.differences.push(format!("{context}: stardump failed: {error}")),
            }
        }
    }
    report
}

/// Crashes the program with `mode` to a kernel core and a gcore file,
/// compares both with gdb, and returns the text of stardump's `bt` of the
/// kernel core, for the checks of each mode.
fn check_mode(mode: &str) -> String {
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let kernel = kernel_core_with_arguments(program(), &[mode], run_dir.path());
    let gcore = gdb_core_with_arguments(program(), &[mode], &run_dir.path().join("gcore.core"));
    let mut failures = Vec::new();
    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let report = compare_core(&format!("{mode} {kind}"), core);
        eprintln!(
            "{mode} {kind}: {} values compared, {} differ, {} <not saved> where gdb assumes an unchanged register",
            report.compared,
            report.differences.len(),
            report.not_saved.len()
        );
        for not_saved in &report.not_saved {
            eprintln!("  {not_saved}");
        }
        failures.extend(report.differences);
    }
    assert!(failures.is_empty(), "stardump and gdb differ:\n{}", failures.join("\n"));
    stardump("bt", &kernel, &[]).0
}

/// Returns the arguments of the first frame of `function` in the text of
/// `bt`.
fn arguments_of(backtrace: &str, function: &str) -> Vec<Argument> {
    let line = backtrace.lines().filter_map(parse_frame_line).find(|line| line.function == function);
    line.unwrap_or_else(|| panic!("no frame of {function}:\n{backtrace}")).arguments
}

/// Returns the entry value of `name` in `arguments`.
fn entry_of(arguments: &[Argument], name: &str) -> Option<String> {
    arguments.iter().find(|argument| argument.name == name).and_then(|argument| argument.entry.clone())
}

/// Checks main's entry values against the program's command line: argc is
/// 2 (the program and its mode), and argv is a pointer.
fn check_main(backtrace: &str) {
    let arguments = arguments_of(backtrace, "main");
    assert_eq!(entry_of(&arguments, "argc").as_deref(), Some("2"), "{arguments:?}");
    let argv = arguments.iter().find(|argument| argument.name == "argv").expect("argv");
    assert!(argv.entry.as_deref().is_some_and(|entry| entry.starts_with("0x")), "{argv:?}");
}

#[test]
fn entry_values_of_constants_match_gdb() {
    let backtrace = check_mode("constants");
    // scale(6, 7): value changed before the crash, factor kept.
    let scale = arguments_of(&backtrace, "scale");
    assert_eq!(entry_of(&scale, "value").as_deref(), Some("6"), "{scale:?}");
    assert_eq!(entry_of(&scale, "factor").as_deref(), Some("7"), "{scale:?}");
    // crash(42), whose rdi the call site gives as DW_OP_breg5 (rdi): 0.
    assert_eq!(entry_of(&arguments_of(&backtrace, "crash"), "value").as_deref(), Some("42"));
    check_main(&backtrace);
}

#[test]
fn entry_values_after_tail_call_match_gdb() {
    let backtrace = check_mode("tail");
    // glibc's call site is main's, so it gives scale no entry values.
    let scale = arguments_of(&backtrace, "scale");
    assert!(scale.iter().all(|argument| argument.entry.is_none()), "{scale:?}");
}

#[test]
fn entry_values_of_qsort_comparator_match_gdb() {
    let backtrace = check_mode("qsort");
    // glibc's msort passed the comparator two pointers into the array.
    let compare = arguments_of(&backtrace, "compare");
    for name in ["left", "right"] {
        assert!(entry_of(&compare, name).is_some_and(|entry| entry.starts_with("0x")), "{compare:?}");
    }
    // The program called qsort, which jumped to __qsort_r.
    let qsort = arguments_of(&backtrace, "__GI_qsort");
    assert_eq!(entry_of(&qsort, "n").as_deref(), Some("5"), "{qsort:?}");
    check_main(&backtrace);
}

#[test]
fn entry_values_of_thread_routine_match_gdb() {
    let backtrace = check_mode("thread");
    assert_eq!(entry_of(&arguments_of(&backtrace, "crash"), "value").as_deref(), Some("103"));
    check_main(&backtrace);
}
