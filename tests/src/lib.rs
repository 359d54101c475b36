//! Helpers for the end-to-end tests: fixture programs compiled at test time, the traced
//! processes, and the `koolkit-trace` binary under test.
//!
//! These tests need root and a kernel with uprobes. They fail, never skip, when they cannot
//! attach: a tracer that cannot trace is a broken tracer.

pub mod manifests;
pub mod pods;

use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::{Hash as _, Hasher as _},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where compiled fixtures and per-test copies live.
fn fixture_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("fixtures");
    fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

/// The `koolkit-trace` binary under test: `$KOOLKIT_TRACE_BIN`, else `target/debug/koolkit-trace`.
pub fn tracer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KOOLKIT_TRACE_BIN") {
        return PathBuf::from(bin);
    }
    let bin = workspace_root().join("target/debug/koolkit-trace");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        bin.display()
    );
    bin
}

/// A file `cargo xtask test` builds and names in `$env` (the static binary, the image), else
/// `default` under the workspace; panics, naming the task that builds it, when it is missing.
pub fn built_by_xtask(env: &str, default: &str, task: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(default));
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask {task}` (and `cargo xtask test`) builds it",
        path.display()
    );
    path
}

/// The debug image `cargo xtask image` builds: its tarball and the reference it imports as.
pub fn debug_image() -> (PathBuf, String) {
    let tarball = built_by_xtask("KOOLKIT_TRACE_IMAGE", "target/image/image.tar", "image");
    let reference = std::env::var("KOOLKIT_TRACE_IMAGE_REF").unwrap_or_else(|_| {
        format!(
            "docker.io/koolkit/koolkit-trace:{}",
            env!("CARGO_PKG_VERSION")
        )
    });
    (tarball, reference)
}

static COMPILE_LOCK: Mutex<()> = Mutex::new(());
static COPIES: AtomicU32 = AtomicU32::new(0);

/// Compiles `sources` (paths under `tests/fixtures/`) with `compiler ARGS` into a binary named
/// after `name`, once per distinct input, and returns a private copy of it for this test:
/// uprobes live on inodes, so tests that share a binary would see each other's probes.
pub fn build_fixture(name: &str, compiler: &str, sources: &[&str], args: &[&str]) -> PathBuf {
    let sources: Vec<PathBuf> = sources
        .iter()
        .map(|s| workspace_root().join("tests/fixtures").join(s))
        .collect();
    let mut hasher = DefaultHasher::new();
    (compiler, args).hash(&mut hasher);
    for source in &sources {
        fs::read(source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()))
            .hash(&mut hasher);
    }
    let built = fixture_dir().join(format!("{name}-{:016x}", hasher.finish()));
    {
        let _guard = COMPILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if !built.exists() {
            let partial = built.with_extension("partial");
            let output = Command::new(compiler)
                .args(args)
                .arg("-o")
                .arg(&partial)
                .args(&sources)
                .output()
                .unwrap_or_else(|e| panic!("run {compiler} (cargo xtask setup installs it): {e}"));
            assert!(
                output.status.success(),
                "{compiler} {args:?} {sources:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            fs::rename(&partial, &built).unwrap();
        }
    }
    private_copy(&built, name)
}

/// A copy of `file` only this test uses.
pub fn private_copy(file: &Path, name: &str) -> PathBuf {
    let copy = fixture_dir().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    fs::copy(file, &copy).unwrap();
    copy
}

/// A fresh directory only this test uses.
pub fn private_dir(name: &str) -> PathBuf {
    let dir = fixture_dir().join(format!(
        "{name}-{}-{}.d",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `tests/fixtures/c/<name>.c` with `gcc <flags>`.
pub fn c_fixture(name: &str, flags: &[&str]) -> PathBuf {
    build_fixture(name, "gcc", &[&format!("c/{name}.c")], flags)
}

/// Runs `program ARGS`, panicking with its output if it fails.
pub fn run_ok(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The 1-based line of `path` (under `tests/fixtures/`) holding `needle`.
pub fn line_of(path: &str, needle: &str) -> usize {
    let text = fs::read_to_string(workspace_root().join("tests/fixtures").join(path)).unwrap();
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {path}"))
        + 1
}

/// Reads lines from a child's pipe on a thread, so tests can wait with timeouts.
pub struct LineReader {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LineReader {
    pub fn new(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics with what was seen after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line until the pipe closes.
    pub fn rest(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            lines.push(line);
        }
        lines
    }

    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

/// A fixture process speaking the `calls.c` protocol: prints `ready <pid>`, runs a round
/// of calls per line on stdin and answers `done <checksum>`.
pub struct Fixture {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: LineReader,
    pub pid: u32,
    pub path: PathBuf,
}

impl Fixture {
    pub fn start(path: &Path, args: &[&str]) -> Self {
        Self::start_with(Command::new(path).args(args), path)
    }

    /// Starts a fixture from a prepared command (to set its environment).
    pub fn start_with(command: &mut Command, path: &Path) -> Self {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        // A fresh copy may still be open for writing in a child another test thread is
        // forking (ETXTBSY): try again shortly.
        let mut attempts = 0;
        let mut child = loop {
            match command.spawn() {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                    attempts += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("start {}: {e}", path.display()),
            }
        };
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let mut stdout = LineReader::new(stdout);
        let ready = stdout.wait_for("ready ", Duration::from_secs(10));
        let pid = ready.trim_start_matches("ready ").trim().parse().unwrap();
        assert_eq!(pid, child.id());
        Self {
            child,
            stdin,
            stdout,
            pid,
            path: path.to_path_buf(),
        }
    }

    /// Runs one round of calls and returns its checksum.
    pub fn round(&mut self) -> i64 {
        self.start_round();
        self.round_done()
    }

    /// Starts a round of calls without waiting for it.
    pub fn start_round(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the round under way to end; returns its checksum.
    pub fn round_done(&mut self) -> i64 {
        self.round_figures()[0]
    }

    /// Waits for the round under way to end; returns the figures of its `done` line.
    pub fn round_figures(&mut self) -> Vec<i64> {
        let done = self.stdout.wait_for("done ", Duration::from_secs(60));
        done.trim_start_matches("done ")
            .split_whitespace()
            .map(|figure| figure.parse().unwrap())
            .collect()
    }

    /// Closes stdin so the fixture exits, and waits for it.
    pub fn finish(mut self) -> ExitStatus {
        self.stdin.take();
        wait_timeout(&mut self.child, Duration::from_secs(10)).expect("fixture exits")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `koolkit-trace`.
pub struct Tracer {
    child: Child,
    stdout: Option<ChildStdout>,
    pub stderr: LineReader,
}

/// What a finished tracer printed.
#[derive(Debug)]
pub struct TracerOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl TracerOutput {
    /// Parses stdout as JSON Lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
            })
            .collect()
    }

    /// The `--histogram` / `--stats` JSON line of function `name`'s totals, if there is one.
    pub fn total_of(&self, name: &str) -> Option<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .find(|l| l["total"] == true && l["fn"] == name)
    }

    /// JSON events of function `name`.
    pub fn calls_of(&self, name: &str) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|e| e["fn"] == name)
            .collect()
    }
}

impl Tracer {
    /// Starts `koolkit-trace ARGS` and waits until it reports its probes attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_under(&[], args)
    }

    /// Starts `WRAPPER... koolkit-trace ARGS` (`nsenter -t PID -p --`) and waits as
    /// [`start`](Self::start) does.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(tracer_bin());
                command
            }
            None => Command::new(tracer_bin()),
        };
        command.args(args);
        Self::start_command(command)
    }

    /// Starts a prepared command that runs the tracer (`chroot ROOT /koolkit-trace ...`) and
    /// waits as [`start`](Self::start) does.
    pub fn start_command(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start koolkit-trace");
        let stdout = child.stdout.take();
        let mut stderr = LineReader::new(child.stderr.take().unwrap());
        stderr.wait_for("Ctrl-C to stop", Duration::from_secs(30));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the tracer has ended by itself.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process (or, under a wrapper, its child).
        let rc = unsafe { libc::kill(self.tracer_pid() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// The tracer's own process: the child, or under a wrapper (`nsenter`) the descendant
    /// that runs the tracer binary.
    fn tracer_pid(&self) -> u32 {
        let bin = tracer_bin();
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            if fs::read_link(format!("/proc/{parent}/exe")).is_ok_and(|exe| exe == bin) {
                return parent;
            }
            let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                .unwrap_or_default();
            parents.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        self.child.id()
    }

    /// Waits for the tracer to exit on its own (or after a signal) and collects its output.
    pub fn wait(mut self, timeout: Duration) -> TracerOutput {
        let mut stdout = self.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).unwrap();
            text
        });
        let status = wait_timeout(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "koolkit-trace did not exit within {timeout:?}; stderr so far:\n{}",
                self.stderr.seen().join("\n")
            )
        });
        let stdout = reader.join().unwrap();
        let mut stderr = self.stderr.seen().to_vec();
        stderr.extend(self.stderr.rest(Duration::from_secs(5)));
        TracerOutput {
            status,
            stdout,
            stderr: stderr.join("\n"),
        }
    }

    /// Sends SIGINT (Ctrl-C) and collects the output.
    pub fn interrupt(self) -> TracerOutput {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `koolkit-trace ARGS` to completion (for commands that fail or end by themselves).
pub fn run_tracer(args: &[&str]) -> TracerOutput {
    let output = Command::new(tracer_bin())
        .args(args)
        .output()
        .expect("run koolkit-trace");
    TracerOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `binary`, opened, and the file offset of `function`'s entry in it.
fn entry_file_offset(binary: &Path, function: &str) -> (tracer::ElfFile, u64) {
    let elf = tracer::ElfFile::open(binary).unwrap();
    let symbol = elf
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("{function} not in {}", binary.display()));
    let offset = elf.file_offset(symbol.address).unwrap().unwrap();
    (elf, offset)
}

/// The address where `function` of `binary` is mapped in process `pid`.
pub fn runtime_address(pid: u32, binary: &Path, function: &str) -> u64 {
    runtime_address_as_mapped(pid, &fs::canonicalize(binary).unwrap(), binary, function)
}

/// [`runtime_address`] for a copy of `binary` that process `pid` maps at `mapped` (its path in
/// a container).
pub fn runtime_address_as_mapped(pid: u32, mapped: &Path, binary: &Path, function: &str) -> u64 {
    let (_, file_offset) = entry_file_offset(binary, function);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || Path::new(fields[5]) != mapped {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = u64::from_str_radix(fields[2], 16).unwrap();
        if file_offset >= offset && file_offset < offset + (end - start) {
            return start + (file_offset - offset);
        }
    }
    panic!("{function} of {} is not mapped in {pid}", binary.display())
}

/// The first byte of the instruction at `address` in process `pid`'s memory.
pub fn byte_in_process(pid: u32, address: u64) -> u8 {
    use std::os::unix::fs::FileExt as _;
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut byte = [0u8];
    mem.read_exact_at(&mut byte, address).unwrap();
    byte[0]
}

/// The byte at `function`'s entry in the file `binary`.
pub fn byte_in_file(binary: &Path, function: &str) -> u8 {
    let (elf, offset) = entry_file_offset(binary, function);
    elf.bytes_at(offset, 1)[0]
}

/// The x86 breakpoint instruction a uprobe writes at its site.
pub const INT3: u8 = 0xcc;

/// Traces one round of `fixture`'s calls with `koolkit-trace --pid PID --json ARGS`.
pub fn trace_round(fixture: &mut Fixture, tracer_args: &[&str]) -> TracerOutput {
    let pid = fixture.pid.to_string();
    let mut args = vec!["--pid", pid.as_str(), "--json"];
    args.extend_from_slice(tracer_args);
    let tracer = Tracer::start(&args);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{output:?}");
    output
}

/// The frames of a JSON call's `stack` (`--stack`), innermost first; panics without one.
pub fn stack_of(call: &serde_json::Value) -> Vec<&str> {
    call["stack"]
        .as_array()
        .unwrap_or_else(|| panic!("no stack: {call}"))
        .iter()
        .map(|f| {
            f.as_str()
                .unwrap_or_else(|| panic!("a frame that is no string: {call}"))
        })
        .collect()
}

impl TracerOutput {
    /// The one call of `name`, with a clear failure if there is not exactly one.
    pub fn only_call(&self, name: &str) -> serde_json::Value {
        let calls = self.calls_of(name);
        assert_eq!(
            calls.len(),
            1,
            "calls of {name}:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        calls.into_iter().next().unwrap()
    }
}
