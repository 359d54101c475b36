//! End-to-end: real eBPF programs, real uprobes, real processes built from C at test time.
//! Run as root through `cargo xtask test`.

use std::{thread, time::Duration};

use serde_json::Value;
use tests::{
    Fixture, INT3, Tracer, byte_in_file, byte_in_process, c_fixture, run_tracer, runtime_address,
};

const O1: &[&str] = &["-g", "-O1"];
const PIE: &[&str] = &["-g", "-O1", "-fPIE", "-pie"];
const NO_PIE: &[&str] = &["-g", "-O1", "-fno-pie", "-no-pie"];

fn arg(event: &Value, name: &str) -> i64 {
    event["args"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer argument {name} in {event}"))
}

fn ret(event: &Value) -> i64 {
    event["ret"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer return in {event}"))
}

/// Traces `compute` and `negate` over `rounds` rounds of `iterations` calls and checks every
/// call was seen exactly once, with its arguments, return value, pid and a latency.
fn every_call_seen_exactly_once(flags: &[&str], extra: &[&str]) {
    every_call_seen_exactly_once_under(&[], flags, extra);
}

/// As [`every_call_seen_exactly_once`], with the tracer run under `wrapper` (`env VAR=1`).
fn every_call_seen_exactly_once_under(wrapper: &[&str], flags: &[&str], extra: &[&str]) {
    const ITERATIONS: i64 = 200;
    let binary = c_fixture("calls", flags);
    let mut fixture = Fixture::start(&binary, &[&ITERATIONS.to_string()]);
    let pid = fixture.pid.to_string();
    let mut args = vec!["--pid", &pid, "--fn", "compute", "--fn", "negate", "--json"];
    args.extend_from_slice(extra);
    let tracer = Tracer::start_under(wrapper, &args);
    let checksum = fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{output:?}");

    let expected: i64 = (0..ITERATIONS).map(|i| i * 1000 + 2 * i - i).sum::<i64>() + 1;
    assert_eq!(checksum, expected, "the traced program computed the same");

    let compute = output.calls_of("compute");
    assert_eq!(compute.len(), ITERATIONS as usize, "{}", output.stderr);
    let mut seen = vec![false; ITERATIONS as usize];
    for event in &compute {
        let a = arg(event, "a");
        assert_eq!(arg(event, "b"), 2 * a, "{event}");
        assert_eq!(ret(event), a * 1000 + 2 * a, "{event}");
        assert_eq!(event["pid"], fixture.pid);
        assert_eq!(event["tid"], fixture.pid, "single-threaded fixture");
        assert!(event["latency_ns"].as_u64().unwrap() > 0, "{event}");
        assert!(
            event["object"]
                .as_str()
                .unwrap()
                .ends_with(binary.file_name().unwrap().to_str().unwrap())
        );
        assert!(
            !std::mem::replace(&mut seen[a as usize], true),
            "call {a} seen twice"
        );
    }
    let negate = output.calls_of("negate");
    assert_eq!(negate.len(), ITERATIONS as usize);
    for (i, event) in negate.iter().enumerate() {
        assert_eq!(arg(event, "v"), i as i64, "calls arrive in order: {event}");
        // An `int` return is read as one, sign and all.
        assert_eq!(ret(event), -(i as i64), "{event}");
    }
    // Events of one thread arrive in entry order with wall-clock stamps.
    let stamps: Vec<u64> = compute
        .iter()
        .map(|e| e["ts_ns"].as_u64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    assert!(
        output.stderr.contains("stopped: interrupted"),
        "{}",
        output.stderr
    );
    assert!(fixture.finish().success());
}

#[test]
fn traces_every_call_of_a_pie_binary() {
    every_call_seen_exactly_once(PIE, &[]);
}

#[test]
fn traces_every_call_of_a_non_pie_binary() {
    every_call_seen_exactly_once(NO_PIE, &[]);
}

#[test]
fn perf_event_links_trace_the_same_calls() {
    every_call_seen_exactly_once(O1, &["--attach", "perf"]);
}

/// Kernels before 5.15 hand perf-event links no cookie: the programs tell probes apart by
/// address (and a return by its entry's frame). `KOOLKIT_TRACE_NO_COOKIES` runs that path
/// here; the kernel matrix (`cargo xtask kernels`) runs it on a real 5.10.
#[test]
fn without_attach_cookies_probes_are_told_apart_by_address() {
    every_call_seen_exactly_once_under(
        &["env", "KOOLKIT_TRACE_NO_COOKIES=1"],
        PIE,
        &["--attach", "perf"],
    );
}

/// A process that starts after the attach is met at addresses the tracer has not written
/// yet: its first calls are counted as not told apart, the rest traced, none under another
/// function's name.
#[test]
fn without_attach_cookies_a_later_process_is_traced_once_its_maps_are_read() {
    const ITERATIONS: i64 = 50;
    let binary = c_fixture("calls", PIE);
    let path = binary.to_str().unwrap();
    let tracer = Tracer::start_under(
        &["env", "KOOLKIT_TRACE_NO_COOKIES=1"],
        &[
            "--binary", path, "--fn", "compute", "--fn", "negate", "--attach", "perf", "--json",
        ],
    );
    let mut fixture = Fixture::start(&binary, &[&ITERATIONS.to_string()]);
    fixture.round();
    // The tracer reads the new process's maps within a tick of its first unknown call.
    thread::sleep(Duration::from_millis(500));
    fixture.round();
    let output = tracer.interrupt();
    assert!(fixture.finish().success());
    let compute = output.calls_of("compute");
    let negate = output.calls_of("negate");
    for event in &compute {
        let a = arg(event, "a");
        assert_eq!(arg(event, "b"), 2 * a, "{event}");
        assert_eq!(ret(event), a * 1000 + 2 * a, "{event}");
    }
    for event in &negate {
        assert_eq!(ret(event), -arg(event, "v"), "{event}");
    }
    assert!(
        compute.len() >= ITERATIONS as usize && negate.len() >= ITERATIONS as usize,
        "the second round is traced whole: {} compute, {} negate\n{}",
        compute.len(),
        negate.len(),
        output.stderr
    );
    let told = compute.len() + negate.len();
    assert!(told <= 4 * ITERATIONS as usize, "{}", output.stderr);
    if told < 4 * ITERATIONS as usize {
        assert!(
            output.stderr.contains("not told apart"),
            "{told} calls of {}, the rest must be counted: {}",
            4 * ITERATIONS,
            output.stderr
        );
    }
}

#[test]
fn latency_of_a_sleeping_function_covers_its_sleep() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["3", "10"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "sleepy", "--json"]);
    fixture.round();
    let output = tracer.interrupt();
    let sleepy = output.calls_of("sleepy");
    assert_eq!(sleepy.len(), 3, "{}", output.stderr);
    for event in sleepy {
        let latency = event["latency_ns"].as_u64().unwrap();
        assert!(latency >= 10_000_000, "slept 10 ms, measured {latency} ns");
        assert!(latency < 1_000_000_000, "implausible {latency} ns");
        assert_eq!(arg(&event, "ms"), 10);
        assert_eq!(ret(&event), 11);
    }
}

#[test]
fn traces_a_shared_library_function() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["1"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "libc.so.6:malloc", "--json"]);
    for _ in 0..3 {
        fixture.round();
    }
    let output = tracer.interrupt();
    let ours: Vec<Value> = output
        .calls_of("malloc")
        .into_iter()
        // The first argument is `bytes` where libc's debug file is installed, else `arg0`.
        .filter(|e| e["args"].as_object().and_then(|a| a.values().next()) == Some(&4242.into()))
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "one malloc(4242) per round:\n{}",
        output.stdout
    );
    for event in &ours {
        assert!(
            event["object"].as_str().unwrap().ends_with("libc.so.6"),
            "{event}"
        );
        assert_eq!(event["pid"], fixture.pid);
        assert_ne!(event["ret"], 0, "malloc returned a pointer");
    }
}

#[test]
fn human_output_has_one_line_per_call() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["3"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--color", "never"]);
    fixture.round();
    let output = tracer.interrupt();
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", output.stdout);
    for (i, line) in lines.iter().enumerate() {
        // 12:04:05.123456 4242/4242 compute(a=1, b=2) = 1002 <12.3µs>
        let fields: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(fields[0].len(), 15, "{line}");
        assert_eq!(fields[1], format!("{pid}/{pid}"));
        let call = format!("compute(a={i}, b={}) = {} <", 2 * i, i * 1002);
        assert!(fields[2].starts_with(&call), "{line}");
        assert!(fields[2].ends_with("s>"), "{line}");
    }
    assert!(
        output.stderr.contains("FUNCTION"),
        "summary table: {}",
        output.stderr
    );
}

#[test]
fn binary_target_traces_every_process_running_it() {
    let binary = c_fixture("calls", O1);
    let mut first = Fixture::start(&binary, &["2"]);
    let path = binary.to_str().unwrap();
    let tracer = Tracer::start(&["--binary", path, "--fn", "compute", "--json"]);
    // A process started after attaching is traced too: the probe is on the file.
    let mut second = Fixture::start(&binary, &["2"]);
    first.round();
    second.round();
    let output = tracer.interrupt();
    let compute = output.calls_of("compute");
    for fixture in [&first, &second] {
        let calls = compute.iter().filter(|e| e["pid"] == fixture.pid).count();
        assert_eq!(calls, 2, "pid {}: {}", fixture.pid, output.stdout);
    }
}

#[test]
fn pid_filter_ignores_other_processes_of_the_same_binary() {
    let binary = c_fixture("calls", O1);
    let mut traced = Fixture::start(&binary, &["4"]);
    let mut other = Fixture::start(&binary, &["4"]);
    let pid = traced.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--json"]);
    other.round();
    traced.round();
    let output = tracer.interrupt();
    let compute = output.calls_of("compute");
    assert_eq!(compute.len(), 4, "{}", output.stdout);
    assert!(compute.iter().all(|e| e["pid"] == traced.pid));
}

#[test]
fn max_events_stops_after_that_many_calls() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["50"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "--json",
        "--max-events",
        "7",
    ]);
    fixture.round();
    let output = tracer.wait(Duration::from_secs(30));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.calls_of("compute").len(), 7);
    assert!(
        output.stderr.contains("stopped: max events reached"),
        "{}",
        output.stderr
    );
}

#[test]
fn duration_ends_the_trace_and_target_exit_ends_it_too() {
    let binary = c_fixture("calls", O1);
    let fixture = Fixture::start(&binary, &["1"]);
    let pid = fixture.pid.to_string();
    let timed = Tracer::start(&["--pid", &pid, "--fn", "compute", "--duration", "300ms"]);
    let output = timed.wait(Duration::from_secs(10));
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains("stopped: duration elapsed"),
        "{}",
        output.stderr
    );

    let watching = Tracer::start(&["--pid", &pid, "--fn", "compute"]);
    assert!(fixture.finish().success());
    let output = watching.wait(Duration::from_secs(10));
    assert!(output.status.success(), "{output:?}");
    assert!(
        output
            .stderr
            .contains(&format!("stopped: process {pid} exited")),
        "{}",
        output.stderr
    );
}

#[test]
fn sigkill_leaves_no_probe_behind() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["100"]);
    let address = runtime_address(fixture.pid, &binary, "compute");
    let original = byte_in_file(&binary, "compute");
    assert_ne!(original, INT3);
    assert_eq!(
        byte_in_process(fixture.pid, address),
        original,
        "no probe before tracing"
    );

    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute"]);
    assert_eq!(
        byte_in_process(fixture.pid, address),
        INT3,
        "the uprobe is in place"
    );

    tracer.signal(libc::SIGKILL);
    let output = tracer.wait(Duration::from_secs(10));
    assert!(!output.status.success());

    // The kernel releases the links with the dead tracer's fds and restores the instruction.
    let mut restored = false;
    for _ in 0..100 {
        if byte_in_process(fixture.pid, address) == original {
            restored = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(restored, "the breakpoint stayed after the tracer died");
    let expected: i64 = (0..100).map(|i| i * 1000 + 2 * i - i).sum::<i64>() + 1;
    assert_eq!(
        fixture.round(),
        expected,
        "the target keeps running correctly"
    );
    assert!(fixture.is_running());
    assert_eq!(byte_in_process(fixture.pid, address), original);
}

#[test]
fn unknown_function_suggests_close_names() {
    let binary = c_fixture("calls", O1);
    let output = run_tracer(&["--binary", binary.to_str().unwrap(), "--fn", "comptue"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output.stderr.contains("no function matches `comptue`"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("closest names: compute"),
        "{}",
        output.stderr
    );
    assert_eq!(
        output.stderr.lines().count(),
        1,
        "one clear line: {}",
        output.stderr
    );
}

#[test]
fn bad_targets_are_usage_errors() {
    let missing = run_tracer(&["--binary", "/nonexistent/app", "--fn", "main"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("/nonexistent/app"),
        "{}",
        missing.stderr
    );

    let script = std::env::temp_dir().join(format!("kt-not-elf-{}", std::process::id()));
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let not_elf = run_tracer(&["--binary", script.to_str().unwrap(), "--fn", "main"]);
    std::fs::remove_file(&script).unwrap();
    assert_eq!(not_elf.status.code(), Some(2), "{not_elf:?}");
    assert!(
        not_elf.stderr.contains("is not an ELF file"),
        "{}",
        not_elf.stderr
    );

    // Pids are below 2^22 on Linux, so this one cannot exist.
    let dead = run_tracer(&["--pid", "4194305", "--fn", "main"]);
    assert_eq!(dead.status.code(), Some(2), "{dead:?}");
    assert!(
        dead.stderr.contains("no process with pid 4194305"),
        "{}",
        dead.stderr
    );

    let unmapped = run_tracer(&[
        "--pid",
        &std::process::id().to_string(),
        "--fn",
        "libnope.so:f",
    ]);
    assert_eq!(unmapped.status.code(), Some(2), "{unmapped:?}");
    assert!(
        unmapped.stderr.contains("libnope.so"),
        "{}",
        unmapped.stderr
    );
}

#[test]
fn without_privilege_the_exit_code_is_3() {
    let binary = c_fixture("calls", O1);
    // setpriv drops root: uid/gid 65534 (nobody) and no capabilities.
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(tests::tracer_bin())
        .args(["--binary", binary.to_str().unwrap(), "--fn", "compute"])
        .output()
        .expect("run setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("run it as root"), "{stderr}");
}

#[test]
fn entry_probe_moves_past_endbr64_onto_an_emulated_push() {
    // Distribution builds use -fcf-protection: functions start `endbr64; push %rbp`. The
    // kernel single-steps endbr64 but emulates push, so the probe belongs on the push.
    let binary = c_fixture("calls", &["-g", "-O0", "-fcf-protection=full"]);
    let mut fixture = Fixture::start(&binary, &["20"]);
    let entry = runtime_address(fixture.pid, &binary, "compute");
    let endbr64 = [0xf3, 0x0f, 0x1e, 0xfa];
    let in_file: Vec<u8> = (0..4)
        .map(|i| byte_in_process(fixture.pid, entry + i))
        .collect();
    assert_eq!(in_file, endbr64, "the fixture starts with endbr64");
    assert_eq!(
        byte_in_process(fixture.pid, entry + 4),
        0x55,
        "then push %rbp"
    );

    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--json"]);
    let status = tracer.stderr.seen().join("\n");
    assert!(status.contains("probes: 1 emulated)"), "{status}");
    assert_eq!(byte_in_process(fixture.pid, entry), 0xf3, "entry untouched");
    assert_eq!(
        byte_in_process(fixture.pid, entry + 4),
        INT3,
        "probe on the push"
    );
    fixture.round();
    let output = tracer.interrupt();
    let compute = output.calls_of("compute");
    assert_eq!(compute.len(), 20, "{}", output.stderr);
    for (i, event) in compute.iter().enumerate() {
        assert_eq!(arg(event, "a"), i as i64, "{event}");
        assert_eq!(arg(event, "b"), 2 * i as i64, "{event}");
        assert_eq!(ret(event), 1002 * i as i64, "{event}");
    }
}

#[test]
fn status_line_tells_single_step_probes_apart() {
    // At -O1 compute starts with imul: nothing to skip, the probe single-steps.
    let binary = c_fixture("calls", O1);
    let fixture = Fixture::start(&binary, &["1"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--fn", "sleepy"]);
    let status = tracer.stderr.seen().join("\n");
    assert!(status.contains("single-step"), "{status}");
    drop(tracer);
}

#[test]
fn concurrent_threads_are_paired_per_thread() {
    const THREADS: i64 = 4;
    const CALLS: i64 = 2000;
    let binary = c_fixture("threads", &["-g", "-O1", "-pthread"]);
    let mut fixture = Fixture::start(&binary, &[&THREADS.to_string(), &CALLS.to_string()]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "work", "--json"]);
    fixture.round();
    let output = tracer.interrupt();
    let calls = output.calls_of("work");
    assert_eq!(calls.len(), (THREADS * CALLS) as usize, "{}", output.stderr);
    let mut seen = std::collections::HashSet::new();
    let mut tid_of_thread = std::collections::HashMap::new();
    for event in &calls {
        let (thread, i) = (arg(event, "thread"), arg(event, "i"));
        assert_eq!(ret(event), thread * 100_000 + i, "{event}");
        assert!(seen.insert((thread, i)), "({thread}, {i}) seen twice");
        // Each fixture thread is one kernel thread, other than the main one.
        let tid = event["tid"].as_u64().unwrap();
        assert_ne!(tid, fixture.pid as u64);
        assert_eq!(*tid_of_thread.entry(thread).or_insert(tid), tid, "{event}");
    }
    assert_eq!(tid_of_thread.len(), THREADS as usize);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}
