//! Turning calls into lines: the human line of the terminal and the JSON Lines record for
//! machines (DESIGN.md, "The command line"). Both are stable shapes that tests rely on.
//!
//! Human: `12:04:05.123456 4242/4243 compute(a=49, b=7) = 49010 <12.3µs>`, and for Go
//!        `... 4242/4250 g17 main.handle(...)` (the goroutine)
//! JSON:  `{"ts_ns":..,"time":"2026-..","pid":..,"tid":..,["goid":..,]"fn":..,"object":..,
//!          "args":{..},"ret":..,"latency_ns":..}`

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    events::{
        CallEvent,
        payload::{decode_args, decode_goroutine},
        probe_table::ProbeInfo,
    },
    plan::ArgSlot,
    sinks::{
        clock::{TimeFormat, TimeWriter, WallClock, rfc3339},
        units::format_duration_ns,
    },
    target::pods::PodLabels,
};

/// How human lines look: ANSI colour or none, and how times are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub color: bool,
    pub time: TimeFormat,
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

/// Writes human lines one after another, keeping what the next line can reuse (the time of
/// the last second).
#[derive(Debug, Clone)]
pub struct HumanLines {
    style: Style,
    times: TimeWriter,
}

impl HumanLines {
    pub fn new(style: Style) -> Self {
        Self {
            style,
            times: TimeWriter::new(style.time),
        }
    }

    /// Appends the human line for `event` (with a newline) to `out`.
    pub fn write(
        &mut self,
        out: &mut String,
        event: &CallEvent,
        probe: &ProbeInfo,
        clock: &WallClock,
    ) {
        self.write_labelled(out, event, probe, clock, Origin::default());
    }

    /// [`write`](Self::write), the call's host and `namespace/pod/container` first where
    /// known.
    pub fn write_labelled(
        &mut self,
        out: &mut String,
        event: &CallEvent,
        probe: &ProbeInfo,
        clock: &WallClock,
        origin: Origin<'_>,
    ) {
        self.write_entry(out, event, probe, clock, origin);
        if !probe.results.is_empty() {
            out.push_str(" = ");
            write_slots(out, &event.payload, &probe.results);
        } else if let Some(ret) = &probe.ret {
            out.push_str(" = ");
            event.return_value(ret).write_human(out);
        }
        out.push_str(" <");
        self.style
            .paint("33", &format_duration_ns(event.latency_ns()), out);
        out.push_str(">\n");
        for frame in origin.stack.unwrap_or_default() {
            out.push_str("    ");
            out.push_str(frame);
            out.push('\n');
        }
    }

    /// Appends the line of a call still running (`running` is one from
    /// [`running_call`](crate::events::running_call)): when it entered, where, its arguments
    /// and for how long it has run.
    pub fn write_running(
        &mut self,
        out: &mut String,
        running: &CallEvent,
        probe: &ProbeInfo,
        clock: &WallClock,
        origin: Origin<'_>,
    ) {
        self.write_entry(out, running, probe, clock, origin);
        out.push_str(" still running after ");
        self.style
            .paint("33", &format_duration_ns(running.latency_ns()), out);
        out.push('\n');
    }

    /// What every line starts with: `time [host] [ns/pod/container] pid/tid [gN]
    /// function(args)`.
    fn write_entry(
        &mut self,
        out: &mut String,
        event: &CallEvent,
        probe: &ProbeInfo,
        clock: &WallClock,
        origin: Origin<'_>,
    ) {
        self.times.write(out, clock, event.entry_ns);
        if let Some(host) = origin.host {
            let _ = write!(out, " {host}");
        }
        if let Some(labels) = origin.labels {
            let _ = write!(
                out,
                " {}/{}/{}",
                labels.namespace, labels.pod, labels.container
            );
        }
        let _ = write!(out, " {}/{} ", event.pid, event.tid);
        if let Some(id) = goroutine(event, probe) {
            let _ = write!(out, "g{id} ");
        }
        self.style.paint("1", &probe.function, out);
        write_slots(out, &event.payload, &probe.args);
    }
}

/// A call still running, as JSON: the call's fields without a return, `running_ns` for how
/// long it has run, and `"running": true`.
#[derive(Serialize)]
struct JsonRunning<'a> {
    #[serde(flatten)]
    entry: JsonEntry<'a>,
    running: bool,
    running_ns: u64,
}

/// Appends the JSON line of a call still running.
pub fn json_running_line(
    out: &mut String,
    running: &CallEvent,
    probe: &ProbeInfo,
    clock: &WallClock,
    origin: Origin<'_>,
) {
    let line = JsonRunning {
        entry: JsonEntry::new(running, probe, clock, origin),
        running: true,
        running_ns: running.latency_ns(),
    };
    // Serializing plain values into a String cannot fail.
    out.push_str(&serde_json::to_string(&line).expect("JSON of plain data"));
    out.push('\n');
}

/// Where a call ran, beyond its pid: the host (for traces merged from several) and the pod.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub host: Option<&'a str>,
    pub labels: Option<&'a PodLabels>,
    /// `--stack`: the call's user stack, symbolized, innermost first.
    pub stack: Option<&'a [String]>,
}

/// Appends the human line for `event` (with a newline) to `out`.
pub fn human_line(
    out: &mut String,
    event: &CallEvent,
    probe: &ProbeInfo,
    clock: &WallClock,
    style: Style,
) {
    HumanLines::new(style).write(out, event, probe, clock);
}

/// Appends `(name=value, ...)` for the slots of `payload`: the arguments, or a Go call's
/// results.
fn write_slots(out: &mut String, payload: &[u8], slots: &[ArgSlot]) {
    // A call counted in the kernel (`--histogram`) and still running had nothing captured.
    let captures = slots
        .iter()
        .any(|slot| !matches!(slot.value, crate::plan::SlotValue::Missing { .. }));
    if payload.is_empty() && captures {
        out.push_str("(...)");
        return;
    }
    out.push('(');
    for (i, (name, value)) in decode_args(payload, slots).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        value.write_human(out);
    }
    out.push(')');
}

/// One call as JSON: the `--json` schema (DESIGN.md, "The command line"), shared by the live
/// trace, `export --format jsonl` and the slowest calls of `report --json`. Field names are a
/// stable schema.
#[derive(Serialize)]
pub struct JsonCall<'a> {
    #[serde(flatten)]
    entry: JsonEntry<'a>,
    ret: serde_json::Value,
    /// A Go call's results by name, when there is more than `ret`.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    results: serde_json::Map<String, serde_json::Value>,
    latency_ns: u64,
    /// `--stack`: the call's user stack, innermost first.
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<&'a [String]>,
}

/// What every JSON call starts with: when, where, which function, its arguments.
#[derive(Serialize)]
struct JsonEntry<'a> {
    /// Nanoseconds since the Unix epoch (exact; many JSON tools round it, hence `time`).
    ts_ns: u64,
    /// The same moment in RFC 3339, with date and the local offset.
    time: String,
    /// The host the call ran on, in traces merged from several.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    pid: u32,
    tid: u32,
    /// The pod, its namespace and the container the call ran in, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    /// A Go call's goroutine id.
    #[serde(skip_serializing_if = "Option::is_none")]
    goid: Option<u64>,
    #[serde(rename = "fn")]
    function: &'a str,
    object: &'a str,
    args: serde_json::Map<String, serde_json::Value>,
}

impl<'a> JsonEntry<'a> {
    fn new(event: &CallEvent, probe: &'a ProbeInfo, clock: &WallClock, origin: Origin<'a>) -> Self {
        let ts_ns = clock.wall_ns(event.entry_ns);
        let labels = origin.labels;
        Self {
            ts_ns,
            time: rfc3339(ts_ns),
            host: origin.host,
            pid: event.pid,
            tid: event.tid,
            namespace: labels.map(|l| l.namespace.as_str()),
            pod: labels.map(|l| l.pod.as_str()),
            container: labels.map(|l| l.container.as_str()),
            goid: goroutine(event, probe),
            function: &probe.function,
            object: &probe.object,
            args: json_args(event, probe),
        }
    }
}

impl<'a> JsonCall<'a> {
    pub fn new(event: &CallEvent, probe: &'a ProbeInfo, clock: &WallClock) -> Self {
        Self::labelled(event, probe, clock, Origin::default())
    }

    /// [`new`](Self::new) with the host, pod and container the call ran in.
    pub fn labelled(
        event: &CallEvent,
        probe: &'a ProbeInfo,
        clock: &WallClock,
        origin: Origin<'a>,
    ) -> Self {
        Self {
            entry: JsonEntry::new(event, probe, clock, origin),
            ret: json_return(event, probe),
            results: json_results(event, probe),
            latency_ns: event.latency_ns(),
            stack: origin.stack,
        }
    }
}

/// The goroutine of a Go call.
pub fn goroutine(event: &CallEvent, probe: &ProbeInfo) -> Option<u64> {
    decode_goroutine(&event.payload, probe.goroutine.as_ref()?)
}

/// The arguments of a call as a JSON object, in plan order.
pub fn json_args(
    event: &CallEvent,
    probe: &ProbeInfo,
) -> serde_json::Map<String, serde_json::Value> {
    json_slots(&event.payload, &probe.args)
}

/// A Go call's results by name as a JSON object (empty when `ret` says it all).
pub fn json_results(
    event: &CallEvent,
    probe: &ProbeInfo,
) -> serde_json::Map<String, serde_json::Value> {
    json_slots(&event.payload, &probe.results)
}

/// The slots of `payload` as a JSON object, in plan order.
fn json_slots(payload: &[u8], slots: &[ArgSlot]) -> serde_json::Map<String, serde_json::Value> {
    if payload.is_empty() {
        return serde_json::Map::new();
    }
    decode_args(payload, slots)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_json()))
        .collect()
}

/// The return value of a call as JSON; `null` for functions that return nothing.
pub fn json_return(event: &CallEvent, probe: &ProbeInfo) -> serde_json::Value {
    probe.ret.as_ref().map_or(serde_json::Value::Null, |ret| {
        event.return_value(ret).to_json()
    })
}

/// Appends the JSON line for `event` (with a newline) to `out`.
pub fn json_line(out: &mut String, event: &CallEvent, probe: &ProbeInfo, clock: &WallClock) {
    json_line_labelled(out, event, probe, clock, Origin::default());
}

/// [`json_line`] with the host, pod and container the call ran in.
pub fn json_line_labelled(
    out: &mut String,
    event: &CallEvent,
    probe: &ProbeInfo,
    clock: &WallClock,
    origin: Origin<'_>,
) {
    // Serializing plain values into a String cannot fail.
    let call = JsonCall::labelled(event, probe, clock, origin);
    out.push_str(&serde_json::to_string(&call).expect("JSON of plain data"));
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
            cost: crate::symbols::placement::CostClass::Emulated,
            source: None,
            args: plan.args,
            ret: plan.ret,
            build_id: None,
            goroutine: None,
            results: Vec::new(),
            stack: None,
            caller: None,
        };
        (event, probe)
    }

    #[test]
    fn human_line_has_the_documented_shape() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(1_700_000_000_000_000_000, 0);
        let mut out = String::new();
        human_line(
            &mut out,
            &event,
            &probe,
            &clock,
            Style {
                color: false,
                ..Style::default()
            },
        );
        let (time, rest) = out.split_once(' ').unwrap();
        assert_eq!(time.len(), "12:04:05.123456".len());
        assert!(time.ends_with(".000000"), "{time}");
        assert_eq!(
            rest,
            "4242/4243 compute(arg0=49, arg1=7, arg2=-1) = 49010 <12.3µs>\n"
        );
    }

    #[test]
    fn a_go_call_names_its_goroutine_in_both_shapes() {
        let (event, mut probe) = fixture();
        // The goroutine id is a payload slot like the arguments: here the second word.
        let plan = raw_register_args(3).unwrap();
        let crate::plan::SlotValue::Captured { offset, step, .. } = plan.args[1].value else {
            panic!("a raw argument is captured");
        };
        probe.goroutine = Some(crate::plan::SlotValue::Captured {
            offset,
            size: 8,
            step,
            render: crate::plan::Render::Int {
                size: 8,
                signed: false,
            },
        });
        let clock = WallClock::from_anchor(0, 0);
        let mut human = String::new();
        human_line(&mut human, &event, &probe, &clock, Style::default());
        assert!(human.contains(" 4242/4243 g7 compute("), "{human}");
        let mut json = String::new();
        json_line(&mut json, &event, &probe, &clock);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["goid"], 7, "{json}");
        let (event, probe) = fixture();
        let mut json = String::new();
        json_line(&mut json, &event, &probe, &clock);
        assert!(!json.contains("goid"), "not Go, no goid: {json}");
    }

    #[test]
    fn a_call_in_a_pod_names_it_in_both_shapes() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(0, 0);
        let labels = PodLabels {
            namespace: "shop".into(),
            pod: "checkout-7d9".into(),
            container: "app".into(),
        };
        let origin = Origin {
            host: Some("node-1"),
            labels: Some(&labels),
            stack: None,
        };
        let mut human = String::new();
        HumanLines::new(Style::default())
            .write_labelled(&mut human, &event, &probe, &clock, origin);
        assert!(
            human.contains(" node-1 shop/checkout-7d9/app 4242/4243 compute("),
            "{human}"
        );
        let mut json = String::new();
        json_line_labelled(&mut json, &event, &probe, &clock, origin);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (
                &value["host"],
                &value["namespace"],
                &value["pod"],
                &value["container"]
            ),
            (
                &"node-1".into(),
                &"shop".into(),
                &"checkout-7d9".into(),
                &"app".into()
            )
        );
        let mut plain = String::new();
        json_line(&mut plain, &event, &probe, &clock);
        assert!(!plain.contains("\"pod\""), "outside a pod, no pod: {plain}");
    }

    #[test]
    fn colour_only_when_asked() {
        let (event, probe) = fixture();
        let clock = WallClock::from_anchor(0, 0);
        let mut plain = String::new();
        human_line(
            &mut plain,
            &event,
            &probe,
            &clock,
            Style {
                color: false,
                ..Style::default()
            },
        );
        assert!(!plain.contains('\x1b'));
        let mut colored = String::new();
        human_line(
            &mut colored,
            &event,
            &probe,
            &clock,
            Style {
                color: true,
                ..Style::default()
            },
        );
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
}
