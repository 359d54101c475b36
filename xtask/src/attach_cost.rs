//! `cargo xtask bench attach`: attaching and detaching 1,000 and 10,000 functions of a
//! generated C program, against bpftrace on the same set, in one run.
//!
//! Both trace the file (no process) for a fixed 200 ms and exit; the wall time minus those
//! 200 ms is what attach, detach and start-up cost. koolkit-trace also reports its own attach
//! and detach times, which are printed beside it.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{run, workspace_root};

const TRACED_FOR: Duration = Duration::from_millis(200);
/// How long bpftrace gets for one size before it is stopped.
const BPFTRACE_LIMIT: Duration = Duration::from_secs(150);

/// A C program with `n` distinct functions `bench_fn_0..`, built once per size.
fn generated_program(n: usize) -> Result<PathBuf, String> {
    let dir = workspace_root().join("target/bench");
    let binary = dir.join(format!("functions-{n}"));
    if binary.exists() {
        return Ok(binary);
    }
    let mut source = String::from("#include <stdio.h>\n");
    for i in 0..n {
        // Distinct bodies, so the linker folds none of them.
        let _ = writeln!(
            source,
            "__attribute__((noinline)) long bench_fn_{i}(long x) {{ return x * {i} + 1; }}"
        );
    }
    source.push_str("int main(void) { long s = 0;\n");
    for i in 0..n {
        let _ = writeln!(source, "  s += bench_fn_{i}(s);");
    }
    source.push_str("  printf(\"%ld\\n\", s); return 0; }\n");
    let c = dir.join(format!("functions-{n}.c"));
    std::fs::write(&c, source).map_err(|e| e.to_string())?;
    run(Command::new("gcc").args(["-O1", "-o"]).arg(&binary).arg(&c))?;
    Ok(binary)
}

/// The wall time of `command` minus the time it traces for, and its standard error.
fn timed(command: &mut Command) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|err| format!("starting {command:?}: {err}"))?;
    let wall = started.elapsed().saturating_sub(TRACED_FOR);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    if !output.status.success() {
        return Err(format!("{command:?} failed: {stderr}"));
    }
    Ok((wall, stderr))
}

/// `attached in 12.3ms` and `detached N probes in 4.5ms` from koolkit-trace's output.
fn own_figures(stderr: &str) -> String {
    let after = |needle: &str| {
        let at = stderr.find(needle)? + needle.len();
        let rest = &stderr[at..];
        Some(rest.split([';', ')', '\n']).next()?.trim().to_string())
    };
    let detach = stderr
        .lines()
        .find(|l| l.starts_with("detached "))
        .and_then(|l| l.rsplit(" in ").next())
        .unwrap_or("?");
    format!(
        "attach {}, detach {detach}",
        after("attached in ").unwrap_or_else(|| "?".into())
    )
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Functions traced through perf-event links, by one thread and by the default number. Small:
/// each link costs the kernel a grace period to release (DESIGN.md), and a run waits until the
/// links of the one before are gone, since a release holds the lock an attach needs.
const PERF_FUNCTIONS: usize = 250;
/// How long a run waits for earlier links to be released.
const RELEASE_LIMIT: Duration = Duration::from_secs(180);

/// Whether a process named koolkit-trace (a detaching child) is still there.
fn tracer_still_detaching() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "koolkit-trace")
    })
}

/// Waits until no earlier koolkit-trace is releasing links; false if it took too long.
fn wait_for_released_links() -> bool {
    let started = Instant::now();
    while tracer_still_detaching() {
        if started.elapsed() > RELEASE_LIMIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// koolkit-trace's own attach time of `binary`'s functions through perf-event links made by
/// `threads` threads (the default where `None`).
fn perf_attach(tracer: &Path, binary: &Path, threads: Option<usize>) -> Result<String, String> {
    if !wait_for_released_links() {
        return Ok(format!(
            "skipped: an earlier koolkit-trace was still releasing links after {} s",
            RELEASE_LIMIT.as_secs()
        ));
    }
    let mut command = Command::new(tracer);
    command
        .args(["--binary"])
        .arg(binary)
        .args(["--fn", "bench_fn_*", "--attach", "perf", "--quiet"])
        .args(["--duration", &format!("{}ms", TRACED_FOR.as_millis())]);
    if let Some(threads) = threads {
        command.env("KOOLKIT_TRACE_ATTACH_THREADS", threads.to_string());
    }
    let (_, stderr) = timed(&mut command)?;
    Ok(own_figures(&stderr))
}

pub fn attach_cost(tracer: &Path) -> Result<(), String> {
    println!(
        "\nAttach + detach of a generated C program's functions (bench_fn_*), each tool \
         tracing the file for {} ms; wall time minus that\n",
        TRACED_FOR.as_millis()
    );
    let bpftrace = Path::new("/usr/bin/bpftrace");
    for n in [1_000usize, 10_000] {
        let binary = generated_program(n)?;
        let pattern = format!("{}:bench_fn_*", binary.display());
        let duration = format!("{}ms", TRACED_FOR.as_millis());
        let record = binary.with_extension("kt");
        let (ours, stderr) = timed(Command::new(tracer).args([
            "-o",
            record.to_str().ok_or("non-UTF-8 path")?,
            "--force",
            "--binary",
            binary.to_str().ok_or("non-UTF-8 path")?,
            "--fn",
            "bench_fn_*",
            "--duration",
            &duration,
            "--quiet",
        ]))?;
        let goal = if n == 1_000 { " (goal <= 100 ms)" } else { "" };
        println!(
            "  {n:>6} functions  koolkit-trace: {:8.1} ms{goal}  [{}]",
            ms(ours),
            own_figures(&stderr)
        );
        if bpftrace.exists() {
            let program = format!(
                "uprobe:{pattern} {{ }} interval:ms:{} {{ exit(); }}",
                TRACED_FOR.as_millis()
            );
            // bpftrace attaches one perf event per function: give it a bound.
            let limit = BPFTRACE_LIMIT.as_secs().to_string();
            match timed(
                Command::new("timeout")
                    .args([
                        limit.as_str(),
                        bpftrace.to_str().unwrap_or("bpftrace"),
                        "-e",
                    ])
                    .arg(&program)
                    .env("BPFTRACE_MAX_PROBES", (n + 10).to_string()),
            ) {
                Ok((theirs, _)) => println!(
                    "  {n:>6} functions  bpftrace:      {:8.1} ms  -> koolkit-trace takes {:.3}x \
                     its time",
                    ms(theirs),
                    ms(ours) / ms(theirs).max(0.001)
                ),
                Err(_) => println!(
                    "  {n:>6} functions  bpftrace:      did not finish within {} s (> {:.0}x \
                     koolkit-trace's time)",
                    BPFTRACE_LIMIT.as_secs(),
                    BPFTRACE_LIMIT.as_secs_f64() * 1e3 / ms(ours).max(0.001)
                ),
            }
        }
    }
    let binary = generated_program(PERF_FUNCTIONS)?;
    println!(
        "\n  perf-event links (kernels before 6.6), {PERF_FUNCTIONS} functions, entry and return:"
    );
    for (label, threads) in [("1 thread", Some(1)), ("default threads", None)] {
        println!(
            "    {label:>16}: [{}]",
            perf_attach(tracer, &binary, threads)?
        );
    }
    Ok(())
}
