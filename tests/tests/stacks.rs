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
        let frames: Vec<&str> = call["stack"]
            .as_array()
            .unwrap_or_else(|| panic!("no stack: {call}"))
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(frames.len() >= 3, "{frames:?}");
        assert!(frames[0].starts_with("route (requests"), "{frames:?}");
        assert!(frames[1].starts_with("dispatch+0x"), "{frames:?}");
        assert!(frames[1].contains(" (requests"), "{frames:?}");
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
        lines[at + 1].starts_with("    route (requests"),
        "{}",
        human.stdout
    );
    assert!(
        lines[at + 2].starts_with("    dispatch+0x"),
        "{}",
        human.stdout
    );
}
