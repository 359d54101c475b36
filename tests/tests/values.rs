//! End-to-end: values shown as developers read them, by type name checked against the type's
//! DWARF layout. C++ (libstdc++ with g++, libc++ with clang++, each at -O0 and -O2):
//! `std::string` (short and long), `std::string_view`, `std::vector` of numbers, strings and
//! structs, `std::array`, `std::span`, `std::optional`, `std::unique_ptr`, `std::shared_ptr`,
//! a struct two levels deep, an array of structs, and values returned in RAX, in RAX and RDX
//! and through the caller's memory. Rust (debug and -O): `String`, `&str`, `Vec<T>`, slices,
//! `Box`, `Box<[T]>`, `Rc`, `Arc`, `Option`, `Result`, an enum of the program's own, arrays,
//! sequences of strings and of structs, returns of each kind, and a `&str` whose pointer the
//! optimiser dropped. Each value is asserted exactly, in human lines, in JSON Lines, and from
//! a trace file replayed and exported. Run as root through `cargo xtask test`.

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

/// One round of `binary`'s calls traced with `functions` (and `extra` arguments) in human
/// lines: the part of each call line after its thread (`greet(name="ada", times=3) = 9`),
/// without the latency, and addresses written `0x…`.
fn human_calls(binary: &Path, functions: &[&str], extra: &[&str]) -> Vec<String> {
    let mut fixture = Fixture::start(binary, &[]);
    let pid = fixture.pid.to_string();
    let mut args = vec!["--pid", pid.as_str(), "--color", "never"];
    args.extend(extra);
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

/// The calls of `function` in `calls`, `count` of them.
fn calls_of<'a>(calls: &'a [Value], function: &str, count: usize) -> Vec<&'a Value> {
    let matching: Vec<&Value> = calls.iter().filter(|c| c["fn"] == function).collect();
    assert_eq!(
        matching.len(),
        count,
        "{count} calls of {function}: {calls:?}"
    );
    matching
}

/// The args of the one call of `function` in `calls`.
fn args_of(calls: &[Value], function: &str) -> Value {
    calls_of(calls, function, 1)[0]["args"].clone()
}

/// (args, ret) of each call of `function`, in order.
fn each_call(calls: &[Value], function: &str, count: usize) -> Vec<(Value, Value)> {
    calls_of(calls, function, count)
        .into_iter()
        .map(|c| (c["args"].clone(), c["ret"].clone()))
        .collect()
}

/// Traces a round of `binary` into a trace file and checks what `check` checks in the calls
/// seen live (JSON Lines), replayed from the file and exported from it as JSON Lines; the
/// Chrome export carries each call's arguments and return too.
fn check_everywhere(binary: &Path, functions: &[&str], check: impl Fn(&[Value])) {
    let mut fixture = Fixture::start(binary, &[]);
    let dir = private_dir("values");
    let record = dir.join("values.kt");
    let record = record.to_str().unwrap();
    let mut args = vec!["-o", record];
    for function in functions {
        args.extend(["--fn", function]);
    }
    let live = trace_round(&mut fixture, &args).json_lines();
    let replayed = run_tracer(&["replay", record, "--json"]);
    assert!(replayed.status.success(), "{replayed:?}");
    let exported = run_tracer(&["export", "--format", "jsonl", record]);
    assert!(exported.status.success(), "{exported:?}");
    for (source, calls) in [
        ("live", live.clone()),
        ("replay", replayed.json_lines()),
        ("export", exported.json_lines()),
    ] {
        assert_eq!(calls.len(), live.len(), "{source}: {calls:?}");
        check(&calls);
    }
    let chrome = run_tracer(&["export", "--format", "chrome", record]);
    assert!(chrome.status.success(), "{chrome:?}");
    let chrome: Value = serde_json::from_str(&chrome.stdout).expect("Chrome trace JSON");
    let slices: Vec<&Value> = chrome["traceEvents"]
        .as_array()
        .expect("trace events")
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(slices.len(), live.len(), "one slice per call");
    for (slice, call) in slices.iter().zip(&live) {
        assert_eq!(slice["name"], call["fn"]);
        for (name, value) in call["args"].as_object().unwrap() {
            assert_eq!(&slice["args"][name], value, "{}: {name}", call["fn"]);
        }
        if !call["ret"].is_null() || slice["args"].get("return").is_some() {
            assert_eq!(slice["args"]["return"], call["ret"], "{}", call["fn"]);
        }
    }
}

const CXX_FUNCTIONS: [&str; 19] = [
    "greet",
    "shout",
    "view",
    "sum",
    "weigh",
    "nothing",
    "corners",
    "owned",
    "shared",
    "window",
    "maybe",
    "names",
    "path",
    "handle",
    "perimeter",
    "split",
    "origin",
    "title",
    "find",
];

/// The fixture built by `compiler` (`g++`, or `clang++-22` with libc++) at `level`.
fn cxx_fixture(compiler: &str, level: &str) -> std::path::PathBuf {
    let mut args = vec!["-g", level, "-std=c++20"];
    let name = if compiler.starts_with("clang") {
        args.push("-stdlib=libc++");
        format!("values-libcxx{level}")
    } else {
        format!("values-cxx{level}")
    };
    build_fixture(&name, compiler, &["cpp/values.cpp"], &args)
}

fn check_cxx(compiler: &str, level: &str) {
    let binary = cxx_fixture(compiler, level);
    assert_eq!(
        human_calls(&binary, &CXX_FUNCTIONS, &[]),
        [
            r#"greet(name="ada", times=3) = 9"#,
            r#"shout(text="a string longer than the sixteen bytes kept inline") = 50"#,
            r#"view(text="viewed") = 6"#,
            "sum(values=[1, 2, 3, 4, 5, 6, 7, 8, … 92 more]) = 5050",
            "weigh(weights=[0.5, 1.25, 2]) = 15",
            r#"nothing(name="", values=[]) = 0"#,
            "corners(c=[1, 2, 3, 4]) = 10",
            "owned(p=0x… {x=3, y=4}) = 7",
            "shared(p=0x… {x=5, y=6}) = 30",
            "window(values=[11, 12, 13]) = 36",
            "maybe(value=3) = 3",
            "maybe(value=nullopt) = 100",
            r#"names(values=["tea", "milk", "a drink longer than sixteen bytes"]) = 40"#,
            "path(points=[{x=4, y=0}, {x=0, y=3}]) = 0",
            r#"handle(request=0x… {id=7, header={method="GET", length=12}}) = 22"#,
            "perimeter(t=0x… {sides=3, corners=[{x=0, y=0}, {x=4, y=0}, {x=0, y=3}]}) = 10",
            "split(value=42) = {low=4, high=2}",
            "origin(shift=8) = {x=8, y=-8}",
            r#"title(id=12) = "order-12""#,
            "find(id=4) = 40",
            "find(id=5) = nullopt",
        ],
        "{compiler} {level}"
    );
    check_everywhere(&binary, &CXX_FUNCTIONS, |calls| {
        assert_eq!(args_of(calls, "greet"), json!({"name": "ada", "times": 3}));
        assert_eq!(
            args_of(calls, "shout"),
            json!({"text": "a string longer than the sixteen bytes kept inline"})
        );
        assert_eq!(args_of(calls, "view"), json!({"text": "viewed"}));
        assert_eq!(
            args_of(calls, "sum"),
            json!({"values": {"len": 100, "items": [1, 2, 3, 4, 5, 6, 7, 8]}})
        );
        assert_eq!(
            args_of(calls, "weigh"),
            json!({"weights": {"len": 3, "items": [0.5, 1.25, 2.0]}})
        );
        assert_eq!(
            args_of(calls, "nothing"),
            json!({"name": "", "values": {"len": 0, "items": []}})
        );
        assert_eq!(args_of(calls, "corners"), json!({"c": [1, 2, 3, 4]}));
        let owned = args_of(calls, "owned");
        assert!(
            owned["p"]["_ptr"].as_u64().is_some_and(|p| p > 0),
            "{owned}"
        );
        assert_eq!((&owned["p"]["x"], &owned["p"]["y"]), (&json!(3), &json!(4)));
        let shared = args_of(calls, "shared");
        assert_eq!(
            (&shared["p"]["x"], &shared["p"]["y"]),
            (&json!(5), &json!(6))
        );
        assert_eq!(
            args_of(calls, "window"),
            json!({"values": {"len": 3, "items": [11, 12, 13]}})
        );
        assert_eq!(
            each_call(calls, "maybe", 2),
            [
                (json!({"value": {"some": 3}}), json!(3)),
                (json!({"value": null}), json!(100))
            ]
        );
        assert_eq!(
            args_of(calls, "names"),
            json!({"values": {"len": 3, "items": ["tea", "milk", "a drink longer than sixteen bytes"]}})
        );
        assert_eq!(
            args_of(calls, "path"),
            json!({"points": {"len": 2, "items": [{"x": 4, "y": 0}, {"x": 0, "y": 3}]}})
        );
        let handle = args_of(calls, "handle");
        assert_eq!(
            (&handle["request"]["id"], &handle["request"]["header"]),
            (&json!(7), &json!({"method": "GET", "length": 12})),
            "{handle}"
        );
        let perimeter = args_of(calls, "perimeter");
        assert_eq!(
            perimeter["t"]["corners"],
            json!([{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 0, "y": 3}])
        );
        assert_eq!(
            each_call(calls, "split", 1)[0].1,
            json!({"low": 4, "high": 2})
        );
        assert_eq!(each_call(calls, "origin", 1)[0].1, json!({"x": 8, "y": -8}));
        assert_eq!(each_call(calls, "title", 1)[0].1, json!("order-12"));
        assert_eq!(
            each_call(calls, "find", 2),
            [
                (json!({"id": 4}), json!({"some": 40})),
                (json!({"id": 5}), json!(null))
            ]
        );
    });
}

#[test]
fn cxx_libstdcxx_values_at_o0() {
    check_cxx("g++", "-O0");
}

#[test]
fn cxx_libstdcxx_values_at_o2() {
    check_cxx("g++", "-O2");
}

#[test]
fn cxx_libcxx_values_at_o0() {
    check_cxx("clang++-22", "-O0");
}

#[test]
fn cxx_libcxx_values_at_o2() {
    check_cxx("clang++-22", "-O2");
}

#[test]
fn args_paths_reach_fields_two_levels_down_and_where_compares_them() {
    let binary = cxx_fixture("g++", "-O2");
    let functions = ["handle"];
    assert_eq!(
        human_calls(&binary, &functions, &["--args", "request->header.method"]),
        [r#"handle(request=0x… {header={method="GET"}}) = 22"#]
    );
    assert_eq!(
        human_calls(
            &binary,
            &functions,
            &["--where", "request.header.length == 12"]
        ),
        [r#"handle(request=0x… {id=7, header={method="GET", length=12}}) = 22"#]
    );
    assert_eq!(
        human_calls(
            &binary,
            &functions,
            &["--where", "request.header.length == 13"]
        ),
        Vec::<String>::new(),
        "no call has that length"
    );
    let unknown = run_tracer(&[
        "--binary",
        binary.to_str().unwrap(),
        "--fn",
        "handle",
        "--args",
        "request.header.verb",
    ]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("`request.header` has no field `verb`"),
        "{unknown:?}"
    );
}

const RUST_FUNCTIONS: [&str; 26] = [
    "values::values::greet",
    "values::values::label",
    "values::values::sum",
    "values::values::weigh",
    "values::values::ports",
    "values::values::nothing",
    "values::values::boxed",
    "values::values::counted",
    "values::values::atomic",
    "values::values::shared",
    "values::values::maybe",
    "values::values::parse",
    "values::values::area",
    "values::values::owned_slice",
    "values::values::quad",
    "values::values::corners",
    "values::values::names",
    "values::values::path",
    "values::values::handle",
    "values::values::split",
    "values::values::find",
    "values::values::lookup",
    "values::values::origin",
    "values::values::title",
    "values::values::first_word",
    "values::values::measure",
];

/// The Rust fixture at `opt_level`; the optimised build in one codegen unit, as release
/// profiles with LTO make them, where the optimiser may drop what a callee never reads.
fn rust_fixture(opt_level: &str) -> std::path::PathBuf {
    let opt = format!("opt-level={opt_level}");
    let mut args = vec!["-g", "-C", opt.as_str(), "--edition", "2021"];
    if opt_level != "0" {
        args.extend(["-C", "codegen-units=1"]);
    }
    build_fixture(
        &format!("values-rust{opt_level}"),
        "rustc",
        &["rust/values.rs"],
        &args,
    )
}

fn check_rust(opt_level: &str) {
    let binary = rust_fixture(opt_level);
    let optimised = opt_level != "0";
    // What the optimiser changed: `measure` no longer gets the pointer it never reads, and
    // `first_word` returns only the length its one caller uses (DW_CC_nocall).
    let (first_word, measure) = if optimised {
        (
            "<non-standard calling convention>",
            "<ptr optimized out> (len 5)",
        )
    } else {
        (r#""hello""#, r#""abcde""#)
    };
    let functions = &RUST_FUNCTIONS;
    let expected: Vec<String> = [
        r#"greet(name="ada", times=3) = 9"#,
        r#"label(name="Grace Hopper") = 9"#,
        "sum(values=[1, 2, 3, 4, 5, 6, 7, 8, … 92 more]) = 5050",
        "weigh(values=[0.5, 1.25, 2]) = 3",
        "ports(values=[80, 443, 8080]) = 8603",
        r#"nothing(name="", values=[]) = 0"#,
        "boxed(p=0x… {x=3, y=4}) = 7",
        "counted(p=0x… {x=5, y=6}) = 30",
        "atomic(p=0x… {x=9, y=2}) = 7",
        "shared(p=0x… {x=9, y=2}) = 13",
        "maybe(value=Some(3)) = 3",
        "maybe(value=None) = 100",
        "parse(result=Ok(7)) = 7",
        r#"parse(result=Err("no such order")) = 13"#,
        "area(shape=Circle(1.5)) = <xmm>",
        "area(shape=Rect {w=2, h=3}) = <xmm>",
        "area(shape=Empty) = <xmm>",
        "owned_slice(values=[4, 5, 6]) = 15",
        "quad(values=[1, 2, 3, 4]) = 10",
        "corners(points=[{x=0, y=0}, {x=4, y=0}, {x=0, y=3}]) = 7",
        r#"names(values=["tea", "milk", "honey"]) = 12"#,
        "path(points=[{x=4, y=0}, {x=0, y=3}]) = 0",
        r#"handle(request=0x… {id=7, header={method="GET", length=12}}) = 22"#,
        "split(value=42) = (4, 2)",
        "find(id=4) = Some(40)",
        "find(id=5) = None",
        "lookup(id=3) = Ok(300)",
        r#"lookup(id=9) = Err("no order 9")"#,
        "origin(shift=8) = {x=8, y=-8}",
        r#"title(id=12) = "order-12""#,
        &format!(r#"first_word(text="hello brave world") = {first_word}"#),
        &format!("measure(name={measure}) = 15"),
    ]
    .iter()
    .map(|line| format!("values::values::{line}"))
    .collect();
    assert_eq!(
        human_calls(&binary, functions, &[]),
        expected,
        "opt-level={opt_level}"
    );
    check_everywhere(&binary, functions, |calls| {
        let of = |name: &str| args_of(calls, &format!("values::values::{name}"));
        let each = |name: &str, count| each_call(calls, &format!("values::values::{name}"), count);
        assert_eq!(of("greet"), json!({"name": "ada", "times": 3}));
        assert_eq!(
            of("ports"),
            json!({"values": {"len": 3, "items": [80, 443, 8080]}})
        );
        let counted = of("counted");
        assert_eq!(
            (&counted["p"]["x"], &counted["p"]["y"]),
            (&json!(5), &json!(6)),
            "the value inside the Rc, not its counts: {counted}"
        );
        assert_eq!(
            each("maybe", 2),
            [
                (json!({"value": {"some": 3}}), json!(3)),
                (json!({"value": null}), json!(100))
            ]
        );
        let parses: Vec<Value> = each("parse", 2).into_iter().map(|(args, _)| args).collect();
        assert_eq!(
            parses,
            [
                json!({"result": {"ok": 7}}),
                json!({"result": {"err": "no such order"}})
            ]
        );
        let shapes: Vec<Value> = each("area", 3).into_iter().map(|(args, _)| args).collect();
        assert_eq!(
            shapes,
            [
                json!({"shape": {"Circle": 1.5}}),
                json!({"shape": {"Rect": {"w": 2, "h": 3}}}),
                json!({"shape": "Empty"})
            ]
        );
        assert_eq!(
            of("owned_slice"),
            json!({"values": {"len": 3, "items": [4, 5, 6]}})
        );
        assert_eq!(of("quad"), json!({"values": [1, 2, 3, 4]}));
        assert_eq!(
            of("corners"),
            json!({"points": [{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 0, "y": 3}]})
        );
        assert_eq!(
            of("names"),
            json!({"values": {"len": 3, "items": ["tea", "milk", "honey"]}})
        );
        assert_eq!(
            of("path"),
            json!({"points": {"len": 2, "items": [{"x": 4, "y": 0}, {"x": 0, "y": 3}]}})
        );
        assert_eq!(
            of("handle")["request"]["header"],
            json!({"method": "GET", "length": 12})
        );
        assert_eq!(each("split", 1)[0].1, json!([4, 2]));
        assert_eq!(
            each("find", 2),
            [
                (json!({"id": 4}), json!({"some": 40})),
                (json!({"id": 5}), json!(null))
            ]
        );
        assert_eq!(
            each("lookup", 2),
            [
                (json!({"id": 3}), json!({"ok": 300})),
                (json!({"id": 9}), json!({"err": "no order 9"}))
            ]
        );
        assert_eq!(each("origin", 1)[0].1, json!({"x": 8, "y": -8}));
        assert_eq!(each("title", 1)[0].1, json!("order-12"));
        let measured = if optimised {
            json!({"name": {"missing": "ptr optimized out", "len": 5}})
        } else {
            json!({"name": "abcde"})
        };
        assert_eq!(of("measure"), measured);
    });
    // `--errors`: a `Result` returned is an error when it is `Err`, decided in the kernel
    // from its discriminant, read at the return.
    assert_eq!(
        human_calls(&binary, &["values::values::lookup"], &["--errors"]),
        [r#"values::values::lookup(id=9) = Err("no order 9")"#]
    );
    // `--elements` caps what a sequence shows.
    let mut fixture = Fixture::start(&binary, &[]);
    let calls = trace_round(
        &mut fixture,
        &["--elements", "3", "--fn", "values::values::sum"],
    )
    .json_lines();
    assert_eq!(
        args_of(&calls, "values::values::sum"),
        json!({"values": {"len": 100, "items": [1, 2, 3]}}),
        "--elements 3"
    );
}

#[test]
fn rust_values_in_a_debug_build() {
    check_rust("0");
}

#[test]
fn rust_values_in_an_optimised_build() {
    check_rust("2");
}
