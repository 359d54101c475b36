//! `cargo xtask bench`, what one traced call costs the program, measured by the program itself
//! (a loop of calls timing itself) in one run against bpftrace on the same function:
//!
//! - Go: untraced, under bpftrace with an entry probe at +0 (`@n = count()`, in-kernel), and
//!   under koolkit-trace (an entry probe after the stack check and a uprobe on every `ret`,
//!   each call recorded to a trace file). Go functions have no safe uretprobe, so bpftrace's
//!   figure has no return probe: the difference estimates what the `ret` trap and pairing add.
//! - C++, both return kinds on one function that calls another: a uretprobe (the kernel's
//!   trampoline) and a uprobe on each way out (the kernel single-steps `ret`), against
//!   bpftrace's uprobe + uretprobe.

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
            return Err(format!("the loop said {ready:?}"));
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
                .ok_or_else(|| format!("the loop said {line:?}"))?;
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

/// The loop of `binary` started, its untraced cost per call, and its cost under bpftrace
/// running `program(binary)` (None where bpftrace is not installed).
fn untraced_and_bpftrace(
    binary: &Path,
    program: impl Fn(&Path) -> String,
) -> Result<(Looper, f64, Option<f64>), String> {
    let mut looper = Looper::start(binary)?;
    let pid = looper.child.id().to_string();
    let untraced = looper.ns_per_call()?;
    let bpftrace = Path::new("/usr/bin/bpftrace");
    let theirs = if bpftrace.exists() {
        let program = program(binary);
        Some(under(
            &mut looper,
            Command::new(bpftrace).args(["-p", &pid, "-e", &program]),
        )?)
    } else {
        None
    };
    Ok((looper, untraced, theirs))
}

pub fn go_call_cost(tracer: &Path) -> Result<(), String> {
    let binary = build_loop()?;
    let (mut looper, untraced, theirs) = untraced_and_bpftrace(&binary, |binary| {
        format!("uprobe:{}:main.add {{ @n = count(); }}", binary.display())
    })?;
    let pid = looper.child.id().to_string();
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

fn build_cpp_loop() -> Result<PathBuf, String> {
    let root = workspace_root();
    let binary = root.join("target/bench/cpp-loop");
    run(Command::new("g++")
        .args(["-O2", "-g", "-o"])
        .arg(&binary)
        .arg(root.join("tests/fixtures/cpp/loop.cpp")))?;
    Ok(binary)
}

/// The per-call cost of the two return kinds on one C++ function (`work`, which calls
/// `leaf`): `--returns uretprobe` and `--returns ret-sites`, against bpftrace's uprobe and
/// uretprobe on it, in one run.
pub fn return_kind_cost(tracer: &Path) -> Result<(), String> {
    let binary = build_cpp_loop()?;
    let (mut looper, untraced, theirs) = untraced_and_bpftrace(&binary, |binary| {
        let function = format!("{}:_Z4workl", binary.display());
        format!(
            "uprobe:{function} {{ @start[tid] = nsecs; }} \
             uretprobe:{function} /@start[tid]/ {{ @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
        )
    })?;
    let pid = looper.child.id().to_string();
    let record = workspace_root().join("target/bench/cpp-loop.kt");
    let mut ours = Vec::new();
    for kind in ["uretprobe", "ret-sites"] {
        ours.push(under(
            &mut looper,
            Command::new(tracer)
                .args([
                    "--pid",
                    &pid,
                    "--fn",
                    "work",
                    "--returns",
                    kind,
                    "--quiet",
                    "--force",
                    "-o",
                ])
                .arg(&record),
        )?);
    }
    println!(
        "\nReturn kinds: work() (C++ -O2, calls leaf()), {CALLS} calls a round, median of \
         {ROUNDS} rounds, as the program measures itself\n"
    );
    println!("  untraced:                              {untraced:8.1} ns/call");
    if let Some(theirs) = theirs {
        println!(
            "  bpftrace, uprobe + uretprobe:          {theirs:8.1} ns/call  (+{:.1} ns)",
            theirs - untraced
        );
    }
    let (uretprobe, ret_sites) = (ours[0], ours[1]);
    println!(
        "  koolkit-trace, uretprobe:              {uretprobe:8.1} ns/call  (+{:.1} ns)",
        uretprobe - untraced
    );
    println!(
        "  koolkit-trace, a uprobe on each ret:   {ret_sites:8.1} ns/call  (+{:.1} ns)",
        ret_sites - untraced
    );
    println!(
        "  the ret site costs {:+.1} ns a call more than the uretprobe ({:.2}x); it is what \
         lets an exception unwind through the function",
        ret_sites - uretprobe,
        (ret_sites - untraced) / (uretprobe - untraced).max(f64::EPSILON)
    );
    if let Some(theirs) = theirs {
        println!(
            "  against bpftrace's uprobe + uretprobe: uretprobe {:.2}x, ret sites {:.2}x",
            (uretprobe - untraced) / (theirs - untraced).max(f64::EPSILON),
            (ret_sites - untraced) / (theirs - untraced).max(f64::EPSILON)
        );
    }
    Ok(())
}

/// What a process outside the selected set pays when the kernel selects the traced processes
/// (`--container`, `--pod`, `--children`): the probes live on the file's inode, so a second
/// process running the same binary still traps on every call, and the programs drop the call
/// after one map lookup. Measured on that second process, against it traced itself.
pub fn selection_cost(tracer: &Path) -> Result<(), String> {
    let binary = build_cpp_loop()?;
    // Started and left idle: the process the trace selects.
    let selected = Looper::start(&binary)?;
    let mut outside = Looper::start(&binary)?;
    let untraced = outside.ns_per_call()?;
    let selected_pid = selected.child.id().to_string();
    let outside_pid = outside.child.id().to_string();
    let record = workspace_root().join("target/bench/cpp-loop.kt");
    let trace_work = |looper: &mut Looper, target: &[&str]| {
        under(
            looper,
            Command::new(tracer)
                .args(target)
                .args(["--fn", "work", "--quiet", "--force", "-o"])
                .arg(&record),
        )
    };
    let not_selected = trace_work(&mut outside, &["--pid", &selected_pid, "--children"])?;
    let traced = trace_work(&mut outside, &["--pid", &outside_pid])?;
    drop(selected);
    println!(
        "\nKernel selection: work() in a second process of the same binary, {CALLS} calls a \
         round, median of {ROUNDS} rounds\n"
    );
    println!("  untraced:                                {untraced:8.1} ns/call");
    println!(
        "  outside the selected processes:          {not_selected:8.1} ns/call  (+{:.1} ns: \
         the traps and one map lookup, nothing emitted)",
        not_selected - untraced
    );
    println!(
        "  traced itself:                           {traced:8.1} ns/call  (+{:.1} ns)",
        traced - untraced
    );
    Ok(())
}
