//! Loading the embedded eBPF object, writing plans into its maps, attaching uprobes, and
//! tearing everything down again.
//!
//! Every probe is attached through a BPF link owned by a file descriptor of this process, never
//! through tracefs, so nothing outlives the tracer even when it is SIGKILLed. Attaches go
//! through one uprobe-multi link per object and kind where the kernel has them (6.6+), and
//! fall back to perf-event links, one per probe, made
//! from a few threads at once (`perf_link`), elsewhere (DESIGN.md, "Attaching").

pub(crate) mod addresses;
pub(crate) mod ebpf_object;
pub(crate) mod features;
pub(crate) mod kernel_btf;
#[allow(unsafe_code)]
pub(crate) mod perf_link;
#[allow(unsafe_code)]
pub(crate) mod uprobe_multi;

use std::{
    collections::{BTreeSet, HashMap},
    ffi::CString,
    fmt, fs, io,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{TracePoint, UProbe},
};
use tracer_ebpf::{
    CapturePlan, Config, Counter, ENTRY_BY_ADDRESS_PROGRAM, ENTRY_PROGRAM, EXIT_PROGRAM,
    FORK_PROGRAM, InFlightCall, InflightKey, MAX_PROBES, RET_SITE_BY_ADDRESS_PROGRAM,
    RET_SITE_PROGRAM, RETURN_BY_SHADOW_PROGRAM, RETURN_PROGRAM, STILL_ALIVE, config_flags,
    exit_condition, inflight_marks, maps,
};

use crate::{
    error::{Error, Result},
    symbols::{ProbeSite, group_by_object, site::ReturnProbes},
};
use uprobe_multi::LinkKind;

/// How probes are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// uprobe-multi where the kernel has it, else perf-event links.
    #[default]
    Auto,
    /// One uprobe-multi link per object and kind (kernel 6.6+).
    Multi,
    /// One perf-event link per site and kind (kernel 5.15+).
    Perf,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Multi => "uprobe-multi",
            Self::Perf => "perf-event links",
        })
    }
}

/// What an attach did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The mode actually used (never `Auto`).
    pub mode: AttachMode,
    pub objects: usize,
    pub elapsed: Duration,
    /// Sites (probe ids) the kernel refused to probe; the others are attached.
    pub refused: Vec<usize>,
}

/// The uprobe-multi programs, loaded raw (see `ebpf_object::link_programs`).
struct MultiPrograms {
    entry: OwnedFd,
    ret: OwnedFd,
    /// Loaded when the first object with probes on ways out is attached: its verification
    /// costs most of what a trace of C functions alone would wait for.
    ret_site: Option<OwnedFd>,
}

/// The probes of one object's sites, as (file offset, cookie) pairs: every entry, the
/// uretprobes, and a probe on each way out of the functions probed there instead.
#[derive(Debug, Default)]
struct ObjectProbes {
    entries: Vec<(u64, u64)>,
    uretprobes: Vec<(u64, u64)>,
    exits: Vec<(u64, u64)>,
}

impl ObjectProbes {
    /// Attach points, of every kind.
    fn len(&self) -> usize {
        self.entries.len() + self.uretprobes.len() + self.exits.len()
    }

    /// The probes of `sites[i]` for every `i` of `members`; site `i` has cookie `i`.
    fn of(sites: &[ProbeSite], members: &[usize]) -> Self {
        let mut probes = Self::default();
        for &i in members {
            let site = &sites[i];
            let cookie = i as u64;
            probes.entries.push((site.probe_offset, cookie));
            match &site.returns {
                ReturnProbes::Uretprobe => probes.uretprobes.push((site.probe_offset, cookie)),
                ReturnProbes::AtExits(exits) => {
                    probes.exits.extend(exits.iter().map(|exit| {
                        let condition = u64::from(exit.condition) << exit_condition::SHIFT;
                        let tail = if exit.tail_call {
                            exit_condition::TAIL_CALL
                        } else {
                            0
                        };
                        (exit.offset, cookie | condition | tail)
                    }));
                }
            }
        }
        probes
    }
}

/// Perf-event links attached so far, told to whoever shows progress.
struct AttachProgress<'a> {
    done: usize,
    total: usize,
    report: &'a mut dyn FnMut(usize, usize),
}

impl AttachProgress<'_> {
    /// `done` points of the batch under way are attached.
    fn report(&mut self, done: usize) {
        (self.report)(self.done + done, self.total);
    }

    /// A batch of `points` is over (attached, refused or skipped).
    fn finish(&mut self, points: usize) {
        self.done += points;
        (self.report)(self.done, self.total);
    }
}

/// How many threads make perf-event links: two. The kernel holds one global mutex across
/// most of a uprobe event's creation (`event_mutex`: the registration and the breakpoint's
/// install), so only the rest overlaps; more threads only wait on it (measured on 6.1 with
/// two CPUs: 1,000 functions in 9.6 s with one thread, 7.9 s with two, 11.3 s with four).
/// `KOOLKIT_TRACE_ATTACH_THREADS` sets another number, to measure.
fn perf_attach_threads() -> usize {
    std::env::var("KOOLKIT_TRACE_ATTACH_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

/// The site (probe id) a cookie belongs to: its low half (a way out of a function carries its
/// condition above, see [`exit_condition`]).
fn site_of(cookie: u64) -> u64 {
    cookie & u64::from(u32::MAX)
}

/// `ENOTSUPP`, the kernel's answer to a uprobe on an instruction it cannot single-step.
const ENOTSUPP: i32 = 524;

/// Checks the caller may load BPF programs and attach uprobes, before anything is loaded, so
/// the user gets one clear line instead of a syscall error.
pub fn check_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|source| Error::io("/proc/self/status", source))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::Privilege {
            what: "koolkit-trace needs to load eBPF programs and attach uprobes".into(),
            hint: "run it as root (sudo), or give it CAP_BPF and CAP_PERFMON \
                   (setcap cap_bpf,cap_perfmon+ep koolkit-trace)"
                .into(),
        })
    }
}

/// The cookies of the sites among `offsets` the kernel refuses to probe, found by halving:
/// a link over a group of sites either attaches (none refused; dropped at once) or fails with
/// `ENOTSUPP` (some refused). A few refused sites among thousands cost a few dozen links.
fn refused_sites(
    program: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    cookies: &[u64],
    pid: Option<u32>,
) -> io::Result<Vec<u64>> {
    let mut refused = Vec::new();
    let half = offsets.len() / 2;
    let mut groups = vec![(0, half), (half, offsets.len())];
    while let Some((start, end)) = groups.pop() {
        if start == end {
            continue;
        }
        let group = (&offsets[start..end], &cookies[start..end]);
        match uprobe_multi::attach(program, path, group.0, group.1, pid, LinkKind::Entry) {
            Ok(_link) => {}
            Err(err) if err.raw_os_error() == Some(ENOTSUPP) => {
                if end - start == 1 {
                    refused.push(cookies[start]);
                } else {
                    let middle = start + (end - start) / 2;
                    groups.push((start, middle));
                    groups.push((middle, end));
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(refused)
}

/// Whether `err` or one of its causes is a permission error from the kernel.
fn is_permission_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether `err` carries the verifier's log: the kernel refused the program itself (which it
/// reports as EACCES too), not the caller's privilege.
fn is_verifier_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("verifier") && text.contains("processed")
}

/// Wraps a BPF failure, turning permission errors into [`Error::Privilege`].
fn bpf_error(context: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    if is_verifier_rejection(&err) {
        Error::internal(format!(
            "{context}: the kernel's verifier rejected koolkit-trace's eBPF program (a bug of \
             koolkit-trace on this kernel; RUST_LOG=debug shows more): {err}"
        ))
    } else if is_permission_error(&err) {
        Error::Privilege {
            what: format!("{context}: {err}"),
            hint: "run as root, or with CAP_BPF and CAP_PERFMON; in a container, also allow \
                   the bpf() syscall (seccomp) and perf events"
                .into(),
        }
    } else {
        Error::bpf(context, err)
    }
}

/// Where the kernel lists the CPUs it may bring up: per-CPU maps hold a value for each, and
/// reading them needs the count.
const POSSIBLE_CPUS: &str = "/sys/devices/system/cpu/possible";

/// Fails before anything is attached when the per-CPU maps could not be read (a minimal
/// root without `/sys`), instead of after, at the first counter read.
fn check_possible_cpus() -> Result<()> {
    match std::fs::read_to_string(POSSIBLE_CPUS) {
        Ok(_) => Ok(()),
        Err(err) => Err(Error::Privilege {
            what: format!("cannot read {POSSIBLE_CPUS} ({err})"),
            hint: "the per-CPU counters need it: mount sysfs at /sys (a container runtime does; \
                   in a chroot, `mount -t sysfs sysfs ROOT/sys`)"
                .into(),
        }),
    }
}

/// The loaded eBPF object: maps, programs and the links attaching them.
pub struct Probes {
    ebpf: Ebpf,
    map_fds: HashMap<String, OwnedFd>,
    plans: Array<MapData, CapturePlan>,
    inflight: aya::maps::HashMap<MapData, InflightKey, InFlightCall>,
    /// Each thread's (and goroutine's) parked calls; under `SKIP_CAPTURE` the only record of
    /// most calls under way.
    threads: aya::maps::HashMap<MapData, u64, tracer_ebpf::ThreadCalls>,
    tgids: aya::maps::HashMap<MapData, u32, u8>,
    exits: aya::maps::HashMap<MapData, u32, u32>,
    config: Array<MapData, Config>,
    /// What `enable` writes, besides switching recording on.
    settings: Config,
    /// Tracepoint programs attached (their links live in `ebpf`).
    tracepoints: Vec<String>,
    counters: PerCpuArray<MapData, u64>,
    /// Probes the per-probe maps were sized for (ids `0..probe_count`).
    probe_count: u32,
    /// Calls each probe had filtered out (latency bounds, predicates, sampling, rate), per
    /// CPU.
    filtered: PerCpuArray<MapData, u64>,
    /// `--histogram`: calls by probe and log2 latency bucket, per CPU.
    histograms: aya::maps::PerCpuHashMap<MapData, tracer_ebpf::HistogramKey, u64>,
    /// `--by-arg`: the statistics by probe and argument value, per CPU.
    stats_by_argument:
        aya::maps::PerCpuHashMap<MapData, tracer_ebpf::HistogramKey, tracer_ebpf::LatencyStats>,
    /// `--histogram`, `--stats`: each probe's count, total, fastest and slowest call, per CPU.
    stats: PerCpuArray<MapData, tracer_ebpf::LatencyStats>,
    /// `--where`, `--errors`: each probe's conditions.
    predicates: aya::maps::HashMap<MapData, u32, tracer_ebpf::Predicate>,
    /// `--stack`: the user stacks of calls by id, until taken by the reader of calls.
    stacks: Option<aya::maps::StackTraceMap<MapData>>,
    ring: Option<RingBuf<MapData>>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// uprobe-multi programs, loaded on first use.
    multi_programs: Option<MultiPrograms>,
    /// uprobe-multi links; closing them detaches.
    multi_links: Vec<OwnedFd>,
    /// Whether uprobe-multi entries use the sleepable entry program, whose reads fault pages
    /// in: unless stacks are asked for (it cannot take them), the kernel refuses it, or
    /// `KOOLKIT_TRACE_NO_SLEEPABLE` is set (to measure the difference).
    sleepable_entry: bool,
    /// Whether a plan written reads memory through a pointer (see
    /// `CaptureStep::reads_untouched_memory`).
    plans_read_untouched_memory: bool,
    perf_loaded: bool,
    /// Perf-event links (or, before 5.15, perf events with the program on them); closing
    /// them detaches.
    perf_links: Vec<OwnedFd>,
    /// On kernels without attach cookies: every probe's address in the processes met.
    addresses: Option<addresses::ProbeAddresses>,
    addresses_pruned: Instant,
}

/// How often the addresses of exited processes are taken out.
const ADDRESS_PRUNE_INTERVAL: Duration = Duration::from_secs(5);

/// What the programs filter in the kernel: at the entry `--tid` and `--comm`, at the return
/// `--min-latency`, `--max-latency`, `--where`, `--errors`, `--sample` and `--rate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFilter {
    pub min_latency: Option<std::time::Duration>,
    pub max_latency: Option<std::time::Duration>,
    pub tid: Option<u32>,
    pub comm: Option<String>,
    /// `--sample 1/N`: one call in N per function (and CPU) is emitted.
    pub sample_every: Option<u32>,
    /// `--where`: only calls meeting it are emitted.
    pub predicate: Option<crate::predicate::Expression>,
    /// `--errors`: only calls that failed, as their return type says, are emitted.
    pub errors: bool,
    /// `--rate N/s`: at most N calls per second of each function are emitted (burst N).
    pub rate: Option<u32>,
}

impl LiveFilter {
    /// Whether calls are left out after they return (and counted): latency bounds,
    /// predicates, sampling, the rate.
    pub fn leaves_calls_out(&self) -> bool {
        self.min_latency.is_some()
            || self.max_latency.is_some()
            || self.sample_every.is_some()
            || self.predicate.is_some()
            || self.errors
            || self.rate.is_some()
    }
}

/// The statistics of several CPUs as one.
fn sum_stats<'a>(
    per_cpu: impl Iterator<Item = &'a tracer_ebpf::LatencyStats>,
) -> tracer_ebpf::LatencyStats {
    let mut sum = tracer_ebpf::LatencyStats::default();
    for cpu in per_cpu.filter(|s| s.calls > 0) {
        sum.min_ns = if sum.calls == 0 {
            cpu.min_ns
        } else {
            sum.min_ns.min(cpu.min_ns)
        };
        sum.max_ns = sum.max_ns.max(cpu.max_ns);
        sum.calls += cpu.calls;
        sum.total_ns = sum.total_ns.wrapping_add(cpu.total_ns);
    }
    sum
}

/// The token bucket of `--rate N/s`: (nanoseconds per token, depth in nanoseconds) for a
/// burst of N calls.
pub fn rate_bucket(per_second: u32) -> (u64, u64) {
    let interval = 1_000_000_000 / u64::from(per_second.max(1));
    (
        interval.max(1),
        interval.max(1) * u64::from(per_second.max(1)),
    )
}

/// A command name as the kernel keeps it: at most 15 bytes, NUL-padded to 16.
pub fn comm_bytes(comm: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(comm.bytes().take(15)) {
        *slot = byte;
    }
    bytes
}

/// How big the maps that grow with the trace are made at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// Probes that will be written (the per-probe arrays hold exactly these).
    pub probes: usize,
    /// `--stack`: room for the user stacks of calls; without it the stack map takes one
    /// entry instead of megabytes.
    pub stacks: bool,
    /// `--by-arg`: room for statistics by argument value.
    pub by_argument: bool,
    /// `--histogram`, `--stats`: room for each probe's latency buckets. Without, the
    /// histogram map takes one entry: a per-CPU hash is allocated whole at creation, and the
    /// full one costs ~50 ms to create.
    pub histograms: bool,
    /// Probes with a predicate (`--where`, `--errors`).
    pub predicates: usize,
}

impl Probes {
    /// Loads the embedded object and creates its maps, sized for `sizes`. Attaches nothing
    /// yet.
    pub fn load(sizes: MapSizes) -> Result<Self> {
        check_privileges()?;
        check_possible_cpus()?;
        let bytes = ebpf_object::ebpf_object()?;
        // Per-probe arrays are allocated per CPU for some: sized to the probes there are,
        // not to the most a trace may have.
        let probes = sizes.probes.clamp(1, MAX_PROBES as usize) as u32;
        let stacks = if sizes.stacks {
            tracer_ebpf::STACK_ENTRIES
        } else {
            1
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::PLANS, probes)
            .map_max_entries(maps::FILTERED, probes)
            .map_max_entries(maps::SAMPLED, probes)
            .map_max_entries(maps::STATS, probes)
            .map_max_entries(maps::RATE_BUCKETS, probes)
            .map_max_entries(
                maps::PREDICATES,
                sizes.predicates.clamp(1, MAX_PROBES as usize) as u32,
            )
            .map_max_entries(maps::STACKS, stacks)
            // Probes are told apart by address only where the kernel has no attach cookies:
            // elsewhere the map would hold ~20 MiB of kernel memory for nothing.
            .map_max_entries(
                maps::PROBE_ADDRESSES,
                if features::attach_cookies() {
                    1
                } else {
                    tracer_ebpf::MAX_PROBE_ADDRESSES
                },
            )
            .map_max_entries(
                maps::HISTOGRAMS,
                match (sizes.histograms, sizes.by_argument) {
                    (false, _) => 1,
                    // Any number of argument values: as many as the map may hold.
                    (true, true) => tracer_ebpf::HISTOGRAM_ENTRIES,
                    (true, false) => probes
                        .saturating_mul(tracer_ebpf::HISTOGRAM_BUCKETS)
                        .min(tracer_ebpf::HISTOGRAM_ENTRIES),
                },
            )
            .map_max_entries(
                maps::STATS_BY_ARGUMENT,
                if sizes.by_argument {
                    tracer_ebpf::HISTOGRAM_ENTRIES
                } else {
                    1
                },
            )
            .load(bytes)
            .map_err(|err| bpf_error("loading the eBPF object", err))?;
        // uprobe-multi programs are relocated against these fds, so take them while every map
        // is still in `ebpf`.
        let map_fds = ebpf_object::map_fds(&ebpf).map_err(|err| Error::io("eBPF map fds", err))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::debug!("eBPF logs unavailable: {err}");
                None
            }
        };
        let plans = take_map(&mut ebpf, maps::PLANS)?;
        let config = take_map(&mut ebpf, maps::CONFIG)?;
        let counters = take_map(&mut ebpf, maps::COUNTERS)?;
        let ring = take_map(&mut ebpf, maps::EVENTS)?;
        let inflight = take_map(&mut ebpf, maps::INFLIGHT)?;
        let threads = take_map(&mut ebpf, maps::THREADS)?;
        let tgids = take_map(&mut ebpf, maps::TGIDS)?;
        let exits = take_map(&mut ebpf, maps::EXITS)?;
        let filtered = take_map(&mut ebpf, maps::FILTERED)?;
        let histograms = take_map(&mut ebpf, maps::HISTOGRAMS)?;
        let stats = take_map(&mut ebpf, maps::STATS)?;
        let predicates = take_map(&mut ebpf, maps::PREDICATES)?;
        let stacks = take_map(&mut ebpf, maps::STACKS)?;
        let stats_by_argument = take_map(&mut ebpf, maps::STATS_BY_ARGUMENT)?;
        Ok(Self {
            ebpf,
            map_fds,
            plans,
            inflight,
            threads,
            tgids,
            exits,
            config,
            settings: Config {
                // The tracer may map the very library it traces: never trace itself.
                self_tgid: std::process::id(),
                ..Config::default()
            },
            tracepoints: Vec::new(),
            counters,
            probe_count: probes,
            filtered,
            histograms,
            stats,
            predicates,
            stacks: Some(stacks),
            stats_by_argument,
            ring: Some(ring),
            logger,
            multi_programs: None,
            sleepable_entry: !sizes.stacks
                && std::env::var_os("KOOLKIT_TRACE_NO_SLEEPABLE").is_none(),
            plans_read_untouched_memory: false,
            multi_links: Vec::new(),
            perf_loaded: false,
            perf_links: Vec::new(),
            addresses: None,
            addresses_pruned: Instant::now(),
        })
    }

    /// Writes the plan of every probe; probe ids are indexes into `plans`.
    pub fn set_plans(&mut self, plans: &[CapturePlan]) -> Result<()> {
        if plans.len() > MAX_PROBES as usize {
            return Err(Error::Usage(format!(
                "{} functions selected; at most {MAX_PROBES} can be traced at once: narrow the \
                 pattern",
                plans.len()
            )));
        }
        for (id, plan) in plans.iter().enumerate() {
            self.plans
                .set(id as u32, plan, 0)
                .map_err(|err| bpf_error("writing capture plans", err))?;
        }
        self.plans_read_untouched_memory = plans.iter().any(CapturePlan::reads_untouched_memory);
        Ok(())
    }

    /// Traces only the processes `roots` and their descendants, present and future (selected in the
    /// kernel, whatever the probes fire in). Forks are followed from before the descendants
    /// are listed, so none falls between the two.
    pub fn follow_family(&mut self, roots: &[u32]) -> Result<()> {
        self.settings.fork_child_pid_offset =
            tracepoint_field_offset("sched_process_fork", "child_pid")?.ok_or_else(|| {
                Error::KernelFeature {
                    what: "follow forked children".into(),
                    hint: "the sched_process_fork tracepoint has no child_pid field".into(),
                }
            })?;
        self.settings.exit_group_dead_offset =
            tracepoint_field_offset("sched_process_exit", "group_dead")?.unwrap_or(0);
        self.settings.flags |= config_flags::SELECT_TGIDS | config_flags::FOLLOW_FORKS;
        self.attach_tracepoint(EXIT_PROGRAM, "sched_process_exit")?;
        self.attach_tracepoint(FORK_PROGRAM, "sched_process_fork")?;
        for &root in roots {
            self.tgids
                .insert(root, 1, 0)
                .map_err(|err| bpf_error("selecting processes", err))?;
        }
        // Following forks (not recording yet) before listing the families.
        self.write_config(self.settings)?;
        for child in crate::target::descendants_of(roots) {
            if let Err(err) = self.tgids.insert(child, 1, 0) {
                log::warn!("cannot select process {child}: {err}");
            }
        }
        Ok(())
    }

    /// Traces only the processes `pids` (and those [`select`](Self::select) adds later),
    /// without following their forks: for a tracer inside a pid namespace, whose fork records
    /// name host ids it cannot use.
    pub fn select_only(&mut self, pids: &[u32]) -> Result<()> {
        self.settings.flags |= config_flags::SELECT_TGIDS;
        for &pid in pids {
            self.select(pid)?;
        }
        self.write_config(self.settings)
    }

    /// Adds process `pid` to the traced processes (one that joined a container or pod).
    pub fn select(&mut self, pid: u32) -> Result<()> {
        self.tgids
            .insert(pid, 1, 0)
            .map_err(|err| bpf_error("selecting processes", err))
    }

    /// Takes process `pid` out of the traced processes (it left, or its id may be reused).
    pub fn deselect(&mut self, pid: u32) {
        let _ = self.tgids.remove(&pid);
    }

    /// Makes the programs use the process ids of the tracer's own pid namespace (a debug
    /// container's), where host ids mean nothing; processes of other namespaces are not traced.
    /// Needs `bpf_get_ns_current_pid_tgid` (Linux 5.7).
    pub fn use_own_pid_namespace(&mut self) -> Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let path = "/proc/self/ns/pid";
        let meta = fs::metadata(path).map_err(|err| Error::io(path, err))?;
        // The kernel compares its own encoding of the device: major in the bits above 20.
        let dev = meta.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        self.settings.pid_ns_dev = (u64::from(major) << 20) | u64::from(minor);
        self.settings.pid_ns_ino = meta.ino();
        self.settings.flags |= config_flags::PID_NAMESPACE;
        self.write_config(self.settings)
    }

    /// Notes how process `pid` dies (a signal, or its exit status), for [`exit_status`]: the
    /// exit program reads the kernel's `task_struct.exit_code`, found in its BTF, as the last
    /// thread exits. Fails where the kernel has no BTF or no visible tracepoint.
    ///
    /// [`exit_status`]: Self::exit_status
    pub fn watch_exit(&mut self, pid: u32) -> Result<()> {
        let btf = fs::read(kernel_btf::VMLINUX_BTF)
            .map_err(|err| Error::io(kernel_btf::VMLINUX_BTF, err))?;
        let offset =
            kernel_btf::member_offset(&btf, "task_struct", "exit_code").ok_or_else(|| {
                Error::KernelFeature {
                    what: "tell how the target died".into(),
                    hint: "the kernel's BTF has no task_struct.exit_code".into(),
                }
            })?;
        if self.settings.exit_group_dead_offset == 0 {
            self.settings.exit_group_dead_offset =
                tracepoint_field_offset("sched_process_exit", "group_dead")?.unwrap_or(0);
        }
        self.settings.task_exit_code_offset = offset;
        self.attach_tracepoint(EXIT_PROGRAM, "sched_process_exit")?;
        self.exits
            .insert(pid, STILL_ALIVE, 0)
            .map_err(|err| bpf_error("watching the target's exit", err))?;
        self.write_config(self.settings)
    }

    /// How watched process `pid` died: its wait status (see `waitpid(2)`), None while alive or
    /// when it was not watched.
    pub fn exit_status(&self, pid: u32) -> Option<u32> {
        self.exits
            .get(&pid, 0)
            .ok()
            .filter(|&status| status != STILL_ALIVE)
    }

    /// Attaches tracepoint program `program` to `sched:event`, once.
    fn attach_tracepoint(&mut self, program: &str, event: &str) -> Result<()> {
        if self.tracepoints.iter().any(|p| p == program) {
            return Ok(());
        }
        let tracepoint: &mut TracePoint = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| Error::internal(format!("the embedded eBPF object has no {program}")))?
            .try_into()
            .map_err(|err| bpf_error(&format!("program {program}"), err))?;
        tracepoint
            .load()
            .map_err(|err| bpf_error(&format!("loading {program}"), err))?;
        tracepoint
            .attach("sched", event)
            .map_err(|err| bpf_error(&format!("attaching to sched:{event}"), err))?;
        self.tracepoints.push(program.to_string());
        Ok(())
    }

    /// Turns recording on, waking the reader once `wakeup_bytes` are pending.
    pub fn enable(&mut self, wakeup_bytes: u32) -> Result<()> {
        self.write_config(Config {
            flags: self.settings.flags | config_flags::ENABLED,
            wakeup_bytes,
            ..self.settings
        })
    }

    /// Stops new calls from being recorded; calls already entered still complete and are
    /// emitted when they return.
    pub fn disable(&mut self) -> Result<()> {
        self.write_config(self.settings)
    }

    fn write_config(&mut self, config: Config) -> Result<()> {
        self.config
            .set(0, config, 0)
            .map_err(|err| bpf_error("writing the eBPF config", err))
    }

    /// The map of the calls' user stacks (`--stack`). Taken once.
    pub fn take_stacks(&mut self) -> Option<aya::maps::StackTraceMap<MapData>> {
        self.stacks.take()
    }

    /// The ring buffer of finished calls. Taken once.
    pub fn take_ring(&mut self) -> Option<RingBuf<MapData>> {
        self.ring.take()
    }

    /// The reader of the programs' own log messages, if any.
    pub fn logger_mut(&mut self) -> Option<&mut aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.logger.as_mut()
    }

    /// Calls that entered and have not returned (bounded by the in-flight map's size), not
    /// counting those already known abandoned: parked by their thread, which has since left
    /// their frame.
    pub fn calls_in_flight(&self) -> u64 {
        self.running_calls().len() as u64
    }

    /// The calls that entered and have not returned (not those known abandoned), as the
    /// entry program parked them.
    pub fn running_calls(&self) -> Vec<InFlightCall> {
        let mut calls: Vec<InFlightCall> = self
            .inflight
            .iter()
            .filter_map(Result::ok)
            .filter(|(key, call)| !self.is_abandoned(key, call))
            .map(|(_, call)| call)
            .collect();
        if self.settings.flags & config_flags::SKIP_CAPTURE != 0 {
            calls.extend(self.calls_in_shadows());
        }
        calls
    }

    /// The calls parked in threads' shadows alone (see `config_flags::SKIP_CAPTURE`), as
    /// in-flight calls without arguments. A goroutine's shadow does not say its process: its
    /// calls are left out.
    fn calls_in_shadows(&self) -> Vec<InFlightCall> {
        let mut calls = Vec::new();
        for (pid_tgid, thread) in self.threads.iter().filter_map(Result::ok) {
            if pid_tgid & tracer_ebpf::GOROUTINE_SHADOW != 0 {
                continue;
            }
            let depth = (thread.depth as usize).min(tracer_ebpf::THREAD_DEPTH);
            for slot in 0..depth {
                if thread.entries[slot] == 0 {
                    continue;
                }
                let mut call = InFlightCall::ZERO;
                call.header.kind = tracer_ebpf::EventKind::Call as u32;
                call.header.probe_id = thread.probes[slot];
                call.header.pid = (pid_tgid >> 32) as u32;
                call.header.tid = pid_tgid as u32;
                call.header.entry_ns = thread.entries[slot];
                calls.push(call);
            }
        }
        calls
    }

    /// Whether the programs counted the call abandoned (they mark its entry so).
    fn is_abandoned(&self, _key: &InflightKey, call: &InFlightCall) -> bool {
        call.header.exit_ns == inflight_marks::ABANDONED
    }

    /// Only calls that pass `filter` are emitted or traced (written at [`enable`]).
    ///
    /// [`enable`]: Self::enable
    pub fn set_filter(&mut self, filter: &LiveFilter) {
        let nanos = |d: Option<std::time::Duration>| {
            d.map_or(0, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
            })
        };
        self.settings.min_latency_ns = nanos(filter.min_latency);
        self.settings.max_latency_ns = nanos(filter.max_latency);
        self.settings.sample_every = filter.sample_every.unwrap_or(0);
        if let Some(tid) = filter.tid {
            self.settings.flags |= config_flags::ONE_THREAD;
            self.settings.tid = tid;
        }
        if let Some(comm) = &filter.comm {
            self.settings.flags |= config_flags::ONE_COMMAND;
            self.settings.comm = comm_bytes(comm);
        }
        if let Some(rate) = filter.rate.filter(|&n| n > 0) {
            let (interval, burst) = rate_bucket(rate);
            self.settings.rate_interval_ns = interval;
            self.settings.rate_burst_ns = burst;
        }
    }

    /// Writes each probe's predicate (`--where`, `--errors`; by probe id, `None`: every call
    /// passes) and has the programs check them.
    pub fn set_predicates(&mut self, predicates: &[Option<tracer_ebpf::Predicate>]) -> Result<()> {
        for (id, predicate) in predicates.iter().enumerate() {
            if let Some(predicate) = predicate {
                self.predicates
                    .insert(id as u32, predicate, 0)
                    .map_err(|err| bpf_error("writing --where predicates", err))?;
            }
        }
        if predicates.iter().any(Option::is_some) {
            self.settings.flags |= config_flags::PREDICATES;
        }
        Ok(())
    }

    /// Each probe's calls, total, fastest and slowest latency counted so far in aggregation
    /// mode, summed over CPUs (only probes with calls).
    pub fn latency_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<(u32, u64), tracer_ebpf::LatencyStats>> {
        let mut by_probe = std::collections::BTreeMap::new();
        if self.by_argument() {
            for entry in self.stats_by_argument.iter() {
                let (key, per_cpu) =
                    entry.map_err(|err| bpf_error("reading latency statistics", err))?;
                let sum = sum_stats(per_cpu.iter());
                if sum.calls > 0 {
                    by_probe.insert((key.probe, key.argument), sum);
                }
            }
            return Ok(by_probe);
        }
        for id in 0..self.probe_count {
            let per_cpu = self
                .stats
                .get(&id, 0)
                .map_err(|err| bpf_error("reading latency statistics", err))?;
            let sum = sum_stats(per_cpu.iter());
            if sum.calls > 0 {
                by_probe.insert((id, 0), sum);
            }
        }
        Ok(by_probe)
    }

    /// Calls are counted in latency histograms in the kernel, not emitted (`--histogram`;
    /// written at [`enable`](Self::enable)). Unless `needs_arguments` (a predicate, calls
    /// shown while they run), the entry captures nothing.
    pub fn aggregate(&mut self, needs_arguments: bool, by_argument: bool) {
        self.settings.flags |= config_flags::AGGREGATE;
        if !needs_arguments && !by_argument {
            self.settings.flags |= config_flags::SKIP_CAPTURE;
        }
        if by_argument {
            self.settings.flags |= config_flags::BY_ARGUMENT;
        }
    }

    /// Whether calls are grouped by an argument (`--by-arg`).
    fn by_argument(&self) -> bool {
        self.settings.flags & config_flags::BY_ARGUMENT != 0
    }

    /// The calls of each probe (and argument value, with `--by-arg`; 0 without) counted so
    /// far by log2 latency bucket (see [`tracer_ebpf::histogram_bucket`]), summed over CPUs.
    pub fn histograms(&self) -> Result<std::collections::BTreeMap<(u32, u64), Vec<u64>>> {
        let mut by_probe: std::collections::BTreeMap<(u32, u64), Vec<u64>> = Default::default();
        for entry in self.histograms.iter() {
            let (key, per_cpu) = entry.map_err(|err| bpf_error("reading histograms", err))?;
            let Some(bucket) = (key.bucket < tracer_ebpf::HISTOGRAM_BUCKETS).then_some(key.bucket)
            else {
                continue;
            };
            let counts = by_probe
                .entry((key.probe, key.argument))
                .or_insert_with(|| vec![0; tracer_ebpf::HISTOGRAM_BUCKETS as usize]);
            counts[bucket as usize] += per_cpu.iter().sum::<u64>();
        }
        Ok(by_probe)
    }

    /// How many calls of each probe the filters after the return left out, by probe id.
    pub fn filtered(&self) -> Result<Vec<u64>> {
        (0..self.probe_count)
            .map(|id| {
                let per_cpu = self
                    .filtered
                    .get(&id, 0)
                    .map_err(|err| bpf_error("reading filter counters", err))?;
                Ok(per_cpu.iter().sum())
            })
            .collect()
    }

    /// Sums of the per-CPU counters, by [`Counter`].
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = self
                    .counters
                    .get(&(counter as u32), 0)
                    .map_err(|err| bpf_error("reading counters", err))?;
                // Wrapping: the programs take a count back by adding u64::MAX, maybe on
                // another CPU than the add, and a read may see one without the other.
                let total = per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
                Ok((counter, (total as i64).max(0) as u64))
            })
            .collect()
    }

    /// Attaches an entry and a return probe at every site; site `i` gets probe id `i`.
    /// `pid` restricts firing to one process. `progress` hears (attached, of) after each
    /// perf-event link: thousands of them take seconds.
    pub fn attach(
        &mut self,
        sites: &[ProbeSite],
        pid: Option<u32>,
        mode: AttachMode,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Attached> {
        let started = Instant::now();
        let mode = match mode {
            AttachMode::Auto => {
                if self.multi_available()? {
                    AttachMode::Multi
                } else {
                    AttachMode::Perf
                }
            }
            AttachMode::Multi => {
                if !self.multi_available()? {
                    return Err(Error::KernelFeature {
                        what: "attach uprobe-multi links".into(),
                        hint: "they need Linux 6.6 or newer; use --attach perf".into(),
                    });
                }
                AttachMode::Multi
            }
            AttachMode::Perf => AttachMode::Perf,
        };
        if mode == AttachMode::Perf && !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
            return Err(Error::KernelFeature {
                what: "attach uprobes".into(),
                hint: "no uprobe PMU in /sys/bus/event_source/devices (CONFIG_UPROBES off?)".into(),
            });
        }
        // Best effort: threads that exit with calls parked leave nothing behind in the maps.
        if let Err(err) = self.attach_tracepoint(EXIT_PROGRAM, "sched_process_exit") {
            log::debug!("no clean-up of exited threads: {err}");
        }
        let groups = group_by_object(sites);
        let objects: Vec<ObjectProbes> = groups
            .iter()
            .map(|(_, members)| ObjectProbes::of(sites, members))
            .collect();
        let mut counted = AttachProgress {
            done: 0,
            total: objects.iter().map(ObjectProbes::len).sum(),
            report: progress,
        };
        // Before 6.10 a uprobe-multi link's pid filter passes the process's main thread only:
        // where the kernel may still do that, the programs check the process instead.
        let mut multi_pid = pid;
        if let (AttachMode::Multi, Some(one)) = (mode, pid)
            && features::multi_pid_filter_is_per_process() != Some(true)
        {
            log::info!(
                "the kernel's uprobe-multi pid filter may pass the main thread only: the \
                 programs select process {one} themselves"
            );
            self.select_only(&[one])?;
            multi_pid = None;
        }
        let mut refused = Vec::new();
        for ((object, _), probes) in groups.iter().zip(&objects) {
            let result = match mode {
                AttachMode::Multi => self.attach_multi(&object.open_path, probes, multi_pid),
                _ => self.attach_perf(&object.open_path, probes, pid, &mut counted),
            };
            let object_refused = result.map_err(|err| match err {
                Error::Bpf { context, source } => Error::Bpf {
                    context: format!("attaching to {} ({context})", object.path),
                    source,
                },
                other => other,
            })?;
            refused.extend(object_refused.into_iter().map(|cookie| cookie as usize));
        }
        if let Some(addresses) = &mut self.addresses {
            let selected = match pid {
                Some(pid) => Some(vec![pid]),
                None if self.settings.flags & config_flags::SELECT_TGIDS != 0 => Some(
                    self.tgids
                        .keys()
                        .filter_map(std::result::Result::ok)
                        .collect(),
                ),
                None => None,
            };
            addresses.fill_running(selected);
        }
        Ok(Attached {
            mode,
            objects: groups.len(),
            elapsed: started.elapsed(),
            refused,
        })
    }

    /// Loads the uprobe-multi programs if needed; whether the kernel can attach them. A kernel
    /// that lacks uprobe-multi is a `false`; any other failure is an error, not a fallback.
    fn multi_available(&mut self) -> Result<bool> {
        // Asked with a trivial program first: an older kernel's verifier would otherwise see
        // the real programs for an attach type it does not know.
        if !features::uprobe_multi_support().0 {
            return Ok(false);
        }
        Ok(self.load_multi_programs()?
            && self
                .multi_programs
                .as_ref()
                .is_some_and(|p| uprobe_multi::kernel_supports(p.entry.as_fd())))
    }

    /// Loads the uprobe-multi programs; `false` when the kernel does not know their attach
    /// type (before 6.6).
    fn load_multi_programs(&mut self) -> Result<bool> {
        if self.multi_programs.is_some() {
            return Ok(true);
        }
        let bytes = ebpf_object::ebpf_object()?;
        // Faulting pages in is worth its cost only where a read may find one untouched:
        // not for plans of registers alone, nor when nothing is captured.
        let captures = self.settings.flags & config_flags::SKIP_CAPTURE == 0;
        let entry = match self.sleepable_entry && self.plans_read_untouched_memory && captures {
            true => tracer_ebpf::ENTRY_SLEEPABLE_PROGRAM,
            false => ENTRY_PROGRAM,
        };
        let programs = [entry, RETURN_PROGRAM];
        let linked = ebpf_object::link_programs(bytes, &self.map_fds, &programs)?;
        let mut loaded = Vec::new();
        for name in programs {
            let program = &linked[name];
            let sleepable = name == tracer_ebpf::ENTRY_SLEEPABLE_PROGRAM;
            match uprobe_multi::load_program(
                name,
                &program.instructions,
                &program.license,
                program.kernel_version,
                sleepable,
            ) {
                Ok(fd) => loaded.push(fd),
                // A kernel that runs no sleepable uprobe-multi program (or none at all): the
                // plain entry, whose reads do not fault pages in.
                Err(err) if sleepable => {
                    log::info!(
                        "the kernel refused the sleepable entry program ({err}); reads of \
                         untouched pages will show as unreadable"
                    );
                    self.sleepable_entry = false;
                    return self.load_multi_programs();
                }
                // An unknown expected attach type is refused before verification: no log.
                Err(err)
                    if err.source.raw_os_error() == Some(libc::EINVAL) && err.log.is_empty() =>
                {
                    log::info!("this kernel has no uprobe-multi links; using perf-event links");
                    return Ok(false);
                }
                Err(err) => {
                    return Err(bpf_error(&format!("loading {name} for uprobe-multi"), err));
                }
            }
        }
        let ret = loaded.pop().expect("two programs");
        let entry = loaded.pop().expect("two programs");
        self.multi_programs = Some(MultiPrograms {
            entry,
            ret,
            ret_site: None,
        });
        Ok(true)
    }

    /// Loads the uprobe-multi program of the ways out, once.
    fn load_multi_ret_site(&mut self) -> Result<()> {
        if self
            .multi_programs
            .as_ref()
            .is_some_and(|p| p.ret_site.is_some())
        {
            return Ok(());
        }
        let bytes = ebpf_object::ebpf_object()?;
        let linked = ebpf_object::link_programs(bytes, &self.map_fds, &[RET_SITE_PROGRAM])?;
        let program = &linked[RET_SITE_PROGRAM];
        let fd = uprobe_multi::load_program(
            RET_SITE_PROGRAM,
            &program.instructions,
            &program.license,
            program.kernel_version,
            false,
        )
        .map_err(|err| bpf_error(&format!("loading {RET_SITE_PROGRAM} for uprobe-multi"), err))?;
        if let Some(programs) = &mut self.multi_programs {
            programs.ret_site = Some(fd);
        }
        Ok(())
    }

    /// The links of one object's probes; returns the cookies of the sites the kernel refused
    /// to probe (the rest are attached). Ways out go first: where one is also a function's
    /// entry site (a thunk, `jmp other`), the kernel runs the consumer it got last first
    /// (`consumer_add` puts each at the head of the list, 5.10 to 6.18), so the entry parks
    /// the call before the way out completes it. Entries next, harmlessly: they park nothing
    /// until `enable`, and their link is where a refused site shows.
    fn attach_multi(
        &mut self,
        path: &Path,
        probes: &ObjectProbes,
        pid: Option<u32>,
    ) -> Result<Vec<u64>> {
        if !probes.exits.is_empty() {
            self.load_multi_ret_site()?;
        }
        let programs = self
            .multi_programs
            .as_ref()
            .ok_or_else(|| Error::internal("uprobe-multi programs are not loaded"))?;
        let (mut offsets, mut cookies): (Vec<u64>, Vec<u64>) =
            probes.entries.iter().copied().unzip();
        let mut refused = Vec::new();
        let link = |program: &OwnedFd, offsets: &[u64], cookies: &[u64], kind| {
            uprobe_multi::attach(program.as_fd(), path, offsets, cookies, pid, kind)
        };
        let mut links = Vec::new();
        if !probes.exits.is_empty() {
            let (exit_offsets, exit_cookies): (Vec<u64>, Vec<u64>) =
                probes.exits.iter().copied().unzip();
            let ret_site = programs
                .ret_site
                .as_ref()
                .ok_or_else(|| Error::internal("the ways-out program is not loaded"))?;
            links.push(
                link(ret_site, &exit_offsets, &exit_cookies, LinkKind::Entry)
                    .map_err(|err| bpf_error("uprobe-multi link on the ways out", err))?,
            );
        }
        let entry_link = match link(&programs.entry, &offsets, &cookies, LinkKind::Entry) {
            Ok(entry) => entry,
            // One site the kernel cannot probe fails the whole link: find it and go without.
            Err(err) if err.raw_os_error() == Some(ENOTSUPP) => {
                refused = refused_sites(programs.entry.as_fd(), path, &offsets, &cookies, pid)
                    .map_err(|err| bpf_error("uprobe-multi link", err))?;
                (offsets, cookies) = offsets
                    .iter()
                    .zip(&cookies)
                    .filter(|(_, cookie)| !refused.contains(cookie))
                    .unzip();
                if offsets.is_empty() {
                    return Ok(refused);
                }
                link(&programs.entry, &offsets, &cookies, LinkKind::Entry)
                    .map_err(|err| bpf_error("uprobe-multi link", err))?
            }
            Err(err) => return Err(bpf_error("uprobe-multi link", err)),
        };
        let kept = |sites: &[(u64, u64)]| -> (Vec<u64>, Vec<u64>) {
            sites
                .iter()
                .filter(|(_, cookie)| !refused.contains(&site_of(*cookie)))
                .copied()
                .unzip()
        };
        links.push(entry_link);
        let (ret_offsets, ret_cookies) = kept(&probes.uretprobes);
        if !ret_offsets.is_empty() {
            links.push(
                link(&programs.ret, &ret_offsets, &ret_cookies, LinkKind::Return)
                    .map_err(|err| bpf_error("uprobe-multi return link", err))?,
            );
        }
        self.multi_links.extend(links);
        Ok(refused)
    }

    /// Perf-event links, one per probe; returns the cookies of the sites the kernel refused to
    /// probe.
    fn attach_perf(
        &mut self,
        path: &Path,
        probes: &ObjectProbes,
        pid: Option<u32>,
        progress: &mut AttachProgress<'_>,
    ) -> Result<Vec<u64>> {
        // Before 5.15 a perf-event link carries no cookie: the programs tell probes apart by
        // address instead (see `addresses`).
        let by_address = !features::attach_cookies();
        let [ret_site_program, entry_program, return_program] = if by_address {
            [
                RET_SITE_BY_ADDRESS_PROGRAM,
                ENTRY_BY_ADDRESS_PROGRAM,
                RETURN_BY_SHADOW_PROGRAM,
            ]
        } else {
            [RET_SITE_PROGRAM, ENTRY_PROGRAM, RETURN_PROGRAM]
        };
        if !self.perf_loaded {
            for name in [ret_site_program, entry_program, return_program] {
                self.uprobe(name)?
                    .load()
                    .map_err(|err| bpf_error(&format!("loading {name}"), err))?;
            }
            if by_address {
                self.addresses = Some(addresses::ProbeAddresses::new(
                    take_map(&mut self.ebpf, maps::PROBE_ADDRESSES)?,
                    take_map(&mut self.ebpf, maps::UNIDENTIFIED)?,
                ));
            }
            match crate::sys::raise_open_files_limit() {
                Ok(limit) => log::debug!("open files limit: {limit}"),
                Err(err) => log::debug!("could not raise the open files limit: {err}"),
            }
            self.perf_loaded = true;
        }
        if let Some(addresses) = &mut self.addresses {
            let (dev, inode) = addresses::mapped_identity(path)
                .map_err(|err| Error::io(path.display().to_string(), err))?;
            let kinds = [
                (tracer_ebpf::ADDRESS_OF_WAY_OUT, &probes.exits),
                (tracer_ebpf::ADDRESS_OF_ENTRY, &probes.entries),
            ];
            addresses.add_points(kinds.into_iter().flat_map(|(kind, sites)| {
                sites.iter().map(move |&(offset, cookie)| addresses::Point {
                    kind,
                    dev,
                    inode,
                    offset,
                    cookie,
                })
            }));
        }
        let pmu = perf_link::UprobePmu::read().map_err(|err| Error::KernelFeature {
            what: "attach uprobes".into(),
            hint: format!("no uprobe PMU ({err}); is CONFIG_UPROBES off?"),
        })?;
        let path_c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::internal(format!("{} contains a NUL byte", path.display())))?;
        let mut refused = BTreeSet::new();
        // Ways out first, as for uprobe-multi (see `attach_multi`); each kind is done before
        // the next starts, so that order holds however many threads make the links.
        for (name, sites, is_return) in [
            (ret_site_program, &probes.exits, false),
            (entry_program, &probes.entries, false),
            (return_program, &probes.uretprobes, true),
        ] {
            if sites.is_empty() {
                continue;
            }
            let program = self.program_fd(name)?;
            let todo: Vec<(u64, u64)> = sites
                .iter()
                .filter(|(_, cookie)| !refused.contains(&site_of(*cookie)))
                .copied()
                .collect();
            let batch = perf_link::Batch {
                pmu,
                program: program.as_fd(),
                path: &path_c,
                is_return,
                pid,
                with_cookies: !by_address,
            };
            let outcome = perf_link::attach_parallel(
                batch,
                &todo,
                perf_attach_threads(),
                |err| err.raw_os_error() == Some(ENOTSUPP),
                &mut |done| progress.report(done),
            );
            progress.finish(sites.len());
            self.perf_links.extend(outcome.links);
            for failed in outcome.failed {
                match failed.error.raw_os_error() {
                    Some(ENOTSUPP) => {
                        refused.insert(site_of(failed.cookie));
                    }
                    Some(libc::EMFILE | libc::ENFILE) => {
                        return Err(Error::KernelFeature {
                            what: format!(
                                "open one file descriptor per probe ({} perf-event links)",
                                probes.len()
                            ),
                            hint: "raise the open-files limit (ulimit -n), trace fewer \
                                   functions, or use a kernel with uprobe-multi links (6.6+)"
                                .into(),
                        });
                    }
                    _ => {
                        return Err(bpf_error(
                            &format!("perf-event uprobe at {:#x}", failed.offset),
                            failed.error,
                        ));
                    }
                }
            }
        }
        Ok(refused.into_iter().collect())
    }

    /// On a kernel without attach cookies, reads the maps of the processes the programs met
    /// at addresses not known yet (see `addresses`); elsewhere nothing.
    pub fn identify_new_processes(&mut self) {
        if let Some(addresses) = &mut self.addresses {
            addresses.fill_flagged();
            if self.addresses_pruned.elapsed() >= ADDRESS_PRUNE_INTERVAL {
                addresses.forget_exited();
                self.addresses_pruned = Instant::now();
            }
        }
    }

    fn uprobe(&mut self, name: &str) -> Result<&mut UProbe> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| {
                Error::internal(format!("the embedded eBPF object has no program {name}"))
            })?
            .try_into()
            .map_err(|err| bpf_error(&format!("program {name}"), err))
    }

    /// A loaded uprobe program's fd, our own copy (the links are made from other threads).
    fn program_fd(&mut self, name: &str) -> Result<aya::programs::ProgramFd> {
        self.uprobe(name)?
            .fd()
            .and_then(|fd| fd.try_clone().map_err(Into::into))
            .map_err(|err| bpf_error(&format!("program {name}"), err))
    }

    /// Detaches the uprobe-multi links. Closing a link waits for handlers still running, so
    /// afterwards every record they wrote is in the ring buffer.
    pub fn detach_multi_links(&mut self) {
        // Each link's release waits for a grace period of its own: closed one after another,
        // the waits add up (~0.1 s a link here); closed together, they overlap.
        let links = std::mem::take(&mut self.multi_links);
        if links.len() <= 1 {
            return;
        }
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
    }

    /// Detaches every probe and unloads the programs.
    ///
    /// Perf-event links take ~0.1 s each to release on some kernels, serialised by the kernel.
    /// A child process keeps copies of their fds and releases them after we are gone, so the
    /// CLI returns at once; the entry program is already switched off, so nothing new is
    /// recorded meanwhile.
    pub fn detach(mut self) {
        if let Err(err) = self.disable() {
            log::warn!("could not switch the probes off before detaching: {err}");
        }
        self.multi_links.clear();
        self.multi_programs = None;
        if self.perf_loaded
            && let Err(err) = crate::sys::release_fds_in_child()
        {
            log::debug!("detaching perf-event links in this process: {err}");
        }
        drop(self);
    }
}

/// Where `field` is in a record of tracepoint `sched:event`, from its format file (fields
/// moved across kernel versions); `None` when the tracepoint has no such field. Mounts
/// tracefs when it is not.
fn tracepoint_field_offset(event: &str, field: &str) -> Result<Option<u32>> {
    let formats = sched_format_paths(event);
    if !formats.iter().any(|path| Path::new(path).exists()) {
        match crate::sys::mount_tracefs() {
            Ok(()) => log::info!("mounted tracefs at /sys/kernel/tracing"),
            Err(err) => log::debug!("mounting tracefs: {err}"),
        }
    }
    let format = formats
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .ok_or_else(|| Error::KernelFeature {
            what: "follow forked children".into(),
            hint: format!(
                "the sched:{event} tracepoint is not visible: mount tracefs (mount -t tracefs \
                 nodev /sys/kernel/tracing)"
            ),
        })?;
    Ok(parse_field_offset(&format, field))
}

/// Where tracefs may show the format file of tracepoint `sched:event`.
fn sched_format_paths(event: &str) -> [String; 2] {
    [
        format!("/sys/kernel/tracing/events/sched/{event}/format"),
        format!("/sys/kernel/debug/tracing/events/sched/{event}/format"),
    ]
}

/// The `offset:` of `field` in a tracepoint format file.
fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let (declaration, rest) = line.trim().strip_prefix("field:")?.split_once(';')?;
        let name = declaration.rsplit([' ', '*']).next()?;
        if name != field {
            return None;
        }
        rest.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))?
            .parse()
            .ok()
    })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| Error::internal(format!("the embedded eBPF object has no map {name}")))?;
    T::try_from(map).map_err(|err| bpf_error(&format!("map {name}"), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_fields_are_found_by_name() {
        let format = "name: sched_process_fork\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(format, "child_pid"), Some(20));
        assert_eq!(parse_field_offset(format, "parent_pid"), Some(12));
        assert_eq!(parse_field_offset(format, "pid"), None);
        let old = "\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(old, "child_pid"), Some(44));
    }

    #[test]
    fn permission_errors_are_found_in_the_cause_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        assert!(is_permission_error(&Outer(io::Error::from_raw_os_error(
            libc::EPERM
        ))));
        assert!(!is_permission_error(&Outer(io::Error::from_raw_os_error(
            libc::EINVAL
        ))));
        let err = bpf_error("x", Outer(io::Error::from_raw_os_error(libc::EACCES)));
        assert_eq!(err.exit_code(), crate::error::exit_code::PRIVILEGE);
    }
}
