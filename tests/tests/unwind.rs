//! End-to-end: C++ exceptions and Rust panics through traced functions. Their returns are
//! probed on every way out (never a uretprobe, whose foreign return address stops the
//! unwinder and aborts the program), the unwound frames are counted exactly, and a target that
//! dies anyway is reported with its signal. Run as root through `cargo xtask test`.

use std::{collections::BTreeSet, path::Path};

use serde_json::Value;
use tests::{Fixture, Tracer, build_fixture, run_tracer};

/// Exceptions (or panics) per round of the fixtures.
const THROWS: i64 = 100_000;

fn cpp_fixture(level: &str) -> std::path::PathBuf {
    build_fixture(
        &format!("unwind-{level}"),
        "g++",
        &["cpp/unwind.cpp"],
        &["-g", &format!("-{level}")],
    )
}

fn rust_fixture(flags: &[&str]) -> std::path::PathBuf {
    let mut args = vec!["-g", "-O", "--edition", "2021"];
    args.extend_from_slice(flags);
    let name = if flags.is_empty() {
        "unwind-rs"
    } else {
        "unwind-rs-abort"
    };
    build_fixture(name, "rustc", &["rust/unwind.rs"], &args)
}

fn int(call: &Value, name: &str) -> i64 {
    call["args"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {name} in {call}"))
}

/// The number at the start of the summary line that holds `words`.
fn count_on_line(text: &str, words: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.contains(words))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
}

/// What `list --json` says of the returns of `function` in `binary`.
fn returns_of(binary: &Path, function: &str) -> Value {
    let listed = run_tracer(&[
        "list",
        "--binary",
        binary.to_str().unwrap(),
        function,
        "--json",
    ]);
    assert!(listed.status.success(), "{listed:?}");
    let line: Value = serde_json::from_str(listed.stdout.lines().next().unwrap()).unwrap();
    line["returns"].clone()
}

/// Checks the return value of each of `calls` of `function` is `expected(call)`, or, for a
/// call that left by a tail call (a jump to another function), that `ret` says so: which
/// one `list` tells from the function's ways out.
fn check_returns(binary: &Path, function: &str, calls: &[Value], expected: impl Fn(&Value) -> i64) {
    let returns = returns_of(binary, function);
    let (sites, tails) = (
        returns["sites"].as_u64().unwrap(),
        returns["tail_calls"].as_u64().unwrap(),
    );
    let tail_call = serde_json::json!({"missing": "tail call"});
    for call in calls {
        let exact = call["ret"].as_i64() == Some(expected(call));
        let by_tail_call = call["ret"] == tail_call;
        match (sites - tails, tails) {
            (_, 0) => assert!(exact, "{function}: {call}"),
            (0, _) => assert!(by_tail_call, "{function} only tail-calls: {call}"),
            _ => assert!(exact || by_tail_call, "{function}: {call}"),
        }
    }
}

/// One round of `binary` untraced, then one traced with `tracer_args` into a trace file,
/// read back as JSON Lines; the round's figures must be the same.
fn traced_round(binary: &Path, tracer_args: &[&str]) -> (tests::TracerOutput, tests::TracerOutput) {
    let throws = THROWS.to_string();
    let mut fixture = Fixture::start(binary, &[&throws]);
    fixture.start_round();
    let untraced = fixture.round_figures();
    let pid = fixture.pid.to_string();
    let record = binary.with_extension("kt");
    let record = record.to_str().unwrap();
    let mut args = vec!["--pid", pid.as_str(), "-o", record, "--force", "--quiet"];
    args.extend_from_slice(tracer_args);
    let tracer = Tracer::start(&args);
    fixture.start_round();
    let traced = fixture.round_figures();
    let output = tracer.interrupt();
    assert!(
        fixture.is_running(),
        "the target survived: {}",
        output.stderr
    );
    assert_eq!(traced, untraced, "the round computed as without the tracer");
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    let calls = run_tracer(&["export", "--format", "jsonl", record]);
    assert!(calls.status.success(), "{calls:?}");
    (output, calls)
}

#[test]
fn cpp_exceptions_through_traced_functions_at_o0() {
    exceptions_through_traced_functions("O0");
}

#[test]
fn cpp_exceptions_through_traced_functions_at_o2() {
    exceptions_through_traced_functions("O2");
}

/// 200,000 rounds of outer → middle → inner, which throws on odd i (caught above outer): the
/// program survives; the 100,000 normal calls of each are paired with their own returns;
/// the 300,000 frames the exceptions unwound are counted, exactly; tail (a jump to leaf at
/// -O2) is paired; leaf, which calls nothing, keeps the cheap uretprobe.
fn exceptions_through_traced_functions(level: &str) {
    let binary = cpp_fixture(level);
    for function in ["outer", "inner", "tail", "thunk"] {
        let returns = returns_of(&binary, function);
        assert_eq!(
            returns["kind"], "ret-sites",
            "{level} {function}: {returns}"
        );
        assert!(returns["sites"].as_u64().unwrap() >= 1, "{returns}");
    }
    let leaf = returns_of(&binary, "leaf");
    assert_eq!(leaf["kind"], "uretprobe", "{level}: {leaf}");
    assert!(leaf["why"].as_str().unwrap().contains("leaf"), "{leaf}");

    let (output, calls) = traced_round(
        &binary,
        &[
            "--fn", "outer", "--fn", "middle", "--fn", "inner", "--fn", "tail", "--fn", "thunk",
            "--fn", "leaf",
        ],
    );
    assert_eq!(
        count_on_line(&output.stderr, "calls were unwound"),
        Some(3 * THROWS as u64),
        "{level}: {}",
        output.stderr
    );
    // Each normal call once, with its own result: outer = inner + 2 = 3i + 3.
    for (function, plus) in [("outer", 3), ("middle", 2), ("inner", 1)] {
        let seen = calls.calls_of(function);
        assert_eq!(seen.len(), THROWS as usize, "{level} {function}");
        let ids: BTreeSet<i64> = seen.iter().map(|c| int(c, "i")).collect();
        assert_eq!(ids, (1..=2 * THROWS).filter(|i| i % 2 == 0).collect());
        check_returns(&binary, function, &seen, |call| 3 * int(call, "i") + plus);
    }
    let tails = calls.calls_of("tail");
    assert_eq!(tails.len(), (2 * THROWS / 100) as usize, "{level}");
    check_returns(&binary, "tail", &tails, |call| 3 * (int(call, "x") + 7) + 1);
    // A thunk's entry site is its way out: the entry parks the call before it completes.
    let thunks = calls.calls_of("thunk");
    assert_eq!(thunks.len(), (2 * THROWS / 100) as usize, "{level}");
    check_returns(&binary, "thunk", &thunks, |call| 3 * int(call, "x") + 1);
    if level == "O2" {
        // GCC turns `return leaf(x + 7)` into a jump at -O2: the way out tail is built for.
        assert!(returns_of(&binary, "tail")["tail_calls"].as_u64().unwrap() >= 1);
    }
    // From inner, and per hundred directly, through tail and through thunk.
    assert_eq!(
        calls.calls_of("leaf").len(),
        (THROWS + 3 * (2 * THROWS / 100)) as usize
    );
}

#[test]
fn rust_panics_through_traced_functions() {
    let binary = rust_fixture(&[]);
    let returns = returns_of(&binary, "unwind::outer");
    assert_eq!(returns["kind"], "ret-sites", "{returns}");
    assert!(
        returns["why"].as_str().unwrap().contains("Rust"),
        "{returns}"
    );
    let (output, calls) =
        traced_round(&binary, &["--fn", "unwind::outer", "--fn", "unwind::inner"]);
    assert_eq!(
        count_on_line(&output.stderr, "calls were unwound"),
        Some(2 * THROWS as u64),
        "{}",
        output.stderr
    );
    for (function, plus) in [("unwind::outer", 2), ("unwind::inner", 1)] {
        let seen = calls.calls_of(function);
        assert_eq!(seen.len(), THROWS as usize, "{function}");
        check_returns(&binary, function, &seen, |call| 3 * int(call, "i") + plus);
    }
}

#[test]
fn rust_built_with_panic_abort_keeps_the_uretprobe() {
    let binary = rust_fixture(&["-C", "panic=abort"]);
    let returns = returns_of(&binary, "unwind::outer");
    assert_eq!(returns["kind"], "uretprobe", "{returns}");
    assert!(
        returns["why"].as_str().unwrap().contains("no exception"),
        "{returns}"
    );
}

/// With `--returns uretprobe`, the first exception through a traced function kills the
/// target (what bpftrace does to it too): the trace says so, with the signal, and exits 1.
#[test]
fn a_target_killed_while_traced_is_reported_with_its_signal() {
    let binary = cpp_fixture("O2");
    let mut fixture = Fixture::start(&binary, &["1000"]);
    let pid = fixture.pid.to_string();
    let record = binary.with_extension("kt");
    let record = record.to_str().unwrap();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "outer",
        "--returns",
        "uretprobe",
        "-o",
        record,
        "--force",
    ]);
    fixture.start_round();
    let output = tracer.wait(std::time::Duration::from_secs(20));
    assert!(!fixture.is_running(), "the uretprobe killed it");
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    let stopped = format!("stopped: target killed by SIGABRT (process {pid}");
    assert!(output.stderr.contains(&stopped), "{}", output.stderr);
    let report = run_tracer(&["report", record]);
    assert!(
        report
            .stderr
            .contains(&format!("target killed by SIGABRT (process {pid}")),
        "{report:?}"
    );
}

/// The same rounds counted in the kernel (`--histogram`: each call parked in its thread's
/// shadow alone): the same counts, the same frames unwound, and the target unharmed.
#[test]
fn cpp_exceptions_through_functions_counted_in_the_kernel() {
    let binary = cpp_fixture("O2");
    let throws = THROWS.to_string();
    let mut fixture = Fixture::start(&binary, &[&throws]);
    fixture.start_round();
    let untraced = fixture.round_figures();
    let pid = fixture.pid.to_string();
    let mut args = vec![
        "--pid",
        pid.as_str(),
        "--json",
        "--histogram",
        "--interval",
        "60s",
    ];
    for function in ["outer", "middle", "inner", "tail", "thunk", "leaf"] {
        args.extend(["--fn", function]);
    }
    let tracer = Tracer::start(&args);
    fixture.start_round();
    let traced = fixture.round_figures();
    let output = tracer.interrupt();
    assert_eq!(traced, untraced, "the round computed as without the tracer");
    assert!(output.status.success(), "{}", output.stderr);
    let total = |function: &str| {
        output
            .total_of(function)
            .and_then(|l| l["calls"].as_i64())
            .unwrap_or(0)
    };
    let per_hundred = 2 * THROWS / 100;
    for function in ["outer", "middle", "inner"] {
        assert_eq!(total(function), THROWS, "{function}: {}", output.stdout);
    }
    assert_eq!(total("tail"), per_hundred, "{}", output.stdout);
    assert_eq!(total("thunk"), per_hundred, "{}", output.stdout);
    assert_eq!(total("leaf"), THROWS + 3 * per_hundred, "{}", output.stdout);
    assert_eq!(
        count_on_line(&output.stderr, "calls were unwound"),
        Some(3 * THROWS as u64),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}
