//! End-to-end: `--where`, `--errors` and `--rate`, decided in the kernel, with exact counts
//! against the `requests` fixture, whose rounds serve a fixed table of ten requests (see
//! `fixtures/c/requests.c` for what each round holds). Run as root through `cargo xtask test`.

use tests::{Fixture, TracerOutput, c_fixture, run_tracer, trace_round};

fn fixture(rounds: &str) -> Fixture {
    Fixture::start(&c_fixture("requests", &["-g", "-O1"]), &[rounds])
}

/// The `N` of "not shown: N calls ..." in the summary.
fn not_shown(output: &TracerOutput) -> u64 {
    output
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("not shown: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no `not shown:` line: {}", output.stderr))
}

#[test]
fn comparisons_of_integers_strings_enums_and_fields_pass_exactly_the_matching_calls() {
    // Two rounds: every count below is twice a round's.
    let mut fixture = fixture("2");
    for (expression, function, matching) in [
        ("status >= 500", "serve", 4),
        ("status < 300 && status != 201", "serve", 10),
        ("path =~ '/api/*'", "serve", 10),
        ("path == '/health'", "serve", 4),
        ("path == '/api'", "serve", 2),
        ("status >= 500 && path =~ '/api/*'", "serve", 4),
        ("method == POST", "serve", 6),
        ("ret < 0", "serve", 4),
        ("req.status == 404", "route", 2),
        ("req->path =~ '/static/*'", "route", 2),
        ("ret == NULL", "find", 8),
    ] {
        let output = trace_round(&mut fixture, &["--fn", function, "--where", expression]);
        let calls = output.calls_of(function);
        assert_eq!(calls.len(), matching, "{expression}: {}", output.stdout);
        assert_eq!(
            not_shown(&output),
            20 - matching as u64,
            "{expression}: {}",
            output.stderr
        );
        assert!(
            output
                .stderr
                .contains(&format!("not meeting --where `{expression}`")),
            "{expression}: {}",
            output.stderr
        );
        assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    }
    // What passes is what was asked.
    let output = trace_round(
        &mut fixture,
        &[
            "--fn",
            "serve",
            "--where",
            "status >= 500 && path =~ '/api/*'",
        ],
    );
    for call in output.calls_of("serve") {
        assert!(call["args"]["status"].as_i64() >= Some(500), "{call}");
        let path = call["args"]["path"].as_str().unwrap_or_default();
        assert!(path.starts_with("/api/"), "{call}");
    }
}

#[test]
fn errors_are_negative_returns_and_null_pointers() {
    let mut fixture = fixture("1");
    let output = trace_round(&mut fixture, &["--fn", "serve", "--fn", "find", "--errors"]);
    let serve = output.calls_of("serve");
    assert_eq!(serve.len(), 2, "{}", output.stdout);
    assert!(
        serve.iter().all(|c| c["ret"].as_i64() < Some(0)),
        "{}",
        output.stdout
    );
    assert_eq!(output.calls_of("find").len(), 4, "{}", output.stdout);
    assert_eq!(not_shown(&output), 14, "{}", output.stderr);
    // route returns a plain int: negative would be an error, and none is.
    let none = trace_round(&mut fixture, &["--fn", "route", "--errors"]);
    assert_eq!(none.calls_of("route").len(), 0, "{}", none.stdout);
}

#[test]
fn functions_a_predicate_cannot_test_are_left_out_or_refused() {
    let mut fixture = fixture("1");
    // find has no `status`: it is not traced, serve is.
    let output = trace_round(
        &mut fixture,
        &["--fn", "serve", "--fn", "find", "--where", "status >= 500"],
    );
    assert_eq!(output.calls_of("serve").len(), 2, "{}", output.stdout);
    assert_eq!(output.calls_of("find").len(), 0, "{}", output.stdout);
    assert!(
        output
            .stderr
            .contains("not tracing find (--where `status >= 500`"),
        "{}",
        output.stderr
    );
    // A name --args leaves out is captured all the same: the predicate needs it.
    let selected = trace_round(
        &mut fixture,
        &[
            "--fn",
            "serve",
            "--args",
            "path",
            "--where",
            "status >= 500",
        ],
    );
    let calls = selected.calls_of("serve");
    assert_eq!(calls.len(), 2, "{}", selected.stdout);
    assert!(
        calls[0]["args"]["status"].as_i64() >= Some(500),
        "{}",
        selected.stdout
    );
    let pid = fixture.pid.to_string();
    for (args, says) in [
        (
            vec!["--fn", "find", "--where", "status >= 500"],
            "no function can be tested: find",
        ),
        (
            vec!["--fn", "serve", "--where", "path > '3'"],
            "strings compare with == or =~",
        ),
        (
            vec!["--fn", "serve", "--where", "method == PUT"],
            "has no enumerator `PUT` (it has GET, POST, DELETE)",
        ),
        (
            vec!["--fn", "serve", "--where", "status >= 500 || status < 0"],
            "`||` is not supported",
        ),
    ] {
        let mut full = vec!["--pid", pid.as_str()];
        full.extend(args.iter().copied());
        let refused = run_tracer(&full);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {refused:?}");
        assert!(
            refused.stderr.contains(says),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

#[test]
fn the_rate_limit_passes_at_most_a_burst_and_counts_the_rest() {
    // 1,000 rounds: 10,000 serve calls in a few milliseconds.
    let mut fixture = fixture("1000");
    let started = std::time::Instant::now();
    let output = trace_round(&mut fixture, &["--fn", "serve", "--rate", "50/s"]);
    let elapsed = started.elapsed().as_secs_f64();
    let shown = output.calls_of("serve").len() as u64;
    // Emitted ≤ rate × time + burst, and at least the burst (the calls came at once).
    assert!(shown >= 50, "{shown}: {}", output.stderr);
    assert!(
        (shown as f64) <= 50.0 * elapsed + 50.0,
        "{shown} in {elapsed:.2}s: {}",
        output.stderr
    );
    assert_eq!(shown + not_shown(&output), 10_000, "{}", output.stderr);
    assert!(
        output.stderr.contains("over --rate 50/s"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}

#[test]
fn calls_counted_in_the_kernel_are_grouped_by_an_argument() {
    // Three rounds: per round serve() sees status 200 five times, 201, 302, 404, 500, 503
    // once each, and method GET six times, POST three times, DELETE once.
    let mut fixture = fixture("3");
    let output = trace_round(
        &mut fixture,
        &["--fn", "serve", "--stats", "--by-arg", "status"],
    );
    let totals: Vec<serde_json::Value> = output
        .json_lines()
        .into_iter()
        .filter(|l| l["total"] == true)
        .collect();
    let by_status: std::collections::BTreeMap<i64, u64> = totals
        .iter()
        .map(|t| {
            (
                t["by"]["status"].as_i64().unwrap(),
                t["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_status,
        [(200, 15), (201, 3), (302, 3), (404, 3), (500, 3), (503, 3)].into(),
        "{}",
        output.stdout
    );
    // An enum shows its enumerator; the human lines name the group.
    let pid = fixture.pid.to_string();
    let tracer = tests::Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "serve",
        "--histogram",
        "--by-arg",
        "method",
    ]);
    fixture.round();
    let human = tracer.interrupt();
    let total = human
        .stdout
        .split("In total, over")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(
        total.contains("serve method=GET: 18 calls"),
        "{}",
        human.stdout
    );
    assert!(
        total.contains("serve method=POST: 9 calls"),
        "{}",
        human.stdout
    );
    assert!(
        total.contains("serve method=DELETE: 3 calls"),
        "{}",
        human.stdout
    );
    let refused = run_tracer(&["--pid", &pid, "--fn", "serve", "--by-arg", "status"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let not_integer = run_tracer(&[
        "--pid", &pid, "--fn", "serve", "--stats", "--by-arg", "path",
    ]);
    assert_eq!(not_integer.status.code(), Some(2), "{not_integer:?}");
    assert!(
        not_integer.stderr.contains("not an integer"),
        "{}",
        not_integer.stderr
    );
}

#[test]
fn what_the_filters_leave_out_is_said_while_tracing() {
    let mut fixture = fixture("1");
    let pid = fixture.pid.to_string();
    let tracer = tests::Tracer::start(&[
        "--pid",
        &pid,
        "--json",
        "--fn",
        "serve",
        "--where",
        "status >= 500",
    ]);
    for _ in 0..3 {
        fixture.round();
    }
    // The progress line comes at most every 5 s, and only with news.
    std::thread::sleep(std::time::Duration::from_millis(5600));
    let output = tracer.interrupt();
    assert_eq!(output.calls_of("serve").len(), 6, "{}", output.stdout);
    let progress: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| l.starts_with("koolkit-trace: so far: "))
        .collect();
    assert_eq!(
        progress,
        ["koolkit-trace: so far: 6 calls shown, 24 left out (not meeting --where `status >= 500`)"],
        "{}",
        output.stderr
    );
}
