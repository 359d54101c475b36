//! One live trace, from request to summary: resolve the functions, plan, load, attach, stream
//! events until something says stop, then switch off, drain, detach and summarise.
//!
//! The reader is woken by the kernel only when plenty of data is pending (the programs submit
//! without wake-ups below a threshold) and otherwise drains on a short timer, so a hot function
//! costs no wake-up per call (DESIGN.md, "What a probe costs").

pub(crate) mod summary;

use std::{
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use bytes::{Bytes, BytesMut};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior},
};
use tracer_ebpf::Counter;

use crate::{
    error::{Error, Result},
    events::{decode, probe_table::ProbeTable},
    plan::{DEFAULT_RAW_ARGS, Plan, PlanOptions, check_selection, compile, raw_register_args},
    probes::{AttachMode, Attached, Probes},
    record::{
        file_format::{CountersRecord, EndRecord},
        header_for,
        writer::{TraceWriter, WriterOptions},
    },
    session::summary::{CallStats, StopReason, Summary},
    sinks::{
        clock::WallClock,
        line::{Style, human_line, json_line},
    },
    symbols::{FunctionSpec, ProbeSite, placement::CostClass, resolve},
    sys,
    target::Target,
};

/// How often the ring buffer is drained when the kernel does not wake us.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// The kernel wakes the reader once this much data is pending.
const WAKEUP_BYTES: u32 = 256 << 10;
/// How long calls under way at stop get to return before the probes are detached.
const STOP_GRACE: Duration = Duration::from_millis(100);
/// Records read per drain before checking for stop requests again.
const DRAIN_BATCH: usize = 16 << 10;

/// What to trace and how to show it.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub target: Target,
    pub functions: Vec<FunctionSpec>,
    pub json: bool,
    pub color: bool,
    pub duration: Option<Duration>,
    pub max_events: Option<u64>,
    pub attach_mode: AttachMode,
    pub plan: PlanOptions,
    /// `-o`: record the calls to a trace file too.
    pub record: Option<RecordOptions>,
    /// No live lines.
    pub quiet: bool,
}

/// Where and how to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    pub path: PathBuf,
    pub writer: WriterOptions,
}

/// How often the trace file gets what was traced since (and the drop counters).
const RECORD_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

fn counters_record(counters: &[(Counter, u64)], undecodable: u64) -> CountersRecord {
    CountersRecord {
        kernel: counters
            .iter()
            .map(|(counter, n)| (counter.describe().to_string(), *n))
            .collect(),
        undecodable,
    }
}

/// The capture plan of every site: typed from DWARF where the function has it, raw argument
/// registers where it does not.
pub fn plan_sites(sites: &[ProbeSite], options: &PlanOptions) -> Result<Vec<Plan>> {
    if let Some(selection) = &options.selection {
        let described: Vec<_> = sites.iter().filter_map(|s| s.debug.as_ref()).collect();
        check_selection(selection, &described)?;
    }
    sites
        .iter()
        .map(|site| match &site.debug {
            Some(debug) => Ok(compile(debug, options)),
            None => raw_register_args(DEFAULT_RAW_ARGS),
        })
        .collect()
}

/// The outcome of a trace.
#[derive(Debug)]
pub struct Traced {
    pub table: ProbeTable,
    pub summary: Summary,
}

/// Turns records into output lines and statistics.
struct Sink<'a> {
    out: &'a mut dyn Write,
    buffer: String,
    json: bool,
    style: Style,
    clock: WallClock,
    table: &'a ProbeTable,
    stats: CallStats,
    max_events: Option<u64>,
    shown: u64,
    not_shown: u64,
    undecodable: u64,
    closed: bool,
    /// No live lines (`--quiet`).
    quiet: bool,
    recorder: Option<TraceWriter>,
}

impl Sink<'_> {
    fn handle(&mut self, record: &Bytes) -> Result<()> {
        let event = match decode(record) {
            Ok(event) => event,
            Err(err) => {
                self.undecodable += 1;
                log::debug!("undecodable record: {err}");
                return Ok(());
            }
        };
        let Some(probe) = self.table.get(event.probe_id) else {
            self.undecodable += 1;
            log::debug!("record for unknown probe {}", event.probe_id);
            return Ok(());
        };
        if self.max_events.is_some_and(|max| self.shown >= max) {
            self.not_shown += 1;
            return Ok(());
        }
        self.stats.record(&event);
        self.shown += 1;
        if let Some(recorder) = &mut self.recorder {
            recorder.push(&event)?;
        }
        if self.quiet || self.closed {
            return Ok(());
        }
        if self.json {
            json_line(&mut self.buffer, &event, probe, &self.clock);
        } else {
            human_line(&mut self.buffer, &event, probe, &self.clock, self.style);
        }
        Ok(())
    }

    /// Writes what is buffered. A closed pipe ends the trace quietly, like other CLI tools.
    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() || self.closed {
            self.buffer.clear();
            return Ok(());
        }
        let result = self
            .out
            .write_all(self.buffer.as_bytes())
            .and_then(|()| self.out.flush());
        self.buffer.clear();
        match result {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(err) => Err(Error::io("standard output", err)),
        }
    }

    fn stop_reason(&self) -> Option<StopReason> {
        // A closed pipe ends a live trace; one being recorded goes on into its file.
        if self.closed && self.recorder.is_none() {
            Some(StopReason::OutputClosed)
        } else if self.max_events.is_some_and(|max| self.shown >= max) {
            Some(StopReason::MaxEvents)
        } else {
            None
        }
    }
}

/// Reads up to [`DRAIN_BATCH`] records into one buffer and hands them to the sink. Returns
/// whether records may remain.
fn drain(ring: &mut RingBuf<MapData>, sink: &mut Sink<'_>) -> Result<bool> {
    let mut batch = BytesMut::new();
    let mut bounds = Vec::new();
    while bounds.len() < DRAIN_BATCH {
        let Some(item) = ring.next() else { break };
        let start = batch.len();
        batch.extend_from_slice(&item);
        bounds.push(start..batch.len());
    }
    let more = bounds.len() == DRAIN_BATCH;
    let batch = batch.freeze();
    for range in bounds {
        sink.handle(&batch.slice(range))?;
    }
    sink.flush()?;
    Ok(more)
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Process { pid } => format!("process {pid}"),
        Target::Binary { path } => format!("every process running {}", path.display()),
    }
}

/// "2 emulated, 1 single-step": how many entry probes fall in each cost class.
fn cost_classes(table: &ProbeTable) -> String {
    let mut classes: Vec<(CostClass, usize)> = Vec::new();
    for probe in table.iter() {
        match classes.iter_mut().find(|(class, _)| *class == probe.cost) {
            Some((_, n)) => *n += 1,
            None => classes.push((probe.cost, 1)),
        }
    }
    classes.sort_by_key(|(class, _)| *class as u8);
    classes
        .iter()
        .map(|(class, n)| format!("{n} {class}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn attach_status(table: &ProbeTable, report: &Attached, target: &Target) -> String {
    let functions = table.len();
    format!(
        "Tracing {functions} function{} in {} object{} of {} ({}, attached in {}; probes: {}). \
         Ctrl-C to stop.",
        if functions == 1 { "" } else { "s" },
        report.objects,
        if report.objects == 1 { "" } else { "s" },
        describe_target(target),
        report.mode,
        crate::sinks::units::format_duration_ns(report.elapsed.as_nanos() as u64),
        cost_classes(table),
    )
}

/// Runs a trace to its end. Events go to `out`; progress and the summary are the caller's
/// (the summary is returned), status lines go to `status`.
pub async fn trace(
    options: &TraceOptions,
    out: &mut dyn Write,
    status: &mut dyn Write,
) -> Result<Traced> {
    let sites = resolve(&options.target, &options.functions)?;
    let plans = plan_sites(&sites, &options.plan)?;
    let table = ProbeTable::new(&sites, &plans);
    for site in &sites {
        log::info!(
            "probe {} in {} at {:#x}+{}: {} ({})",
            site.function,
            site.object.path,
            site.address,
            site.probe_offset - site.file_offset,
            site.probe_instruction,
            site.cost
        );
    }

    let mut probes = Probes::load()?;
    let kernel_plans: Vec<_> = plans.iter().map(|p| p.kernel).collect();
    probes.set_plans(&kernel_plans)?;
    let ring = probes
        .take_ring()
        .ok_or_else(|| Error::internal("the event ring buffer was already taken"))?;
    let mut ring =
        sys::async_readable(ring).map_err(|err| Error::io("the event ring buffer", err))?;

    // Watch the target before attaching, so an exit during attach is not missed.
    let pidfd = match options.target.pid() {
        Some(pid) => Some(
            sys::pidfd_open(pid)
                .map_err(|_| Error::NoSuchProcess { pid })
                .and_then(|fd| sys::async_readable(fd).map_err(|err| Error::io("pidfd", err)))?,
        ),
        None => None,
    };
    let mut sigint = signal(SignalKind::interrupt()).map_err(|err| Error::io("SIGINT", err))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|err| Error::io("SIGTERM", err))?;

    let report = probes.attach(&sites, options.target.pid(), options.attach_mode)?;
    // Recording starts once every probe is in place, so no call is seen half (an entry
    // without its return probe, or a return whose entry fired before its probe existed).
    probes.enable(WAKEUP_BYTES)?;
    let started = Instant::now();
    let _ = writeln!(
        status,
        "{}",
        attach_status(&table, &report, &options.target)
    );
    let _ = status.flush();

    let clock = WallClock::anchor_now();
    let recorder = match &options.record {
        Some(record) => {
            let header = header_for(&options.target, &table, clock.anchor());
            Some(TraceWriter::create(&record.path, &header, record.writer)?)
        }
        None => None,
    };
    let mut sink = Sink {
        out,
        buffer: String::new(),
        json: options.json,
        style: Style {
            color: options.color,
        },
        clock,
        table: &table,
        stats: CallStats::new(table.len()),
        max_events: options.max_events,
        shown: 0,
        not_shown: 0,
        undecodable: 0,
        closed: false,
        quiet: options.quiet,
        recorder,
    };
    let mut last_record_flush = Instant::now();

    let deadline = options.duration.map(|d| started + d);
    let sleep = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let exited = async {
        match &pidfd {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exited);
    let mut ticker = tokio::time::interval(DRAIN_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let stop = loop {
        let requested = tokio::select! {
            biased;
            _ = sigint.recv() => Some(StopReason::Interrupted),
            _ = sigterm.recv() => Some(StopReason::Terminated),
            () = &mut sleep => Some(StopReason::DurationElapsed),
            () = &mut exited => Some(StopReason::TargetExited {
                pid: options.target.pid().unwrap_or_default(),
            }),
            ready = ring.readable_mut() => {
                ready.map_err(|err| Error::io("the event ring buffer", err))?.clear_ready();
                None
            }
            _ = ticker.tick() => None,
        };
        if let Some(reason) = requested {
            break reason;
        }
        if drain(ring.get_mut(), &mut sink)? {
            ticker.reset_immediately();
        }
        if let Some(logger) = probes.logger_mut() {
            logger.flush();
        }
        if sink.recorder.is_some() && last_record_flush.elapsed() >= RECORD_FLUSH_INTERVAL {
            let counters = counters_record(&probes.counters()?, sink.undecodable);
            if let Some(recorder) = &mut sink.recorder {
                recorder.flush(Some(&counters))?;
            }
            last_record_flush = Instant::now();
        }
        if let Some(reason) = sink.stop_reason() {
            break reason;
        }
    };

    // Stop new calls; give the ones under way a moment to return; detach (closing a link
    // waits for handlers still running); then read everything they wrote.
    probes.disable()?;
    let grace_end = Instant::now() + STOP_GRACE;
    while probes.calls_in_flight() > 0 && Instant::now() < grace_end {
        drain(ring.get_mut(), &mut sink)?;
        tokio::time::sleep(DRAIN_INTERVAL / 5).await;
    }
    let detach_started = Instant::now();
    probes.detach_multi_links();
    while drain(ring.get_mut(), &mut sink)? {}
    let kernel_counters = probes.counters()?;
    let unfinished = probes.calls_in_flight();
    let recorded = match sink.recorder.take() {
        Some(recorder) => {
            let counters = counters_record(&kernel_counters, sink.undecodable);
            let end = EndRecord {
                stop: stop.to_string(),
                events: sink.shown,
                unfinished,
            };
            let path = options
                .record
                .as_ref()
                .map(|r| r.path.clone())
                .unwrap_or_default();
            Some((path, recorder.finish(&counters, &end)?))
        }
        None => None,
    };
    drop(ring);
    let elapsed = started.elapsed();
    probes.detach();
    let summary = Summary {
        stats: sink.stats,
        kernel_counters,
        undecodable: sink.undecodable,
        not_shown: sink.not_shown,
        unfinished,
        elapsed,
        detach_time: detach_started.elapsed(),
        stop,
        recorded,
    };
    Ok(Traced { table, summary })
}
