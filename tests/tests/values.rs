//! End-to-end: library values shown as developers read them, by type name checked against the
//! type's DWARF layout: `std::string`, `std::string_view` and `std::vector` (libstdc++, at -O0
//! and -O2), `std::array`, `std::unique_ptr`, `std::shared_ptr`, Rust's `String`, `&str`,
//! `Vec<T>`, slices, `Box`, `Rc` and `Arc` (debug and -O). Each value is
//! asserted exactly, in human lines, JSON Lines and a trace file replayed. Run as root through
//! `cargo xtask test`.

use std::path::Path;

use serde_json::{Value, json};
use tests::{Fixture, Tracer, build_fixture, private_dir, run_tracer, trace_round};

/// `line` with every hex address written `0x…`: they change from run to run.
fn without_addresses(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits = rest[at + 2..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - at - 2);
        out.push_str(if digits > 0 { "0x…" } else { "0x" });
        rest = &rest[at + 2 + digits..];
    }
    out.push_str(rest);
    out
}

/// One round of `binary`'s calls traced with `functions` in human lines: the part of each
/// call line after its thread (`greet(name="ada", times=3) = 9`), without the latency, and
/// addresses written `0x…`.
fn human_calls(binary: &Path, functions: &[&str]) -> Vec<String> {
    let mut fixture = Fixture::start(binary, &[]);
    let pid = fixture.pid.to_string();
    let mut args = vec!["--pid", pid.as_str(), "--color", "never"];
    for function in functions {
        args.extend(["--fn", function]);
    }
    let tracer = Tracer::start(&args);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{output:?}");
    output
        .stdout
        .lines()
        .filter_map(|line| {
            let call = line.splitn(3, ' ').nth(2)?;
            Some(without_addresses(
                call.rsplit_once(" <").map_or(call, |(call, _)| call),
            ))
        })
        .collect()
}

/// The args of the one call of `function` in `calls`.
fn args_of(calls: &[Value], function: &str) -> Value {
    let matching: Vec<&Value> = calls.iter().filter(|c| c["fn"] == function).collect();
    assert_eq!(matching.len(), 1, "one call of {function}: {calls:?}");
    matching[0]["args"].clone()
}

const CXX_FUNCTIONS: [&str; 9] = [
    "greet", "shout", "view", "sum", "weigh", "nothing", "corners", "owned", "shared",
];

fn check_cxx(level: &str) {
    let binary = build_fixture(
        &format!("values-cxx{level}"),
        "g++",
        &["cpp/values.cpp"],
        &["-g", level, "-std=c++17"],
    );
    assert_eq!(
        human_calls(&binary, &CXX_FUNCTIONS),
        [
            r#"greet(name="ada", times=3) = 9"#,
            r#"shout(text="a string longer than the sixteen bytes kept inline") = 50"#,
            r#"view(text="viewed") = 6"#,
            "sum(values=[1, 2, 3, 4, 5, 6, 7, 8, … 92 more]) = 5050",
            "weigh(weights=[0.5, 1.25, 2]) = 3",
            r#"nothing(name="", values=[]) = 0"#,
            "corners(c=[1, 2, 3, 4]) = 10",
            "owned(p=0x… {x=3, y=4}) = 7",
            "shared(p=0x… {x=5, y=6}) = 30",
        ],
        "{level}"
    );

    // JSON, live and from a trace file.
    let mut fixture = Fixture::start(&binary, &[]);
    let dir = private_dir("values");
    let record = dir.join("values.kt");
    let record = record.to_str().unwrap();
    let mut args = vec!["-o", record];
    for function in CXX_FUNCTIONS {
        args.extend(["--fn", function]);
    }
    let live = trace_round(&mut fixture, &args);
    let replayed = run_tracer(&["replay", record, "--json"]);
    assert!(replayed.status.success(), "{replayed:?}");
    for calls in [live.json_lines(), replayed.json_lines()] {
        assert_eq!(args_of(&calls, "greet"), json!({"name": "ada", "times": 3}));
        assert_eq!(
            args_of(&calls, "shout"),
            json!({"text": "a string longer than the sixteen bytes kept inline"})
        );
        assert_eq!(args_of(&calls, "view"), json!({"text": "viewed"}));
        assert_eq!(
            args_of(&calls, "sum"),
            json!({"values": {"len": 100, "items": [1, 2, 3, 4, 5, 6, 7, 8]}})
        );
        assert_eq!(
            args_of(&calls, "weigh"),
            json!({"weights": {"len": 3, "items": [0.5, 1.25, 2.0]}})
        );
        assert_eq!(
            args_of(&calls, "nothing"),
            json!({"name": "", "values": {"len": 0, "items": []}})
        );
        assert_eq!(args_of(&calls, "corners"), json!({"c": [1, 2, 3, 4]}));
        let owned = args_of(&calls, "owned");
        assert!(
            owned["p"]["_ptr"].as_u64().is_some_and(|p| p > 0),
            "{owned}"
        );
        assert_eq!((&owned["p"]["x"], &owned["p"]["y"]), (&json!(3), &json!(4)));
        let shared = args_of(&calls, "shared");
        assert_eq!(
            (&shared["p"]["x"], &shared["p"]["y"]),
            (&json!(5), &json!(6)),
            "{shared}"
        );
    }
}

#[test]
fn cxx_strings_and_vectors_at_o0() {
    check_cxx("-O0");
}

#[test]
fn cxx_strings_and_vectors_at_o2() {
    check_cxx("-O2");
}

const RUST_FUNCTIONS: [&str; 9] = [
    "values::values::greet",
    "values::values::label",
    "values::values::sum",
    "values::values::weigh",
    "values::values::ports",
    "values::values::nothing",
    "values::values::boxed",
    "values::values::counted",
    "values::values::atomic",
];

fn check_rust(opt_level: &str) {
    let binary = build_fixture(
        &format!("values-rust{opt_level}"),
        "rustc",
        &["rust/values.rs"],
        &[
            "-g",
            "-C",
            &format!("opt-level={opt_level}"),
            "--edition",
            "2021",
        ],
    );
    assert_eq!(
        human_calls(&binary, &RUST_FUNCTIONS),
        [
            r#"values::values::greet(name="ada", times=3) = 9"#,
            r#"values::values::label(name="Grace Hopper") = 9"#,
            "values::values::sum(values=[1, 2, 3, 4, 5, 6, 7, 8, … 92 more]) = 5050",
            "values::values::weigh(values=[0.5, 1.25, 2]) = 3",
            "values::values::ports(values=[80, 443, 8080]) = 8603",
            r#"values::values::nothing(name="", values=[]) = 0"#,
            "values::values::boxed(p=0x… {x=3, y=4}) = 7",
            "values::values::counted(p=0x… {x=5, y=6}) = 30",
            "values::values::atomic(p=0x… {x=9, y=2}) = 7",
        ],
        "opt-level={opt_level}"
    );
    let mut fixture = Fixture::start(&binary, &[]);
    let mut args = vec!["--elements", "3"];
    for function in RUST_FUNCTIONS {
        args.extend(["--fn", function]);
    }
    let calls = trace_round(&mut fixture, &args).json_lines();
    assert_eq!(
        args_of(&calls, "values::values::greet"),
        json!({"name": "ada", "times": 3})
    );
    assert_eq!(
        args_of(&calls, "values::values::sum"),
        json!({"values": {"len": 100, "items": [1, 2, 3]}}),
        "--elements 3"
    );
    assert_eq!(
        args_of(&calls, "values::values::ports"),
        json!({"values": {"len": 3, "items": [80, 443, 8080]}})
    );
    let counted = args_of(&calls, "values::values::counted");
    assert_eq!(
        (&counted["p"]["x"], &counted["p"]["y"]),
        (&json!(5), &json!(6)),
        "the value inside the Rc, not its counts: {counted}"
    );
}

#[test]
fn rust_strings_vecs_and_slices_in_a_debug_build() {
    check_rust("0");
}

#[test]
fn rust_strings_vecs_and_slices_in_an_optimised_build() {
    check_rust("2");
}
