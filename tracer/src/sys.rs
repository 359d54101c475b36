//! Thin wrappers over the few libc calls std does not offer: the monotonic clock the kernel
//! stamps events with, local time for human output, and pidfds to learn when a target exits.
//! One of the rooms where unsafe code lives.

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// A moment in the local time zone, as `localtime_r` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Seconds east of UTC.
    pub utc_offset: i64,
    /// The zone's abbreviation (`CET`, `UTC`).
    pub zone: String,
}

/// The local time at `unix_secs` (UTC when the zone cannot be read).
pub fn local_time(unix_secs: i64) -> LocalTime {
    let t: libc::time_t = unix_secs;
    // SAFETY: `tm` is plain data; `localtime_r` fills it and is thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if !ok {
        // SAFETY: as above; gmtime_r cannot fail for a time_t of this range.
        unsafe { libc::gmtime_r(&t, &mut tm) };
        tm.tm_gmtoff = 0;
        tm.tm_zone = std::ptr::null();
    }
    let zone = if tm.tm_zone.is_null() {
        "UTC".to_string()
    } else {
        // SAFETY: a non-NULL `tm_zone` points at a NUL-terminated name owned by libc.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec as u32,
        utc_offset: tm.tm_gmtoff,
        zone,
    }
}

/// Maps `file` read-only and private.
///
/// The caller vouches that nobody truncates the file while the map lives: a page past a new
/// end of file faults (SIGBUS) on access. Binaries are replaced by rename, which leaves the
/// map intact, and trace files are only appended to.
pub fn map_read_only(file: &std::fs::File) -> io::Result<memmap2::Mmap> {
    // SAFETY: a read-only private map never aliases memory Rust writes; the truncation hazard
    // is the caller's, as documented above.
    unsafe { memmap2::Mmap::map(file) }
}

/// Mounts tracefs at `/sys/kernel/tracing` (what systemd does at boot on most distributions),
/// for the tracepoints that follow forks.
pub fn mount_tracefs() -> io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated string literal; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A pidfd for `pid`: readable once the process exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Raises this process's soft limit of open files to its hard limit and returns it: a
/// perf-event probe is an fd, and thousands of them pass the usual soft limit of 1,024.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit to the hard one needs no
        // privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Forks a child that shares every open file of this process and holds them until this
/// process exits, then exits too: the kernel's release of those files (slow for perf-event
/// uprobe links) then happens in the child, after we are gone.
pub fn release_fds_in_child() -> io::Result<()> {
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for the two fds.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fork has no memory preconditions; what the child may do is below.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: the child only makes async-signal-safe calls (signal, open, dup2, close,
        // read, _exit) on fds and a stack byte it owns, and never returns into Rust code.
        0 => unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            // Let go of standard streams, so nobody reading our output waits for this child.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
            }
            libc::close(pipe[1]);
            // Returns 0 (end of file) once the parent is gone and its write end closed.
            let mut byte = 0u8;
            while libc::read(pipe[0], (&raw mut byte).cast(), 1) < 0 {}
            libc::_exit(0)
        },
        _ => {
            // SAFETY: closing our copy of the read end; the write end stays open until we exit.
            unsafe { libc::close(pipe[0]) };
            Ok(())
        }
    }
}

/// Registers a file descriptor this value owns with tokio's reactor.
///
/// Only for types that own their fd for their whole life and always report the same one:
/// `OwnedFd` and aya's `RingBuf<MapData>` (which owns its map fd).
pub trait OwnsItsFd: std::os::fd::AsRawFd {}
impl OwnsItsFd for OwnedFd {}
impl OwnsItsFd for aya::maps::RingBuf<aya::maps::MapData> {}

/// An `AsyncFd` watching `inner` for readability.
pub fn async_readable<T: OwnsItsFd>(inner: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `OwnsItsFd` types own an open fd until dropped and always return that same fd,
    // which is what tokio needs for the life of the `AsyncFd` that now owns them.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }
    .map_err(|err| err.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
        // Later than 2020-01-01.
        assert!(realtime_ns() > 1_577_836_800 * 1_000_000_000);
    }

    #[test]
    fn local_time_is_a_real_date() {
        let t = local_time(1_700_000_000);
        assert!(t.hour < 24 && t.minute < 60 && t.second < 61);
        // 2023-11-14T22:13:20Z, give or take a day for the zone.
        assert_eq!((t.year, t.month), (2023, 11));
        assert!((14..=15).contains(&t.day), "{t:?}");
        assert!(t.utc_offset.abs() <= 14 * 3600 && !t.zone.is_empty());
    }

    #[test]
    fn pidfd_of_a_dead_pid_fails() {
        assert!(pidfd_open(std::process::id()).is_ok());
        assert!(pidfd_open(4_194_305).is_err());
    }
}
