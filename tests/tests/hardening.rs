//! End-to-end: what broke when the tool was tried as a new user would (the hardening issue),
//! each case checked against real processes. Run as root through `cargo xtask test`.

use std::{collections::BTreeSet, thread, time::Duration};

use tests::{Fixture, Tracer, c_fixture, run_tracer};

const O1: &[&str] = &["-g", "-O1"];

/// The number a line of `text` holding `words` starts with (`"594 calls were unwound"`).
fn count_on_line(text: &str, words: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.contains(words))?;
    line.split_whitespace().next()?.parse().ok()
}

#[test]
fn children_of_a_pre_fork_server_are_traced_with_children_only() {
    let binary = c_fixture("prefork", O1);
    let mut server = Fixture::start(&binary, &["2", "100"]);
    let pid = server.pid.to_string();

    // Without --children: nothing of the workers, and the start line says why.
    let alone = Tracer::start(&["--pid", &pid, "--fn", "work", "--json"]);
    assert!(
        alone.stderr.seen().iter().any(|l| l.contains(&format!(
            "Process {pid} has 2 child processes that are not traced (--children"
        ))),
        "{:?}",
        alone.stderr.seen()
    );
    let alone_out = {
        let tracer = alone;
        // Keep the workers waiting: only the parent runs while this tracer is attached.
        thread::sleep(Duration::from_millis(200));
        tracer.interrupt()
    };
    assert!(alone_out.calls_of("work").is_empty(), "{alone_out:?}");

    // With --children: the two workers forked before and the one forked after attaching.
    let family = Tracer::start(&["--pid", &pid, "--children", "--fn", "work", "--json"]);
    assert!(
        family
            .stderr
            .seen()
            .iter()
            .any(|l| l.contains("and its descendants (2 processes now)")),
        "{:?}",
        family.stderr.seen()
    );
    assert_eq!(server.round(), 3, "three workers ran");
    let output = family.interrupt();
    let calls = output.calls_of("work");
    assert_eq!(calls.len(), 300, "{}", output.stderr);
    let pids: BTreeSet<u64> = calls.iter().map(|c| c["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(
        !pids.contains(&u64::from(server.pid)),
        "the parent never calls work()"
    );
    for call in &calls {
        let n = call["args"]["n"].as_i64().unwrap();
        assert_eq!(call["ret"].as_i64().unwrap(), n * 2 + 1, "{call}");
    }
}

#[test]
fn calls_abandoned_by_longjmp_are_counted_as_such() {
    let binary = c_fixture("jumps", O1);
    let mut fixture = Fixture::start(&binary, &["100", "5"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "dive", "--fn", "leaf", "--json"]);
    assert_eq!(fixture.round(), 100);
    let output = tracer.interrupt();
    assert_eq!(output.calls_of("leaf").len(), 100, "{}", output.stderr);
    assert!(output.calls_of("dive").is_empty(), "no dive() returns");
    // 100 rounds of 6 dive() calls: all abandoned, the last round's perhaps not known yet.
    let abandoned = count_on_line(&output.stderr, "unwound (left by").unwrap_or(0);
    let running = count_on_line(&output.stderr, "still running at stop").unwrap_or(0);
    assert!(abandoned >= 594, "{}", output.stderr);
    assert_eq!(abandoned + running, 600, "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}

/// Without attach cookies (kernels before 5.15) a return finds its probe in its thread's
/// shadow alone: calls nested deeper than the shadow holds (32) are not traced, and are
/// counted as such, never shown under another probe's name.
#[test]
fn without_attach_cookies_calls_deeper_than_the_shadow_are_counted_not_traced() {
    let binary = c_fixture("jumps", O1);
    let mut fixture = Fixture::start(&binary, &["10", "40"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start_under(
        &["env", "KOOLKIT_TRACE_NO_COOKIES=1"],
        &["--pid", &pid, "--fn", "climb", "--attach", "perf", "--json"],
    );
    assert_eq!(fixture.round(), 10);
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    // climb(40) nests 41 calls: the outer 32 (depth 40 down to 9) are traced in each round.
    let climb = output.calls_of("climb");
    assert_eq!(climb.len(), 320, "{}", output.stderr);
    for call in &climb {
        let depth = call["args"]["depth"].as_i64().unwrap();
        assert!(depth >= 9, "{call}");
        assert_eq!(call["ret"].as_i64().unwrap(), depth, "{call}");
    }
    assert!(
        output
            .stderr
            .contains("90 calls not traced: nested deeper than the thread's call shadow"),
        "{}",
        output.stderr
    );
}

#[test]
fn calls_counted_in_the_kernel_are_paired_past_the_shadow_s_depth_and_abandoned_as_such() {
    // 41 nested calls: deeper than a thread's shadow holds (32), so under --histogram the
    // calls past it are parked in the in-flight map instead, and every one is still counted.
    let binary = c_fixture("jumps", O1);
    let mut fixture = Fixture::start(&binary, &["100", "40"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "dive",
        "--fn",
        "leaf",
        "--fn",
        "climb",
        "--histogram",
        "--json",
    ]);
    assert_eq!(fixture.round(), 100);
    let output = tracer.interrupt();
    let total = |function: &str| {
        output
            .total_of(function)
            .and_then(|l| l["calls"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(total("leaf"), 100, "{}", output.stdout);
    assert_eq!(total("climb"), 4100, "{}", output.stdout);
    assert_eq!(total("dive"), 0, "no dive() returns: {}", output.stdout);
    let abandoned = count_on_line(&output.stderr, "unwound (left by").unwrap_or(0);
    let running = count_on_line(&output.stderr, "still running at stop").unwrap_or(0);
    assert!(abandoned >= 3000, "{}", output.stderr);
    assert_eq!(abandoned + running, 4100, "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    // Nothing was captured: a call still running shows no arguments.
    assert!(
        output.stderr.contains(" dive(...) still running"),
        "{}",
        output.stderr
    );

    // Each call emitted: the same counts.
    let tracer = Tracer::start(&[
        "--pid", &pid, "--fn", "dive", "--fn", "leaf", "--fn", "climb", "--json",
    ]);
    assert_eq!(fixture.round(), 100);
    let output = tracer.interrupt();
    assert_eq!(output.calls_of("climb").len(), 4100, "{}", output.stderr);
    let abandoned = count_on_line(&output.stderr, "unwound (left by").unwrap_or(0);
    let running = count_on_line(&output.stderr, "still running at stop").unwrap_or(0);
    assert_eq!(abandoned + running, 4100, "{}", output.stderr);
}

#[test]
fn a_call_under_way_at_attach_is_not_a_lost_entry() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["1", "1500"]);
    let pid = fixture.pid.to_string();
    // sleepy(1500) is sleeping when the probes go in; its return has no entry to pair.
    fixture.start_round();
    thread::sleep(Duration::from_millis(200));
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "sleepy", "--json"]);
    fixture.round_done();
    fixture.round();
    let output = tracer.interrupt();
    assert_eq!(output.calls_of("sleepy").len(), 1, "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}

/// Held by the test that probes libc in every process (every malloc of the machine traps, a
/// single-stepped `ret` included) and by the tests whose pace it would spoil.
static MACHINE_WIDE_PROBES: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_tracer_never_traces_itself() {
    let _alone = MACHINE_WIDE_PROBES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Every process mapping libc hits these probes, the tracer among them (it allocates for
    // every line it prints).
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["50"]);
    let tracer = Tracer::start(&["--binary", libc, "--fn", "malloc", "--json"]);
    let tracer_pid = u64::from(tracer.pid());
    fixture.round();
    let output = tracer.interrupt();
    let calls = output.calls_of("malloc");
    assert!(
        calls
            .iter()
            .any(|c| c["pid"] == fixture.pid && c["args"]["bytes"] == 4242),
        "the fixture's malloc(4242) was seen: {}",
        output.stderr
    );
    assert!(
        calls.iter().all(|c| c["pid"].as_u64() != Some(tracer_pid)),
        "no call of the tracer's own"
    );
}

#[test]
fn targets_that_are_not_processes_say_what_they_are() {
    let binary = c_fixture("calls", O1);
    let fixture = Fixture::start(&binary, &["1"]);
    let kernel = run_tracer(&["--pid", "2", "--fn", "compute"]);
    assert_eq!(kernel.status.code(), Some(2));
    assert!(
        kernel.stderr.contains("is a kernel thread"),
        "{}",
        kernel.stderr
    );
    let zero = run_tracer(&["--pid", "1", "--fn", "compute", "--max-events", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", zero.stderr);
    let none = run_tracer(&["--pid", "1", "--fn", "compute", "--duration", "0s"]);
    assert_eq!(none.status.code(), Some(2), "{}", none.stderr);
    drop(fixture);
}

#[test]
fn processes_still_running_a_replaced_binary_are_traced_too() {
    let built = c_fixture("calls", O1);
    let dir = tests::private_dir("replaced");
    let path = dir.join("app");
    std::fs::copy(&built, &path).unwrap();
    let mut old = Fixture::start(&path, &["20"]);
    // Replaced the way installers do it: a new file renamed over the old name.
    let staged = dir.join("app.new");
    std::fs::copy(&built, &staged).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let mut new = Fixture::start(&path, &["30"]);

    let app = path.to_str().unwrap();
    let tracer = Tracer::start(&["--binary", app, "--fn", "compute", "--json"]);
    assert!(
        tracer
            .stderr
            .seen()
            .iter()
            .any(|l| l.contains("Also probing 1 replaced copy of the file")),
        "{:?}",
        tracer.stderr.seen()
    );
    old.round();
    new.round();
    let output = tracer.interrupt();
    let calls = output.calls_of("compute");
    let of = |pid: u32| calls.iter().filter(|c| c["pid"] == pid).count();
    assert_eq!(of(old.pid), 20, "the process running the replaced copy");
    assert_eq!(of(new.pid), 30, "the process running the new file");
}

#[test]
fn functions_the_kernel_cannot_probe_are_skipped_by_name() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["5"]);
    let pid = fixture.pid.to_string();
    let listed = run_tracer(&["list", "--pid", &pid, "libc.so.6:pthread_spin_lock"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        listed.stdout.contains("not probeable (lock dec)"),
        "{}",
        listed.stdout
    );

    // Every function of libc: a glob reaching pthread_spin_lock (`lock decl`) and vector
    // code the kernel refuses must not fail the rest.
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "libc.so.6:*",
        "--fn",
        "compute",
        "--json",
    ]);
    let warnings: Vec<&String> = tracer
        .stderr
        .seen()
        .iter()
        .filter(|l| l.starts_with("koolkit-trace: warning: not tracing "))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("pthread_spin_lock (libc.so.6)")),
        "{warnings:?}"
    );
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.calls_of("compute").len(), 5, "{}", output.stderr);
    assert!(
        output
            .calls_of("malloc")
            .iter()
            .any(|c| c["args"]["bytes"] == 4242),
        "libc's own functions are traced"
    );
}

#[test]
fn stripped_and_32_bit_binaries_say_so() {
    let binary = c_fixture("calls", O1);
    let stripped = tests::private_copy(&binary, "stripped");
    tests::run_ok("strip", &[stripped.to_str().unwrap()]);
    let output = run_tracer(&["--binary", stripped.to_str().unwrap(), "--fn", "compute"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains(
            "is stripped (no symbol table) and has no debug file (none at /usr/lib/debug/.build-id/"
        ),
        "{}",
        output.stderr
    );

    // A 64-bit file with its ELF class byte set to 32-bit reads as a 32-bit file.
    let narrow = tests::private_copy(&binary, "narrow");
    let mut bytes = std::fs::read(&narrow).unwrap();
    bytes[4] = 1;
    std::fs::write(&narrow, bytes).unwrap();
    let output = run_tracer(&["--binary", narrow.to_str().unwrap(), "--fn", "compute"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains("is a 32-bit ELF file"),
        "{}",
        output.stderr
    );
}

#[test]
fn globs_take_classes_and_alternatives() {
    let binary = c_fixture("calls", O1);
    let path = binary.to_str().unwrap();
    let listed = run_tracer(&["list", "--binary", path, "{compute,neg[a-e]te}", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let names: BTreeSet<String> = listed
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["fn"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["compute".to_string(), "negate".to_string()])
    );
    let none = run_tracer(&["list", "--binary", path, "neg[!a]te"]);
    assert_eq!(none.status.code(), Some(2), "{none:?}");
}

#[test]
fn a_string_before_an_unmapped_page_shows_what_can_be_read() {
    let binary = c_fixture("edge", O1);
    let mut fixture = Fixture::start(&binary, &[]);
    let pid = fixture.pid.to_string();
    for size in ["15", "16", "64"] {
        let tracer = Tracer::start(&[
            "--pid",
            &pid,
            "--fn",
            "show",
            "--json",
            "--string-size",
            size,
        ]);
        assert_eq!(fixture.round(), 16);
        let output = tracer.interrupt();
        let call = output.only_call("show");
        let expected = &"0123456789abcdef"[..size.parse::<usize>().unwrap().min(16)];
        assert_eq!(
            call["args"]["s"],
            serde_json::json!({"text": expected, "truncated": true}),
            "--string-size {size}: {call}"
        );
    }
}

#[test]
fn times_are_written_as_asked_and_the_zone_is_named_once() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["3"]);
    let pid = fixture.pid.to_string();
    let local = Tracer::start(&["--pid", &pid, "--fn", "compute"]);
    assert!(
        local
            .stderr
            .seen()
            .iter()
            .any(|l| l.contains(" Times are UTC")),
        "{:?}",
        local.stderr.seen()
    );
    fixture.round();
    let local = local.interrupt();
    for line in local.stdout.lines() {
        let time = line.split(' ').next().unwrap();
        assert_eq!(time.len(), "12:04:05.123456".len(), "{line}");
        assert!(line.ends_with("us>"), "not a UTF-8 terminal: {line}");
    }

    let iso = Tracer::start(&["--pid", &pid, "--fn", "compute", "--time", "iso"]);
    fixture.round();
    let iso = iso.interrupt();
    let first = iso.stdout.lines().next().expect("a line");
    let time = first.split(' ').next().unwrap();
    assert_eq!(
        time.len(),
        "2026-12-01T12:04:05.123456+00:00".len(),
        "{first}"
    );
    assert_eq!(&time[10..11], "T");

    let relative = Tracer::start(&["--pid", &pid, "--fn", "compute", "--time", "relative"]);
    fixture.round();
    let relative = relative.interrupt();
    for line in relative.stdout.lines() {
        assert!(line.starts_with('+'), "{line}");
    }

    let json = Tracer::start(&["--pid", &pid, "--fn", "compute", "--json"]);
    fixture.round();
    let json = json.interrupt();
    for call in json.calls_of("compute") {
        let time = call["time"].as_str().unwrap();
        assert_eq!(
            time.len(),
            "2026-12-01T12:04:05.123456789+00:00".len(),
            "{call}"
        );
        assert!(call["ts_ns"].is_u64());
    }
}

#[test]
fn a_truncated_string_says_so_in_json() {
    let binary = c_fixture("typed", O1);
    let mut fixture = Fixture::start(&binary, &[]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "greet",
        "--json",
        "--string-size",
        "3",
    ]);
    fixture.round();
    let output = tracer.interrupt();
    let greet = output.only_call("greet");
    assert_eq!(
        greet["args"]["name"],
        serde_json::json!({"text": "wor", "truncated": true}),
        "{greet}"
    );
}

#[test]
fn a_reader_slower_than_the_calls_costs_lines_not_calls() {
    let _alone = MACHINE_WIDE_PROBES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // -O0: `push %rbp` first, an emulated probe: calls come faster than a stalled pipe reads.
    let binary = c_fixture("calls", &["-g", "-O0"]);
    let mut fixture = Fixture::start(&binary, &["100000"]);
    let pid = fixture.pid.to_string();
    // Nobody reads the tracer's stdout until it exits.
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--fn", "negate", "--json"]);
    fixture.round();
    let output = tracer.interrupt();
    assert!(
        output.stderr.contains("200000 calls of 2 functions"),
        "every call counted: {}",
        output.stderr
    );
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
    let shown = output.json_lines().len() as u64;
    let line = output
        .stderr
        .lines()
        .find(|l| l.contains("lines not shown: the output took"))
        .unwrap_or_else(|| panic!("the summary names the rate: {}", output.stderr));
    let skipped: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(shown + skipped, 200_000, "{line}");
}

/// `koolkit-trace ARGS` as user nobody, with only the capabilities `caps` (`+bpf,+perfmon`).
fn as_nobody(caps: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if caps.is_empty() {
        command.arg("--inh-caps=-all");
    } else {
        command.args([
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
        ]);
    }
    let output = command
        .arg(tests::tracer_bin())
        .args(args)
        .output()
        .expect("run setpriv (util-linux)");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn another_users_process_names_the_capabilities_it_needs() {
    let binary = c_fixture("calls", O1);
    let fixture = Fixture::start(&binary, &["1"]);
    let pid = fixture.pid.to_string();
    for caps in ["", "+bpf,+perfmon"] {
        let (code, stderr) = as_nobody(caps, &["--pid", &pid, "--fn", "compute", "-d", "1s"]);
        assert_eq!(code, Some(3), "caps {caps:?}: {stderr}");
        assert!(
            stderr.contains("belongs to another user") && stderr.contains("CAP_SYS_PTRACE"),
            "caps {caps:?}: {stderr}"
        );
    }
}

#[test]
fn sighup_ends_a_trace_like_sigterm() {
    let binary = c_fixture("calls", O1);
    let mut fixture = Fixture::start(&binary, &["10"]);
    let pid = fixture.pid.to_string();
    let dir = tests::private_dir("hangup");
    let file = dir.join("t.kt");
    let path = file.to_str().unwrap();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "-o", path]);
    fixture.round();
    tracer.signal(libc::SIGHUP);
    let output = tracer.wait(Duration::from_secs(30));
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains("stopped: hung up"),
        "{}",
        output.stderr
    );
    let report = run_tracer(&["report", path, "--json"]);
    assert!(report.status.success(), "{report:?}");
    assert!(
        report.stderr.is_empty(),
        "a clean end frame: {}",
        report.stderr
    );
}

/// A process whose executable's path is not UTF-8 (paths are bytes to the kernel): its
/// objects are found and opened (through `/proc/PID/map_files`) and its calls traced.
#[test]
fn a_process_mapping_a_path_that_is_not_utf8_is_traced() {
    use std::os::unix::ffi::OsStrExt as _;
    let binary = c_fixture("calls", O1);
    let dir = tests::private_dir("not-utf8");
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"calls-\xff\xfe"));
    std::fs::copy(&binary, &odd).unwrap();
    let mut fixture = Fixture::start(&odd, &["5"]);
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--json"]);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    let calls = output.calls_of("compute");
    assert_eq!(calls.len(), 5, "{}", output.stderr);
    assert!(
        calls[0]["object"]
            .as_str()
            .unwrap()
            .ends_with("calls-\u{fffd}\u{fffd}"),
        "{}",
        calls[0]
    );
}

/// A process that is only chroot-ed (no mount namespace of its own): the kernel shows its
/// maps with host paths, which are not re-rooted under `/proc/PID/root`.
#[test]
fn a_chrooted_process_is_traced() {
    let binary = c_fixture("calls", &["-g", "-O1", "-static"]);
    let root = tests::private_dir("chroot");
    std::fs::copy(&binary, root.join("calls")).unwrap();
    let mut command = std::process::Command::new("chroot");
    command.arg(&root).args(["/calls", "5"]);
    let mut fixture = Fixture::start_with(&mut command, &root.join("calls"));
    let pid = fixture.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--fn", "compute", "--json"]);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.calls_of("compute").len(), 5, "{}", output.stderr);
}

#[test]
fn tracing_libc_s_string_functions_never_changes_what_they_return() {
    let binary = c_fixture("strings", O1);
    let mut fixture = Fixture::start(&binary, &[]);
    assert_eq!(fixture.round(), 0, "wrong results untraced");
    let pid = fixture.pid.to_string();
    let record = binary.with_extension("kt");
    let record = record.to_str().unwrap();
    // Every variant glibc has (sse2, avx2, evex): the one this CPU runs among them.
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--fn",
        "libc:*str*",
        "--fn",
        "libc:*mem*",
        "-o",
        record,
        "--force",
        "--quiet",
    ]);
    let wrong = fixture.round();
    let output = tracer.interrupt();
    assert_eq!(
        wrong, 0,
        "a probe changed what a function returned: {}",
        output.stderr
    );
    assert!(output.status.success(), "{}", output.stderr);
    let recorded = output
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("recorded "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    // strchr's variants are not probeable here (avx2: vmovd; evex: its EVEX first
    // instruction): the other 5000 calls of the round.
    assert!(recorded >= 5000, "{}", output.stderr);
    if output.stderr.contains("not tracing __strchr_evex") {
        assert!(
            output.stderr.contains(
                "__strchr_evex (libc.so.6): the kernel cannot probe its first instruction \
                 (vpbroadcastb: the kernel single-steps vector instructions wrongly)"
            ),
            "{}",
            output.stderr
        );
    }
}
