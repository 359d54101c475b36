//! The trace-file schema, pinned: a version-1 file recorded by koolkit-trace (the `typed`
//! fixture, one round of its nine functions) is checked into `tests/data/` and must keep
//! reading back exactly. Renaming a serde field or variant of any type a trace file stores
//! (the header, the probe table, capture-plan slots, DWARF types, cost classes), changing the
//! frame layout or the column encoding makes this test fail: such a change needs a new format
//! version and a reader for the old one (docs/trace-format.md).
//!
//! What is compared:
//! - `trace-v1.header.json`: the header as it reads back, serialised again;
//! - `trace-v1.events.json`: every call's raw fields and payload bytes (the columns);
//! - `trace-v1.jsonl`: every call as `--json` shows it, decoded through the stored plan. This
//!   one also changes when the `--json` schema changes on purpose: then update it too.
//!
//! `KOOLKIT_BLESS=1 cargo test -p tracer --test golden` rewrites the three expectations from
//! the file (and fails, so a blessed run is never taken for a passing one).

use std::{fs, path::PathBuf};

use serde_json::{Value, json};
use tracer::{CallEvent, json_line, record::TraceReader};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn raw(event: &CallEvent) -> Value {
    json!({
        "probe_id": event.probe_id,
        "pid": event.pid,
        "tid": event.tid,
        "cpu": event.cpu,
        "entry_ns": event.entry_ns,
        "exit_ns": event.exit_ns,
        "ret": event.ret,
        "payload": hex(&event.payload),
    })
}

#[test]
fn a_version_1_trace_file_reads_back_exactly() {
    let file = data("trace-v1.kt");
    let bytes = fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"KOOLKTRC", "the file magic");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);

    let reader = TraceReader::open(&file).unwrap();
    let header = serde_json::to_value(reader.header()).unwrap();
    let (events, outcome) = reader.read_all();
    let clock = reader.header().clock();
    let raw_events = Value::Array(events.iter().map(raw).collect());
    let mut lines = String::new();
    for event in &events {
        let probe = reader.header().probes.get(event.probe_id).unwrap();
        let mut line = String::new();
        json_line(&mut line, event, probe, &clock);
        // `time` is in the reader's local zone: checked apart, and left out of the expectation.
        let mut call: Value = serde_json::from_str(&line).unwrap();
        let time = call.as_object_mut().unwrap().shift_remove("time").unwrap();
        let time = time.as_str().unwrap();
        // RFC 3339 with nanoseconds and an offset, around 2026-12-01T08:42:31.186Z.
        assert_eq!(
            time.len(),
            "2026-12-01T08:42:31.186137517+00:00".len(),
            "{time}"
        );
        assert!(
            time.starts_with("2026-1") && time[19..29].starts_with(".186"),
            "{time}"
        );
        lines.push_str(&call.to_string());
        lines.push('\n');
    }

    if std::env::var_os("KOOLKIT_BLESS").is_some() {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap() + "\n";
        fs::write(data("trace-v1.header.json"), pretty(&header)).unwrap();
        fs::write(data("trace-v1.events.json"), pretty(&raw_events)).unwrap();
        fs::write(data("trace-v1.jsonl"), &lines).unwrap();
        panic!("expectations rewritten from trace-v1.kt; rerun without KOOLKIT_BLESS");
    }

    let expected = |name: &str| -> Value {
        serde_json::from_str(&fs::read_to_string(data(name)).unwrap()).unwrap()
    };
    assert_eq!(header, expected("trace-v1.header.json"), "the header");
    assert_eq!(raw_events, expected("trace-v1.events.json"), "the calls");
    assert_eq!(
        lines,
        fs::read_to_string(data("trace-v1.jsonl")).unwrap(),
        "the calls as --json shows them"
    );

    // The file ended cleanly, with nothing skipped and the recorder's last counters.
    assert_eq!(events.len(), 9);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.torn_tail, None);
    let end = outcome.end.expect("an end frame");
    assert_eq!((end.events, end.unfinished), (9, 0));
    assert_eq!(end.stop, "duration elapsed");
    let counters = outcome.counters.expect("a counters frame");
    assert_eq!(counters.undecodable, 0);
    assert!(counters.kernel.iter().all(|(_, n)| *n == 0), "{counters:?}");
}
