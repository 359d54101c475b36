//! The command line's shape: clap definitions, the `--help` text that teaches, and the
//! conversion of arguments into the library's options. Parsing only: nothing here runs.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracer_ebpf::MAX_CHUNK;

use super::parse::{parse_duration, parse_nonzero_duration, parse_size};
use crate::{
    plan::{ArgPath, DEFAULT_ELEMENTS, DEFAULT_STRING_SIZE, MAX_ELEMENTS, PlanOptions},
    probes::AttachMode,
    record::{
        filter::CallFilter,
        writer::{Rotation, WriterOptions},
    },
    session::{RecordOptions, TraceOptions},
    sinks::clock::TimeFormat,
    symbols::{FunctionSpec, ReturnChoice},
    target::Target,
};

const EXAMPLES: &str = "\
Examples:
  koolkit-trace --pid 4242 --fn compute
      every call of compute() in process 4242, with arguments, return value and latency
  koolkit-trace --pid 4242 --fn libc.so.6:malloc --max-events 20
      a function of a shared library the process maps
  koolkit-trace --binary ./server --fn 'handle_*' --json --duration 10s
      every process running ./server, now or later, as JSON Lines for 10 seconds
  koolkit-trace --pid 4242 --fn 'myapp::db::*' --fn src/server.c:42 --args req.path
      Rust/C++ paths and globs, the function holding a source line, one field of a parameter
  koolkit-trace --pid 4242 --fn 'myapp::db::*' --min-latency 5ms
      only the slow calls: the fast ones are left out in the kernel and counted
  koolkit-trace --pod 'checkout-7d9*' -n shop --fn handler
      the pods of a Deployment on this node (inside kubectl debug --target: no target flag)
  koolkit-trace list --pid 4242 'myapp::*'
      what can be traced: functions, source positions, and what each probe costs
  koolkit-trace --pid 4242 --fn 'myapp::db::*' -o db.kt --quiet --duration 1h
      record to a trace file; then `koolkit-trace report db.kt`, `replay db.kt --min-latency 5ms`,
      `export db.kt --format chrome -o db.json` (open in Perfetto), anywhere
  koolkit-trace agent
      on every node (kubectl apply -f deploy/agent/): record what a ConfigMap requests

Each call prints one line:
  12:04:05.123456 4242/4243 compute(a=49, b=7, name=\"abc\") = 49010 <12.3µs>
  (time, pid/tid, function, arguments by name with DWARF or arg0.. without, return value,
  latency)

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or input, 3 missing privilege or kernel feature.
Logging: RUST_LOG=debug for details. Colour: --color, or NO_COLOR=1.";

/// Trace function calls in running processes with eBPF uprobes: arguments, return values and
/// latency, with no code change, no restart and nothing left behind on exit.
#[derive(Debug, Parser)]
#[command(
    name = "koolkit-trace",
    version,
    after_long_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

// Parsed once per run: the size of the trace variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace functions live (the default when no subcommand is given).
    Trace(TraceArgs),
    /// List the functions that can be traced: name, object, address, size, source position
    /// and what a probe on each costs.
    List(ListArgs),
    /// Print the calls of a trace file, as the live trace did (filterable).
    Replay(ReplayArgs),
    /// Summarise a trace file per function: calls, return values, latency percentiles and
    /// histogram, slowest calls.
    Report(ReportArgs),
    /// Convert a trace file: Chrome trace-event JSON (Perfetto, chrome://tracing) or JSON Lines.
    Export(ExportArgs),
    /// Merge the trace files of many processes, pods or nodes into one.
    Merge(MergeArgs),
    /// Say what this kernel offers the tracer: each feature it asks the kernel for, what a
    /// missing one costs, and how probes will attach (exit 3 when nothing can be traced).
    Doctor(DoctorArgs),
    /// Run on every node (a DaemonSet pod): record the traces a requests file asks for, in
    /// the pods that match them, to files served over HTTP.
    Agent(AgentArgs),
}

/// `koolkit-trace doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// One JSON object: the kernel, each feature (name, present, since, without), the mode.
    #[arg(long)]
    pub json: bool,
}

/// `koolkit-trace agent`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = AGENT_EXAMPLES)]
pub struct AgentArgs {
    /// The requests file (YAML: `requests:`, a list of {name, namespace, pod, container,
    /// functions, filters, duration, maxSize}), read again every scan: mount it from a
    /// ConfigMap and edit that.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/koolkit-trace/requests.yaml"
    )]
    pub requests: PathBuf,

    /// Where recordings go: OUT/<namespace>/<pod>/<request>-<start>.kt.
    #[arg(
        short,
        long,
        value_name = "OUT",
        default_value = "/var/lib/koolkit-trace"
    )]
    pub output: PathBuf,

    /// Where /healthz, /status and /traces are served.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9470")]
    pub listen: std::net::SocketAddr,

    /// This node's name, for the status and the files' headers (the downward API's
    /// spec.nodeName). Default: the host name.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: Option<String>,

    /// The most OUT holds; the oldest files go first.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_total_size: u64,

    /// Files last written longer ago than this go.
    #[arg(long, value_name = "DURATION", default_value = "7d",
          value_parser = parse_nonzero_duration)]
    pub max_age: Duration,

    /// How often the requests file and the node's pods are looked at again.
    #[arg(long, value_name = "DURATION", default_value = "2s",
          value_parser = parse_nonzero_duration)]
    pub scan_interval: Duration,

    /// Where the node's file system is (`/` on the node).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,

    /// The container runtime's CRI socket. Default: containerd's or CRI-O's under
    /// --host-root, else kubelet's pod folders.
    #[arg(long, value_name = "PATH")]
    pub cri_socket: Option<PathBuf>,

    /// Only check the requests file: say which requests are valid and why the others are not
    /// (exit 2 if any is not), and trace nothing.
    #[arg(long)]
    pub check: bool,
}

const AGENT_EXAMPLES: &str = "\
Examples:
  koolkit-trace agent --requests /etc/koolkit-trace/requests.yaml -o /var/lib/koolkit-trace
      as the DaemonSet in deploy/ runs it

  A requests file:
    requests:
      - name: checkout-slow
        namespace: shop
        pod: 'checkout-*'
        functions: [handler]
        filters: --min-latency 5ms
        duration: 1h

  Getting the files: kubectl port-forward POD 9470, then
      curl localhost:9470/status; curl localhost:9470/traces
      curl -O localhost:9470/traces/shop/checkout-7d9-a/checkout-slow-20261201T120000Z.kt
      koolkit-trace report checkout-slow-20261201T120000Z.kt
";

/// Which recorded calls to look at.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only calls of functions matching this glob (repeatable).
    #[arg(short = 'f', long = "fn", value_name = "GLOB")]
    pub functions: Vec<String>,

    /// Only calls of this process.
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only calls at least this slow (e.g. 5ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_latency: Option<Duration>,
}

impl FilterArgs {
    pub fn filter(&self) -> CallFilter {
        CallFilter {
            functions: self.functions.clone(),
            pid: self.pid,
            min_latency_ns: self.min_latency.map(|d| d.as_nanos() as u64),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The trace file.
    pub file: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write JSON Lines instead of human lines.
    #[arg(long)]
    pub json: bool,
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,
    /// How human lines write the time of a call.
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    pub time: TimeChoice,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The trace file.
    pub file: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportChoice {
    /// Chrome trace-event JSON: one track per thread, one slice per call.
    Chrome,
    /// JSON Lines, as `--json` prints live.
    Jsonl,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The trace file.
    pub file: PathBuf,
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: ExportChoice,
    /// Where to write (default: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Chrome tracks: one per thread, or one per goroutine for Go calls (their calls nest
    /// there whichever thread ran them; other calls stay on their thread's).
    #[arg(long, value_enum, default_value_t, value_name = "TRACKS")]
    pub tracks: TrackChoice,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// What a Chrome track of `export` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TrackChoice {
    #[default]
    Thread,
    Goroutine,
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The trace files to merge.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The merged trace file (never one of the inputs).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Merge a file given twice (each of its calls then counts twice).
    #[arg(long)]
    pub allow_duplicates: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Which functions: a glob over demangled or mangled names, optionally OBJECT:GLOB
    /// (libc.so.6:str*).
    #[arg(value_name = "PATTERN", default_value = "*")]
    pub pattern: FunctionSpec,

    /// Also show each function's parameters: name, type, and where the value is at the
    /// entry (register, stack slot, or why it cannot be read).
    #[arg(short = 'v', long)]
    pub params: bool,

    /// Write JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,

    /// How returns would be probed (the RETURNS column says which each function gets, and
    /// why).
    #[arg(long, value_enum, default_value_t, value_name = "KIND")]
    pub returns: ReturnsChoice,
}

/// Colour choice for human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal and NO_COLOR is unset.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether standard output gets colour.
    pub fn for_stdout(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::io::stdout().is_terminal() && !no_color(std::env::var_os("NO_COLOR"))
            }
        }
    }
}

/// Whether `NO_COLOR` asks for no colour: set and not empty (no-color.org).
fn no_color(value: Option<std::ffi::OsString>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// How human lines write the time of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TimeChoice {
    /// Local time of day, `12:04:05.123456` (the start line names the zone).
    #[default]
    Local,
    /// Date, time and UTC offset, `2026-12-01T12:04:05.123456+01:00` (RFC 3339).
    Iso,
    /// Seconds since the trace started, `+3.141593`.
    Relative,
}

impl TimeChoice {
    pub fn format(self) -> TimeFormat {
        match self {
            Self::Local => TimeFormat::Local,
            Self::Iso => TimeFormat::Iso,
            Self::Relative => TimeFormat::Relative,
        }
    }
}

/// How returns are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReturnsChoice {
    /// A probe on every way out (each `ret`, each tail-call jump) wherever a C++ exception or
    /// Rust panic may unwind through the function; a uretprobe (cheaper) where nothing can:
    /// C, Rust built with panic=abort, functions that call nothing. Go always gets the former.
    #[default]
    Auto,
    /// A probe on every way out, for every function: the return address is never touched.
    RetSites,
    /// A uretprobe for every function but Go's: cheapest, but the target aborts if an
    /// exception or panic unwinds through a traced function.
    Uretprobe,
}

impl ReturnsChoice {
    pub(super) fn choice(self) -> ReturnChoice {
        match self {
            Self::Auto => ReturnChoice::Auto,
            Self::RetSites => ReturnChoice::RetSites,
            Self::Uretprobe => ReturnChoice::Uretprobe,
        }
    }
}

/// How probes are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AttachChoice {
    /// uprobe-multi links where the kernel has them (6.6+), else perf-event links.
    #[default]
    Auto,
    /// One uprobe-multi link per object: attaches and detaches thousands of sites in ms.
    Multi,
    /// One perf-event link per site (kernels before 6.6); slow to detach.
    Perf,
}

/// What to trace: one of --pid, --binary, --container, --pod (checked by `resolve`: the
/// pod options that go with --pod are not targets themselves).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Trace one running process (and the shared libraries it maps).
    #[arg(short, long, value_name = "PID", conflicts_with_all = ["binary", "container", "pod"])]
    pub pid: Option<u32>,

    /// Trace every process, present and future, that runs this executable or library. With
    /// --container or --pod: only functions of this file, named as the containers see it
    /// (`/app/server`).
    #[arg(short, long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// Trace the processes of one container, present and future: its id, or a unique
    /// prefix of it (crictl ps, docker ps). Found by the cgroups the runtime puts it in
    /// (containerd, CRI-O, Docker; kubelet's cgroupfs and systemd layouts, cgroup v1 and v2).
    /// With --pod: the name of the pod's container to trace.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,

    /// Trace the processes of the pods on this node whose name matches (a glob: the pods of
    /// a Deployment, `checkout-7d9*`), present and future. Found through kubelet's pod
    /// folders (/var/log/pods) and the cgroups that carry the pod's UID.
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,

    /// With --pod: only pods of this namespace.
    #[arg(short, long, value_name = "NAMESPACE", requires = "pod")]
    pub namespace: Option<String>,

    /// Where the node's file system is: `/` on the node, `/host` in a debug pod that mounts
    /// it there (kubectl debug node/NAME).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,

    /// With --pod: the container runtime's CRI socket to ask for pods. Default: containerd's
    /// or CRI-O's under --host-root, else kubelet's pod folders.
    #[arg(long, value_name = "PATH", requires = "pod")]
    pub cri_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// With --pid: also trace the process's descendants, present and future (pre-fork servers
    /// run their work in children). Selected in the kernel; probes in shared libraries then
    /// fire in every process that maps them, so prefer functions of the program itself.
    #[arg(long, requires = "pid")]
    pub children: bool,

    /// Function(s) to trace: NAME (C, demangled Rust or C++ path, or mangled), a glob
    /// ('myapp::db::*'), OBJECT:NAME (libc.so.6:malloc), or FILE:LINE (the function holding
    /// that source line). Repeatable.
    #[arg(short = 'f', long = "fn", value_name = "SPEC", required = true)]
    pub functions: Vec<FunctionSpec>,

    /// Write JSON Lines (one object per call) instead of human lines.
    #[arg(long)]
    pub json: bool,

    /// Stop after this long (e.g. 500ms, 10s, 5m).
    #[arg(short, long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub duration: Option<Duration>,

    /// Show only calls that took at least this long (5ms, 250us). Faster calls are dropped in
    /// the kernel, never sent, and counted per function in the summary.
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub min_latency: Option<Duration>,

    /// Show only calls that took at most this long; slower ones are counted likewise.
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub max_latency: Option<Duration>,

    /// Trace only this thread (a thread id of the target, as `ps -L` shows).
    #[arg(long, value_name = "TID")]
    pub tid: Option<u32>,

    /// Trace only threads of this command name (as /proc/PID/comm or `ps -o comm` shows it;
    /// the kernel keeps 15 bytes). Threads a program names itself are matched by that name.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Show one call in N of each function (`1/100`, or `100`); the others are counted in the
    /// kernel, not sent. Per CPU: a function called on several CPUs shows about one in N.
    #[arg(long, value_name = "1/N", value_parser = parse_sample)]
    pub sample: Option<u32>,

    /// Show only calls meeting EXPR, decided in the kernel when they return: comparisons of
    /// captured arguments, fields and `ret`, joined by &&. Integers and enums compare with
    /// == != < > <= >=, strings with == and =~ 'prefix*', pointers with NULL:
    /// `--where 'status >= 500 && req.path =~ "/api/*"'`. Functions without such a
    /// parameter are not traced.
    #[arg(long = "where", value_name = "EXPR")]
    pub predicate: Option<crate::predicate::Expression>,

    /// Show the user stack of each call under it: who called the function (frame pointers;
    /// code built without them gives short stacks, and the summary says so).
    #[arg(long)]
    pub stack: bool,

    /// Show only calls that failed: a negative signed return, a NULL pointer return, a Go
    /// `error` result that is not nil. Functions whose return says nothing of failure are
    /// not traced.
    #[arg(long)]
    pub errors: bool,

    /// Show at most N calls per second of each function (a burst of N passes at once); the
    /// rest are counted in the kernel, not sent (`--rate 100/s`, or `100`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<u32>,

    /// Count each function's calls by latency in the kernel (log2 buckets) and print the
    /// histograms every --interval, and in total at the end, instead of a line per call:
    /// the cheapest way to watch a hot function.
    #[arg(long, conflicts_with_all = ["max_events", "stats"])]
    pub histogram: bool,

    /// Like --histogram, but print one line per function: calls, total, average, fastest
    /// and slowest call (counted in the kernel; no event per call).
    #[arg(long, conflicts_with = "max_events")]
    pub stats: bool,

    /// With --histogram or --stats: count each function's calls by the value of this integer
    /// argument too (`--by-arg status`, `--by-arg req.method`), in the kernel.
    #[arg(long = "by-arg", value_name = "NAME")]
    pub by_argument: Option<crate::predicate::Name>,

    /// With --histogram or --stats: how often to print.
    #[arg(long, value_name = "DURATION", default_value = "1s",
          value_parser = parse_nonzero_duration)]
    pub interval: Duration,

    /// Show, once each, calls that have run longer than this without returning (checked
    /// every second): the hung calls, with their arguments and thread.
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub stuck: Option<Duration>,

    /// Stop after this many calls. (`-n` is the pod's namespace, as for kubectl.)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,

    /// When to colour human output.
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,

    /// How human lines write the time of a call.
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    pub time: TimeChoice,

    /// Capture only these parameters, or fields of them as deep as they go:
    /// --args name,req.path,req->header.method (`->` reads as `.`; pointers on the way are
    /// followed). The default is every parameter that fits one capture plan, with struct
    /// fields two levels deep.
    #[arg(long, value_name = "NAME[.FIELD...],...", value_delimiter = ',')]
    pub args: Option<Vec<ArgPath>>,

    /// Bytes of each string to capture.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STRING_SIZE,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CHUNK as i64))]
    pub string_size: u16,

    /// The first elements of a sequence (std::vector, std::span, Vec, a slice) to capture;
    /// the rest are counted: [1, 2, 3, … 97 more]. Elements read one by one (strings) are 4
    /// at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ELEMENTS,
          value_parser = clap::value_parser!(u16).range(1..=MAX_ELEMENTS as i64))]
    pub elements: u16,

    /// How to attach probes.
    #[arg(long, value_enum, default_value_t, value_name = "MODE")]
    pub attach: AttachChoice,

    /// How to probe returns.
    #[arg(long, value_enum, default_value_t, value_name = "KIND")]
    pub returns: ReturnsChoice,

    /// Also record every call to this trace file (review it later with replay, report,
    /// export; no access to the binaries needed).
    #[arg(short, long, value_name = "FILE.kt")]
    pub output: Option<PathBuf>,

    /// With --output: replace FILE if it exists (without it, an existing file is refused).
    #[arg(long, requires = "output")]
    pub force: bool,

    /// With --output: print no calls, only the status and the summary.
    #[arg(short, long, requires = "output")]
    pub quiet: bool,

    /// With --output: start a new file when the current one reaches this size (64MiB, 1GiB);
    /// older files are FILE.1.kt, FILE.2.kt, ...
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "output")]
    pub rotate_size: Option<u64>,

    /// With --rotate-size: how many older files to keep.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "rotate_size")]
    pub keep: u32,

    /// With --output: store calls uncompressed.
    #[arg(long, requires = "output")]
    pub no_compress: bool,
}

impl TargetArgs {
    /// With --container or --pod, --binary names the file the functions are in, as the
    /// containers see it.
    pub(super) fn object_in_group(&self) -> Option<String> {
        let path = self.binary.as_ref()?;
        (self.container.is_some() || self.pod.is_some()).then(|| path.display().to_string())
    }

    /// `specs`, each name without an OBJECT looked up in [`object_in_group`] when given.
    ///
    /// [`object_in_group`]: Self::object_in_group
    pub(super) fn scoped(&self, specs: &[FunctionSpec]) -> Vec<FunctionSpec> {
        let Some(path) = self.object_in_group() else {
            return specs.to_vec();
        };
        specs
            .iter()
            .map(|spec| match spec {
                FunctionSpec::Symbol {
                    object: None,
                    pattern,
                } => FunctionSpec::Symbol {
                    object: Some(path.clone()),
                    pattern: pattern.clone(),
                },
                other => other.clone(),
            })
            .collect()
    }

    pub(super) fn target(&self) -> Target {
        match (&self.pid, &self.binary) {
            (Some(pid), _) => Target::Process { pid: *pid },
            (None, Some(path)) => Target::Binary { path: path.clone() },
            // Resolved by `resolve`; a container's or pod's processes are a process target.
            (None, None) => Target::Process { pid: 0 },
        }
    }

    /// The target, with lines saying what was chosen: a container's or pods' processes (or,
    /// with no target flag inside a container's pid namespace, that namespace's) are a group
    /// whose membership is asked again while tracing.
    pub(super) fn resolve(&self) -> crate::Result<ResolvedTarget> {
        use crate::target::membership::{self, Membership};
        if let Some(pattern) = &self.pod {
            return self.resolve_pods(pattern);
        }
        if let Some(id) = &self.container {
            let (full, pids) = crate::target::container_processes(id)?;
            return Ok(ResolvedTarget {
                chosen: Some(format!("Container {}: {}", &full[..12], listed(&pids))),
                target: Target::Processes { pids },
                workloads: Default::default(),
                membership: Some(Membership::Container { id: full }),
            });
        }
        if self.pid.is_some() || self.binary.is_some() {
            // A --binary that names no file here may be a container's path.
            return Ok(ResolvedTarget {
                target: self.target(),
                workloads: Default::default(),
                membership: None,
                chosen: None,
            });
        }
        if !membership::proc_is_own_namespace() {
            return Err(crate::Error::Usage(
                "what to trace: give --pid PID, --binary PATH, --container ID or --pod NAME (this \
                 process's /proc belongs to another pid namespace, so the pid namespace it shares \
                 cannot be traced without a target: mount /proc for it, as kubectl debug does)"
                    .into(),
            ));
        }
        if !membership::in_child_pid_namespace() {
            return Err(crate::Error::Usage(
                "what to trace: give --pid PID, --binary PATH, --container ID or --pod NAME \
                 (with none, inside a debug container that shares a pod's pid namespace: that \
                 pod's processes)"
                    .into(),
            ));
        }
        let found = Membership::PidNamespace.find()?;
        let pids = crate::target::tree_roots_first(found.members.iter().map(|m| m.pid).collect());
        if pids.is_empty() {
            return Err(crate::Error::Usage(
                "no target flag, and this pid namespace has no process outside the tracer's own \
                 container: share the target's (kubectl debug --target=CONTAINER) or name a \
                 target"
                    .into(),
            ));
        }
        Ok(ResolvedTarget {
            chosen: Some(format!(
                "No target given, inside a container's pid namespace: tracing its processes \
                 outside the tracer's container, {}",
                listed(&pids)
            )),
            target: Target::Processes { pids },
            workloads: Default::default(),
            membership: Some(Membership::PidNamespace),
        })
    }

    /// Where pods are looked up: the CRI socket named, else one that is there, else kubelet's
    /// pod folders.
    pub(super) fn pod_source(&self) -> crate::target::membership::PodSource {
        use crate::target::{cri, membership::PodSource};
        if let Some(socket) = &self.cri_socket {
            return PodSource::Cri(socket.clone());
        }
        for socket in cri::sockets_under(&self.host_root) {
            match cri::list_pods(&socket) {
                Ok(_) => return PodSource::Cri(socket),
                Err(err) => log::info!("not asking the runtime for pods: {err}"),
            }
        }
        PodSource::LogFolders(self.host_root.clone())
    }

    fn resolve_pods(&self, pattern: &str) -> crate::Result<ResolvedTarget> {
        use crate::target::membership::{Membership, PodQuery};
        let query = PodQuery {
            pattern: pattern.to_string(),
            namespace: self.namespace.clone(),
            container: self.container.clone(),
            source: self.pod_source(),
        };
        let found = Membership::Pods(query.clone()).find()?;
        let scope = self
            .namespace
            .as_ref()
            .map_or(String::new(), |ns| format!(" in namespace {ns}"));
        if found.pods.is_empty() {
            return Err(crate::Error::Usage(format!(
                "no pod on this node matches `{pattern}`{scope}: {} names none (in a debug pod, \
                 --host-root names where the node's files are)",
                query.source
            )));
        }
        if found.members.is_empty() {
            let which = self.container.as_ref().map_or(String::new(), |name| {
                format!(" in a container named {name}")
            });
            return Err(crate::Error::Usage(format!(
                "{} matches `{pattern}`{scope}, but no process of {} runs{which}",
                crate::sinks::units::count(found.pods.len() as u64, "pod"),
                if found.pods.len() == 1 { "it" } else { "them" },
            )));
        }
        let pids = crate::target::tree_roots_first(found.members.iter().map(|m| m.pid).collect());
        let mut chosen = vec![format!("Pods from {}:", query.source)];
        for pod in &found.pods {
            let of_pod: Vec<_> = found.members_of(pod).collect();
            if of_pod.is_empty() {
                continue;
            }
            let mut containers: Vec<&str> = of_pod
                .iter()
                .filter_map(|m| Some(m.labels.as_ref()?.container.as_str()))
                .collect();
            containers.sort_unstable();
            containers.dedup();
            let pod_pids: Vec<u32> = of_pod.iter().map(|m| m.pid).collect();
            chosen.push(format!(
                "  {}/{} ({}): {}",
                pod.namespace,
                pod.name,
                containers.join(", "),
                listed(&pod_pids)
            ));
        }
        Ok(ResolvedTarget {
            target: Target::Processes { pids },
            workloads: crate::target::pods::Workloads::of(&found.members),
            membership: Some(Membership::Pods(query)),
            chosen: Some(chosen.join("\n")),
        })
    }
}

/// `--rate N/s` (or `N`): N, at least 1.
fn parse_rate(text: &str) -> std::result::Result<u32, String> {
    let n = text.strip_suffix("/s").unwrap_or(text);
    match n.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{text}`: give N/s with N at least 1 (`100/s` shows at most 100 calls a second of \
             each function)"
        )),
    }
}

/// `--sample 1/N` (or `N`): N, at least 2.
fn parse_sample(text: &str) -> std::result::Result<u32, String> {
    let n = text.strip_prefix("1/").unwrap_or(text);
    match n.parse::<u32>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!(
            "`{text}`: give 1/N with N at least 2 (`1/100` shows one call in a hundred)"
        )),
    }
}

/// `2 processes (pid 4242, 4250)`.
fn listed(pids: &[u32]) -> String {
    let listed: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!(
        "{} (pid {})",
        crate::sinks::units::count_irregular(pids.len() as u64, "process", "processes"),
        listed.join(", ")
    )
}

/// What a target flag chose.
pub(super) struct ResolvedTarget {
    pub target: Target,
    /// The pods and containers of the processes (`--pod`).
    pub workloads: crate::target::pods::Workloads,
    /// How processes that join the target later are found.
    pub membership: Option<crate::target::membership::Membership>,
    /// For the start: which container, pods and processes.
    pub chosen: Option<String>,
}

impl TraceArgs {
    #[cfg(test)]
    pub(super) fn options(&self) -> TraceOptions {
        self.options_for(ResolvedTarget {
            target: self.target.target(),
            workloads: Default::default(),
            membership: None,
            chosen: None,
        })
    }

    /// Refuses filters that can let no call through.
    pub(super) fn check_filters(&self) -> crate::Result<()> {
        if let (Some(min), Some(max)) = (self.min_latency, self.max_latency)
            && min > max
        {
            return Err(crate::Error::Usage(format!(
                "--min-latency {min:?} is above --max-latency {max:?}: no call could be shown"
            )));
        }
        if self.interval != Duration::from_secs(1) && !self.histogram && !self.stats {
            return Err(crate::Error::Usage(
                "--interval says how often --histogram or --stats print; neither was given".into(),
            ));
        }
        if self.by_argument.is_some() && !self.histogram && !self.stats {
            return Err(crate::Error::Usage(
                "--by-arg groups the calls --histogram or --stats count; neither was given".into(),
            ));
        }
        if let Some(comm) = &self.comm
            && (comm.is_empty() || comm.len() > 15)
        {
            return Err(crate::Error::Usage(format!(
                "--comm `{comm}`: the kernel keeps command names of 1 to 15 bytes (see \
                 /proc/PID/comm)"
            )));
        }
        Ok(())
    }

    /// What `--args` selects, and what `--where` compares: a predicate needs its names
    /// captured.
    fn selection(&self) -> Option<Vec<ArgPath>> {
        let mut selection = self.args.clone()?;
        let compared = self.predicate.iter().flat_map(|e| &e.comparisons);
        let names = compared.map(|c| &c.name).chain(self.by_argument.as_ref());
        for name in names {
            if let crate::predicate::Name::Path(path) = name
                && !selection.contains(path)
            {
                selection.push(path.clone());
            }
        }
        Some(selection)
    }

    /// The options for the target `resolved` (a container's processes are traced with their
    /// descendants, as --children does).
    pub(super) fn options_for(&self, resolved: ResolvedTarget) -> TraceOptions {
        let target = resolved.target;
        let color = self.color.for_stdout();
        TraceOptions {
            target,
            functions: self.target.scoped(&self.functions),
            children: self.children,
            membership: resolved.membership,
            workloads: resolved.workloads,
            json: self.json,
            color,
            time: self.time.format(),
            duration: self.duration,
            max_events: self.max_events,
            stuck: self.stuck,
            aggregate: (self.histogram || self.stats).then_some(crate::session::Aggregation {
                interval: self.interval,
                histogram: self.histogram,
            }),
            by_argument: self.by_argument.clone(),
            filter: crate::probes::LiveFilter {
                min_latency: self.min_latency,
                max_latency: self.max_latency,
                tid: self.tid,
                comm: self.comm.clone(),
                sample_every: self.sample,
                predicate: self.predicate.clone(),
                errors: self.errors,
                rate: self.rate,
            },
            attach_mode: match self.attach {
                AttachChoice::Auto => AttachMode::Auto,
                AttachChoice::Multi => AttachMode::Multi,
                AttachChoice::Perf => AttachMode::Perf,
            },
            returns: self.returns.choice(),
            plan: PlanOptions {
                selection: self.selection(),
                string_size: self.string_size,
                elements: self.elements,
                stack: self.stack,
            },
            record: self.output.as_ref().map(|path| RecordOptions {
                path: path.clone(),
                replace: self.force,
                writer: WriterOptions {
                    compress: !self.no_compress,
                    rotation: self.rotate_size.map(|size| Rotation {
                        size,
                        keep: self.keep,
                    }),
                },
                request: None,
            }),
            quiet: self.quiet,
            stop: crate::session::StopBy::Signals,
            live: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_one_in_n() {
        assert_eq!(parse_sample("1/100"), Ok(100));
        assert_eq!(parse_sample("7"), Ok(7));
        for bad in ["1/1", "1/0", "0", "2/3", "x", ""] {
            assert!(parse_sample(bad).is_err(), "{bad}");
        }
    }
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("koolkit-trace").chain(args.iter().copied()))
    }

    #[test]
    fn parses_a_trace_of_a_pid() {
        let cli = parse(&[
            "--pid",
            "4242",
            "--fn",
            "compute",
            "--fn",
            "libc.so.6:malloc",
            "--max-events",
            "5",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let options = cli.trace.options();
        assert_eq!(options.target, Target::Process { pid: 4242 });
        assert_eq!(options.functions.len(), 2);
        assert_eq!(options.functions[1].to_string(), "libc.so.6:malloc");
        assert_eq!(options.max_events, Some(5));
        assert!(!options.json);
    }

    #[test]
    fn parses_the_trace_subcommand_and_binary_target() {
        let cli = parse(&[
            "trace",
            "--binary",
            "/bin/true",
            "--fn",
            "main",
            "--json",
            "-d",
            "2s",
        ])
        .unwrap();
        let Some(Command::Trace(args)) = cli.command else {
            panic!("no subcommand")
        };
        let options = args.options();
        assert_eq!(
            options.target,
            Target::Binary {
                path: "/bin/true".into()
            }
        );
        assert_eq!(options.duration, Some(Duration::from_secs(2)));
        assert!(options.json);
    }

    #[test]
    fn an_empty_no_color_leaves_colour_on() {
        assert!(!no_color(None));
        assert!(!no_color(Some("".into())));
        assert!(no_color(Some("1".into())));
    }

    #[test]
    fn a_target_is_required() {
        // Not clap's to check: the pod options alone are no target.
        let cli = parse(&["--fn", "x"]).unwrap();
        let err = cli.trace.target.resolve().err().expect("no target");
        assert!(matches!(err, crate::Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("--pod NAME"), "{err}");
    }

    #[test]
    fn usage_errors_exit_with_code_2() {
        for args in [
            &["--fn", "x", "-n", "shop"][..], // -n without --pod
            &["--pid", "1"][..],              // no function
            &["--pid", "1", "--binary", "/bin/true", "--fn", "x"][..], // two targets
            &["--pid", "x", "--fn", "f"][..], // pid not a number
            &["--pid", "1", "--fn", ":bad"][..], // malformed spec
            &["--pid", "1", "--fn", "f", "-d", "soon"][..], // bad duration
            &["--pid", "1", "--fn", "f", "-d", "0"][..], // nothing to trace
            &["--pid", "1", "--fn", "f", "--max-events", "0"][..], // nothing to show
            &["--pid", "1", "--fn", "f", "--force"][..], // --force without -o
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
