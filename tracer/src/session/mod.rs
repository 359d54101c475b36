//! One live trace, from request to summary, in four steps: [`prepare`] (resolve the functions,
//! plan their captures), [`arm`] (load, attach, switch on), [`stream`] (drain events into the
//! [`sink`] until something says stop) and [`finish`] (switch off, let calls under way return,
//! detach, drain, summarise).
//!
//! The reader is woken by the kernel only when plenty of data is pending (the programs submit
//! without wake-ups below a threshold) and otherwise drains on a short timer, so a hot function
//! costs no wake-up per call (DESIGN.md, "What a probe costs").

mod aggregate;
pub use aggregate::Aggregation;
mod line_output;
mod members;
mod progress;
pub(crate) mod sink;
mod stacks;
mod status;
pub(crate) mod summary;

use std::{fs, io::Write, os::fd::OwnedFd, path::PathBuf, time::Duration};

use aya::maps::{MapData, RingBuf};
use bytes::BytesMut;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, MissedTickBehavior},
};
use tracer_ebpf::Counter;

use crate::{
    error::{Error, Result, tool_line},
    events::probe_table::ProbeTable,
    plan::{PlanOptions, full_plans_warning, plan_sites},
    probes::{AttachMode, Attached, LiveFilter, Probes},
    record::{
        file_format::{CountersRecord, EndRecord},
        header_for,
        writer::{TraceWriter, WriterOptions},
    },
    sinks::{
        clock::{TimeFormat, WallClock, local_zone},
        line::{HumanLines, Style},
    },
    symbols::{
        FunctionSpec, ProbeSite, ReturnChoice, placement::CostClass, resolve, site::ReturnProbes,
    },
    sys,
    target::{self, Target, membership::Membership},
};
use line_output::LineOutput;
use members::{Members, RESCAN_INTERVAL};
use sink::{LiveLines, Sink};
use status::{Family, attach_status};
use summary::{FilteredCalls, StopReason, Summary, TargetStatus};

/// How often the ring buffer is drained when the kernel does not wake us.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// How long an attach runs before its progress is shown, and then how often.
const ATTACH_PROGRESS_AFTER: Duration = Duration::from_secs(1);
const ATTACH_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The kernel wakes the reader once this much data is pending.
const WAKEUP_BYTES: u32 = 256 << 10;
/// How often the in-flight calls are looked at for `--stuck`.
const STUCK_SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How long calls under way at stop get to return before the probes are detached.
const STOP_GRACE: Duration = Duration::from_millis(100);
/// Records read per drain before checking for stop requests again.
const DRAIN_BATCH: usize = 16 << 10;

/// What to trace and how to show it.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub target: Target,
    pub functions: Vec<FunctionSpec>,
    /// With a process target: its descendants too, present and future.
    pub children: bool,
    /// For a group target (a container's, pods', the pid namespace's processes): how
    /// processes that join later are found.
    pub membership: Option<crate::target::membership::Membership>,
    /// The pods and containers of the traced processes (`--pod`): each call is labelled.
    pub workloads: crate::target::pods::Workloads,
    pub json: bool,
    pub color: bool,
    /// How human lines write the time of a call.
    pub time: TimeFormat,
    pub duration: Option<Duration>,
    pub max_events: Option<u64>,
    pub attach_mode: AttachMode,
    /// How returns are probed (`--returns`).
    pub returns: ReturnChoice,
    pub plan: PlanOptions,
    /// What the kernel filters: latency bounds, one thread, one command name.
    pub filter: LiveFilter,
    /// `--stuck`: show calls running longer than this, once each, while tracing.
    pub stuck: Option<Duration>,
    /// `--histogram`, `--stats`: count latencies in the kernel, printed every interval; no
    /// events.
    pub aggregate: Option<Aggregation>,
    /// `--by-arg`: aggregated calls grouped by this integer argument too.
    pub by_argument: Option<crate::predicate::Name>,
    /// `-o`: record the calls to a trace file too.
    pub record: Option<RecordOptions>,
    /// No live lines.
    pub quiet: bool,
    /// How the trace is stopped from outside besides its own limits: SIGINT, SIGTERM and
    /// SIGHUP for a command, a [`StopHandle`] for an agent running many traces.
    pub stop: StopBy,
    /// Where the calls taken and lost so far are published while tracing (an agent's
    /// `/status`).
    pub live: Option<std::sync::Arc<LiveCounts>>,
}

/// How a trace is told to stop from outside.
#[derive(Debug, Clone, Default)]
pub enum StopBy {
    /// The process's signals: SIGINT, SIGTERM, SIGHUP (a command in a terminal).
    #[default]
    Signals,
    /// The owner's [`StopHandle`] (one process running many traces, which handles its
    /// signals itself).
    Handle(tokio::sync::watch::Receiver<Option<String>>),
}

/// Stops the trace given its [`StopBy::Handle`]; usable from any thread.
#[derive(Debug)]
pub struct StopHandle(tokio::sync::watch::Sender<Option<String>>);

impl StopHandle {
    /// A handle, and what its trace's options take.
    pub fn new() -> (Self, StopBy) {
        let (sender, receiver) = tokio::sync::watch::channel(None);
        (Self(sender), StopBy::Handle(receiver))
    }

    /// Asks the trace to stop, saying `why` (its summary and trace file's end record say
    /// it); it then detaches, flushes and summarises. The first reason given is kept;
    /// returns whether this was the first ask.
    pub fn stop(&self, why: &str) -> bool {
        self.0.send_if_modified(|reason| {
            let first = reason.is_none();
            if first {
                *reason = Some(why.to_string());
            }
            first
        })
    }
}

/// Calls taken and lost so far, published about once a second while tracing.
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub calls: std::sync::atomic::AtomicU64,
    pub lost: std::sync::atomic::AtomicU64,
}

/// Where and how to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    pub path: PathBuf,
    /// Replace `path` if it exists (`--force`); otherwise an existing file is refused.
    pub replace: bool,
    pub writer: WriterOptions,
    /// For an agent's recordings: the request, node and pod the file's header names.
    pub request: Option<crate::record::file_format::RecordedRequest>,
}

/// How often the trace file gets what was traced since (and the drop counters).
const RECORD_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

fn counters_record(
    counters: &[(Counter, u64)],
    undecodable: u64,
    filtered: Vec<u64>,
) -> CountersRecord {
    CountersRecord {
        filtered: if filtered.iter().any(|&n| n > 0) {
            filtered
        } else {
            Vec::new()
        },
        kernel: counters
            .iter()
            .filter(|(counter, _)| counter.is_drop())
            .map(|(counter, n)| (counter.describe().to_string(), *n))
            .collect(),
        undecodable,
        abandoned: counters
            .iter()
            .filter(|(counter, _)| *counter == Counter::Abandoned)
            .map(|(_, n)| n)
            .sum(),
    }
}

/// The outcome of a trace.
#[derive(Debug)]
pub struct Traced {
    pub table: ProbeTable,
    pub summary: Summary,
}

/// Reads up to [`DRAIN_BATCH`] items into one buffer and hands them to the sink. Returns
/// whether items may remain.
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
        sink.handle(&batch.slice(range));
    }
    sink.flush();
    Ok(more)
}

/// What to probe: the sites, their plans, and the probe table both make.
struct Prepared {
    sites: Vec<ProbeSite>,
    kernel_plans: Vec<tracer_ebpf::CapturePlan>,
    /// Each probe's `--where`/`--errors` conditions, by probe id.
    predicates: Vec<Option<tracer_ebpf::Predicate>>,
    /// `--by-arg`: the argument aggregated calls are grouped by, per probe.
    grouping: Option<aggregate::Grouping>,
    table: ProbeTable,
}

/// `koolkit-trace: warning: {message}` on `status`.
fn warn_on(status: &mut dyn Write, message: impl std::fmt::Display) {
    let _ = writeln!(status, "{}", tool_line("warning: ", message));
}

/// `koolkit-trace: warning: not tracing f (libc.so.6): {why}`.
fn warn_not_traced(status: &mut dyn Write, site: &ProbeSite, why: &str) {
    warn_on(
        status,
        format_args!(
            "not tracing {} ({}): {why}",
            site.function,
            site.object.file_name()
        ),
    );
}

/// Resolves the functions and plans what each probe captures. Touches no kernel. Functions
/// the kernel cannot probe are left out, each with a warning on `status`.
fn prepare(options: &TraceOptions, status: &mut dyn Write) -> Result<Prepared> {
    let resolved = resolve(&options.target, &options.functions, options.returns)?;
    let (refused, sites): (Vec<ProbeSite>, Vec<ProbeSite>) = resolved
        .into_iter()
        .partition(|site| site.cost == CostClass::Refused);
    for site in &refused {
        let why = match &site.returns {
            ReturnProbes::AtExits(rets) if rets.is_empty() && site.go => {
                format!("its returns cannot be probed: {}", site.probe_instruction)
            }
            _ => format!(
                "the kernel cannot probe its first instruction ({})",
                site.probe_instruction
            ),
        };
        warn_not_traced(status, site, &why);
    }
    if sites.is_empty() {
        return Err(Error::Usage(format!(
            "nothing left to trace: the kernel cannot probe the first instruction of {}",
            refused
                .iter()
                .map(|s| s.function.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let plans = plan_sites(&sites, &options.plan)?;
    let (sites, plans, predicates) = predicates_of(&options.filter, sites, plans, status)?;
    let (sites, mut plans, predicates, grouping) = match &options.by_argument {
        Some(name) => group_by(name, sites, plans, predicates, status)?,
        None => (sites, plans, predicates, None),
    };
    if let Some(grouping) = &grouping {
        for (id, plan) in plans.iter_mut().enumerate() {
            if let Some(slot) = grouping.slots.get(&(id as u32)) {
                plan.kernel.by_argument_offset = slot.offset;
                plan.kernel.by_argument_step = slot.step;
                plan.kernel.by_argument_width = slot.width;
                plan.kernel.by_argument_signed = u8::from(slot.signed);
            }
        }
    }
    if let Some(warning) = full_plans_warning(&sites, &plans) {
        warn_on(status, warning);
    }
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
    Ok(Prepared {
        sites,
        kernel_plans: plans.iter().map(|p| p.kernel).collect(),
        predicates,
        grouping,
        table,
    })
}

/// `--by-arg NAME`: where each function holds NAME. Functions without it are left out with
/// one warning; if none is left, that is a usage error.
#[allow(clippy::type_complexity)]
fn group_by(
    name: &crate::predicate::Name,
    sites: Vec<ProbeSite>,
    plans: Vec<crate::plan::Plan>,
    predicates: Vec<Option<tracer_ebpf::Predicate>>,
    status: &mut dyn Write,
) -> Result<(
    Vec<ProbeSite>,
    Vec<crate::plan::Plan>,
    Vec<Option<tracer_ebpf::Predicate>>,
    Option<aggregate::Grouping>,
)> {
    let mut kept = (Vec::new(), Vec::new(), Vec::new());
    let mut slots = std::collections::BTreeMap::new();
    let mut without: Vec<String> = Vec::new();
    for ((site, plan), predicate) in sites.into_iter().zip(plans).zip(predicates) {
        match crate::predicate::integer_slot(name, &plan, &site.function)? {
            Some(slot) => {
                slots.insert(kept.0.len() as u32, slot);
                kept.0.push(site);
                kept.1.push(plan);
                kept.2.push(predicate);
            }
            None => without.push(site.function.clone()),
        }
    }
    warn_left_out(
        status,
        &without,
        kept.0.len(),
        |listed| format!("--by-arg {name}: no function has a parameter `{name}` ({listed})"),
        |listed| format!("not tracing {listed} (--by-arg {name}: no such parameter)"),
    )?;
    Ok((
        kept.0,
        kept.1,
        kept.2,
        Some(aggregate::Grouping {
            name: name.to_string(),
            slots,
        }),
    ))
}

/// Each function's `--where` and `--errors` conditions. Functions they cannot test (no such
/// parameter; a return that says nothing of failure) are left out with one warning; if none
/// is left, that is a usage error.
#[allow(clippy::type_complexity)]
fn predicates_of(
    filter: &LiveFilter,
    sites: Vec<ProbeSite>,
    plans: Vec<crate::plan::Plan>,
    status: &mut dyn Write,
) -> Result<(
    Vec<ProbeSite>,
    Vec<crate::plan::Plan>,
    Vec<Option<tracer_ebpf::Predicate>>,
)> {
    if filter.predicate.is_none() && !filter.errors {
        let none = vec![None; sites.len()];
        return Ok((sites, plans, none));
    }
    let mut kept = (Vec::new(), Vec::new(), Vec::new());
    let mut untestable: Vec<String> = Vec::new();
    for (site, plan) in sites.into_iter().zip(plans) {
        let mut conditions = Vec::new();
        if let Some(expression) = &filter.predicate {
            match crate::predicate::compile(expression, &plan, &site.function)? {
                Some(found) => conditions.extend(found),
                None => {
                    untestable.push(site.function.clone());
                    continue;
                }
            }
        }
        if filter.errors {
            match crate::predicate::errors_predicate(&plan) {
                Some(condition) => conditions.push(condition),
                None => {
                    untestable.push(site.function.clone());
                    continue;
                }
            }
        }
        let predicate = crate::predicate::kernel_predicate(&conditions, &site.function)?;
        kept.0.push(site);
        kept.1.push(plan);
        kept.2.push(Some(predicate));
    }
    let asked = match (&filter.predicate, filter.errors) {
        (Some(e), true) => format!("--where `{}` and --errors", e.text),
        (Some(e), false) => format!("--where `{}`", e.text),
        (None, _) => "--errors".to_string(),
    };
    let why = match (&filter.predicate, filter.errors) {
        (Some(_), false) => "has none of its names among its parameters",
        (None, _) => {
            "returns nothing that says it failed (a signed integer, a pointer, a Go error)"
        }
        (Some(_), true) => "lacks a name it compares, or a return that says it failed",
    };
    warn_left_out(
        status,
        &untestable,
        kept.0.len(),
        |listed| format!("{asked}: no function can be tested: {listed} {why}"),
        |listed| format!("not tracing {listed} ({asked}: each {why})"),
    )?;
    Ok(kept)
}

/// The functions a filter cannot test are left out: one warning names them, or, when that
/// leaves no function (`kept` is 0), a usage error does.
fn warn_left_out(
    status: &mut dyn Write,
    left_out: &[String],
    kept: usize,
    none_left: impl FnOnce(&str) -> String,
    warning: impl FnOnce(&str) -> String,
) -> Result<()> {
    let listed = listed_functions(left_out);
    if kept == 0 {
        return Err(Error::Usage(none_left(&listed)));
    }
    if !left_out.is_empty() {
        warn_on(status, warning(&listed));
    }
    Ok(())
}

/// `f`, `f and g`, `f, g and 3 more functions`.
fn listed_functions(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more functions", rest.len()),
    }
}

/// Probes in place and switched on, with everything the live loop waits on.
struct Armed {
    probes: Probes,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Readable once the traced process exits (`--pid` only).
    pidfd: Option<AsyncFd<OwnedFd>>,
    stop: Stoppers,
    attached: Attached,
    started: Instant,
    /// The processes of a group target, asked again while tracing.
    members: Option<Members>,
    /// The Go programs probed (by the path processes map them at): what a process that
    /// joins gets faulted in.
    go_programs: Vec<String>,
    /// `--by-arg`: how aggregated calls are grouped.
    grouping: Option<aggregate::Grouping>,
}

/// Loads the eBPF object, writes the plans, attaches every probe and switches recording on.
fn arm(options: &TraceOptions, prepared: &Prepared, status: &mut dyn Write) -> Result<Armed> {
    let mut probes = Probes::load(crate::probes::MapSizes {
        probes: prepared.kernel_plans.len(),
        stacks: options.plan.stack,
        by_argument: prepared.grouping.is_some(),
        histograms: options.aggregate.is_some(),
        predicates: prepared.predicates.iter().filter(|p| p.is_some()).count(),
    })?;
    probes.set_plans(&prepared.kernel_plans)?;
    probes.set_predicates(&prepared.predicates)?;
    let ring = probes
        .take_ring()
        .ok_or_else(|| Error::internal("the event ring buffer was already taken"))?;
    let ring = sys::async_readable(ring).map_err(|err| Error::io("the event ring buffer", err))?;
    // Watch the target before attaching, so an exit during attach is not missed.
    let pidfd = match options.target.pid() {
        Some(pid) => Some(
            sys::pidfd_open(pid)
                .map_err(|_| Error::NoSuchProcess { pid })
                .and_then(|fd| sys::async_readable(fd).map_err(|err| Error::io("pidfd", err)))?,
        ),
        None => None,
    };
    let stop = Stoppers::new(&options.stop)?;
    // Inside a container's pid namespace (a debug container), every id the programs use
    // must be this namespace's: /proc, pidfds and the user's --pid speak it, the kernel's
    // helpers speak the host's.
    let own_namespace = target::membership::in_own_child_pid_namespace();
    if own_namespace {
        probes.use_own_pid_namespace()?;
    }
    // How the target dies is told in the summary (a signal, or its exit status); without
    // the kernel's BTF or tracefs, only that it exited.
    if let Some(pid) = options.target.pid()
        && let Err(err) = probes.watch_exit(pid)
    {
        log::info!("the target's exit status will not be known: {err}");
    }
    // The kernel's pid filter takes one process; a family or group is selected by the
    // programs. Inside a pid namespace the fork records' ids mean nothing, so there new
    // processes are found by asking again, and the descendants are selected now (elsewhere
    // `follow_family` lists them).
    let family: Option<(Vec<u32>, Option<Membership>)> =
        match (&options.target, &options.membership) {
            (Target::Processes { pids }, membership) => Some((pids.clone(), membership.clone())),
            (Target::Process { pid }, _) if options.children && own_namespace => Some((
                std::iter::once(*pid)
                    .chain(target::descendants(*pid))
                    .collect(),
                Some(Membership::Family { root: *pid }),
            )),
            (Target::Process { pid }, _) if options.children => Some((vec![*pid], None)),
            _ => None,
        };
    let (attach_pid, members) = match family {
        Some((pids, membership)) => {
            if own_namespace {
                probes.select_only(&pids)?;
            } else if let Err(err) = probes.follow_family(&pids) {
                // A group asked again every second finds its forked workers then, without
                // their first calls: better than no trace where tracefs is not mounted (a
                // container without CAP_SYS_ADMIN to mount it).
                let Some(membership) = &membership else {
                    return Err(err);
                };
                warn_on(
                    status,
                    format_args!(
                        "{err}; processes that join {} are found within a second instead",
                        membership.describe()
                    ),
                );
                let family: Vec<u32> = pids
                    .iter()
                    .copied()
                    .chain(target::descendants_of(&pids))
                    .collect();
                probes.select_only(&family)?;
            }
            (None, membership.map(|m| Members::new(m, &pids)))
        }
        // The kernel's pid filter takes one process.
        None => (options.target.pid(), None),
    };
    // Before the attach: what is captured decides which entry program is loaded.
    probes.set_filter(&options.filter);
    if options.aggregate.is_some() {
        let predicates = prepared.predicates.iter().any(Option::is_some);
        probes.aggregate(
            predicates || options.stuck.is_some(),
            prepared.grouping.is_some(),
        );
    }
    // Thousands of perf-event links take seconds to minutes (the kernel serialises their
    // creation, and each costs more the more there are): a line once it has taken a second,
    // then every few seconds.
    let attach_started = Instant::now();
    let mut last_shown: Option<Instant> = None;
    let mut show_progress = |done: usize, total: usize| {
        let now = Instant::now();
        if now - attach_started < ATTACH_PROGRESS_AFTER
            || last_shown.is_some_and(|shown| now - shown < ATTACH_PROGRESS_EVERY)
        {
            return;
        }
        last_shown = Some(now);
        let _ = writeln!(
            status,
            "{}",
            tool_line(
                "",
                format!("attaching: {done} of {total} attach points (perf-event links)")
            )
        );
        let _ = status.flush();
    };
    let attached = probes
        .attach(
            &prepared.sites,
            attach_pid,
            options.attach_mode,
            &mut show_progress,
        )
        .map_err(|err| explain_attach_error(err, options.target.pid()))?;
    if attached.refused.len() == prepared.sites.len() {
        return Err(Error::Usage(
            "nothing left to trace: the kernel refused a probe on every function".into(),
        ));
    }
    let traced_now: &[u32] = match &options.target {
        Target::Process { pid } => std::slice::from_ref(pid),
        Target::Processes { pids } => pids,
        Target::Binary { .. } => &[],
    };
    let go_programs = go_programs(&prepared.sites);
    for &pid in traced_now {
        fault_in_go_type_names(&go_programs, pid);
    }
    // Recording starts once every probe is in place, so no call is seen half (an entry
    // without its return probe, or a return whose entry fired before its probe existed).
    probes.enable(WAKEUP_BYTES)?;
    Ok(Armed {
        probes,
        ring,
        pidfd,
        stop,
        attached,
        started: Instant::now(),
        members,
        go_programs,
        grouping: prepared.grouping.clone(),
    })
}

/// What stops a trace from outside, as [`StopBy`] chose.
enum Stoppers {
    Signals {
        sigint: Signal,
        sigterm: Signal,
        sighup: Signal,
    },
    Handle(tokio::sync::watch::Receiver<Option<String>>),
}

impl Stoppers {
    fn new(by: &StopBy) -> Result<Self> {
        Ok(match by {
            StopBy::Signals => Self::Signals {
                sigint: signal(SignalKind::interrupt()).map_err(|err| Error::io("SIGINT", err))?,
                sigterm: signal(SignalKind::terminate())
                    .map_err(|err| Error::io("SIGTERM", err))?,
                sighup: signal(SignalKind::hangup()).map_err(|err| Error::io("SIGHUP", err))?,
            },
            StopBy::Handle(receiver) => Self::Handle(receiver.clone()),
        })
    }

    /// Waits until a stop is asked for.
    async fn requested(&mut self) -> StopReason {
        match self {
            Self::Signals {
                sigint,
                sigterm,
                sighup,
            } => tokio::select! {
                _ = sigint.recv() => StopReason::Interrupted,
                _ = sigterm.recv() => StopReason::Terminated,
                _ = sighup.recv() => StopReason::HungUp,
            },
            Self::Handle(receiver) => {
                // A dropped handle stops the trace too: nobody is left to stop it.
                let why = match receiver.wait_for(Option::is_some).await {
                    Ok(why) => why.clone().unwrap_or_default(),
                    Err(_) => "its owner is gone".to_string(),
                };
                StopReason::Stopped { why }
            }
        }
    }
}

/// Most a Go program's read-only data is read through to fault it in.
const GO_FAULT_IN_LIMIT: u64 = 256 << 20;

/// The Go programs among `sites`, each once, by the path processes map them at.
fn go_programs(sites: &[ProbeSite]) -> Vec<String> {
    let mut programs: Vec<String> = Vec::new();
    for site in sites.iter().filter(|site| site.go) {
        if !programs.contains(&site.object.path) {
            programs.push(site.object.path.clone());
        }
    }
    programs
}

/// Faults in, in process `pid`, the read-only data of the Go `programs` probed, where the
/// type names of interface values are (no return program can fault a page in, nor the entry
/// where it is not the sleepable one).
fn fault_in_go_type_names(programs: &[String], pid: u32) {
    for program in programs {
        let bytes = target::fault_in_read_only(pid, program, GO_FAULT_IN_LIMIT);
        log::debug!("faulted in {bytes} bytes of {program} in process {pid}");
    }
}

/// An attach that failed because the traced process exited meanwhile says so.
fn explain_attach_error(err: Error, pid: Option<u32>) -> Error {
    match pid {
        Some(pid) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => Error::Usage(
            format!("process {pid} exited while the probes were being attached"),
        ),
        _ => err,
    }
}

/// The trace file, when `-o` asks for one, with its header written (and on disk, before any
/// probe is attached). An existing file is replaced only when asked.
fn open_recorder(
    options: &TraceOptions,
    table: &ProbeTable,
    clock: WallClock,
) -> Result<Option<TraceWriter>> {
    let Some(record) = &options.record else {
        return Ok(None);
    };
    if !record.replace && fs::symlink_metadata(&record.path).is_ok() {
        return Err(Error::Usage(format!(
            "{} exists: choose another file, or add --force to replace it",
            record.path.display()
        )));
    }
    let mut header = header_for(&options.target, table, clock.anchor());
    header.request = record.request.clone();
    TraceWriter::create(&record.path, &header, record.writer).map(Some)
}

/// Who of the target's family is traced, for the start line.
fn family(options: &TraceOptions) -> Family {
    match options.target.pid() {
        Some(pid) => {
            let descendants = target::descendants(pid).len();
            if options.children {
                Family::Traced { descendants }
            } else {
                Family::NotTraced { descendants }
            }
        }
        None => Family::NotTraced { descendants: 0 },
    }
}

/// Drains events into `sink` until a signal, the duration, the target's exit or the sink
/// says stop; flushes the trace file every [`RECORD_FLUSH_INTERVAL`] on the way, and says on
/// `status` what the filters left out and what was lost (see [`progress`]).
async fn stream(
    options: &TraceOptions,
    armed: &mut Armed,
    sink: &mut Sink<'_>,
    status: &mut dyn Write,
) -> Result<StopReason> {
    let deadline = options.duration.map(|d| armed.started + d);
    let sleep = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let pidfd = armed.pidfd.as_ref();
    let exited = async {
        match pidfd {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exited);
    let mut ticker = tokio::time::interval(DRAIN_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_record_flush = Instant::now();
    let mut last_rescan = Instant::now();
    let mut last_stuck_scan = Instant::now();
    let mut aggregates = options.aggregate.map(|shape| {
        aggregate::Aggregates::new(aggregate::Shown {
            shape,
            grouping: armed.grouping.clone(),
        })
    });
    let mut shown_stuck: std::collections::HashSet<(u32, u64, u32)> = Default::default();
    let mut progress = progress::Progress::new(
        match (options.aggregate, options.quiet) {
            (Some(_), _) => progress::Taken::Aggregated,
            (None, true) => progress::Taken::Recorded,
            (None, false) => progress::Taken::Shown,
        },
        options
            .filter
            .leaves_calls_out()
            .then(|| why_left_out(&options.filter)),
    );
    loop {
        let requested = tokio::select! {
            biased;
            reason = armed.stop.requested() => Some(reason),
            () = &mut sleep => Some(StopReason::DurationElapsed),
            () = &mut exited => {
                let pid = options.target.pid().unwrap_or_default();
                Some(StopReason::TargetExited {
                    pid,
                    status: armed.probes.exit_status(pid).map(TargetStatus::from_wait_status),
                })
            }
            ready = armed.ring.readable_mut() => {
                ready.map_err(|err| Error::io("the event ring buffer", err))?.clear_ready();
                None
            }
            _ = ticker.tick() => None,
        };
        if let Some(reason) = requested {
            return Ok(reason);
        }
        if drain(armed.ring.get_mut(), sink)? {
            ticker.reset_immediately();
        }
        armed.probes.identify_new_processes();
        if let Some(logger) = armed.probes.logger_mut() {
            logger.flush();
        }
        if (sink.recorder.is_some() || options.live.is_some())
            && last_record_flush.elapsed() >= RECORD_FLUSH_INTERVAL
        {
            let kernel = armed.probes.counters()?;
            if let Some(live) = &options.live {
                publish(live, sink, &kernel);
            }
            if sink.recorder.is_some() {
                let filtered = filtered_calls(&armed.probes, options)?;
                let counters = counters_record(&kernel, sink.undecodable, filtered);
                sink.flush_recording(&counters);
            }
            last_record_flush = Instant::now();
        }
        if let Some(aggregates) = &mut aggregates
            && aggregates.due()
        {
            let now = aggregate_snapshot(&armed.probes)?;
            let (table, clock, json) = sink.table_clock_json();
            let text = aggregates.interval_lines(&now, table, clock, json);
            sink.write_text(&text);
            sink.record_aggregates(&aggregate::record_of(
                &now,
                armed.grouping.as_ref(),
                sys::monotonic_ns(),
            ));
        }
        if let Some(threshold) = options.stuck
            && last_stuck_scan.elapsed() >= STUCK_SCAN_INTERVAL
        {
            let now = sys::monotonic_ns();
            for call in armed.probes.running_calls() {
                let Some(running) = crate::events::running_call(&call, now) else {
                    continue;
                };
                let key = (running.tid, running.entry_ns, running.probe_id);
                if running.latency_ns() >= threshold.as_nanos() as u64 && shown_stuck.insert(key) {
                    sink.running(&running);
                }
            }
            last_stuck_scan = Instant::now();
        }
        if progress.due() {
            let counters = armed.probes.counters()?;
            let sum_of = |kind: fn(&Counter) -> bool| -> u64 {
                counters
                    .iter()
                    .filter(|(counter, _)| kind(counter))
                    .map(|(_, n)| n)
                    .sum()
            };
            let tally = progress::Tally {
                taken: sink.shown,
                left_out: sum_of(|counter| *counter == Counter::Filtered),
                lost: sum_of(|counter| counter.is_drop()) + sink.undecodable,
            };
            if let Some(line) = progress.line(tally) {
                let _ = writeln!(status, "{}", tool_line("", line));
                let _ = status.flush();
            }
        }
        if let Some(members) = &mut armed.members
            && last_rescan.elapsed() >= RESCAN_INTERVAL
        {
            for pid in members.refresh(&mut armed.probes, sink.workloads_mut()) {
                fault_in_go_type_names(&armed.go_programs, pid);
            }
            last_rescan = Instant::now();
        }
        if let Some(reason) = sink.stop_reason() {
            return Ok(reason);
        }
    }
}

/// Publishes the calls taken and lost so far on `live`.
fn publish(live: &LiveCounts, sink: &Sink<'_>, kernel: &[(Counter, u64)]) {
    use std::sync::atomic::Ordering::Relaxed;
    let lost: u64 = kernel
        .iter()
        .filter(|(counter, _)| counter.is_drop())
        .map(|(_, n)| n)
        .sum();
    live.calls.store(sink.shown, Relaxed);
    live.lost.store(lost + sink.undecodable, Relaxed);
}

/// Stops new calls, gives the ones under way a moment to return, detaches (closing a link
/// waits for handlers still running), reads everything they wrote, closes the trace file and
/// summarises.
async fn finish(
    options: &TraceOptions,
    armed: Armed,
    mut sink: Sink<'_>,
    stop: StopReason,
) -> Result<Summary> {
    let Armed {
        mut probes,
        mut ring,
        started,
        members,
        grouping,
        ..
    } = armed;
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
    if let Some(live) = &options.live {
        publish(live, &sink, &kernel_counters);
    }
    let filtered = filtered_calls(&probes, options)?;
    // `--histogram`, `--stats`: the totals are printed, and the summary's table counts from
    // them.
    if let Some(shape) = options.aggregate {
        let now = aggregate_snapshot(&probes)?;
        let (table, clock, json) = sink.table_clock_json();
        let shown = aggregate::Shown {
            shape,
            grouping: grouping.clone(),
        };
        let text = aggregate::total_lines(&now, table, clock, json, &shown, started.elapsed());
        sink.write_text(&text);
        sink.record_aggregates(&aggregate::record_of(
            &now,
            grouping.as_ref(),
            sys::monotonic_ns(),
        ));
        for ((probe, _), buckets) in &now.counts {
            for (low, high, n) in crate::sinks::histogram::log2_ranges(buckets) {
                // The middle of the bucket's range stands for its calls.
                sink.stats
                    .record_counted(*probe, low + (high - low).div_ceil(2), n);
            }
        }
    }
    // The calls still running are counted and shown, the longest-running first.
    let in_flight = probes.running_calls();
    let unfinished = in_flight.len() as u64;
    let now = sys::monotonic_ns();
    let mut still: Vec<crate::CallEvent> = in_flight
        .iter()
        .filter_map(|call| crate::events::running_call(call, now))
        .collect();
    still.sort_by_key(|call| call.entry_ns);
    let running: Vec<String> = still
        .iter()
        .take(summary::RUNNING_SHOWN)
        .filter_map(|call| sink.running_line(call))
        .collect();
    let recorded = match (sink.recorder.take(), &options.record) {
        (Some(recorder), Some(record)) => {
            let counters = counters_record(&kernel_counters, sink.undecodable, filtered.clone());
            let end = EndRecord {
                stop: stop.to_string(),
                events: sink.shown,
                unfinished,
            };
            let written = recorder.stats();
            match recorder.finish(&counters, &end) {
                Ok(stats) => Some((record.path.clone(), stats)),
                Err(err) => {
                    sink.recording_failed.get_or_insert(err);
                    Some((record.path.clone(), written))
                }
            }
        }
        _ => None,
    };
    drop(ring);
    let elapsed = started.elapsed();
    probes.detach();
    // A standard output that fails (a full disk under `> file`) still gets its summary.
    let (lines, output_failed) = match sink.finish_lines() {
        Ok(lines) => (lines, None),
        Err(err) => (Default::default(), Some(err)),
    };
    Ok(Summary {
        lines,
        output_failed,
        recording_failed: sink.recording_failed.take(),
        stats: sink.stats,
        kernel_counters,
        undecodable: sink.undecodable,
        not_shown: sink.not_shown,
        unfinished,
        elapsed,
        detach_time: detach_started.elapsed(),
        stop,
        recorded,
        group: members.map(|m| m.traced()),
        running,
        notes: sink.stacks.as_ref().map(|s| s.notes()).unwrap_or_default(),
        filtered: options.filter.leaves_calls_out().then(|| FilteredCalls {
            per_probe: filtered,
            reason: why_left_out(&options.filter),
        }),
    })
}

/// What the kernel has aggregated so far.
fn aggregate_snapshot(probes: &Probes) -> Result<aggregate::Snapshot> {
    Ok(aggregate::Snapshot {
        counts: probes.histograms()?,
        stats: probes.latency_stats()?,
    })
}

/// The calls each probe had left out by the filters after the return, when there are such
/// filters (reading the counters costs a syscall per probe).
fn filtered_calls(probes: &Probes, options: &TraceOptions) -> Result<Vec<u64>> {
    if options.filter.leaves_calls_out() {
        probes.filtered()
    } else {
        Ok(Vec::new())
    }
}

/// `faster than 5ms`, `slower than 1s`, `outside 1ms..1s`, `not meeting --where 'x > 1'`,
/// `without an error (--errors)`, `over --rate 100/s`, `passed over by --sample 1/10`: what
/// the filters after the return left out.
fn why_left_out(filter: &LiveFilter) -> String {
    let shown = |d: Duration| crate::sinks::units::format_duration_ns(d.as_nanos() as u64);
    let bounds = match (filter.min_latency, filter.max_latency) {
        (Some(min), None) => Some(format!("faster than {}", shown(min))),
        (None, Some(max)) => Some(format!("slower than {}", shown(max))),
        (Some(min), Some(max)) => Some(format!("outside {}..{}", shown(min), shown(max))),
        (None, None) => None,
    };
    let predicate = filter
        .predicate
        .as_ref()
        .map(|e| format!("not meeting --where `{}`", e.text));
    let errors = filter
        .errors
        .then(|| "without an error (--errors)".to_string());
    let sampled = filter
        .sample_every
        .map(|n| format!("passed over by --sample 1/{n}"));
    let rate = filter.rate.map(|n| format!("over --rate {n}/s"));
    bounds
        .into_iter()
        .chain(predicate)
        .chain(errors)
        .chain(sampled)
        .chain(rate)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Runs a trace to its end. Events go to `out`, the start line to `status`; the summary is
/// returned for the caller to print.
pub async fn trace(
    options: &TraceOptions,
    out: Box<dyn Write + Send>,
    status: &mut dyn Write,
) -> Result<Traced> {
    let prepared = prepare(options, status)?;
    let clock = WallClock::anchor_now();
    let recorder = open_recorder(options, &prepared.table, clock)?;
    let mut armed = match arm(options, &prepared, status) {
        Ok(armed) => armed,
        Err(err) => {
            // Nothing was traced: leave no trace file behind.
            if let (Some(recorder), Some(record)) = (recorder, &options.record) {
                drop(recorder);
                let _ = fs::remove_file(&record.path);
            }
            return Err(err);
        }
    };
    for &id in &armed.attached.refused {
        let site = &prepared.sites[id];
        let why = format!(
            "the kernel refused a probe on its first instruction ({})",
            site.probe_instruction
        );
        warn_not_traced(status, site, &why);
    }
    let started = attach_status(
        &prepared.table,
        &armed.attached,
        &options.target,
        family(options),
        // Human lines show the local time of day: say once which zone that is.
        (!options.json && !options.quiet && options.time == TimeFormat::Local)
            .then(|| local_zone(clock.wall_ns(sys::monotonic_ns())))
            .as_deref(),
    );
    // Ctrl-C stops only a trace that listens to signals.
    let started = match options.stop {
        StopBy::Signals => started.as_str(),
        StopBy::Handle(_) => started.trim_end_matches(" Ctrl-C to stop."),
    };
    let _ = writeln!(status, "{}", tool_line("", started));
    let _ = status.flush();
    let lines = match (options.quiet, options.json) {
        (true, _) => LiveLines::Off,
        (false, true) => LiveLines::Json,
        (false, false) => LiveLines::Human(HumanLines::new(Style {
            color: options.color,
            time: options.time,
        })),
    };
    let out = LineOutput::spawn(out).map_err(|err| Error::io("a thread for live lines", err))?;
    let mut sink = Sink::new(
        out,
        lines,
        clock,
        &prepared.table,
        options.max_events,
        recorder,
    )
    .with_workloads(options.workloads.clone());
    if options.plan.stack {
        let traced = options.target.pid();
        sink.stacks = armed
            .probes
            .take_stacks()
            .map(|map| stacks::Stacks::new(map, traced));
    }
    let stop = stream(options, &mut armed, &mut sink, status).await?;
    let summary = finish(options, armed, sink, stop).await?;
    Ok(Traced {
        table: prepared.table,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attach_failing_because_the_target_exited_says_so() {
        let enoent = || Error::bpf("uprobe-multi link", std::io::Error::from_raw_os_error(2));
        let gone = explain_attach_error(enoent(), Some(4_194_305)).to_string();
        assert_eq!(
            gone,
            "process 4194305 exited while the probes were being attached"
        );
        let alive = explain_attach_error(enoent(), Some(std::process::id()));
        assert!(matches!(alive, Error::Bpf { .. }), "{alive}");
        assert!(matches!(
            explain_attach_error(enoent(), None),
            Error::Bpf { .. }
        ));
    }
}
