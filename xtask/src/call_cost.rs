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
        Self::start_with(binary, &[])
    }

    /// The loop of `binary`, with `extra` arguments after the number of calls.
    fn start_with(binary: &Path, extra: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .arg(CALLS)
            .args(extra)
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
    stop(&mut tracer);
    measured
}

/// Stops a tracer with SIGINT, as a user would; again every 2 s if it has not exited (a
/// bpftrace started a moment before may miss the first), and with SIGKILL after 10 s.
fn stop(tracer: &mut Child) {
    for attempt in 0..50 {
        if attempt % 10 == 0 {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
        }
        if tracer.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tracer.kill();
    let _ = tracer.wait();
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

fn build_prologues() -> Result<PathBuf, String> {
    let root = workspace_root();
    let binary = root.join("target/bench/prologues");
    run(Command::new("gcc")
        .args(["-O2", "-g", "-o"])
        .arg(&binary)
        .arg(root.join("tests/fixtures/c/prologues.c")))?;
    Ok(binary)
}

/// What one traced call of an empty C function costs, for each prologue kind the entry probe
/// meets (`push`, `endbr64; push`, `cmp; jne`), side by side in one run: untraced; an empty
/// uprobe + uretprobe (bpftrace's, at +0: the floor a probe pair costs); bpftrace pairing
/// entry and return with a printf per call; koolkit-trace recording every call to a trace
/// file; koolkit-trace `--histogram`. Ratios are of the cost above untraced.
pub fn prologue_cost(tracer: &Path) -> Result<(), String> {
    let binary = build_prologues()?;
    let bpftrace = Path::new("/usr/bin/bpftrace");
    let record = workspace_root().join("target/bench/prologues.kt");
    println!(
        "\nPer traced call of an empty C function, by prologue: {CALLS} calls a round, median of \
         {ROUNDS} rounds, as the program measures itself (ns/call; in brackets the cost above \
         untraced)\n"
    );
    println!(
        "  {:<22} {:>10} {:>16} {:>18} {:>16} {:>16}",
        "prologue",
        "untraced",
        "floor (empty)",
        "bpftrace pairing",
        "koolkit -o file",
        "--histogram"
    );
    let mut ratios = Vec::new();
    for (kind, function) in [
        ("push", "push_frame"),
        ("endbr", "endbr_frame"),
        ("cmp", "cmp_branch"),
    ] {
        let mut looper = Looper::start_with(&binary, &[kind])?;
        let pid = looper.child.id().to_string();
        let untraced = looper.ns_per_call()?;
        let site = format!("{}:{function}", binary.display());
        let mut bpftrace_run = |program: String| -> Result<Option<f64>, String> {
            if !bpftrace.exists() {
                return Ok(None);
            }
            under(
                &mut looper,
                Command::new(bpftrace).args(["-p", &pid, "-e", &program]),
            )
            .map(Some)
        };
        let floor = bpftrace_run(format!("uprobe:{site} {{ }} uretprobe:{site} {{ }}"))?;
        let pairing = bpftrace_run(format!(
            "uprobe:{site} {{ @s[tid] = nsecs; }} \
             uretprobe:{site} /@s[tid]/ {{ printf(\"%d\\n\", nsecs - @s[tid]); delete(@s[tid]); }}"
        ))?;
        let ours = |looper: &mut Looper, mode: &[&str]| {
            under(
                looper,
                Command::new(tracer)
                    .args(["--pid", &pid, "--fn", function])
                    .args(mode),
            )
        };
        let record_arg = record.to_str().ok_or("non-UTF-8 path")?;
        let file = ours(&mut looper, &["--quiet", "--force", "-o", record_arg])?;
        let histogram = ours(&mut looper, &["--histogram"])?;
        let shown = |ns: Option<f64>| match ns {
            Some(ns) => format!("{ns:7.1} (+{:.1})", ns - untraced),
            None => "n/a".to_string(),
        };
        println!(
            "  {:<22} {untraced:10.1} {:>16} {:>18} {:>16} {:>16}",
            format!("{kind} ({function})"),
            shown(floor),
            shown(pairing),
            shown(Some(file)),
            shown(Some(histogram)),
        );
        ratios.push((kind, untraced, floor, pairing, file, histogram));
    }
    println!();
    for (kind, untraced, floor, pairing, file, histogram) in ratios {
        let above = |ns: f64| (ns - untraced).max(f64::EPSILON);
        let mut line = format!("  {kind:<6}");
        if let Some(floor) = floor {
            line += &format!(
                " trace file {:.2}x the floor (goal <= 1.25x), --histogram {:.2}x (goal <= 1.1x);",
                above(file) / above(floor),
                above(histogram) / above(floor)
            );
        }
        if let Some(pairing) = pairing {
            line += &format!(
                " trace file {:.2}x bpftrace's pairing (goal <= 0.1x)",
                above(file) / above(pairing)
            );
        }
        println!("{line}");
    }
    {
        // What faulting reads cost: a function with a string argument, recorded with the
        // sleepable entry (which plans reading through a pointer get) and the plain one.
        let mut looper = Looper::start_with(&binary, &["string"])?;
        let pid = looper.child.id().to_string();
        let mut record_with = |plain: bool| {
            let mut command = Command::new(tracer);
            command
                .args(["--pid", &pid, "--fn", "named", "--quiet", "--force", "-o"])
                .arg(&record);
            if plain {
                command.env("KOOLKIT_TRACE_NO_SLEEPABLE", "1");
            }
            under(&mut looper, &mut command)
        };
        let sleepable = record_with(false)?;
        let plain = record_with(true)?;
        println!(
            "  named(const char *name): the sleepable entry (its string read faults pages in) \
             {sleepable:.1} ns/call; the plain one {plain:.1} ns/call ({:+.1} ns a call; plans \
             of registers alone, and --histogram, get the plain one)",
            sleepable - plain
        );
    }
    println!(
        "  (the floor's probes are bpftrace's, at +0, which it cannot move: on `endbr64` and \
         `cmp` the kernel single-steps them, where koolkit-trace's entry probe moved to an \
         instruction it emulates)"
    );
    Ok(())
}

/// The N of "N calls of ..." in a summary (commas allowed), and whether it says "drops: none".
fn summary_calls(stderr: &str) -> (Option<u64>, bool) {
    let calls = stderr.lines().find_map(|line| {
        let (n, rest) = line.trim().split_once(' ')?;
        (rest.starts_with("calls of") || rest.starts_with("call of"))
            .then(|| n.replace(',', "").parse().ok())
            .flatten()
    });
    (calls, stderr.contains("drops: none"))
}

/// The calls a summary's `drops:` line counts as dropped with the ring buffer full, when that
/// is the only kind of drop it names.
fn ring_drops(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("drops: "))?;
    let mut total = 0;
    for part in line.split(", ") {
        let (n, what) = part.split_once(' ')?;
        if what != "dropped: ring buffer full" {
            return None;
        }
        total += n.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Calls per second into a trace file: `processes` copies of the empty-function loop, each
/// calling as fast as it can, traced together through the binary; every call must be in the
/// file (recorded + dropped = called, exactly).
pub fn throughput(tracer: &Path) -> Result<(), String> {
    let binary = build_prologues()?;
    let record = workspace_root().join("target/bench/throughput.kt");
    println!(
        "\nThroughput into a trace file: copies of the empty-function loop (push_frame) calling \
         as fast as they can, traced through the binary, {ROUNDS} rounds of {CALLS} calls each\n"
    );
    // Six callers on two cores: the tracer's reader gets a seventh of the machine, less than
    // the calls need, so the ring fills and every call must be either recorded or counted.
    for processes in [1usize, 2, 6] {
        let mut loops: Vec<Looper> = (0..processes)
            .map(|_| Looper::start_with(&binary, &["push"]))
            .collect::<Result<_, _>>()?;
        let tracer_child = Command::new(tracer)
            .args(["--binary"])
            .arg(&binary)
            .args(["--fn", "push_frame", "--quiet", "--force", "-o"])
            .arg(&record)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("starting {}: {err}", tracer.display()))?;
        std::thread::sleep(Duration::from_secs(2));
        let started = std::time::Instant::now();
        for _ in 0..ROUNDS {
            for looper in &mut loops {
                writeln!(looper.stdin).map_err(|err| err.to_string())?;
            }
            for looper in &mut loops {
                let mut line = String::new();
                looper
                    .stdout
                    .read_line(&mut line)
                    .map_err(|err| err.to_string())?;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(tracer_child.id() as libc::pid_t, libc::SIGINT) };
        let output = tracer_child
            .wait_with_output()
            .map_err(|err| err.to_string())?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let called = (processes * ROUNDS) as u64 * CALLS.parse::<u64>().unwrap_or(0);
        let (recorded, no_drops) = summary_calls(&stderr);
        let dropped = ring_drops(&stderr);
        let accounted = recorded.map(|r| r + dropped.unwrap_or(0));
        println!(
            "  {processes} process{}: {:9.0} calls/s called and traced; recorded {} of {called} \
             calls, {}{}",
            if processes == 1 { " " } else { "es" },
            called as f64 / elapsed,
            recorded.map_or("?".to_string(), |n| n.to_string()),
            match (no_drops, dropped) {
                (true, _) => "drops: none".to_string(),
                (false, Some(n)) => format!("{n} dropped (ring buffer full)"),
                (false, None) => "DROPS of another kind (see the summary)".to_string(),
            },
            if accounted == Some(called) {
                ": recorded + dropped = called, exactly"
            } else {
                ": recorded + dropped != called"
            }
        );
        if accounted != Some(called) {
            println!("    summary: {}", stderr.trim().replace('\n', "\n    "));
        }
    }
    println!(
        "  (the traced programs cannot call faster than their probes let them: on this machine \
         one traced call costs ~2 µs, so the reader is never the limit)"
    );
    Ok(())
}
