//! Raw `bpf(2)` calls for uprobe-multi links (kernel 6.6+), which aya 0.14 has no API for.
//!
//! One uprobe-multi link attaches a program to any number of offsets in one file, each with its
//! own cookie, in a few milliseconds, and detaches them as fast when its fd closes. The
//! perf-event links aya makes cost ~0.1 s each to detach on this kernel (DESIGN.md).
//!
//! The programs must be loaded with expected attach type `BPF_TRACE_UPROBE_MULTI`, which aya
//! cannot do either, so this module also loads instructions that `probes::ebpf_object` relocated
//! against aya's maps.
//!
//! This is one of the few rooms where unsafe code lives: every block says why it is sound.
//! Nothing else here may do more than fill `bpf_attr` and call the syscall.

use std::{
    ffi::{CStr, CString},
    io, mem,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya_obj::generated::{
    BPF_F_UPROBE_MULTI_RETURN, bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_info,
    bpf_prog_type,
};

/// Calls `bpf(cmd, attr)`, returning the new fd the command creates.
pub(super) fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` that outlives the call; every
    // pointer stored in it refers to memory the caller keeps alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::other("bpf() returned a bad fd"))?;
    // SAFETY: on success these commands return a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a C union of integer fields; all-zero is its documented default.
    unsafe { mem::zeroed() }
}

/// A failed program load, with the verifier's log when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", if log.is_empty() { String::new() } else { format!("\nverifier log:\n{log}") })]
pub struct LoadError {
    #[source]
    pub source: io::Error,
    pub log: String,
}

/// Loads `insns` as a kprobe-type program that uprobe-multi links accept.
pub fn load_program(
    name: &str,
    insns: &[bpf_insn],
    license: &CStr,
    kernel_version: u32,
    sleepable: bool,
) -> Result<OwnedFd, LoadError> {
    /// `BPF_F_SLEEPABLE`: the program may fault user pages in.
    const SLEEPABLE: u32 = 1 << 4;
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = zeroed_attr();
        // SAFETY: writing plain integers into the `BPF_PROG_LOAD` member of the union.
        let load = unsafe { &mut attr.__bindgen_anon_3 };
        load.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
        load.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        if sleepable {
            load.prog_flags = SLEEPABLE;
        }
        load.insns = insns.as_ptr() as u64;
        load.insn_cnt = insns.len() as u32;
        load.license = license.as_ptr() as u64;
        load.kern_version = kernel_version;
        for (dst, src) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if let Some(log) = log {
            load.log_level = 1;
            load.log_buf = log.as_mut_ptr() as u64;
            load.log_size = log.len() as u32;
        }
        bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    load(None).or_else(|first| {
        // Load again with a log only on failure: logging slows every successful load.
        let mut log = vec![0u8; 1 << 20];
        match load(Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(LoadError {
                    source: first,
                    log: String::from_utf8_lossy(&log[..end]).trim_end().to_string(),
                })
            }
        }
    })
}

/// Which probe a link makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Entry,
    Return,
}

/// Attaches `program` at `offsets` of the file at `path`, with `cookies[i]` for `offsets[i]`,
/// firing only in process `pid` if given. Closing the returned fd detaches every site.
pub fn attach(
    program: BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    cookies: &[u64],
    pid: Option<u32>,
    kind: LinkKind,
) -> io::Result<OwnedFd> {
    if offsets.len() != cookies.len() || offsets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "uprobe-multi needs one cookie per offset and at least one offset",
        ));
    }
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the `BPF_LINK_CREATE` member of the union.
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
    link.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    // SAFETY: as above, for the uprobe-multi member of the link-create union.
    let multi = unsafe { &mut link.__bindgen_anon_3.uprobe_multi };
    multi.path = path.as_ptr() as u64;
    multi.offsets = offsets.as_ptr() as u64;
    multi.cookies = cookies.as_ptr() as u64;
    multi.cnt = offsets.len() as u32;
    multi.flags = match kind {
        LinkKind::Entry => 0,
        LinkKind::Return => BPF_F_UPROBE_MULTI_RETURN,
    };
    multi.pid = pid.unwrap_or(0);
    bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// Whether the kernel has uprobe-multi links. Asks it to attach `program` to `/`: a kernel
/// that knows uprobe-multi checks the path and refuses a directory with `EBADF`; one that
/// does not refuses the attach type itself with `EINVAL`.
pub fn kernel_supports(program: BorrowedFd<'_>) -> bool {
    match attach(program, Path::new("/"), &[0], &[0], None, LinkKind::Entry) {
        Ok(_) => true,
        Err(err) => err.raw_os_error() == Some(libc::EBADF),
    }
}

/// How many times `program` has run while the kernel counted (`BPF_ENABLE_STATS`, or the
/// `kernel.bpf_stats_enabled` sysctl): `bpf_prog_info.run_cnt`.
pub fn run_count(program: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: `bpf_prog_info` is a C struct of integers and pointers; all-zero asks for
    // nothing but the fixed fields.
    let mut info: bpf_prog_info = unsafe { mem::zeroed() };
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the `BPF_OBJ_GET_INFO_BY_FD` member of the union.
    let get = unsafe { &mut attr.info };
    get.bpf_fd = program.as_raw_fd() as u32;
    get.info_len = mem::size_of::<bpf_prog_info>() as u32;
    get.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: `attr` is initialised and `info` outlives the call, which writes at most
    // `info_len` bytes into it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::from_mut(&mut attr),
            mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.run_cnt)
}
