//! End-to-end: functions found by every kind of name, arguments shown by name and type from
//! DWARF, for C (-O0 and -O2, PIE and not, shared libraries), C++ and Rust, and for stripped
//! binaries through their debug files. Run as root through `cargo xtask test`.

use std::{fs, path::Path};

use serde_json::{Value, json};
use tests::{
    Fixture, build_fixture, c_fixture, line_of, private_copy, run_ok, run_tracer, trace_round,
};

/// Every function of typed.c, with the values main() passes.
fn check_typed_calls(binary: &Path) {
    let mut fixture = Fixture::start(binary, &[]);
    let output = trace_round(
        &mut fixture,
        &[
            "--fn",
            "greet",
            "--fn",
            "handle",
            "--fn",
            "paint",
            "--fn",
            "by_value",
            "--fn",
            "big_value",
            "--fn",
            "many",
            "--fn",
            "scale",
            "--fn",
            "maybe",
            "--fn",
            "peek",
        ],
    );
    let greet = output.only_call("greet");
    assert_eq!(
        greet["args"],
        json!({"name": "world", "times": 3}),
        "{greet}"
    );
    assert_eq!(greet["ret"], 15);

    let handle = output.only_call("handle");
    let req = &handle["args"]["req"];
    assert_eq!(req["path"], "/index.html", "{handle}");
    assert_eq!(req["len"], 11);
    assert_eq!(req["color"], "GREEN", "enums by enumerator name");
    assert!(req["_ptr"].as_u64().unwrap() > 0);
    assert_eq!(handle["args"]["verbose"], true);
    assert_eq!(handle["ret"], 1011);

    let paint = output.only_call("paint");
    assert_eq!(
        paint["args"],
        json!({"c": "BLUE", "ch": "x", "u": 200, "s": -7, "ul": u64::MAX}),
        "{paint}"
    );
    // BLUE (6) + 1 + 200 - 7 + 1 = 201: not an enumerator, so a number.
    assert_eq!(paint["ret"], 201);

    let by_value = output.only_call("by_value");
    assert_eq!(
        by_value["args"],
        json!({"p": {"x": 3, "y": -4}, "q": {"a": 100, "b": -200}}),
        "structs passed in registers: {by_value}"
    );
    let big = output.only_call("big_value");
    assert_eq!(
        big["args"],
        json!({"b": {"a": 1, "b": 2, "c": 3, "tag": "big"}, "after": 42}),
        "a struct passed on the stack: {big}"
    );
    let many = output.only_call("many");
    assert_eq!(
        many["args"],
        json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8}),
        "arguments 7 and 8 on the stack: {many}"
    );
    let scale = output.only_call("scale");
    assert_eq!(
        scale["args"],
        json!({"x": {"missing": "xmm"}, "factor": 4}),
        "{scale}"
    );
    assert_eq!(scale["ret"], json!({"missing": "xmm"}));
    assert_eq!(
        output.only_call("maybe")["args"],
        json!({"s": null}),
        "NULL strings"
    );
    let peek = output.only_call("peek");
    assert_eq!(peek["args"]["req"]["_ptr"], 8);
    assert_eq!(
        peek["args"]["req"]["len"],
        json!({"unreadable": true}),
        "a faulting read: {peek}"
    );
    assert_eq!(peek["ret"], 0);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}

#[test]
fn c_arguments_by_name_at_o0_pie() {
    check_typed_calls(&c_fixture("typed", &["-g", "-O0", "-fPIE", "-pie"]));
}

#[test]
fn c_arguments_by_name_at_o2_non_pie() {
    check_typed_calls(&c_fixture("typed", &["-g", "-O2", "-fno-pie", "-no-pie"]));
}

#[test]
fn human_output_shows_typed_values() {
    let binary = c_fixture("typed", &["-g", "-O2"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let pid = fixture.pid.to_string();
    let tracer = tests::Tracer::start(&[
        "--pid", &pid, "--fn", "handle", "--fn", "greet", "--color", "never",
    ]);
    fixture.round();
    let output = tracer.interrupt();
    let handle = output
        .stdout
        .lines()
        .find(|l| l.contains(" handle("))
        .unwrap();
    assert!(
        handle.contains(r#"{path="/index.html", len=11, color=GREEN}, verbose=true) = 1011 <"#),
        "{handle}"
    );
    let greet = output
        .stdout
        .lines()
        .find(|l| l.contains(" greet("))
        .unwrap();
    assert!(
        greet.contains(r#"greet(name="world", times=3) = 15 <"#),
        "{greet}"
    );
}

#[test]
fn args_selects_parameters_and_fields() {
    let binary = c_fixture("typed", &["-g", "-O2"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(
        &mut fixture,
        &["--fn", "handle", "--fn", "greet", "--args", "req.len,times"],
    );
    assert_eq!(
        output.only_call("handle")["args"]["req"],
        json!({"_ptr": output.only_call("handle")["args"]["req"]["_ptr"], "len": 11})
    );
    assert_eq!(output.only_call("greet")["args"], json!({"times": 3}));

    let bad = run_tracer(&[
        "--binary",
        binary.to_str().unwrap(),
        "--fn",
        "greet",
        "--args",
        "nope",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        bad.stderr
            .contains("no traced function has a parameter `nope`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn string_size_caps_strings() {
    let binary = c_fixture("typed", &["-g", "-O2"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "handle", "--string-size", "4"]);
    assert_eq!(
        output.only_call("handle")["args"]["req"]["path"],
        json!({"text": "/ind", "truncated": true}),
        "a truncated string says so"
    );
}

#[test]
fn source_line_selects_the_function_holding_it() {
    let binary = c_fixture("typed", &["-g", "-O0"]);
    let line = line_of("c/typed.c", "API int greet(");
    let spec = format!("typed.c:{line}");
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", &spec]);
    assert_eq!(output.only_call("greet")["args"]["times"], 3);

    let nowhere = run_tracer(&["--binary", binary.to_str().unwrap(), "--fn", "typed.c:1"]);
    assert_eq!(nowhere.status.code(), Some(2), "{nowhere:?}");
    assert!(
        nowhere.stderr.contains("no code at that line"),
        "{}",
        nowhere.stderr
    );
    assert!(
        nowhere.stderr.contains("lines with code nearby"),
        "{}",
        nowhere.stderr
    );
}

#[test]
fn inlined_only_functions_are_reported_as_such() {
    let binary = c_fixture("typed", &["-g", "-O2"]);
    let output = run_tracer(&["--binary", binary.to_str().unwrap(), "--fn", "twice"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output.stderr.contains("only inlined into its callers"),
        "{}",
        output.stderr
    );
}

#[test]
fn cpp_namespaces_methods_and_overloads() {
    let binary = build_fixture("cart", "g++", &["cpp/cart.cpp"], &["-g", "-O1"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "shop::Cart::*"]);
    let by_cents = output.calls_of("shop::Cart::add(int, char const*)");
    assert_eq!(by_cents.len(), 2, "{}", output.stdout);
    assert_eq!(by_cents[0]["args"]["cents"], 250);
    assert_eq!(by_cents[0]["args"]["what"], "pen");
    assert_eq!(by_cents[0]["args"]["this"]["total"], 0, "this, expanded");
    let by_item = output.only_call("shop::Cart::add(shop::Item const&)");
    assert_eq!(by_item["args"]["item"]["name"], "apple", "{by_item}");
    assert_eq!(by_item["args"]["item"]["cents"], 120);
    assert_eq!(by_item["ret"], 378);
    assert_eq!(
        output.only_call("shop::Cart::tax")["args"],
        json!({"cents": 990})
    );
    // std::string by value goes by invisible reference: `level` is the second register.
    let note = trace_round(&mut Fixture::start(&binary, &[]), &["--fn", "shop::note"]);
    let note = note.only_call("shop::note");
    assert_eq!(note["args"]["level"], 3, "{note}");
    assert_eq!(note["args"]["text"], "hello", "{note}");
    assert_eq!(note["ret"], 53);
    // The mangled name selects too.
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "_ZN4shop4Cart3taxEi"]);
    assert_eq!(output.only_call("shop::Cart::tax")["ret"], 99);
}

fn rust_fixture() -> std::path::PathBuf {
    build_fixture(
        "orders",
        "rustc",
        &["rust/orders.rs"],
        &["-g", "-C", "opt-level=0", "--edition", "2021"],
    )
}

#[test]
fn rust_str_structs_and_generics() {
    let binary = rust_fixture();
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(
        &mut fixture,
        &[
            "--fn",
            "orders::orders::describe",
            "--fn",
            "orders::orders::submit",
            "--fn",
            "orders::orders::total",
        ],
    );
    let describe = output.only_call("orders::orders::describe");
    assert_eq!(
        describe["args"],
        json!({"name": "widget", "count": 4}),
        "&str in two registers"
    );
    assert_eq!(describe["ret"], 24);
    let submit = output.only_call("orders::orders::submit");
    let order = &submit["args"]["order"];
    assert_eq!(
        order["customer"], "ada",
        "a &str field behind a reference: {submit}"
    );
    assert_eq!(
        (order["id"].clone(), order["quantity"].clone()),
        (json!(7), json!(2))
    );
    assert_eq!(submit["args"]["urgent"], true);
    assert_eq!(submit["ret"], 13);
    // One generic function, two instances, each named by its type argument.
    let total_u32 = output.only_call("orders::orders::total<u32>");
    assert_eq!(
        total_u32["args"]["items"],
        json!({"len": 3, "items": [1, 2, 3]})
    );
    assert_eq!(total_u32["ret"], 6);
    let total_u8 = output.only_call("orders::orders::total<u8>");
    assert_eq!(total_u8["args"]["items"]["len"], 2);
    assert_eq!(total_u8["ret"], 30);
}

#[test]
fn rust_optimised_build_uses_dwarf_locations() {
    let binary = build_fixture(
        "orders-opt",
        "rustc",
        &["rust/orders.rs"],
        &["-g", "-C", "opt-level=2", "--edition", "2021"],
    );
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "orders::orders::describe"]);
    let describe = output.only_call("orders::orders::describe");
    assert_eq!(
        describe["args"],
        json!({"name": "widget", "count": 4}),
        "{describe}"
    );
}

/// A build of typed.c with its own build-id (distinct flags), fully stripped, and its debug
/// file made with `objcopy --only-keep-debug`.
fn stripped_with_debug_file(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let full = c_fixture(
        "typed",
        &["-g", "-O2", "-Wl,--build-id", &format!("-DBUILD_TAG_{tag}")],
    );
    let debug = full.with_extension("debug");
    run_ok(
        "objcopy",
        &[
            "--only-keep-debug",
            full.to_str().unwrap(),
            debug.to_str().unwrap(),
        ],
    );
    let stripped = private_copy(&full, &format!("typed-stripped-{tag}"));
    run_ok("strip", &["--strip-all", stripped.to_str().unwrap()]);
    (stripped, debug)
}

#[test]
fn stripped_binary_finds_its_debug_file_by_build_id() {
    let (stripped, debug) = stripped_with_debug_file("buildid");
    let build_id = tracer::ElfFile::open(&stripped)
        .unwrap()
        .build_id()
        .expect("a build-id");
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let dir = Path::new("/usr/lib/debug/.build-id").join(&hex[..2]);
    fs::create_dir_all(&dir).unwrap();
    let installed = dir.join(format!("{}.debug", &hex[2..]));
    fs::copy(&debug, &installed).unwrap();

    let before = run_tracer(&["list", "--binary", stripped.to_str().unwrap(), "greet"]);
    let mut fixture = Fixture::start(&stripped, &[]);
    let output = trace_round(&mut fixture, &["--fn", "greet", "--fn", "handle"]);
    fs::remove_file(&installed).unwrap();

    assert!(before.status.success(), "{before:?}");
    assert!(
        before.stdout.contains("typed.c:"),
        "source from the debug file: {}",
        before.stdout
    );
    assert_eq!(
        output.only_call("greet")["args"],
        json!({"name": "world", "times": 3})
    );
    assert_eq!(output.only_call("handle")["args"]["req"]["color"], "GREEN");
}

#[test]
fn stripped_binary_finds_its_debug_file_by_debuglink() {
    let (stripped, debug) = stripped_with_debug_file("debuglink");
    // The debug file sits next to the binary under the name the link gives.
    let linked = stripped.with_file_name(format!(
        "{}.debug",
        stripped.file_name().unwrap().to_str().unwrap()
    ));
    fs::rename(&debug, &linked).unwrap();
    run_ok(
        "objcopy",
        &[
            &format!("--add-gnu-debuglink={}", linked.display()),
            stripped.to_str().unwrap(),
        ],
    );
    let mut fixture = Fixture::start(&stripped, &[]);
    let output = trace_round(&mut fixture, &["--fn", "greet"]);
    assert_eq!(
        output.only_call("greet")["args"],
        json!({"name": "world", "times": 3})
    );
}

#[test]
fn only_dynsym_gives_exported_functions_with_raw_registers() {
    let full = c_fixture("typed", &["-g", "-O2", "-rdynamic", "-DBUILD_TAG_dynsym"]);
    let stripped = private_copy(&full, "typed-dynsym");
    run_ok("strip", &["--strip-all", stripped.to_str().unwrap()]);
    let elf = tracer::ElfFile::open(&stripped).unwrap();
    assert!(!elf.has_section(".symtab") && !elf.has_dwarf());
    let mut fixture = Fixture::start(&stripped, &[]);
    let output = trace_round(&mut fixture, &["--fn", "greet"]);
    let greet = output.only_call("greet");
    assert_eq!(greet["args"]["arg1"], 3, "raw ABI registers: {greet}");
    assert!(greet["args"]["arg0"].as_u64().unwrap() > 0, "a pointer");
    assert_eq!(greet["ret"], 15);
}

#[test]
fn minidebuginfo_names_functions_of_a_stripped_binary() {
    let full = c_fixture("typed", &["-g", "-O2", "-DBUILD_TAG_mini"]);
    let mini = full.with_extension("mini");
    run_ok(
        "objcopy",
        &[
            "--only-keep-debug",
            "--strip-debug",
            full.to_str().unwrap(),
            mini.to_str().unwrap(),
        ],
    );
    let _ = fs::remove_file(mini.with_extension("mini.xz"));
    run_ok("xz", &["-kf", mini.to_str().unwrap()]);
    let stripped = private_copy(&full, "typed-mini");
    run_ok("strip", &["--strip-all", stripped.to_str().unwrap()]);
    run_ok(
        "objcopy",
        &[
            &format!("--add-section=.gnu_debugdata={}.xz", mini.display()),
            stripped.to_str().unwrap(),
        ],
    );
    let listed = run_tracer(&[
        "list",
        "--binary",
        stripped.to_str().unwrap(),
        "greet",
        "--json",
    ]);
    assert!(listed.status.success(), "{listed:?}");
    let record: Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    assert_eq!(record["fn"], "greet");
    let mut fixture = Fixture::start(&stripped, &[]);
    let output = trace_round(&mut fixture, &["--fn", "greet"]);
    assert_eq!(output.only_call("greet")["args"]["arg1"], 3);
}

#[test]
fn shared_library_parameters_by_name() {
    let dir = tests::private_dir("shapes");
    let lib = dir.join("libshapes.so");
    let root = tests::workspace_root().join("tests/fixtures/c");
    run_ok(
        "gcc",
        &[
            "-g",
            "-O1",
            "-shared",
            "-fPIC",
            "-o",
            lib.to_str().unwrap(),
            root.join("libshapes.c").to_str().unwrap(),
        ],
    );
    let main = dir.join("shapes");
    run_ok(
        "gcc",
        &[
            "-g",
            "-O1",
            "-o",
            main.to_str().unwrap(),
            root.join("shapes_main.c").to_str().unwrap(),
            &format!("-L{}", dir.display()),
            "-lshapes",
            &format!("-Wl,-rpath,{}", dir.display()),
        ],
    );
    let mut fixture = Fixture::start(&main, &[]);
    let output = trace_round(&mut fixture, &["--fn", "libshapes.so:shapes_area"]);
    let call = output.only_call("shapes_area");
    assert_eq!(call["args"]["r"]["width"], 3, "{call}");
    assert_eq!(call["args"]["r"]["height"], 4);
    assert_eq!(call["args"]["r"]["label"], "door");
    assert_eq!(call["args"]["scale"], 2);
    assert_eq!(call["ret"], 24);
    assert!(call["object"].as_str().unwrap().ends_with("libshapes.so"));
    // Without OBJECT, the main executable is searched first, then its libraries.
    let output = trace_round(&mut fixture, &["--fn", "shapes_area"]);
    assert_eq!(output.only_call("shapes_area")["ret"], 24);
}

#[test]
fn list_shows_functions_sources_and_probe_costs() {
    let binary = c_fixture("typed", &["-g", "-O0"]);
    let listed = run_tracer(&["list", "--binary", binary.to_str().unwrap(), "g*", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let records: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let greet = records
        .iter()
        .find(|r| r["fn"] == "greet")
        .expect("greet listed");
    assert!(
        greet["source"]["file"]
            .as_str()
            .unwrap()
            .ends_with("typed.c")
    );
    assert_eq!(
        greet["source"]["line"],
        line_of("c/typed.c", "API int greet(") as u64
    );
    assert_eq!(
        greet["probe"]["cost"], "emulated",
        "-O0 starts with push: {greet}"
    );
    assert!(
        records
            .iter()
            .all(|r| r["fn"].as_str().unwrap().starts_with('g'))
    );

    let table = run_tracer(&[
        "list",
        "--binary",
        rust_fixture().to_str().unwrap(),
        "orders::orders::total*",
    ]);
    assert!(
        table.stdout.contains("orders::orders::total<u32>"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("orders::orders::total<u8>"),
        "{}",
        table.stdout
    );

    let none = run_tracer(&["list", "--binary", binary.to_str().unwrap(), "no_such_*"]);
    assert_eq!(none.status.code(), Some(2), "{none:?}");
}

#[test]
fn rust_v0_mangling_is_demangled_too() {
    let binary = build_fixture(
        "orders-v0",
        "rustc",
        &["rust/orders.rs"],
        &[
            "-g",
            "-C",
            "opt-level=0",
            "-C",
            "symbol-mangling-version=v0",
            "--edition",
            "2021",
        ],
    );
    let symbols = tracer::ElfFile::open(&binary).unwrap().functions().unwrap();
    assert!(
        symbols.iter().any(|f| f.name.starts_with("_RNv")),
        "built with v0 mangling"
    );
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "orders::orders::describe"]);
    assert_eq!(
        output.only_call("orders::orders::describe")["args"]["name"],
        "widget"
    );
}

/// An entry probe moved past `mov %rdi,%rax` to the `push` the kernel emulates reads the same
/// arguments and return as one at the entry would: the copy leaves every argument in place.
#[test]
fn a_probe_moved_past_a_copy_into_a_scratch_register_reads_the_same_arguments() {
    let binary = tests::c_fixture("moved", &["-O1"]);
    let listed = tests::run_tracer(&[
        "list",
        "--json",
        "--binary",
        binary.to_str().unwrap(),
        "sum_after_copy",
    ]);
    let entry: serde_json::Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    assert_eq!(entry["probe"]["cost"], "emulated", "{entry}");
    assert_eq!(entry["probe"]["skip"], 3, "{entry}");
    assert_eq!(entry["probe"]["instruction"], "push", "{entry}");
    let mut fixture = tests::Fixture::start(&binary, &[]);
    let output = tests::trace_round(&mut fixture, &["--fn", "sum_after_copy"]);
    let calls = output.calls_of("sum_after_copy");
    assert_eq!(calls.len(), 10, "{}", output.stderr);
    for (i, call) in calls.iter().enumerate() {
        let i = i as i64;
        assert_eq!(call["args"]["arg0"].as_i64(), Some(i), "{call}");
        assert_eq!(call["args"]["arg1"].as_i64(), Some(2 * i), "{call}");
        assert_eq!(call["ret"].as_i64(), Some(3 * i), "{call}");
    }
}
