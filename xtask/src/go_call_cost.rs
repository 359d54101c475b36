//! `cargo xtask bench`, Go part: what one traced Go call costs the program, measured by the
//! program itself (a loop of `add` calls timing itself), untraced, under bpftrace with an entry
//! probe at +0 on the same function (`@n = count()`, in-kernel), and under koolkit-trace (an
//! entry probe after the stack check and a uprobe on every `ret`, each call recorded to a trace
//! file). Go functions have no safe uretprobe, so bpftrace's figure has no return probe: the
//! difference is an estimate of what the `ret` trap and the pairing add.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use crate::{run, workspace_root};

/// Calls per round, and rounds per mode (the median is reported).
const CALLS: &str = "200000";
const ROUNDS: usize = 5;

/// The loop program, started and waiting for rounds.
struct Looper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Looper {
    fn start(binary: &Path) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .arg(CALLS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| format!("starting {}: {err}", binary.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut ready = String::new();
        stdout
            .read_line(&mut ready)
            .map_err(|err| err.to_string())?;
        if !ready.starts_with("ready ") {
            return Err(format!("the Go loop said {ready:?}"));
        }
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// The median of [`ROUNDS`] rounds, in ns per call.
    fn ns_per_call(&mut self) -> Result<f64, String> {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            writeln!(self.stdin).map_err(|err| err.to_string())?;
            let mut line = String::new();
            self.stdout
                .read_line(&mut line)
                .map_err(|err| err.to_string())?;
            let ns: f64 = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("the Go loop said {line:?}"))?;
            rounds.push(ns);
        }
        rounds.sort_by(f64::total_cmp);
        Ok(rounds[ROUNDS / 2])
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` as a tracer of the loop for one measurement, then stops it with SIGINT.
fn under(looper: &mut Looper, command: &mut Command) -> Result<f64, String> {
    let mut tracer = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("starting {command:?}: {err}"))?;
    // Both attach in well under a second here; the bench is not the place to race them.
    std::thread::sleep(Duration::from_secs(2));
    let measured = looper.ns_per_call();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
    let _ = tracer.wait();
    measured
}

fn build_loop() -> Result<PathBuf, String> {
    let root = workspace_root();
    let binary = root.join("target/bench/go-loop");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(root.join("tests/fixtures/go/loop.go"))
        .env("GOCACHE", root.join("target/go-cache/debian"))
        .env("GO111MODULE", "off"))?;
    Ok(binary)
}

pub fn go_call_cost(tracer: &Path) -> Result<(), String> {
    let binary = build_loop()?;
    let mut looper = Looper::start(&binary)?;
    let pid = looper.child.id().to_string();
    let untraced = looper.ns_per_call()?;

    let bpftrace = Path::new("/usr/bin/bpftrace");
    let theirs = if bpftrace.exists() {
        let program = format!("uprobe:{}:main.add {{ @n = count(); }}", binary.display());
        Some(under(
            &mut looper,
            Command::new(bpftrace).args(["-p", &pid, "-e", &program]),
        )?)
    } else {
        None
    };
    let record = workspace_root().join("target/bench/go-loop.kt");
    let ours = under(
        &mut looper,
        Command::new(tracer)
            .args([
                "--pid", &pid, "--fn", "main.add", "--quiet", "--force", "-o",
            ])
            .arg(&record),
    )?;

    println!(
        "\nGo call cost: main.add (Go 1.19), {CALLS} calls a round, median of {ROUNDS} rounds, \
         as the program measures itself\n"
    );
    println!("  untraced:                        {untraced:8.1} ns/call");
    if let Some(theirs) = theirs {
        println!(
            "  bpftrace, entry at +0 only:      {theirs:8.1} ns/call  (+{:.1} ns)",
            theirs - untraced
        );
    } else {
        println!("  bpftrace:                        not available");
    }
    println!(
        "  koolkit-trace, entry + every ret: {ours:7.1} ns/call  (+{:.1} ns, each call recorded)",
        ours - untraced
    );
    if let Some(theirs) = theirs {
        println!(
            "  the ret trap and pairing, estimated (koolkit-trace - bpftrace): {:.1} ns; \
             ratio {:.2}x bpftrace's entry-only cost",
            ours - theirs,
            (ours - untraced) / (theirs - untraced).max(f64::EPSILON)
        );
    }
    Ok(())
}
