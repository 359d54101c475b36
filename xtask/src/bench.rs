//! `cargo xtask bench`: measured claims, side by side with the peers on the same machine in one
//! run, printed as figures and ratios (never asserted in tests: timings belong here).
//!
//! Trace files: `cargo bench -p tracer --bench trace_file` (writer speed, bytes per call,
//! report time, against JSON Lines).
//!
//! Symbols: on koolkit-trace's own debug build (a large binary with full DWARF), `list` of a
//! glob and resolving one function with its parameters (`list --params`), against
//! `bpftrace -l` / `bpftrace -lv` on the same binary. Budget: under 150 ms wall and 150 MB
//! peak RSS each.
//!
//! Go: what one traced call costs a Go program, against bpftrace; C++: what each return kind
//! costs (see `call_cost`).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{cargo, run, setup::setup, workspace_root};

/// One run of a command: wall time and the child's peak resident set.
struct Sample {
    wall: Duration,
    max_rss_kib: u64,
    ok: bool,
    lines: usize,
}

/// Runs `program ARGS` once, measuring it with `wait4`.
fn sample(program: &Path, args: &[&str]) -> Result<Sample, String> {
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("starting {}: {err}", program.display()))?;
    let output = child
        .wait_with_output_and_rusage()
        .map_err(|err| format!("waiting for {}: {err}", program.display()))?;
    let wall = started.elapsed();
    Ok(Sample {
        wall,
        max_rss_kib: output.1,
        ok: output.0.status.success(),
        lines: output.0.stdout.iter().filter(|&&b| b == b'\n').count(),
    })
}

/// `wait_with_output`, also returning the child's peak RSS (KiB) from `wait4`.
trait WaitWithRusage {
    fn wait_with_output_and_rusage(self) -> std::io::Result<(std::process::Output, u64)>;
}

impl WaitWithRusage for std::process::Child {
    fn wait_with_output_and_rusage(mut self) -> std::io::Result<(std::process::Output, u64)> {
        use std::{io::Read as _, os::unix::process::ExitStatusExt as _};
        let mut stdout = Vec::new();
        if let Some(mut pipe) = self.stdout.take() {
            pipe.read_to_end(&mut stdout)?;
        }
        let mut status = 0;
        // SAFETY: `rusage` is plain data the call fills; the pid is our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers for the duration of the call.
        let pid = unsafe { libc::wait4(self.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let output = std::process::Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout,
            stderr: Vec::new(),
        };
        Ok((output, usage.ru_maxrss as u64))
    }
}

/// The median of `runs` samples (by wall time), and the largest peak RSS.
fn measure(program: &Path, args: &[&str], runs: usize) -> Result<Sample, String> {
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(sample(program, args)?);
    }
    let max_rss_kib = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    samples.sort_by_key(|s| s.wall);
    let mut median = samples.swap_remove(runs / 2);
    median.max_rss_kib = max_rss_kib;
    Ok(median)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn report(what: &str, ours: &Sample, theirs: Option<&Sample>, budget_ms: f64, budget_mib: f64) {
    let rss_mib = ours.max_rss_kib as f64 / 1024.0;
    let verdict = if ms(ours.wall) < budget_ms && rss_mib < budget_mib && ours.ok {
        "within budget"
    } else {
        "OVER BUDGET"
    };
    println!(
        "{what}\n  koolkit-trace: {:8.1} ms  {:7.1} MiB peak RSS  {:5} lines  ({verdict}: < {budget_ms} ms, < {budget_mib} MiB)",
        ms(ours.wall),
        rss_mib,
        ours.lines,
    );
    match theirs {
        Some(theirs) => println!(
            "  bpftrace:      {:8.1} ms  {:7.1} MiB peak RSS  {:5} lines  -> koolkit-trace is {:.1}x faster",
            ms(theirs.wall),
            theirs.max_rss_kib as f64 / 1024.0,
            theirs.lines,
            ms(theirs.wall) / ms(ours.wall).max(0.001)
        ),
        None => println!("  bpftrace:      not available"),
    }
}

/// The mangled symbol of `function` in `binary`, for tools that do not demangle.
fn mangled(tracer: &Path, binary: &Path, function: &str) -> Option<String> {
    let output = Command::new(tracer)
        .args(["list", "--json", "--binary"])
        .arg(binary)
        .arg(function)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next()?;
    let start = line.find("\"symbol\":\"")? + "\"symbol\":\"".len();
    Some(line[start..].split('"').next()?.to_string())
}

pub fn bench(only: &[String]) -> Result<(), String> {
    setup()?;
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    for group in only {
        if !["symbols", "calls", "prologues", "attach", "files"].contains(&group.as_str()) {
            return Err(format!(
                "no bench group `{group}`: symbols, calls, prologues (a part of calls), attach, \
                 files"
            ));
        }
    }
    const RUNS: usize = 7;
    // What users run: a release build. What it reads: the debug build, the largest binary
    // with full DWARF at hand.
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "tracer",
        "--bin",
        "koolkit-trace",
    ]))?;
    run(cargo().args(["build", "--package", "tracer", "--bin", "koolkit-trace"]))?;
    let root = workspace_root();
    // Every group builds its programs and writes its trace files here.
    std::fs::create_dir_all(root.join("target/bench")).map_err(|e| e.to_string())?;
    let tracer = root.join("target/release/koolkit-trace");
    let target = root.join("target/debug/koolkit-trace");
    let size_mib =
        std::fs::metadata(&target).map_err(|e| e.to_string())?.len() as f64 / (1 << 20) as f64;
    let target_str = target.to_str().ok_or("non-UTF-8 path")?;
    if wanted("prologues") && !wanted("calls") {
        crate::call_cost::prologue_cost(&tracer)?;
        crate::call_cost::throughput(&tracer)?;
    }
    if wanted("calls") {
        crate::entry_share::entry_share(&tracer, &target)?;
        crate::call_cost::prologue_cost(&tracer)?;
        crate::call_cost::throughput(&tracer)?;
        crate::call_cost::go_call_cost(&tracer)?;
        crate::call_cost::return_kind_cost(&tracer)?;
        crate::call_cost::selection_cost(&tracer)?;
    }
    if wanted("attach") {
        crate::attach_cost::attach_cost(&tracer)?;
    }
    if wanted("files") {
        run(cargo().args(["bench", "--package", "tracer", "--bench", "trace_file"]))?;
    }
    if !wanted("symbols") {
        return Ok(());
    }
    println!(
        "\nsymbols: target {} ({size_mib:.0} MiB, full DWARF), median of {RUNS} runs\n",
        target.display()
    );

    let bpftrace = Path::new("/usr/bin/bpftrace");
    let bpftrace = bpftrace.exists().then_some(bpftrace);

    let ours = measure(
        &tracer,
        &["list", "--binary", target_str, "tracer::symbols::*"],
        RUNS,
    )?;
    let theirs = match bpftrace {
        Some(b) => Some(measure(
            b,
            &["-l", &format!("uprobe:{target_str}:*symbols*")],
            RUNS,
        )?),
        None => None,
    };
    report(
        "list of a glob (tracer::symbols::*)",
        &ours,
        theirs.as_ref(),
        150.0,
        150.0,
    );

    let function = "tracer::symbols::dwarf::lines::path_ends_with";
    let ours = measure(
        &tracer,
        &["list", "--params", "--binary", target_str, function],
        RUNS,
    )?;
    let theirs = match (bpftrace, mangled(&tracer, &target, function)) {
        (Some(b), Some(symbol)) => Some(measure(
            b,
            &["-lv", &format!("uprobe:{target_str}:{symbol}")],
            RUNS,
        )?),
        _ => None,
    };
    report(
        &format!("one function with its parameters ({function})"),
        &ours,
        theirs.as_ref(),
        150.0,
        150.0,
    );

    Ok(())
}
