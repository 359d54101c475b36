//! Perf-event uprobe links made with raw `perf_event_open(2)` and `bpf(2)` calls, from several
//! threads at once: the kernels without uprobe-multi (before 6.6) get one link per probe, and
//! thousands of them made one after another take seconds (DESIGN.md, "What a probe costs").
//! aya's `UProbe::attach` takes its program by `&mut`, so it cannot be called in parallel.
//!
//! A probe is a perf event of the `uprobe` PMU (its type and the bit that makes a return probe
//! are read from sysfs), with the file's path in `config1` and the offset in `config2`. The
//! program goes onto it with a `BPF_PERF_EVENT` link carrying the probe's cookie where the
//! kernel has attach cookies (5.15+, which brought those links too), else with the
//! `PERF_EVENT_IOC_SET_BPF` ioctl (5.10), where the perf event's own fd holds the attach.
//! Either way closing the returned fd detaches the probe.
//!
//! This is one of the few rooms where unsafe code lives: every block says why it is sound.

use std::{
    ffi::CStr,
    fs, io, mem,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use aya_obj::generated::{
    PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF, PERF_FLAG_FD_CLOEXEC, bpf_attach_type, bpf_cmd,
    perf_event_attr,
};

use super::uprobe_multi::{bpf_fd, zeroed_attr};

const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";

/// The kernel's `uprobe` PMU: the perf event type of uprobes and the `config` bit of returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UprobePmu {
    event_type: u32,
    retprobe_bit: u32,
}

impl UprobePmu {
    /// Reads the PMU from sysfs; an error says the kernel has no uprobes (CONFIG_UPROBES off).
    pub fn read() -> io::Result<Self> {
        let read = |file: &str| {
            let path = Path::new(UPROBE_PMU).join(file);
            fs::read_to_string(&path)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
        };
        let event_type = read("type")?.trim().parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "bad uprobe PMU type in sysfs")
        })?;
        let retprobe_bit = parse_config_bit(&read("format/retprobe")?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "bad uprobe PMU retprobe format in sysfs",
            )
        })?;
        Ok(Self {
            event_type,
            retprobe_bit,
        })
    }
}

/// The bit of a one-bit format file: `config:0` is bit 0 of `config`.
fn parse_config_bit(format: &str) -> Option<u32> {
    let bit = format.trim().strip_prefix("config:")?;
    let bit: u32 = bit.parse().ok()?;
    (bit < 64).then_some(bit)
}

/// What every probe of one batch shares.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub pmu: UprobePmu,
    pub program: BorrowedFd<'a>,
    /// The probed file, as the kernel should open it.
    pub path: &'a CStr,
    /// A return probe (uretprobe) rather than an entry probe.
    pub is_return: bool,
    /// Fire only in this process.
    pub pid: Option<u32>,
    /// Link with `BPF_LINK_CREATE` and hand each probe its cookie (5.15+); else the ioctl,
    /// and no cookie.
    pub with_cookies: bool,
}

/// One probe the kernel did not make.
#[derive(Debug)]
pub struct Failed {
    pub offset: u64,
    pub cookie: u64,
    pub error: io::Error,
}

/// What became of a batch: the fds that hold the probes, and the probes that failed. After a
/// failure other than `refusable`, the remaining probes are not tried.
#[derive(Debug, Default)]
pub struct Outcome {
    pub links: Vec<OwnedFd>,
    pub failed: Vec<Failed>,
}

/// Makes a probe at every `(offset, cookie)` of `sites` from `threads` threads; `progress`
/// hears the number done so far every few tens of milliseconds and at the end. An error for
/// which `refusable` says yes (the kernel cannot probe that instruction) is noted and the rest
/// go on; any other stops the batch.
pub fn attach_parallel(
    batch: Batch<'_>,
    sites: &[(u64, u64)],
    threads: usize,
    refusable: fn(&io::Error) -> bool,
    progress: &mut dyn FnMut(usize),
) -> Outcome {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let worker = || {
        let mut outcome = Outcome::default();
        while !stop.load(Ordering::Relaxed) {
            let Some(&(offset, cookie)) = sites.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match attach_one(batch, offset, cookie) {
                Ok(fd) => outcome.links.push(fd),
                Err(error) => {
                    if !refusable(&error) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    outcome.failed.push(Failed {
                        offset,
                        cookie,
                        error,
                    });
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    };
    let threads = threads.clamp(1, sites.len().max(1));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        while !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            progress(done.load(Ordering::Relaxed));
        }
        let mut all = Outcome::default();
        for w in workers {
            // A worker only panics where the whole tracer would: pass it on.
            let outcome = w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            all.links.extend(outcome.links);
            all.failed.extend(outcome.failed);
        }
        progress(done.load(Ordering::Relaxed));
        all
    })
}

/// Makes one probe: the perf event, then the program on it.
fn attach_one(batch: Batch<'_>, offset: u64, cookie: u64) -> io::Result<OwnedFd> {
    let event = open_uprobe_event(batch.pmu, batch.path, offset, batch.is_return, batch.pid)?;
    if batch.with_cookies {
        // The link holds the perf event; our fd of it may close.
        link_create(batch.program, event.as_fd(), cookie)
    } else {
        set_bpf_and_enable(event.as_fd(), batch.program)?;
        Ok(event)
    }
}

/// `perf_event_open` of a uprobe at `offset` of `path`, for process `pid` or for every process.
fn open_uprobe_event(
    pmu: UprobePmu,
    path: &CStr,
    offset: u64,
    is_return: bool,
    pid: Option<u32>,
) -> io::Result<OwnedFd> {
    // SAFETY: `perf_event_attr` is a C struct of integers and unions of integers; all-zero is
    // its documented default.
    let mut attr: perf_event_attr = unsafe { mem::zeroed() };
    attr.type_ = pmu.event_type;
    attr.size = mem::size_of::<perf_event_attr>() as u32;
    if is_return {
        attr.config = 1 << pmu.retprobe_bit;
    }
    attr.__bindgen_anon_3.config1 = path.as_ptr() as u64;
    attr.__bindgen_anon_4.config2 = offset;
    // A uprobe's program runs on whichever CPU hits it; a process-wide event takes one CPU
    // slot only because perf wants one (as aya and libbpf do).
    let (pid, cpu) = match pid {
        Some(pid) => (pid as libc::c_int, -1),
        None => (-1, 0),
    };
    // SAFETY: `attr` is initialised and outlives the call; `config1` points at `path`, a NUL
    // terminated string the caller keeps alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            std::ptr::from_ref(&attr),
            pid,
            cpu,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd =
        i32::try_from(ret).map_err(|_| io::Error::other("perf_event_open() returned a bad fd"))?;
    // SAFETY: on success perf_event_open returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_LINK_CREATE` of `program` on perf event `event`, with `cookie`.
fn link_create(program: BorrowedFd<'_>, event: BorrowedFd<'_>, cookie: u64) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the `BPF_LINK_CREATE` member of the union.
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
    link.__bindgen_anon_2.target_fd = event.as_raw_fd() as u32;
    link.attach_type = bpf_attach_type::BPF_PERF_EVENT as u32;
    link.__bindgen_anon_3.perf_event.bpf_cookie = cookie;
    bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// Puts `program` on perf event `event` and enables it: the attach of kernels without perf
/// links (before 5.15).
fn set_bpf_and_enable(event: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    for (request, argument) in [
        (PERF_EVENT_IOC_SET_BPF, program.as_raw_fd() as libc::c_ulong),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: both requests take an integer argument (a program fd, or nothing) and touch
        // no memory of ours; `event` is an open perf event fd.
        let ret = unsafe { libc::ioctl(event.as_raw_fd(), request as libc::Ioctl, argument) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_file_names_its_bit() {
        assert_eq!(parse_config_bit("config:0\n"), Some(0));
        assert_eq!(parse_config_bit("config:63"), Some(63));
        assert_eq!(parse_config_bit("config:64"), None);
        assert_eq!(parse_config_bit("config1:0"), None);
        assert_eq!(parse_config_bit("config:0-3"), None);
    }
}
