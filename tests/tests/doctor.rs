//! `koolkit-trace doctor`: what this kernel offers, asked of the kernel itself.

use std::process::Command;

use serde_json::Value;
use tests::{run_tracer, tracer_bin};

fn feature<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name} in {doctor}"))
}

#[test]
fn the_doctor_finds_what_this_kernel_has_and_the_mode_it_implies() {
    let output = run_tracer(&["doctor", "--json"]);
    assert!(output.status.success(), "{}", output.stderr);
    let doctor: Value = serde_json::from_str(output.stdout.trim()).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(doctor["kernel"], release.trim());
    // This machine's kernel (6.18) has every feature the tracer asks for but kprobes.
    for name in [
        "bpf",
        "ring buffer",
        "uprobes",
        "attach cookies",
        "uprobe-multi links",
        "kernel BTF",
    ] {
        assert_eq!(feature(&doctor, name)["present"], true, "{name}: {doctor}");
    }
    assert_eq!(doctor["mode"], "uprobe-multi");
    // Every feature says what its absence costs.
    for f in doctor["features"].as_array().unwrap() {
        assert!(!f["without"].as_str().unwrap().is_empty(), "{f}");
    }

    let text = run_tracer(&["doctor"]);
    assert!(text.status.success(), "{}", text.stderr);
    assert!(text.stdout.contains("yes ring buffer"), "{}", text.stdout);
    assert!(
        text.stdout.contains("Probes attach with uprobe-multi."),
        "{}",
        text.stdout
    );
}

#[test]
fn without_cookies_the_doctor_says_what_that_costs() {
    let output = Command::new(tracer_bin())
        .args(["doctor"])
        .env("KOOLKIT_TRACE_NO_COOKIES", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Still usable: probes are told apart by address.
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" no attach cookies"), "{stdout}");
    assert!(stdout.contains("told apart by address"), "{stdout}");
}

/// The probe behind the doctor's "uprobe-multi process filter" can tell: a link filtered to
/// this process fires in its new thread (this kernel has the fix), one filtered to another
/// process never does.
#[test]
fn the_pid_filter_probe_tells_this_process_from_another() {
    assert_eq!(
        tracer::multi_link_fires_in_a_new_thread(std::process::id()),
        Some(true)
    );
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let fired = tracer::multi_link_fires_in_a_new_thread(other.id());
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(fired, Some(false));
}
