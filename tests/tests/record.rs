//! End-to-end: record a real trace to a file, then review it with replay, report and export.
//! Run as root through `cargo xtask test`.

use std::{thread, time::Duration};

use serde_json::Value;
use tests::{Fixture, Tracer, c_fixture, private_dir, run_tracer};

const ITERATIONS: usize = 300;

#[test]
fn record_then_replay_report_and_export() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let mut fixture = Fixture::start(&binary, &[&ITERATIONS.to_string()]);
    let dir = private_dir("record");
    let file = dir.join("calls.kt");
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "--fn",
        "negate",
        "-o",
        file.to_str().unwrap(),
        "--quiet",
    ]);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout.is_empty(),
        "--quiet prints no calls: {}",
        output.stdout
    );
    assert!(
        output
            .stderr
            .contains(&format!("recorded {} calls to", 2 * ITERATIONS)),
        "{}",
        output.stderr
    );
    let path = file.to_str().unwrap();

    let report = run_tracer(&["report", path, "--json"]);
    assert!(report.status.success(), "{report:?}");
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["calls"], 2 * ITERATIONS);
    for name in ["compute", "negate"] {
        let function = report["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fn"] == name)
            .unwrap();
        assert_eq!(function["calls"], ITERATIONS, "{name}");
        assert!(function["latency_ns"]["p50"].as_u64().unwrap() > 0);
        assert_eq!(function["slowest"].as_array().unwrap().len(), 5);
    }
    let negate = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fn"] == "negate")
        .unwrap();
    assert_eq!(
        negate["errors"],
        ITERATIONS - 1,
        "negate(i) < 0 for every i but 0"
    );

    let text = run_tracer(&["report", path]);
    assert!(text.stdout.contains("distribution"), "{}", text.stdout);
    assert!(text.stdout.contains("slowest calls:"), "{}", text.stdout);

    let replay = run_tracer(&["replay", path, "--fn", "compute", "--json"]);
    let lines: Vec<Value> = replay
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), ITERATIONS);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["args"]["a"], i as u64, "{line}");
        assert_eq!(line["ret"], (i * 1002) as u64);
        assert_eq!(line["pid"], fixture.pid);
    }
    let human = run_tracer(&["replay", path, "--fn", "negate", "--color", "never"]);
    assert!(
        human
            .stdout
            .lines()
            .nth(3)
            .unwrap()
            .contains(" negate(v=3) = -3 <"),
        "{}",
        human.stdout
    );
    let slow = run_tracer(&["replay", path, "--min-latency", "1h"]);
    assert!(slow.stdout.is_empty());

    let chrome = dir.join("calls.json");
    let export = run_tracer(&[
        "export",
        path,
        "--format",
        "chrome",
        "-o",
        chrome.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{export:?}");
    let chrome: Value = serde_json::from_str(&std::fs::read_to_string(&chrome).unwrap()).unwrap();
    let slices: Vec<&Value> = chrome["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(slices.len(), 2 * ITERATIONS);
    assert!(
        slices
            .iter()
            .all(|s| s["dur"].as_f64().unwrap() > 0.0 && s["tid"] == fixture.pid)
    );
    assert!(
        chrome["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name")
    );
}

#[test]
fn a_killed_recorder_leaves_a_readable_file() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let mut fixture = Fixture::start(&binary, &["100"]);
    let dir = private_dir("killed");
    let file = dir.join("killed.kt");
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "-o",
        file.to_str().unwrap(),
        "--quiet",
    ]);
    fixture.round();
    // Calls reach the file at least once a second.
    thread::sleep(Duration::from_millis(1500));
    fixture.round();
    tracer.signal(libc::SIGKILL);
    let _ = tracer.wait(Duration::from_secs(10));

    let report = run_tracer(&["report", file.to_str().unwrap(), "--json"]);
    assert!(report.status.success(), "{report:?}");
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    let calls = report["calls"].as_u64().unwrap();
    assert!(
        calls >= 100,
        "the first round was flushed before the kill: {calls}"
    );
    assert!(calls <= 200);
    assert_eq!(calls % 100, 0, "whole rounds: {report}");
}

#[test]
fn an_existing_trace_file_is_replaced_only_with_force() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let fixture = Fixture::start(&binary, &["10"]);
    let dir = private_dir("force");
    let file = dir.join("kept.kt");
    std::fs::write(&file, b"an older trace").unwrap();
    let pid = fixture.pid.to_string();
    let path = file.to_str().unwrap();
    let refused = run_tracer(&["--pid", &pid, "--fn", "compute", "-o", path, "-d", "1s"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), b"an older trace");

    let forced = run_tracer(&[
        "--pid", &pid, "--fn", "compute", "-o", path, "-d", "200ms", "--force",
    ]);
    assert!(forced.status.success(), "{forced:?}");
    let report = run_tracer(&["report", path, "--json"]);
    assert!(report.status.success(), "{report:?}");
}

#[test]
fn the_header_is_on_disk_before_the_first_call() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let fixture = Fixture::start(&binary, &["10"]);
    let dir = private_dir("early");
    let file = dir.join("early.kt");
    let pid = fixture.pid.to_string();
    let path = file.to_str().unwrap();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "-o", path, "--quiet"]);
    // Read while the trace runs, and again after a kill well inside the first second.
    let live = run_tracer(&["report", path, "--json"]);
    tracer.signal(libc::SIGKILL);
    let _ = tracer.wait(Duration::from_secs(10));
    let killed = run_tracer(&["report", path, "--json"]);
    for report in [live, killed] {
        assert!(report.status.success(), "{report:?}");
        let report: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(report["calls"], 0, "{report}");
    }
    drop(fixture);
}

#[test]
fn a_full_disk_stops_the_recording_cleanly_with_its_summary() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let mut fixture = Fixture::start(&binary, &["1000"]);
    let dir = private_dir("full");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a small tmpfs (root needed)");
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&dir);
    let file = dir.join("full.kt");
    let path = file.to_str().unwrap();
    let pid = fixture.pid.to_string();
    let mut tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "--fn",
        "negate",
        "-o",
        path,
        "--quiet",
        "--no-compress",
    ]);
    // 2,000 calls a round, about 100 KiB uncompressed: a few rounds fill 256 KiB.
    for _ in 0..20 {
        fixture.round();
        thread::sleep(Duration::from_millis(1100));
        if tracer.has_exited() {
            break;
        }
    }
    let output = tracer.wait(Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        output.stderr.contains("cannot write") && output.stderr.contains("No space left"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("stopped: the trace file could not be written"),
        "the summary: {}",
        output.stderr
    );
    assert!(output.stderr.contains("detached"), "{}", output.stderr);
    let report = run_tracer(&["report", path, "--json"]);
    assert!(report.status.success(), "{report:?}");
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert!(report["calls"].as_u64().unwrap() > 0, "{report}");
}
