//! Trace-file benchmark, run by `cargo xtask bench`: writes 5 million synthetic calls with two
//! integer arguments, the way a hot function fills a trace, and reports the writer's speed on
//! one core, the bytes per call on disk, the time `report` takes on the file, and the ratios
//! against writing the same calls as JSON Lines. Budgets (issue: record traces): at least 2
//! million calls/s, at most 24 bytes/call, report under 2 s.

use std::{
    fs,
    io::{BufWriter, Write},
    time::Instant,
};

use bytes::Bytes;
use tracer::{
    CallEvent, HumanLines, ProbeSite, ProbeTable, Style, json_line, raw_register_args,
    record::{
        CallFilter, CountersRecord, EndRecord, Report, TargetInfo, TraceHeader, TraceReader,
        TraceWriter, WriterOptions,
    },
};

const CALLS: u64 = 5_000_000;

fn table() -> ProbeTable {
    let site = |name: &str| ProbeSite::named(name, "/usr/bin/shop");
    let sites = [
        site("price_order"),
        site("lookup_customer"),
        site("apply_discount"),
    ];
    let plans = vec![raw_register_args(2).unwrap(); sites.len()];
    ProbeTable::new(&sites, &plans)
}

/// Calls as a service makes them: three functions, a few threads, microseconds apart, small
/// latencies and small integer arguments and results.
fn calls() -> Vec<CallEvent> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut entry = 5_000_000_000u64;
    (0..CALLS)
        .map(|i| {
            let r = next();
            entry += 800 + (r % 400);
            let mut payload = vec![0u8; 16];
            payload.extend_from_slice(&(r >> 20 & 0x3ff).to_le_bytes());
            payload.extend_from_slice(&(1 + (r >> 40) % 5).to_le_bytes());
            let latency = 200 + ((r >> 8) % 3_000) * (1 + u64::from(i % 97 == 0) * 1_000);
            CallEvent {
                probe_id: (i % 3) as u32,
                pid: 4242,
                tid: 4242 + ((r >> 50) % 4) as u32,
                cpu: ((r >> 55) % 2) as u32,
                entry_ns: entry,
                exit_ns: entry + latency,
                ret: (r >> 30) % 20_000,
                payload: Bytes::from(payload),
            }
        })
        .collect()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("kt-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let table = table();
    let calls = calls();
    let header = TraceHeader {
        tool: "bench".into(),
        hostname: "bench".into(),
        kernel: String::new(),
        start_realtime_ns: 1_700_000_000_000_000_000,
        start_monotonic_ns: 5_000_000_000,
        target: TargetInfo {
            kind: "binary".into(),
            pid: None,
            binary: None,
            command: None,
        },
        probes: table.clone(),
        merged_from: Vec::new(),
        request: None,
    };

    let trace = dir.join("bench.kt");
    let started = Instant::now();
    let mut writer = TraceWriter::create(&trace, &header, WriterOptions::default()).unwrap();
    for call in &calls {
        writer.push(call).unwrap();
    }
    writer
        .finish(
            &CountersRecord::default(),
            &EndRecord {
                stop: "bench".into(),
                events: CALLS,
                unfinished: 0,
            },
        )
        .unwrap();
    let write_time = started.elapsed();
    let trace_bytes = fs::metadata(&trace).unwrap().len();

    let jsonl = dir.join("bench.jsonl");
    let clock = header.clock();
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(&jsonl).unwrap());
    let mut line = String::new();
    for call in &calls {
        line.clear();
        json_line(&mut line, call, table.get(call.probe_id).unwrap(), &clock);
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let json_time = started.elapsed();
    let json_bytes = fs::metadata(&jsonl).unwrap().len();

    // Live human lines, formatted and written as the live trace does.
    let human = dir.join("bench.txt");
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(&human).unwrap());
    let mut lines = HumanLines::new(Style::default());
    for call in &calls {
        line.clear();
        lines.write(&mut line, call, table.get(call.probe_id).unwrap(), &clock);
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let human_time = started.elapsed();

    let started = Instant::now();
    let reader = TraceReader::open(&trace).unwrap();
    let report = Report::build(&reader, &CallFilter::default());
    let text = report.render_text(&clock);
    let report_time = started.elapsed();
    assert_eq!(report.calls, CALLS, "every call read back");

    let rate = CALLS as f64 / write_time.as_secs_f64();
    let per_call = trace_bytes as f64 / CALLS as f64;
    let mark = |ok: bool| if ok { "within budget" } else { "OVER BUDGET" };
    println!("\ntrace files: {CALLS} calls with two integer arguments, one core\n");
    println!(
        "  writer:  {:6.2} M calls/s ({:.2} s)   {}: >= 2 M calls/s",
        rate / 1e6,
        write_time.as_secs_f64(),
        mark(rate >= 2e6)
    );
    println!(
        "  size:    {per_call:6.1} bytes/call ({:.1} MiB)   {}: <= 24 bytes/call",
        trace_bytes as f64 / (1 << 20) as f64,
        mark(per_call <= 24.0)
    );
    println!(
        "  report:  {:6.2} s   {}: < 2 s   ({} lines)",
        report_time.as_secs_f64(),
        mark(report_time.as_secs_f64() < 2.0),
        text.lines().count()
    );
    let human_rate = CALLS as f64 / human_time.as_secs_f64();
    let json_rate = CALLS as f64 / json_time.as_secs_f64();
    println!(
        "  live lines: human {:5.2} M lines/s, JSON {:5.2} M lines/s   {}: >= 0.3 M lines/s",
        human_rate / 1e6,
        json_rate / 1e6,
        mark(human_rate >= 3e5 && json_rate >= 3e5)
    );
    println!(
        "  vs JSON Lines: {:.1}x faster to write ({:.2} s), {:.1}x smaller ({:.1} bytes/call)",
        json_time.as_secs_f64() / write_time.as_secs_f64(),
        json_time.as_secs_f64(),
        json_bytes as f64 / trace_bytes as f64,
        json_bytes as f64 / CALLS as f64
    );
    fs::remove_dir_all(&dir).unwrap();
}
