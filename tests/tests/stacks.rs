//! End-to-end: `--stack` shows each call's user stack, symbolized, under it. Run as root
//! through `cargo xtask test`.

use tests::{Fixture, c_fixture, trace_round};

#[test]
fn a_stack_runs_through_its_three_known_frames() {
    // Frame pointers kept, as production builds that want stacks do.
    let binary = c_fixture("requests", &["-g", "-O1", "-fno-omit-frame-pointer"]);
    let mut fixture = Fixture::start(&binary, &["1"]);
    let output = trace_round(&mut fixture, &["--fn", "route", "--stack"]);
    let calls = output.calls_of("route");
    assert_eq!(calls.len(), 10, "{}", output.stderr);
    for call in &calls {
        let frames = tests::stack_of(call);
        assert!(frames.len() >= 3, "{frames:?}");
        // With DWARF (-g), each frame says where in the source it is.
        let route = tests::line_of("c/requests.c", "API int route(");
        assert!(
            frames[0].starts_with(&format!("route at c/requests.c:{route} (requests")),
            "{frames:?}"
        );
        let call = tests::line_of("c/requests.c", "int status = route(req);");
        assert!(frames[1].starts_with("dispatch+0x"), "{frames:?}");
        assert!(
            frames[1].contains(&format!(" at c/requests.c:{call} (requests")),
            "{frames:?}"
        );
        assert!(frames[2].starts_with("main+0x"), "{frames:?}");
    }
    // One stack, the same for every call of the round.
    assert!(calls.windows(2).all(|w| w[0]["stack"] == w[1]["stack"]));
    assert!(
        !output.stderr.contains("stacks are short"),
        "{}",
        output.stderr
    );

    // Human: the frames under the call line.
    let pid = fixture.pid.to_string();
    let tracer = tests::Tracer::start(&["--pid", &pid, "--fn", "route", "--stack"]);
    fixture.round();
    let human = tracer.interrupt();
    let lines: Vec<&str> = human.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(" route(req="))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(
        lines[at + 1].starts_with("    route at c/requests.c:"),
        "{}",
        human.stdout
    );
    assert!(
        lines[at + 2].starts_with("    dispatch+0x"),
        "{}",
        human.stdout
    );
}

#[test]
fn stacks_are_kept_in_trace_files_and_reported_per_function() {
    let binary = c_fixture("requests", &["-g", "-O1", "-fno-omit-frame-pointer"]);
    let mut fixture = Fixture::start(&binary, &["2"]);
    let record = binary.with_file_name("stacks.kt");
    let record = record.to_str().unwrap();
    let output = trace_round(
        &mut fixture,
        &[
            "--fn", "route", "--fn", "serve", "--stack", "-o", record, "--force",
        ],
    );
    assert_eq!(output.calls_of("route").len(), 20, "{}", output.stderr);

    let replayed = tests::run_tracer(&["replay", "--json", record]);
    assert!(replayed.status.success(), "{}", replayed.stderr);
    let routes: Vec<serde_json::Value> = replayed
        .json_lines()
        .into_iter()
        .filter(|l| l["fn"] == "route")
        .collect();
    assert_eq!(routes.len(), 20, "{}", replayed.stdout);
    for call in &routes {
        let frames = tests::stack_of(call);
        assert!(frames[1].starts_with("dispatch+0x"), "{call}");
        assert!(frames[2].starts_with("main+0x"), "{call}");
    }
    // The live stacks and the recorded ones are the same.
    assert_eq!(
        routes[0]["stack"],
        output.calls_of("route")[0]["stack"],
        "{}",
        replayed.stdout
    );

    let report = tests::run_tracer(&["report", record]);
    assert!(report.status.success(), "{}", report.stderr);
    let route = report
        .stdout
        .split("\nroute (")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", report.stdout));
    assert!(
        route.contains(
            "called from (most frequent stacks):\n    20 calls (100.0%)\n      dispatch+0x"
        ),
        "{}",
        report.stdout
    );
    let serve = report
        .stdout
        .split("\nserve (")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", report.stdout));
    assert!(
        serve.contains("20 calls (100.0%)\n      main+0x"),
        "{}",
        report.stdout
    );
}

#[test]
fn a_function_inlined_on_the_way_is_a_frame_of_its_own() {
    // Optimised: middle() has no code of its own, only DWARF says leaf was called from it.
    let binary = c_fixture("inlining", &["-g", "-O2", "-fno-omit-frame-pointer"]);
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "leaf", "--stack"]);
    let calls = output.calls_of("leaf");
    assert_eq!(calls.len(), 5, "{}", output.stderr);
    let at = |needle: &str| tests::line_of("c/inlining.c", needle);
    let frames = tests::stack_of(&calls[0]);
    assert!(
        frames[0].starts_with(&format!("leaf at c/inlining.c:{} (", at("int leaf("))),
        "{frames:?}"
    );
    assert!(
        frames[1].starts_with(&format!(
            "middle (inlined) at c/inlining.c:{} (",
            at("middle calls leaf")
        )),
        "{frames:?}"
    );
    assert!(
        frames[2].starts_with("outer+0x")
            && frames[2].contains(&format!(" at c/inlining.c:{} (", at("outer calls middle"))),
        "{frames:?}"
    );
    assert!(frames[3].starts_with("main+0x"), "{frames:?}");
    // Three addresses deep: the inlined frame adds a line, and the stack is not short.
    assert!(
        !output.stderr.contains("stacks are short"),
        "{}",
        output.stderr
    );
}

#[test]
fn stacks_of_forked_workers_gone_before_they_are_read_are_still_named() {
    // A pre-fork server: each worker calls work() a hundred times and exits at once, mostly
    // before its stacks are read; a forked worker maps what its parent mapped, where it did.
    let binary = c_fixture("prefork", &["-g", "-O1", "-fno-omit-frame-pointer"]);
    let mut server = Fixture::start(&binary, &["2", "100"]);
    let pid = server.pid.to_string();
    let tracer = tests::Tracer::start(&[
        "--pid",
        &pid,
        "--children",
        "--fn",
        "work",
        "--stack",
        "--json",
    ]);
    assert_eq!(server.round(), 3);
    let output = tracer.interrupt();
    let calls = output.calls_of("work");
    assert_eq!(calls.len(), 300, "{}", output.stderr);
    for call in &calls {
        let frames = tests::stack_of(call);
        assert!(frames[0].starts_with("work at c/prefork.c:"), "{frames:?}");
        assert!(
            frames.iter().any(|f| f.starts_with("main+0x")),
            "{frames:?}"
        );
    }
}

#[test]
fn a_return_address_a_uretprobe_replaced_is_not_a_frame() {
    // At -O2 shop::Cart::add(const Item&) jumps to add(int, const char*): at the second one's
    // entry the return address on the stack is the first one's uretprobe trampoline.
    let binary = tests::build_fixture(
        "cart",
        "g++",
        &["cpp/cart.cpp"],
        &["-g", "-O2", "-fno-omit-frame-pointer"],
    );
    let mut fixture = Fixture::start(&binary, &[]);
    let output = trace_round(&mut fixture, &["--fn", "shop::*", "--stack"]);
    let calls: Vec<serde_json::Value> = output
        .json_lines()
        .into_iter()
        .filter(|l| l.get("stack").is_some())
        .collect();
    assert_eq!(calls.len(), 5, "{}", output.stdout);
    for call in &calls {
        let frames = tests::stack_of(call);
        // Every traced function here is called by main (the tail call too).
        assert!(frames[1].starts_with("main+0x"), "{call}");
        assert!(frames.iter().all(|f| !f.starts_with("0x")), "{call}");
    }
}
