//! `koolkit-trace agent`: one per node (a DaemonSet pod in the host's pid namespace), recording
//! the traces a requests file asks for ([`requests`]) to files under `OUT` ([`recordings`]),
//! with its status and files served over HTTP ([`http`]).
//!
//! Every scan interval it reads the requests file again (a ConfigMap update swaps the
//! `..data` link under the mounted folder; the file's path then leads to the new text), asks
//! the runtime which pods run here, and starts one trace per request and matching pod, each on
//! a thread of its own with its own probes, stopped through its [`StopHandle`] when the request
//! is removed or changed, or the pod goes. SIGTERM stops them all: each detaches its probes and
//! closes its file whole before the agent exits.

mod http;
mod recordings;
mod requests;

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, Write},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Value, json};

use super::{
    args::{AgentArgs, TargetArgs},
    say, warn,
};
use crate::{
    error::Error,
    record::file_format::RecordedRequest,
    session::{LiveCounts, StopHandle, summary::StopReason, trace},
    target::membership::{Membership, PodQuery, PodSource},
};
use recordings::Limits;
use requests::Request;

/// Rotated files kept per recording; `OUT`'s limits remove them sooner.
const KEEP_ROTATED: u32 = 100;
/// Errors kept for `/status`, the latest last.
const ERRORS_KEPT: usize = 50;

/// A trace the agent runs: one request in one pod.
struct Recording {
    request: String,
    fingerprint: String,
    namespace: String,
    pod: String,
    pod_uid: String,
    container: Option<String>,
    /// Its file, under `OUT`.
    file: String,
    started: SystemTime,
    /// The pod's containers (their ids) when it started.
    members: Vec<String>,
    stop: StopHandle,
    live: Arc<LiveCounts>,
    thread: JoinHandle<Ended>,
}

/// How a trace ended: its stop reason and summary, or why it could not run.
type Ended = Result<(StopReason, String), String>;

/// How long a trace that failed waits before it is tried again in its pod.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long a failed trace waits at least, even when its pod's containers changed.
const RETRY_SOONEST: Duration = Duration::from_secs(5);

/// Why a request's trace in a pod is not running.
struct Finished {
    reason: String,
    /// For a failure: when it may be tried again.
    retry_at: Option<Instant>,
    /// For a failure: the pod's containers (their ids) then. Tried again sooner when they
    /// change (a container started after the pod's sandbox, a container restarted), but not
    /// before [`RETRY_SOONEST`].
    members: Vec<String>,
    failed_at: Instant,
}

/// A valid request, and what became of it on this node.
struct Tracked {
    request: Request,
    /// When the agent first read it: its duration counts from here.
    since: Instant,
    /// Pods (by UID) whose trace ran its duration (not started again) or failed (started again
    /// once the pod's processes change, else after [`RETRY_AFTER`]: a library loaded), and
    /// why.
    finished: HashMap<String, Finished>,
    /// The last failure to find its pods, said once until it changes.
    lookup_error: Option<String>,
}

impl Tracked {
    fn remaining(&self) -> Option<Duration> {
        self.request
            .duration
            .map(|d| d.saturating_sub(self.since.elapsed()))
    }

    fn expired(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }
}

/// A call-free tally of what ended, for `/status`.
#[derive(Default)]
struct Totals {
    calls: u64,
    lost: u64,
    ended: u64,
}

struct Agent {
    args: AgentArgs,
    node: String,
    source: PodSource,
    requests_text: Option<String>,
    tracked: Vec<Tracked>,
    rejected: Vec<requests::Rejected>,
    file_error: Option<String>,
    recordings: Vec<Recording>,
    totals: Totals,
    errors: Vec<Value>,
    status: Arc<Mutex<Value>>,
}

/// Runs the agent until SIGTERM or SIGINT; returns the exit code.
pub fn run(args: &AgentArgs) -> anyhow::Result<i32> {
    if args.check {
        return check(args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::internal(format!("cannot start the event loop: {err}")))?;
    runtime.block_on(supervise(args.clone()))
}

/// `--check`: the requests file's verdict, one line per request.
fn check(args: &AgentArgs) -> anyhow::Result<i32> {
    let text = fs::read_to_string(&args.requests)
        .map_err(|err| Error::Usage(format!("cannot read {}: {err}", args.requests.display())))?;
    let parsed = requests::parse(&text)
        .map_err(|err| Error::Usage(format!("{}: {err}", args.requests.display())))?;
    for request in &parsed.valid {
        println!("ok: {}: {}", request.name, request.what());
    }
    for rejected in &parsed.rejected {
        println!("rejected: {}: {}", rejected.name, rejected.reason);
    }
    Ok(if parsed.rejected.is_empty() {
        crate::error::exit_code::OK
    } else {
        crate::error::exit_code::USAGE
    })
}

async fn supervise(args: AgentArgs) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create the output folder {}", args.output.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let node = args.node.clone().unwrap_or_else(crate::record::host_name);
    let source = pod_source(&args);
    say(
        "agent: ",
        format_args!(
            "node {node}: requests from {}, recordings in {}, pods from {source}, HTTP on {}",
            args.requests.display(),
            args.output.display(),
            listener.local_addr().unwrap_or(args.listen)
        ),
    );
    let status = Arc::new(Mutex::new(json!({"node": node, "state": "starting"})));
    let server = tokio::spawn(http::serve(
        listener,
        http::Served {
            status: status.clone(),
            out: args.output.clone(),
        },
    ));
    let mut agent = Agent {
        node,
        source,
        requests_text: None,
        tracked: Vec::new(),
        rejected: Vec::new(),
        file_error: None,
        recordings: Vec::new(),
        totals: Totals::default(),
        errors: Vec::new(),
        status,
        args,
    };
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT")?;
    let mut ticker = tokio::time::interval(agent.args.scan_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = ticker.tick() => {}
        }
        // The scan blocks on the runtime's socket and /proc for a moment: the HTTP server
        // waits meanwhile, the traces do not (they run on their own threads).
        agent.scan();
    };
    let stopped = agent.shut_down(why).await;
    say(
        "agent: ",
        format_args!("{why}: stopped {stopped}, every probe detached and every file closed"),
    );
    server.abort();
    Ok(crate::error::exit_code::OK)
}

/// Where pods are looked up: the CRI socket given or found, else kubelet's pod folders.
fn pod_source(args: &AgentArgs) -> PodSource {
    pods_target(args, None).pod_source()
}

/// The target flags of a trace of pod `name` (or of none, to ask for the source).
fn pods_target(args: &AgentArgs, name: Option<&str>) -> TargetArgs {
    TargetArgs {
        pid: None,
        binary: None,
        container: None,
        pod: name.map(str::to_string),
        namespace: None,
        host_root: args.host_root.clone(),
        cri_socket: args.cri_socket.clone(),
    }
}

impl Agent {
    /// One round: the requests file, finished traces, pods to start or stop, `OUT`'s limits,
    /// the status.
    fn scan(&mut self) {
        self.read_requests();
        self.reap();
        for index in 0..self.tracked.len() {
            self.match_pods(index);
        }
        let active: HashSet<String> = self.recordings.iter().map(|r| r.file.clone()).collect();
        let limits = Limits {
            total_bytes: self.args.max_total_size,
            max_age: self.args.max_age,
        };
        for removed in recordings::enforce(&self.args.output, limits, &active, SystemTime::now()) {
            say(
                "agent: ",
                format_args!(
                    "removed {} ({} bytes): over the output's limits",
                    removed.path, removed.bytes
                ),
            );
        }
        self.publish_status("running");
    }

    /// Reads the requests file again; when its text changed, starts what is new, stops what
    /// was removed or changed.
    fn read_requests(&mut self) {
        let text = match fs::read_to_string(&self.args.requests) {
            Ok(text) => text,
            // No file (yet): no requests. A ConfigMap mount always has it.
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                self.note_file_error(format!(
                    "cannot read {}: {err}",
                    self.args.requests.display()
                ));
                return;
            }
        };
        if self.requests_text.as_ref() == Some(&text) {
            return;
        }
        self.requests_text = Some(text.clone());
        let parsed = match requests::parse(&text) {
            Ok(parsed) => parsed,
            Err(err) => {
                // A broken edit keeps what runs: better than stopping every trace.
                self.note_file_error(format!(
                    "{}: {err}; the requests read before keep running",
                    self.args.requests.display()
                ));
                return;
            }
        };
        self.file_error = None;
        for rejected in &parsed.rejected {
            warn(format_args!(
                "agent: request {} rejected: {}",
                rejected.name, rejected.reason
            ));
            self.note_error(Some(&rejected.name), None, &rejected.reason);
        }
        self.rejected = parsed.rejected;
        let mut kept = Vec::new();
        for request in parsed.valid {
            match self
                .tracked
                .iter()
                .position(|t| t.request.name == request.name)
            {
                Some(at) if self.tracked[at].request.fingerprint == request.fingerprint => {
                    kept.push(self.tracked.remove(at));
                }
                previous => {
                    let change = if previous.is_some() { "changed" } else { "new" };
                    say(
                        "agent: ",
                        format_args!("request {} ({change}): {}", request.name, request.what()),
                    );
                    kept.push(Tracked {
                        request,
                        since: Instant::now(),
                        finished: HashMap::new(),
                        lookup_error: None,
                    });
                }
            }
        }
        for gone in &self.tracked {
            if !kept.iter().any(|t| t.request.name == gone.request.name) {
                say(
                    "agent: ",
                    format_args!("request {} removed", gone.request.name),
                );
            }
        }
        self.tracked = kept;
        // Traces of requests removed or changed stop; the changed ones start again anew.
        for recording in &self.recordings {
            let now = self
                .tracked
                .iter()
                .find(|t| t.request.name == recording.request);
            match now {
                None => {
                    recording.stop.stop("its request was removed");
                }
                Some(t) if t.request.fingerprint != recording.fingerprint => {
                    recording.stop.stop("its request changed");
                }
                Some(_) => {}
            }
        }
    }

    fn note_file_error(&mut self, message: String) {
        if self.file_error.as_ref() != Some(&message) {
            warn(format_args!("agent: {message}"));
            self.note_error(None, None, &message);
            self.file_error = Some(message);
        }
    }

    fn note_error(&mut self, request: Option<&str>, pod: Option<&str>, message: &str) {
        self.errors.push(json!({
            "time": recordings::utc_stamp(SystemTime::now()),
            "request": request,
            "pod": pod,
            "error": message,
        }));
        if self.errors.len() > ERRORS_KEPT {
            self.errors.remove(0);
        }
    }

    /// Collects the traces that ended: their summaries are said, their failures noted.
    fn reap(&mut self) {
        let (ended, running): (Vec<Recording>, Vec<Recording>) = self
            .recordings
            .drain(..)
            .partition(|recording| recording.thread.is_finished());
        self.recordings = running;
        for recording in ended {
            let label = format!(
                "request {}, pod {}/{}",
                recording.request, recording.namespace, recording.pod
            );
            self.totals.calls += recording.live.calls.load(Relaxed);
            self.totals.lost += recording.live.lost.load(Relaxed);
            self.totals.ended += 1;
            let ended = recording
                .thread
                .join()
                .unwrap_or_else(|_| Err("its thread panicked".into()));
            let tracked = self
                .tracked
                .iter()
                .position(|t| t.request.fingerprint == recording.fingerprint);
            match ended {
                Ok((stop, summary)) => {
                    for line in summary.lines().filter(|l| !l.trim().is_empty()) {
                        say("agent: ", format_args!("{label}: {}", line.trim_end()));
                    }
                    if stop == StopReason::DurationElapsed
                        && let Some(at) = tracked
                    {
                        self.tracked[at].finished.insert(
                            recording.pod_uid,
                            Finished {
                                reason: "its duration elapsed".into(),
                                retry_at: None,
                                members: Vec::new(),
                                failed_at: Instant::now(),
                            },
                        );
                    }
                }
                Err(err) => {
                    warn(format_args!("agent: {label}: not recorded: {err}"));
                    self.note_error(
                        Some(&recording.request),
                        Some(&format!("{}/{}", recording.namespace, recording.pod)),
                        &err,
                    );
                    if let Some(at) = tracked {
                        self.tracked[at].finished.insert(
                            recording.pod_uid,
                            Finished {
                                reason: err,
                                retry_at: Some(Instant::now() + RETRY_AFTER),
                                members: recording.members,
                                failed_at: Instant::now(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// Starts the traces of request `index` in the pods that match it now; stops those of pods
    /// that went.
    fn match_pods(&mut self, index: usize) {
        let tracked = &self.tracked[index];
        let request = &tracked.request;
        let query = PodQuery {
            pattern: request.pod.clone(),
            namespace: request.namespace.clone(),
            container: request.container.clone(),
            source: self.source.clone(),
        };
        let found = match Membership::Pods(query).find() {
            Ok(found) => {
                self.tracked[index].lookup_error = None;
                found
            }
            Err(err) => {
                let message = format!("cannot list the pods: {err}");
                if self.tracked[index].lookup_error.as_ref() != Some(&message) {
                    warn(format_args!(
                        "agent: request {}: {message}",
                        self.tracked[index].request.name
                    ));
                    let name = self.tracked[index].request.name.clone();
                    self.note_error(Some(&name), None, &message);
                    self.tracked[index].lookup_error = Some(message);
                }
                return;
            }
        };
        let tracked = &self.tracked[index];
        let uids: HashSet<&str> = found.pods.iter().map(|p| p.uid.as_str()).collect();
        for recording in &self.recordings {
            if recording.fingerprint == tracked.request.fingerprint
                && !uids.contains(recording.pod_uid.as_str())
                // Said once: the trace may take a while to stop (its probes detaching).
                && recording.stop.stop("its pod is gone")
            {
                say(
                    "agent: ",
                    format_args!(
                        "request {}: pod {}/{} is gone",
                        recording.request, recording.namespace, recording.pod
                    ),
                );
            }
        }
        if tracked.expired() {
            return;
        }
        // By container, not process: a liveness probe's `exec` or a respawned worker is no
        // reason to try a failed trace again.
        let members_of = |pod: &crate::target::pods::Pod| -> Vec<String> {
            let mut ids: Vec<String> = found
                .members_of(pod)
                .filter_map(|m| m.container_id.clone())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let now: HashMap<&str, Vec<String>> = found
            .pods
            .iter()
            .map(|pod| (pod.uid.as_str(), members_of(pod)))
            .collect();
        self.tracked[index].finished.retain(|uid, finished| {
            let Some(retry_at) = finished.retry_at else {
                return true;
            };
            let changed = now
                .get(uid.as_str())
                .is_some_and(|members| *members != finished.members);
            Instant::now() < retry_at && !(changed && finished.failed_at.elapsed() >= RETRY_SOONEST)
        });
        let tracked = &self.tracked[index];
        let mut starts = Vec::new();
        for pod in &found.pods {
            let running = found.members_of(pod).next().is_some();
            let recorded = self
                .recordings
                .iter()
                .any(|r| r.fingerprint == tracked.request.fingerprint && r.pod_uid == pod.uid);
            if running && !recorded && !tracked.finished.contains_key(&pod.uid) {
                starts.push(pod.clone());
            }
        }
        for pod in starts {
            let members = now.get(pod.uid.as_str()).cloned().unwrap_or_default();
            match self.start(index, &pod, members) {
                Ok(recording) => self.recordings.push(recording),
                // The pod's processes went meanwhile, or the runtime did not answer: tried
                // again at the next scan.
                Err(err) => log::info!(
                    "request {}: pod {}/{} not started: {err}",
                    self.tracked[index].request.name,
                    pod.namespace,
                    pod.name
                ),
            }
        }
    }

    /// Starts the trace of request `index` in `pod`, on a thread of its own.
    fn start(
        &self,
        index: usize,
        pod: &crate::target::pods::Pod,
        members: Vec<String>,
    ) -> crate::Result<Recording> {
        let tracked = &self.tracked[index];
        let request = &tracked.request;
        let mut args = request.trace.clone();
        args.target = pods_target(&self.args, Some(&pod.name));
        args.target.namespace = Some(pod.namespace.clone());
        args.target.container = request.container.clone();
        if let PodSource::Cri(socket) = &self.source {
            args.target.cri_socket = Some(socket.clone());
        }
        let started = SystemTime::now();
        let path = free_path(recordings::recording_path(
            &self.args.output,
            &pod.namespace,
            &pod.name,
            &request.name,
            started,
        ));
        if let Some(folder) = path.parent() {
            fs::create_dir_all(folder).map_err(|err| Error::io(folder, err))?;
        }
        args.output = Some(path.clone());
        args.quiet = true;
        args.rotate_size = Some(request.max_size);
        args.keep = KEEP_ROTATED;
        args.duration = tracked.remaining();
        let resolved = args.target.resolve()?;
        let mut options = args.options_for(resolved);
        let (stop, stop_by) = StopHandle::new();
        let live = Arc::new(LiveCounts::default());
        options.stop = stop_by;
        options.live = Some(live.clone());
        if let Some(record) = &mut options.record {
            record.request = Some(RecordedRequest {
                name: request.name.clone(),
                node: self.node.clone(),
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: request.container.clone(),
            });
        }
        let file = path
            .strip_prefix(&self.args.output)
            .unwrap_or(&path)
            .display()
            .to_string();
        let label = format!(
            "request {}, pod {}/{}",
            request.name, pod.namespace, pod.name
        );
        say(
            "agent: ",
            format_args!("{label}: starting, to record to {file}"),
        );
        let thread = std::thread::Builder::new()
            .name(format!("trace {}", request.name))
            .spawn(move || run_trace(&options, label))
            .map_err(|err| Error::io("a thread for a trace", err))?;
        Ok(Recording {
            request: request.name.clone(),
            fingerprint: request.fingerprint.clone(),
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            container: request.container.clone(),
            file,
            started,
            members,
            stop,
            live,
            thread,
        })
    }

    /// Stops every trace and waits for each to detach and close its file.
    async fn shut_down(&mut self, why: &str) -> String {
        self.publish_status("stopping");
        let why = format!("the agent stopped ({why})");
        for recording in &self.recordings {
            recording.stop.stop(&why);
        }
        let count = self.recordings.len();
        while self.recordings.iter().any(|r| !r.thread.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.reap();
        self.publish_status("stopped");
        crate::sinks::units::count(count as u64, "trace")
    }

    /// What `/status` answers.
    fn publish_status(&self, state: &str) {
        let files = recordings::stored_files(&self.args.output);
        let requests: Vec<Value> = self
            .tracked
            .iter()
            .map(|t| {
                let pods = self
                    .recordings
                    .iter()
                    .filter(|r| r.fingerprint == t.request.fingerprint)
                    .count();
                let state = match (t.expired(), pods) {
                    (true, 0) => "finished",
                    (_, 0) => "waiting for a matching pod",
                    _ => "recording",
                };
                json!({
                    "name": t.request.name,
                    "state": state,
                    "pod": t.request.pod,
                    "namespace": t.request.namespace,
                    "container": t.request.container,
                    "recording": pods,
                    "not_recorded": t.finished.iter()
                        .map(|(uid, finished)| json!({"pod_uid": uid, "reason": finished.reason}))
                        .collect::<Vec<_>>(),
                    "error": t.lookup_error,
                })
            })
            .chain(
                self.rejected
                    .iter()
                    .map(|r| json!({"name": r.name, "state": "rejected", "reason": r.reason})),
            )
            .collect();
        let pods: Vec<Value> = self
            .recordings
            .iter()
            .map(|r| {
                json!({
                    "request": r.request,
                    "namespace": r.namespace,
                    "pod": r.pod,
                    "container": r.container,
                    "file": r.file,
                    "since": recordings::utc_stamp(r.started),
                    "calls": r.live.calls.load(Relaxed),
                    "drops": r.live.lost.load(Relaxed),
                })
            })
            .collect();
        // What ended, and what the running traces published.
        let running = |count: fn(&LiveCounts) -> u64| -> u64 {
            self.recordings.iter().map(|r| count(&r.live)).sum()
        };
        let calls = self.totals.calls + running(|live| live.calls.load(Relaxed));
        let drops = self.totals.lost + running(|live| live.lost.load(Relaxed));
        let status = json!({
            "node": self.node,
            "state": state,
            "requests_file": self.args.requests,
            "requests_file_error": self.file_error,
            "requests": requests,
            "pods": pods,
            "files": {
                "count": files.len(),
                "bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
            },
            "calls": calls,
            "drops": drops,
            "traces_ended": self.totals.ended,
            "errors": self.errors,
        });
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// `path`, or `path` with `-2`, `-3` ... before `.kt` when a file of that name is there (a
/// request restarted within the second).
fn free_path(path: PathBuf) -> PathBuf {
    if fs::symlink_metadata(&path).is_err() {
        return path;
    }
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    (2..)
        .map(|n| path.with_file_name(format!("{stem}-{n}.kt")))
        .find(|candidate| fs::symlink_metadata(candidate).is_err())
        .expect("some name is free")
}

/// Runs one trace to its end on this thread; its status lines go to the agent's stderr,
/// labelled.
fn run_trace(options: &crate::session::TraceOptions, label: String) -> Ended {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start an event loop: {err}"))?;
    let mut status = LabelledLines {
        label,
        pending: Vec::new(),
    };
    let traced = runtime
        .block_on(trace(options, Box::new(io::sink()), &mut status))
        .map_err(|err| err.to_string())?;
    let summary = traced.summary.render(&traced.table);
    if let Some(err) = traced.summary.recording_failed {
        return Err(format!("the recording failed: {err}"));
    }
    Ok((traced.summary.stop, summary))
}

/// A trace's status lines on the agent's stderr, each labelled with its request and pod.
struct LabelledLines {
    label: String,
    pending: Vec<u8>,
}

impl Write for LabelledLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let line = line.strip_prefix("koolkit-trace: ").unwrap_or(line);
            if !line.is_empty() {
                say("agent: ", format_args!("{}: {line}", self.label));
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
