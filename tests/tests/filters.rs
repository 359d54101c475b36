//! End-to-end: what the kernel decides instead of sending every call (`--min-latency`,
//! `--max-latency`, `--tid`, `--comm`, `--sample`, `--histogram`) and calls that do not return
//! (`--stuck`), with exact counts against the `calls` fixture, whose rounds make a known number
//! of fast calls (`compute`) and slow ones (`sleepy`, which sleeps). Run as root through
//! `cargo xtask test`.

use tests::{Fixture, c_fixture, run_tracer, trace_round};

/// Ten rounds' iterations of compute (µs) and sleepy (3 ms) per round.
fn fixture() -> Fixture {
    Fixture::start(&c_fixture("calls", &["-g", "-O1"]), &["10", "3"])
}

#[test]
fn latency_bounds_leave_calls_out_in_the_kernel_and_count_them() {
    let mut fixture = fixture();
    let slow_only = trace_round(
        &mut fixture,
        &["--fn", "compute", "--fn", "sleepy", "--min-latency", "1ms"],
    );
    assert_eq!(
        slow_only.calls_of("sleepy").len(),
        10,
        "{}",
        slow_only.stderr
    );
    // A fast call the scheduler preempted past the bound is slow, and shown: whatever is
    // shown is at least the bound, and the rest are counted in the kernel.
    let compute = slow_only.calls_of("compute");
    assert!(
        compute
            .iter()
            .all(|c| c["latency_ns"].as_u64() >= Some(1_000_000)),
        "{}",
        slow_only.stdout
    );
    let fast = 10 - compute.len();
    assert!(
        slow_only
            .calls_of("sleepy")
            .iter()
            .all(|c| c["latency_ns"].as_u64() >= Some(1_000_000)),
        "{}",
        slow_only.stdout
    );
    assert!(
        slow_only.stderr.contains(&format!(
            "not shown: {fast} calls faster than 1.00ms (counted in the kernel: compute {fast})"
        )),
        "{}",
        slow_only.stderr
    );
    assert!(
        slow_only.stderr.contains("drops: none"),
        "{}",
        slow_only.stderr
    );

    let fast_only = trace_round(
        &mut fixture,
        &["--fn", "compute", "--fn", "sleepy", "--max-latency", "1ms"],
    );
    let compute = fast_only.calls_of("compute");
    assert!(
        compute.len() >= 9
            && compute
                .iter()
                .all(|c| c["latency_ns"].as_u64() <= Some(1_000_000)),
        "{}",
        fast_only.stderr
    );
    let preempted = 10 - compute.len();
    assert_eq!(
        fast_only.calls_of("sleepy").len(),
        0,
        "{}",
        fast_only.stderr
    );
    assert!(
        fast_only.stderr.contains(&if preempted == 0 {
            "not shown: 10 calls slower than 1.00ms (counted in the kernel: sleepy 10)".into()
        } else {
            format!("not shown: {} calls slower than 1.00ms", 10 + preempted)
        }),
        "{}",
        fast_only.stderr
    );
}

#[test]
fn one_thread_or_one_command_name_is_traced() {
    let mut fixture = fixture();
    let pid = fixture.pid.to_string();
    let own = trace_round(&mut fixture, &["--fn", "compute", "--tid", &pid]);
    assert_eq!(own.calls_of("compute").len(), 10, "{}", own.stderr);
    // Thread 1 is init's: none of the fixture's calls.
    let other = trace_round(&mut fixture, &["--fn", "compute", "--tid", "1"]);
    assert_eq!(other.calls_of("compute").len(), 0, "{}", other.stderr);

    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let named = trace_round(&mut fixture, &["--fn", "compute", "--comm", comm.trim()]);
    assert_eq!(named.calls_of("compute").len(), 10, "{}", named.stderr);
    let unnamed = trace_round(&mut fixture, &["--fn", "compute", "--comm", "not-this-one"]);
    assert_eq!(unnamed.calls_of("compute").len(), 0, "{}", unnamed.stderr);
}

#[test]
fn filters_that_let_nothing_through_are_refused() {
    let fixture = fixture();
    let pid = fixture.pid.to_string();
    let crossed = run_tracer(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "--min-latency",
        "5ms",
        "--max-latency",
        "1ms",
    ]);
    assert_eq!(crossed.status.code(), Some(2), "{crossed:?}");
    assert!(
        crossed.stderr.contains("above --max-latency"),
        "{}",
        crossed.stderr
    );
    let long = run_tracer(&[
        "--pid",
        &pid,
        "--fn",
        "compute",
        "--comm",
        "a-name-of-sixteen",
    ]);
    assert_eq!(long.status.code(), Some(2), "{long:?}");
    assert!(long.stderr.contains("1 to 15 bytes"), "{}", long.stderr);
}

#[test]
fn a_call_that_does_not_return_is_shown_while_it_runs_and_at_stop() {
    // One round: compute, negate, then sleepy(3000) sleeps 3 s.
    let mut fixture = Fixture::start(&c_fixture("calls", &["-g", "-O1"]), &["1", "3000"]);
    let pid = fixture.pid.to_string();
    let tracer =
        tests::Tracer::start(&["--pid", &pid, "--fn", "sleepy", "--stuck", "1s", "--json"]);
    fixture.start_round();
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    let lines = output.json_lines();
    let running: Vec<&serde_json::Value> = lines.iter().filter(|l| l["running"] == true).collect();
    assert_eq!(running.len(), 1, "shown once: {}", output.stdout);
    let call = running[0];
    assert_eq!(call["fn"], "sleepy", "{call}");
    assert_eq!(call["args"]["ms"], 3000, "{call}");
    assert_eq!(call["tid"].as_u64(), Some(u64::from(fixture.pid)), "{call}");
    let age = call["running_ns"].as_u64().unwrap();
    assert!((1_000_000_000..2_300_000_000).contains(&age), "{call}");
    // At stop it is still running: the summary shows it, not only counts it.
    assert!(
        output
            .stderr
            .contains("1 call was still running at stop (entered, never returned while traced):"),
        "{}",
        output.stderr
    );
    let shown = output
        .stderr
        .lines()
        .find(|l| l.contains("still running after"))
        .unwrap_or_else(|| panic!("{}", output.stderr));
    assert!(
        shown.contains(&format!("{pid}/{pid} sleepy(ms=3000)")),
        "{shown}"
    );
    fixture.round_done();
}

#[test]
fn sampling_shows_one_call_in_n_and_counts_the_rest() {
    let mut fixture = Fixture::start(&c_fixture("calls", &["-g", "-O1"]), &["1000"]);
    let output = trace_round(&mut fixture, &["--fn", "compute", "--sample", "1/10"]);
    let shown = output.calls_of("compute").len() as u64;
    // One in ten per CPU: exactly 100 if the thread stayed on one CPU, a few more if not.
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(
        (100..=100 + cpus).contains(&shown),
        "{shown}: {}",
        output.stderr
    );
    let passed_over = 1000 - shown;
    assert!(
        output.stderr.contains(&format!(
            "not shown: {passed_over} calls passed over by --sample 1/10 (counted in the kernel: compute {passed_over})"
        )),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}

#[test]
fn histograms_count_every_call_in_the_kernel() {
    let mut fixture = Fixture::start(&c_fixture("calls", &["-g", "-O1"]), &["1000"]);
    let output = trace_round(
        &mut fixture,
        &[
            "--fn",
            "compute",
            "--fn",
            "negate",
            "--histogram",
            "--interval",
            "200ms",
        ],
    );
    let lines = output.json_lines();
    assert!(
        lines.iter().all(|l| l.get("latency_ns").is_none()),
        "no line per call: {}",
        output.stdout
    );
    let totals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["total"] == true).collect();
    assert_eq!(totals.len(), 2, "{}", output.stdout);
    for total in &totals {
        assert_eq!(total["calls"], 1000, "{total}");
        let buckets: u64 = total["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(buckets, 1000, "{total}");
    }
    // The intervals add up to the totals.
    let in_intervals: u64 = lines
        .iter()
        .filter(|l| l.get("interval_ns").is_some())
        .map(|l| l["calls"].as_u64().unwrap())
        .sum();
    assert!(in_intervals <= 2000, "{}", output.stdout);
    assert!(
        output.stderr.contains("2000 calls of 2 functions"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);

    // Human: BCC funclatency's shape.
    let pid = fixture.pid.to_string();
    let tracer = tests::Tracer::start(&["--pid", &pid, "--fn", "compute", "--histogram"]);
    fixture.round();
    let human = tracer.interrupt();
    assert!(human.status.success(), "{}", human.stderr);
    let total = human
        .stdout
        .split("In total, over")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(total.contains("compute: 1000 calls"), "{}", human.stdout);
    assert!(total.contains("distribution"), "{}", human.stdout);
}

#[test]
fn statistics_count_every_call_and_its_extremes_in_the_kernel() {
    let mut fixture = fixture();
    let output = trace_round(
        &mut fixture,
        &["--fn", "compute", "--fn", "sleepy", "--stats"],
    );
    let lines = output.json_lines();
    assert!(
        lines
            .iter()
            .all(|l| l.get("latency_ns").is_none() && l.get("histogram").is_none()),
        "no line per call and no histogram: {}",
        output.stdout
    );
    let total = |name: &str| {
        output
            .total_of(name)
            .unwrap_or_else(|| panic!("no total of {name}: {}", output.stdout))
    };
    for name in ["compute", "sleepy"] {
        let t = total(name);
        assert_eq!(t["calls"], 10, "{t}");
        let (min, avg, max) = (
            t["min_ns"].as_u64().unwrap(),
            t["avg_ns"].as_u64().unwrap(),
            t["max_ns"].as_u64().unwrap(),
        );
        assert!(0 < min && min <= avg && avg <= max, "{t}");
        assert_eq!(
            t["total_ns"].as_u64(),
            Some(avg * 10 + t["total_ns"].as_u64().unwrap() % 10),
            "{t}"
        );
    }
    // sleepy sleeps 3 ms each time; compute takes microseconds.
    assert!(
        total("sleepy")["min_ns"].as_u64() >= Some(3_000_000),
        "{}",
        output.stdout
    );
    assert!(
        total("compute")["max_ns"].as_u64() < Some(1_000_000),
        "{}",
        output.stdout
    );
    assert!(
        output.stderr.contains("20 calls of 2 functions"),
        "{}",
        output.stderr
    );
}

#[test]
fn calls_counted_in_the_kernel_are_kept_in_trace_files_and_reported() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let mut fixture = Fixture::start(&binary, &["500"]);
    let record = binary.with_file_name("histogram.kt");
    let record = record.to_str().unwrap();
    let output = trace_round(
        &mut fixture,
        &[
            "--fn",
            "compute",
            "--fn",
            "negate",
            "--histogram",
            "-o",
            record,
            "--force",
        ],
    );
    assert!(
        output.stderr.contains("1000 calls of 2 functions"),
        "{}",
        output.stderr
    );
    let report = run_tracer(&["report", "--json", record]);
    assert!(report.status.success(), "{}", report.stderr);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["calls"], 1000, "{report}");
    for function in report["functions"].as_array().unwrap() {
        let kernel = &function["kernel"][0];
        assert_eq!(kernel["calls"], 500, "{function}");
        let in_buckets: u64 = kernel["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(in_buckets, 500, "{function}");
        assert!(
            kernel["min_ns"].as_u64() <= kernel["max_ns"].as_u64(),
            "{function}"
        );
    }
    let text = run_tracer(&["report", record]);
    assert!(
        text.stdout.contains("counted in the kernel: calls 500"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("distribution"), "{}", text.stdout);

    // A second trace of another round, merged with the first: the counts add up.
    let second = binary.with_file_name("histogram-2.kt");
    let second = second.to_str().unwrap();
    trace_round(
        &mut fixture,
        &[
            "--fn",
            "compute",
            "--fn",
            "negate",
            "--histogram",
            "-o",
            second,
            "--force",
        ],
    );
    let merged = binary.with_file_name("histogram-merged.kt");
    let merged = merged.to_str().unwrap();
    let _ = std::fs::remove_file(merged);
    let merging = run_tracer(&["merge", record, second, "-o", merged]);
    assert!(merging.status.success(), "{}", merging.stderr);
    let report = run_tracer(&["report", "--json", merged]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["calls"], 2000, "{report}");
    for function in report["functions"].as_array().unwrap() {
        assert_eq!(function["kernel"][0]["calls"], 1000, "{function}");
    }
}
