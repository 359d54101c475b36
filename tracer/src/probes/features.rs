//! What this kernel offers the tracer, each feature asked of the kernel itself (a tiny program
//! loaded, a map created, a file looked for), never read from the version string: distribution
//! kernels backport features and leave others out. [`Features::probe`] asks once; the attach
//! mode is chosen from it ([`Features::mode`]); `koolkit-trace doctor` prints it with what each
//! missing feature costs.

use std::{os::fd::AsFd as _, path::Path};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported},
};
use serde::Serialize;

use super::{AttachMode, uprobe_multi};

/// One feature: whether the kernel has it, and what its absence costs.
#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub present: bool,
    /// Where it comes from: the Linux release that brought it upstream (distributions may
    /// backport), or what else it needs.
    pub since: &'static str,
    /// What the user gets without it.
    pub without: &'static str,
}

/// What the kernel offers.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub kernel: String,
    pub features: Vec<Feature>,
}

/// The feature names, as [`Features::has`] takes them.
pub mod name {
    pub const BPF: &str = "bpf";
    pub const RING_BUFFER: &str = "ring buffer";
    pub const UPROBE_PMU: &str = "uprobes";
    pub const ATTACH_COOKIES: &str = "attach cookies";
    pub const UPROBE_MULTI: &str = "uprobe-multi links";
    pub const MULTI_PID_FILTER: &str = "uprobe-multi process filter";
    pub const SLEEPABLE_UPROBES: &str = "sleepable uprobe programs";
    pub const NS_PID: &str = "pid namespace helper";
    pub const BPF_LOOP: &str = "bpf_loop";
    pub const BTF: &str = "kernel BTF";
    pub const FORK_TRACEPOINT: &str = "fork tracepoint";
}

impl Features {
    /// Asks the kernel for every feature.
    pub fn probe() -> Self {
        let helper =
            |helper: BpfHelper| is_helper_supported(ProgramType::KProbe, helper).unwrap_or(false);
        let (multi, sleepable) = uprobe_multi_support();
        let pid_filter = multi && multi_pid_filter_is_per_process() == Some(true);
        let feature = |name, present, since, without| Feature {
            name,
            present,
            since,
            without,
        };
        let features = vec![
            feature(
                name::BPF,
                helper(BpfHelper::BPF_FUNC_ktime_get_ns),
                "Linux 4.1",
                "nothing can be traced: BPF is off, or CAP_BPF and CAP_PERFMON (or root) are missing",
            ),
            feature(
                name::RING_BUFFER,
                is_map_supported(MapType::RingBuf).unwrap_or(false),
                "Linux 5.8",
                "nothing can be traced: calls travel through a BPF ring buffer",
            ),
            feature(
                name::UPROBE_PMU,
                Path::new("/sys/bus/event_source/devices/uprobe").exists(),
                "Linux 4.17",
                "nothing can be traced: no uprobe PMU (CONFIG_UPROBES off, or /sys not mounted)",
            ),
            feature(
                name::ATTACH_COOKIES,
                attach_cookies(),
                "Linux 5.15",
                "probes are told apart by address: a process's first calls, until the tracer \
                 has read its memory map (within a tenth of a second), are counted as lost, and \
                 calls deeper than 32 traced frames on one thread are not traced",
            ),
            feature(
                name::UPROBE_MULTI,
                multi,
                "Linux 6.6",
                "perf-event links, one per probe: slower attach and detach (detached by a child \
                 process after exit, ~0.1 s a probe on some kernels)",
            ),
            feature(
                name::MULTI_PID_FILTER,
                pid_filter,
                "Linux 6.10, and stable kernels since",
                "the kernel's --pid filter on uprobe-multi links is not relied on (before the \
                 fix it passes the process's main thread only): the programs check the process \
                 themselves, and a probe in a shared library briefly stops every process that \
                 maps it",
            ),
            feature(
                name::SLEEPABLE_UPROBES,
                sleepable,
                "Linux 6.6",
                "arguments in memory the process has not touched yet read as unreadable",
            ),
            feature(
                name::NS_PID,
                helper(BpfHelper::BPF_FUNC_get_ns_current_pid_tgid),
                "Linux 5.7",
                "inside a container's pid namespace only --pid of the host's ids works",
            ),
            feature(
                name::BPF_LOOP,
                helper(BpfHelper::BPF_FUNC_loop),
                "Linux 5.17",
                "nothing today (the programs use bounded loops)",
            ),
            feature(
                name::BTF,
                Path::new("/sys/kernel/btf/vmlinux").exists(),
                "Linux 5.4",
                "a traced process's exit status is not known (only that it exited)",
            ),
            feature(
                name::FORK_TRACEPOINT,
                fork_tracepoint_visible(),
                "any, with tracefs mounted",
                "--children and groups find forked workers by asking every second, missing \
                 their first calls (mount tracefs: mount -t tracefs nodev /sys/kernel/tracing)",
            ),
        ];
        Self {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            features,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.present)
    }

    /// How probes are attached here when the user does not choose.
    pub fn mode(&self) -> AttachMode {
        if self.has(name::UPROBE_MULTI) {
            AttachMode::Multi
        } else {
            AttachMode::Perf
        }
    }
}

/// Whether the kernel attaches uprobe-multi links, and runs sleepable programs on them: asked
/// with a program that only returns 0, so that no verifier of an older kernel sees the real
/// ones for an attach type it does not know.
pub fn uprobe_multi_support() -> (bool, bool) {
    static SUPPORT: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
    *SUPPORT.get_or_init(ask_uprobe_multi)
}

/// Whether perf-event links hand programs their attach cookie (`bpf_get_attach_cookie`).
/// `KOOLKIT_TRACE_NO_COOKIES` set says no, to run the path of kernels before 5.15 here.
pub fn attach_cookies() -> bool {
    static COOKIES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COOKIES.get_or_init(|| {
        std::env::var_os("KOOLKIT_TRACE_NO_COOKIES").is_none()
            && is_helper_supported(ProgramType::KProbe, BpfHelper::BPF_FUNC_get_attach_cookie)
                .unwrap_or(false)
    })
}

/// Whether a uprobe-multi link's pid filter lets the process's other threads through (fixed
/// in 6.10: before, it compared the thread). Asked once: the trivial program is attached to a
/// function of this binary for this process, called from a new thread, and the kernel's run
/// count says whether the program ran. `None` when it cannot be told (no uprobe-multi, or the
/// kernel would not count runs: `BPF_ENABLE_STATS` needs CAP_SYS_ADMIN).
pub fn multi_pid_filter_is_per_process() -> Option<bool> {
    static PER_PROCESS: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *PER_PROCESS.get_or_init(ask_multi_pid_filter)
}

/// Where the probe of [`multi_pid_filter_is_per_process`] goes: a function of its own, so
/// that no other code of the tracer stops there.
#[inline(never)]
fn koolkit_feature_probe_target(value: u64) -> u64 {
    std::hint::black_box(value).wrapping_add(1)
}

fn ask_multi_pid_filter() -> Option<bool> {
    multi_link_fires_in_a_new_thread(std::process::id())
}

/// Whether the trivial program, linked through uprobe-multi to a function of this binary with
/// pid filter `pid`, runs when a new thread of this process calls the function: with `pid` this
/// process, where the kernel's filter lets the process's other threads through; never for
/// another process's pid.
pub fn multi_link_fires_in_a_new_thread(pid: u32) -> Option<bool> {
    if !uprobe_multi_support().0 {
        return None;
    }
    let program = trivial_program(false).ok()?;
    let _counting = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|err| log::debug!("cannot count program runs: {err}"))
        .ok()?;
    let target: fn(u64) -> u64 = koolkit_feature_probe_target;
    let address = target as usize as u64;
    let offset = own_file_offset(address)?;
    let link = uprobe_multi::attach(
        program.as_fd(),
        Path::new("/proc/self/exe"),
        &[offset],
        &[0],
        Some(pid),
        uprobe_multi::LinkKind::Entry,
    )
    .map_err(|err| log::debug!("probing the uprobe-multi pid filter: {err}"))
    .ok()?;
    let before = uprobe_multi::run_count(program.as_fd()).ok()?;
    // Called through a pointer the compiler cannot see through: never inlined away.
    std::thread::spawn(move || std::hint::black_box(target)(1))
        .join()
        .ok()?;
    let after = uprobe_multi::run_count(program.as_fd()).ok()?;
    drop(link);
    Some(after > before)
}

/// The offset in this binary's file of the code at `address`.
fn own_file_offset(address: u64) -> Option<u64> {
    crate::target::own_mapping(address)
        .filter(|mapping| mapping.executable)
        .map(|mapping| mapping.file_offset)
}

/// `r0 = 0; exit`, loaded for uprobe-multi links.
fn trivial_program(sleepable: bool) -> Result<std::os::fd::OwnedFd, uprobe_multi::LoadError> {
    let instruction = |code: u8| aya_obj::generated::bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: aya_obj::generated::bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm: 0,
    };
    let insns = [instruction(0xb7), instruction(0x95)];
    uprobe_multi::load_program("koolkit_probe", &insns, c"GPL", 0, sleepable)
}

fn ask_uprobe_multi() -> (bool, bool) {
    let load = trivial_program;
    let Ok(plain) = load(false) else {
        return (false, false);
    };
    if !uprobe_multi::kernel_supports(plain.as_fd()) {
        return (false, false);
    }
    let sleepable = load(true).is_ok_and(|fd| uprobe_multi::kernel_supports(fd.as_fd()));
    (true, sleepable)
}

/// Whether `sched:sched_process_fork` can be read from tracefs, where the programs that follow
/// forks find their field offsets.
fn fork_tracepoint_visible() -> bool {
    super::sched_format_paths("sched_process_fork")
        .iter()
        .any(|path| Path::new(path).exists())
}

/// Without any of these nothing can be traced.
pub const ESSENTIAL: [&str; 3] = [name::BPF, name::RING_BUFFER, name::UPROBE_PMU];

/// `koolkit-trace doctor`'s text: the kernel, each feature, the mode chosen.
pub fn render(features: &Features) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Kernel {}", features.kernel);
    for feature in &features.features {
        let _ = writeln!(
            out,
            "  {} {:<26} ({})",
            if feature.present { "yes" } else { " no" },
            feature.name,
            feature.since
        );
        if !feature.present {
            let _ = writeln!(out, "        without it: {}", feature.without);
        }
    }
    let essential = ESSENTIAL;
    let missing: Vec<&str> = essential
        .iter()
        .copied()
        .filter(|name| !features.has(name))
        .collect();
    if missing.is_empty() {
        let _ = writeln!(out, "Probes attach with {}.", features.mode());
    } else {
        let _ = writeln!(
            out,
            "koolkit-trace cannot trace here: no {}.",
            missing.join(", no ")
        );
    }
    out
}
