//! Helpers of the ptrace tests: the C programs they capture, building
//! them with gcc, running them under a deadline, and reading
//! `/proc/PID/status`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use stardump_tests::require_program;

/// A program whose main thread and three named threads (alpha, beta,
/// gamma) block in known functions until a byte arrives on stdin. It
/// prints "ready" once the three threads are about to block, and exits
/// with status 42.
pub const THREADS_SOURCE: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

volatile unsigned long stardump_marker = 0x5354415244554d50UL;
static int release_pipe[2];
static atomic_int blocked;

__attribute__((noinline)) static void block_in_alpha(void) {
    char c;
    atomic_fetch_add(&blocked, 1);
    (void)!read(release_pipe[0], &c, 1);
}

__attribute__((noinline)) static void block_in_beta(void) {
    char c;
    atomic_fetch_add(&blocked, 1);
    (void)!read(release_pipe[0], &c, 1);
}

__attribute__((noinline)) static void block_in_gamma(void) {
    char c;
    atomic_fetch_add(&blocked, 1);
    (void)!read(release_pipe[0], &c, 1);
}

static void *run(void *arg) {
    const char *name = arg;
    pthread_setname_np(pthread_self(), name);
    if (name[0] == 'a') block_in_alpha();
    else if (name[0] == 'b') block_in_beta();
    else block_in_gamma();
    return NULL;
}

__attribute__((noinline)) static void wait_for_release(void) {
    char c;
    (void)!read(0, &c, 1);
}

int main(void) {
    const char *names[3] = {"alpha", "beta", "gamma"};
    pthread_t threads[3];
    if (pipe(release_pipe) != 0) return 1;
    for (int i = 0; i < 3; i++) pthread_create(&threads[i], NULL, run, (void *)names[i]);
    while (atomic_load(&blocked) < 3) usleep(1000);
    printf("ready\n");
    fflush(stdout);
    wait_for_release();
    (void)!write(release_pipe[1], "xyz", 3);
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    return stardump_marker == 0x5354415244554d50UL ? 42 : 1;
}
"#;

/// A program that fills argv[1] MiB with [`data_byte`]'s pattern, prints
/// "ready ADDRESS LENGTH", waits for a byte on stdin and exits with 7.
pub const DATA_SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t len = (size_t)atol(argc > 1 ? argv[1] : "4") << 20;
    unsigned char *data = malloc(len);
    if (!data) return 1;
    for (size_t i = 0; i < len; i++) data[i] = (unsigned char)((i * 2654435761u) >> 13);
    if (len >= (2u << 20)) memset(data + len / 2, 0, 1u << 20);
    printf("ready %p %zu\n", (void *)data, len);
    fflush(stdout);
    char c;
    (void)!read(0, &c, 1);
    return data[1] == (unsigned char)((1 * 2654435761u) >> 13) ? 7 : 1;
}
"#;

/// A program whose main thread starts a short-lived thread, joins it and
/// starts the next, forever, while one long-lived thread sleeps. It prints
/// "ready" and exits with 5 once a byte arrives on stdin.
pub const CHURN_SOURCE: &str = r#"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int stop;

static void *short_lived(void *arg) { (void)arg; return NULL; }

static void *sleeper(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) usleep(1000);
    return NULL;
}

static void *wait_for_stdin(void *arg) {
    char c;
    (void)arg;
    (void)!read(0, &c, 1);
    atomic_store(&stop, 1);
    return NULL;
}

int main(void) {
    pthread_t sleeping, waiting;
    pthread_create(&sleeping, NULL, sleeper, NULL);
    pthread_create(&waiting, NULL, wait_for_stdin, NULL);
    printf("ready\n");
    fflush(stdout);
    while (!atomic_load(&stop)) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, short_lived, NULL) == 0) pthread_join(thread, NULL);
    }
    pthread_join(sleeping, NULL);
    pthread_join(waiting, NULL);
    return 5;
}
"#;

/// A program that counts the real-time signals SIGRTMIN it receives,
/// prints "ready", and once a byte arrives on stdin prints "count N" and
/// exits with 0. Real-time signals queue, so none is lost unless a tracer
/// drops one.
pub const SIGNALS_SOURCE: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t received;

static void count(int signal) { (void)signal; received++; }

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = count;
    action.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &action, NULL);
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) != 1) {}
    printf("count %d\n", (int)received);
    fflush(stdout);
    return 0;
}
"#;

/// Returns byte `i` of the data program's buffer of `len` bytes.
pub fn data_byte(i: u64, len: u64) -> u8 {
    let zero_start = len / 2;
    if len >= 2 << 20 && (zero_start..zero_start + (1 << 20)).contains(&i) {
        return 0;
    }
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Parses "ready 0xADDRESS LENGTH".
pub fn parse_ready_line(line: &str) -> (u64, u64) {
    let mut words = line.split_whitespace().skip(1);
    let address = words.next().and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    let len = words.next().and_then(|len| len.parse().ok());
    match (address, len) {
        (Some(address), Some(len)) => (address, len),
        _ => panic!("invalid ready line {line:?}"),
    }
}

/// Returns the capture binary that cargo built for these tests.
pub fn capture_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stardump-capture"))
}

/// Compiles `source` with gcc into `dir/name` and returns its path.
pub fn build_program(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let gcc = require_program("gcc", "gcc");
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).unwrap();
    let exe = dir.join(name);
    let output = Command::new(gcc).args(flags).arg("-o").arg(&exe).arg(&source_path).output().expect("running gcc");
    assert!(output.status.success(), "gcc failed: {}", String::from_utf8_lossy(&output.stderr));
    exe
}

/// Returns the GNU build id that `readelf -n` prints for `path`.
pub fn readelf_build_id(path: &Path) -> Vec<u8> {
    let readelf = require_program("readelf", "binutils");
    let output = Command::new(readelf).arg("-n").arg(path).output().expect("running readelf");
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("readelf -n {} printed no build id:\n{text}", path.display()));
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// Returns the value of `field` in `/proc/PID/status`, or "" when the
/// process is gone.
pub fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

/// Returns the distinct states (R, S, T, t...) of the threads of `pid`.
pub fn thread_states(pid: u32) -> Vec<char> {
    let mut states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next()))
        .collect();
    states.sort();
    states.dedup();
    states
}

/// Waits for `child` to exit, killing it after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A test program started by the test, killed when dropped.
pub struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Program {
    /// Starts `exe` with `args`, stdin and stdout piped.
    pub fn start(exe: &Path, args: &[&str]) -> Program {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", exe.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Program { child, stdin, lines }
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line starting with `prefix` and returns it.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(error) => panic!("no line starting with {prefix:?} within {timeout:?}: {error}"),
            }
        }
    }

    /// Waits until `count` threads sleep (state S), so that every thread
    /// has entered its blocking call.
    pub fn wait_until_blocked(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sleeping = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
                .unwrap()
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
                .filter(|stat| stat.rfind(')').is_some_and(|end| stat[end + 1..].trim_start().starts_with('S')))
                .count();
            if sleeping >= count {
                // Sleeping in the read system call, not on the way to it.
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            assert!(Instant::now() < deadline, "only {sleeping} of {count} threads block");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes the byte that lets the program finish.
    pub fn release(&mut self) {
        let mut stdin = self.stdin.take().expect("released once");
        stdin.write_all(b"x").unwrap();
    }

    /// Waits for the program to exit and returns its status code.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> i32 {
        let status = wait_with_timeout(&mut self.child, timeout);
        status.code().unwrap_or_else(|| panic!("the program ended with {status}"))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
