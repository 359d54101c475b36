//! The kernel matrix's checks (`cargo xtask kernels`), run inside a VM booted on each kernel
//! (as its init's one job) and on this machine's own: the end-to-end behaviours a kernel can
//! change, each against the static `shop` fixture, each printed as one line:
//!
//! `KOOLKIT-CHECK <name> ok|fail|needs <detail>`
//!
//! `needs` is a check the tracer refused with exit code 3 (a missing kernel feature), with what
//! it said: what a user of that kernel sees instead. Then `KOOLKIT-DOCTOR <json>` (what
//! `koolkit-trace doctor --json` found) and `KOOLKIT-DONE`.
//!
//! Usage: kernel-checks TRACER SHOP

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// What a check found.
enum Outcome {
    Ok(String),
    Fail(String),
    /// The tracer said the kernel lacks a feature (exit 3).
    Needs(String),
}

struct Checks {
    tracer: PathBuf,
    shop: PathBuf,
    /// The fixture every check traces.
    target: Child,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, tracer, shop] = &args[..] else {
        eprintln!("usage: kernel-checks TRACER SHOP");
        std::process::exit(2);
    };
    let target = Command::new(shop)
        .arg("200")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the shop fixture");
    let mut checks = Checks {
        tracer: PathBuf::from(tracer),
        shop: PathBuf::from(shop),
        target,
    };
    type Check = fn(&Checks) -> Outcome;
    let all: [(&str, Check); 10] = [
        ("attach-by-name", Checks::attach_by_name),
        ("arguments-returns", Checks::arguments_and_returns),
        ("struct-returns", Checks::struct_returns),
        ("two-functions", Checks::two_functions),
        ("latency-filter", Checks::latency_filter),
        ("where-filter", Checks::where_filter),
        ("perf-links", Checks::perf_links),
        ("binary-target", Checks::binary_target),
        ("recording", Checks::recording),
        ("sigkill-detaches", Checks::sigkill_leaves_nothing),
    ];
    for (name, check) in all {
        let started = Instant::now();
        let (word, detail) = match check(&checks) {
            Outcome::Ok(detail) => ("ok", detail),
            Outcome::Fail(detail) => ("fail", detail),
            Outcome::Needs(detail) => ("needs", detail),
        };
        let detail = detail.replace('\n', " | ");
        println!(
            "KOOLKIT-CHECK {name} {word} {detail} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    let doctor = checks.run(&["doctor", "--json"], Duration::from_secs(60));
    let doctor = String::from_utf8_lossy(&doctor.stdout)
        .trim()
        .replace('\n', " ");
    println!("KOOLKIT-DOCTOR {doctor}");
    let _ = checks.target.kill();
    let _ = checks.target.wait();
    println!("KOOLKIT-DONE");
}

impl Checks {
    fn pid(&self) -> String {
        self.target.id().to_string()
    }

    /// Runs the tracer to its end (killed after `timeout`).
    fn run(&self, args: &[&str], timeout: Duration) -> Output {
        let mut child = Command::new(&self.tracer)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start koolkit-trace");
        // Both pipes drained while it runs: a verifier's log fills a pipe long before it ends.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait().expect("koolkit-trace's status");
        Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// A trace of calls as JSON Lines: the calls, or why there are none.
    fn calls(&self, args: &[&str]) -> Result<Vec<Value>, Outcome> {
        let output = self.run(args, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.code() != Some(0) {
            // The whole of it on the console, for the log `cargo xtask kernels` keeps.
            // A verifier's log runs to megabytes, slow on a serial console: its start and its
            // end (where the reason is).
            eprintln!(
                "koolkit-trace {}:\n{}",
                args.join(" "),
                head_and_tail(&stderr)
            );
        }
        match output.status.code() {
            Some(0) => {}
            Some(3) => return Err(Outcome::Needs(first_line(&stderr))),
            code => {
                return Err(Outcome::Fail(format!(
                    "exit {code:?}: {}",
                    first_line(&stderr)
                )));
            }
        }
        let calls: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|call: &Value| call.get("fn").is_some())
            .collect();
        if calls.is_empty() {
            return Err(Outcome::Fail(format!("no call: {}", last_line(&stderr))));
        }
        Ok(calls)
    }

    /// `--pid` of the target, `--fn lookup_customer --json --max-events EVENTS` and `extra`.
    fn lookup_calls(&self, events: usize, extra: &[&str]) -> Result<Vec<Value>, Outcome> {
        let pid = self.pid();
        let events = events.to_string();
        let mut args = vec!["--pid", &pid, "--fn", "lookup_customer", "--json"];
        args.extend_from_slice(extra);
        args.extend(["--max-events", &events]);
        self.calls(&args)
    }

    fn attach_by_name(&self) -> Outcome {
        let calls = match self.lookup_calls(20, &[]) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        if calls.len() != 20 || calls.iter().any(|c| c["fn"] != "lookup_customer") {
            return Outcome::Fail(format!("{} calls: {}", calls.len(), calls[0]));
        }
        Outcome::Ok("20 calls".into())
    }

    fn arguments_and_returns(&self) -> Outcome {
        let calls = match self.lookup_calls(30, &[]) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        for call in &calls {
            let id = call["args"]["customer_id"].as_i64();
            let ret = call["ret"].as_i64();
            let latency = call["latency_ns"].as_u64().unwrap_or(0);
            match (id, ret) {
                // lookup_customer(id) sleeps 150 µs (3 ms for one id in ten) and returns id % 3.
                (Some(id), Some(ret)) if ret == id % 3 && latency >= 150_000 => {}
                _ => return Outcome::Fail(format!("{call}")),
            }
        }
        Outcome::Ok(format!(
            "{} calls, ret == customer_id % 3, latency >= 150us",
            calls.len()
        ))
    }

    /// Structs returned in RAX and RDX (`quote_order`) and through the caller's memory
    /// (`make_receipt`): read by the return programs' own steps.
    fn struct_returns(&self) -> Outcome {
        let pid = self.pid();
        let args = [
            "--pid",
            &pid,
            "--fn",
            "quote_order",
            "--fn",
            "make_receipt",
            "--json",
            "--max-events",
            "20",
        ];
        let calls = match self.calls(&args) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        let (mut quotes, mut receipts) = (0, 0);
        for call in &calls {
            let (args, ret) = (&call["args"], &call["ret"]);
            let right = match call["fn"].as_str() {
                Some("quote_order") => {
                    quotes += 1;
                    ret["tier"] == args["tier"]
                        && ret["cents"]
                            .as_i64()
                            .zip(args["cents"].as_i64())
                            .is_some_and(|(out, cents)| out <= cents && out > 0)
                }
                Some("make_receipt") => {
                    receipts += 1;
                    ret["customer"] == args["customer"]
                        && ret["items"] == args["items"]
                        && ret["cents"] == args["quote"]["cents"]
                        && ret["tier"] == args["quote"]["tier"]
                        && ret["cents"].is_i64()
                }
                _ => false,
            };
            if !right {
                return Outcome::Fail(format!("{call}"));
            }
        }
        if quotes == 0 || receipts == 0 {
            return Outcome::Fail(format!("{quotes} quotes, {receipts} receipts"));
        }
        Outcome::Ok(format!(
            "{quotes} quote_order (RAX:RDX), {receipts} make_receipt (memory)"
        ))
    }

    /// Two functions, one calling the other: each call must carry its own function's
    /// arguments (probes told apart by cookie, or by address where there are no cookies).
    fn two_functions(&self) -> Outcome {
        let calls = match self.lookup_calls(40, &["--fn", "apply_discount"]) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        let (mut lookups, mut discounts) = (0, 0);
        for call in &calls {
            let args = &call["args"];
            let right = match call["fn"].as_str() {
                Some("lookup_customer") => {
                    lookups += 1;
                    args["customer_id"].as_i64().map(|id| id % 3) == call["ret"].as_i64()
                }
                Some("apply_discount") => {
                    discounts += 1;
                    // tier 0, 1, 2 takes 0, 5, 12 percent off.
                    let (cents, tier) = (args["cents"].as_i64(), args["tier"].as_i64());
                    match (cents, tier) {
                        (Some(cents), Some(tier @ 0..=2)) => {
                            let off = [0, 5, 12][tier as usize];
                            call["ret"].as_i64() == Some(cents - cents * off / 100)
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !right {
                return Outcome::Fail(format!("{call}"));
            }
        }
        if lookups == 0 || discounts == 0 {
            return Outcome::Fail(format!("{lookups} lookups, {discounts} discounts"));
        }
        Outcome::Ok(format!(
            "{lookups} lookup_customer, {discounts} apply_discount"
        ))
    }

    fn latency_filter(&self) -> Outcome {
        let calls = match self.lookup_calls(5, &["--min-latency", "2ms"]) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        // Not only the cache misses: under emulation a fast call may take longer too.
        if let Some(fast) = calls
            .iter()
            .find(|call| call["latency_ns"].as_u64().unwrap_or(0) < 2_000_000)
        {
            return Outcome::Fail(format!("{fast}"));
        }
        Outcome::Ok(format!("{} calls, each >= 2ms", calls.len()))
    }

    /// A predicate decided in the kernel at the return (`--where` on an argument and `ret`).
    fn where_filter(&self) -> Outcome {
        let calls = match self.lookup_calls(5, &["--where", "customer_id < 300 && ret == 1"]) {
            Ok(calls) => calls,
            Err(outcome) => return outcome,
        };
        let passes = |call: &Value| {
            call["args"]["customer_id"]
                .as_i64()
                .is_some_and(|id| id < 300)
                && call["ret"].as_i64() == Some(1)
        };
        match calls.iter().find(|call| !passes(call)) {
            Some(call) => Outcome::Fail(format!("a call the predicate leaves out: {call}")),
            None => Outcome::Ok(format!(
                "{} calls, each customer_id < 300 and ret 1",
                calls.len()
            )),
        }
    }

    fn perf_links(&self) -> Outcome {
        match self.lookup_calls(10, &["--attach", "perf"]) {
            Ok(calls)
                if calls.iter().all(|c| {
                    c["ret"].as_i64() == c["args"]["customer_id"].as_i64().map(|id| id % 3)
                }) =>
            {
                Outcome::Ok(format!("{} calls", calls.len()))
            }
            Ok(calls) => Outcome::Fail(format!("{}", calls[0])),
            Err(outcome) => outcome,
        }
    }

    /// Every process running the binary: no pid filter in the kernel.
    fn binary_target(&self) -> Outcome {
        let shop = self.shop.to_string_lossy().into_owned();
        match self.calls(&[
            "--binary",
            &shop,
            "--fn",
            "lookup_customer",
            "--json",
            "--max-events",
            "10",
        ]) {
            Ok(calls) if calls.iter().all(|c| c["pid"] == self.target.id()) => {
                Outcome::Ok(format!("{} calls", calls.len()))
            }
            Ok(calls) => Outcome::Fail(format!("{}", calls[0])),
            Err(outcome) => outcome,
        }
    }

    fn recording(&self) -> Outcome {
        let file = "/tmp/kernel-checks.kt";
        let _ = std::fs::remove_file(file);
        let pid = self.pid();
        let output = self.run(
            &[
                "--pid",
                &pid,
                "--fn",
                "lookup_customer",
                "-o",
                file,
                "--quiet",
                "-d",
                "2s",
            ],
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.code() {
            Some(0) => {}
            Some(3) => return Outcome::Needs(first_line(&stderr)),
            code => return Outcome::Fail(format!("exit {code:?}: {}", first_line(&stderr))),
        }
        let report = self.run(&["report", "--json", file], Duration::from_secs(60));
        let Ok(report) = serde_json::from_slice::<Value>(&report.stdout) else {
            return Outcome::Fail(format!(
                "report: {}",
                String::from_utf8_lossy(&report.stderr)
            ));
        };
        let calls = report["calls"].as_u64().unwrap_or(0);
        if calls == 0 || report["functions"][0]["fn"] != "lookup_customer" {
            return Outcome::Fail(format!("{report}"));
        }
        Outcome::Ok(format!("{calls} calls recorded and reported"))
    }

    /// A tracer killed with SIGKILL leaves no probe: the instruction it replaced is back.
    fn sigkill_leaves_nothing(&self) -> Outcome {
        let pid = self.target.id();
        let address = tests::runtime_address(pid, &self.shop, "lookup_customer");
        let original = tests::byte_in_file(&self.shop, "lookup_customer");
        let mut tracer = Command::new(&self.tracer)
            .args([
                "--pid",
                &pid.to_string(),
                "--fn",
                "lookup_customer",
                "--json",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start koolkit-trace");
        // The start line says the probes are in place.
        let mut stderr = BufReader::new(tracer.stderr.take().unwrap());
        let mut said = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !said.contains("Tracing") && Instant::now() < deadline {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            said.push_str(&line);
        }
        if !said.contains("Tracing") {
            let _ = tracer.kill();
            let code = tracer.wait().ok().and_then(|s| s.code());
            return match code {
                Some(3) => Outcome::Needs(first_line(&said)),
                _ => Outcome::Fail(format!("never started: {}", first_line(&said))),
            };
        }
        let attached = tests::byte_in_process(pid, address);
        let _ = tracer.kill();
        let _ = tracer.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tests::byte_in_process(pid, address) != original {
            if Instant::now() > deadline {
                return Outcome::Fail(format!("{address:#x} still {attached:#x} after 10s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Outcome::Ok(format!(
            "int3 ({attached:#x}) while attached, the original byte after SIGKILL"
        ))
    }
}

/// The first line of `text` that says what went wrong (an error says it first; a verifier
/// log follows).
fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("error") || l.contains("warning"))
        .unwrap_or_else(|| text.lines().next().unwrap_or(""))
        .trim()
        .chars()
        .take(400)
        .collect()
}

/// The last line `text` has, for a one-line detail.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `text`, or its first and last few kilobytes with what is between left out.
fn head_and_tail(text: &str) -> String {
    const HEAD: usize = 2048;
    const TAIL: usize = 8192;
    if text.len() <= HEAD + TAIL {
        return text.to_string();
    }
    let head_end = (0..=HEAD)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail_start = (text.len() - TAIL..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!(
        "{}\n[... {} bytes left out ...]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}
