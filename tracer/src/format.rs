//! Turning calls into lines: the human line of the terminal and the JSON Lines record for
//! machines (DESIGN.md, "The command line"). Both are stable shapes that tests rely on.
//!
//! Human: `12:04:05.123456 4242/4243 compute(a=49, b=7) = 49010 <12.3µs>`
//! JSON:  `{"ts_ns":..,"pid":..,"tid":..,"fn":..,"object":..,"args":{..},"ret":..,"latency_ns":..}`

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    events::CallEvent,
    probe_table::ProbeInfo,
    sys,
    values::{decode_args, decode_return},
};

/// Converts the kernel's monotonic timestamps to wall-clock time, from one anchor reading of
/// both clocks taken when tracing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// Both clocks read together at the anchor, in nanoseconds.
    realtime_ns: u64,
    monotonic_ns: u64,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn anchor_now() -> Self {
        let mono = sys::monotonic_ns();
        let real = sys::realtime_ns();
        Self::from_anchor(real, mono)
    }

    pub fn from_anchor(realtime_ns: u64, monotonic_ns: u64) -> Self {
        Self {
            realtime_ns,
            monotonic_ns,
        }
    }

    /// The anchor: (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`), as trace files record it.
    pub fn anchor(&self) -> (u64, u64) {
        (self.realtime_ns, self.monotonic_ns)
    }

    /// Nanoseconds since the Unix epoch for a monotonic timestamp.
    pub fn wall_ns(&self, monotonic_ns: u64) -> u64 {
        let offset = i128::from(self.realtime_ns) - i128::from(self.monotonic_ns);
        (i128::from(monotonic_ns) + offset).clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn format_duration_ns(ns: u64) -> String {
    let ns_f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns_f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns_f / 1e6)
    } else {
        format!("{:.2}s", ns_f / 1e9)
    }
}

/// `HH:MM:SS.micros` in local time.
pub fn format_time_of_day(wall_ns: u64) -> String {
    let secs = (wall_ns / 1_000_000_000) as i64;
    let micros = (wall_ns % 1_000_000_000) / 1_000;
    let (h, m, s) = sys::local_time_of_day(secs);
    format!("{h:02}:{m:02}:{s:02}.{micros:06}")
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str, out: &mut String) {
        if self.color {
            let _ = write!(out, "\x1b[{code}m{text}\x1b[0m");
        } else {
            out.push_str(text);
        }
    }
}

/// Appends the human line for `event` (with a newline) to `out`.
pub fn human_line(
    out: &mut String,
    event: &CallEvent,
    probe: &ProbeInfo,
    clock: &WallClock,
    style: Style,
) {
    let _ = write!(
        out,
        "{} {}/{} ",
        format_time_of_day(clock.wall_ns(event.entry_ns)),
        event.pid,
        event.tid
    );
    style.paint("1", &probe.function, out);
    out.push('(');
    for (i, (name, value)) in decode_args(&event.payload, &probe.args).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        value.write_human(out);
    }
    out.push(')');
    if let Some(ret) = &probe.ret {
        out.push_str(" = ");
        decode_return(event.ret, ret).write_human(out);
    }
    out.push_str(" <");
    style.paint("33", &format_duration_ns(event.latency_ns()), out);
    out.push_str(">\n");
}

/// One JSON Lines record. Field names are a stable schema.
#[derive(Serialize)]
struct JsonCall<'a> {
    ts_ns: u64,
    pid: u32,
    tid: u32,
    #[serde(rename = "fn")]
    function: &'a str,
    object: &'a str,
    args: serde_json::Map<String, serde_json::Value>,
    ret: serde_json::Value,
    latency_ns: u64,
}

/// Appends the JSON line for `event` (with a newline) to `out`.
pub fn json_line(out: &mut String, event: &CallEvent, probe: &ProbeInfo, clock: &WallClock) {
    let args = decode_args(&event.payload, &probe.args)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_json()))
        .collect();
    let record = JsonCall {
        ts_ns: clock.wall_ns(event.entry_ns),
        pid: event.pid,
        tid: event.tid,
        function: &probe.function,
        object: &probe.object,
        args,
        ret: probe.ret.as_ref().map_or(serde_json::Value::Null, |ret| {
            decode_return(event.ret, ret).to_json()
        }),
        latency_ns: event.latency_ns(),
    };
    // Serializing plain values into a String cannot fail.
    out.push_str(&serde_json::to_string(&record).expect("JSON of plain data"));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::raw_register_args;
    use bytes::Bytes;

    fn fixture() -> (CallEvent, ProbeInfo) {
        let plan = raw_register_args(3).unwrap();
        let mut payload = vec![0u8; tracer_ebpf::STATUS_BYTES];
        for word in [49u64, 7, u64::MAX] {
            payload.extend_from_slice(&word.to_le_bytes());
        }
        let event = CallEvent {
            probe_id: 0,
            pid: 4242,
            tid: 4243,
            cpu: 0,
            entry_ns: 5_000_000_000,
            exit_ns: 5_000_012_300,
            ret: 49010,
            payload: Bytes::from(payload),
        };
        let probe = ProbeInfo {
            id: 0,
            function: "compute".into(),
            object: "/tmp/demo".into(),
            address: 0x1139,
            file_offset: 0x1139,
            probe_offset: 0x1139,
            cost: crate::symbols::x86::CostClass::Emulated,
            source: None,
            args: plan.args,
            ret: plan.ret,
            build_id: None,
        };
        (event, probe)
    }

    #[test]
    fn human_line_has_the_documented_shape() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(1_700_000_000_000_000_000, 0);
        let mut out = String::new();
        human_line(&mut out, &event, &probe, &clock, Style { color: false });
        let (time, rest) = out.split_once(' ').unwrap();
        assert_eq!(time.len(), "12:04:05.123456".len());
        assert!(time.ends_with(".000000"), "{time}");
        assert_eq!(
            rest,
            "4242/4243 compute(arg0=49, arg1=7, arg2=-1) = 49010 <12.3µs>\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(0, 0);
        let mut plain = String::new();
        human_line(&mut plain, &event, &probe, &clock, Style { color: false });
        assert!(!plain.contains('\x1b'));
        let mut colored = String::new();
        human_line(&mut colored, &event, &probe, &clock, Style { color: true });
        assert!(colored.contains("\x1b[1mcompute\x1b[0m"));
    }

    #[test]
    fn json_line_has_the_stable_schema() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(1_000, 0);
        let mut out = String::new();
        json_line(&mut out, &event, &probe, &clock);
        assert!(out.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["ts_ns"], 5_000_001_000u64);
        assert_eq!(value["pid"], 4242);
        assert_eq!(value["tid"], 4243);
        assert_eq!(value["fn"], "compute");
        assert_eq!(value["object"], "/tmp/demo");
        assert_eq!(value["args"]["arg0"], 49);
        assert_eq!(value["args"]["arg2"], -1);
        assert_eq!(value["ret"], 49010);
        assert_eq!(value["latency_ns"], 12_300);
        // Arguments keep their plan order.
        let keys: Vec<&str> = out
            .split("\"args\":{")
            .nth(1)
            .unwrap()
            .split('}')
            .next()
            .unwrap()
            .split(',')
            .map(|kv| kv.split(':').next().unwrap().trim_matches('"'))
            .collect();
        assert_eq!(keys, ["arg0", "arg1", "arg2"]);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(format_duration_ns(850), "850ns");
        assert_eq!(format_duration_ns(12_345), "12.3µs");
        assert_eq!(format_duration_ns(10_123_456), "10.12ms");
        assert_eq!(format_duration_ns(1_234_000_000), "1.23s");
    }

    #[test]
    fn wall_clock_applies_the_anchor_offset() {
        let clock = WallClock::from_anchor(10_000, 4_000);
        assert_eq!(clock.wall_ns(5_000), 11_000);
        assert_eq!(WallClock::from_anchor(0, 10).wall_ns(5), 0);
    }
}
