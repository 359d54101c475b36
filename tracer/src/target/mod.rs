//! What to trace: one process (`--pid`) or every process running a binary (`--binary`), and
//! the object files a process maps.
//!
//! Objects are always opened through `/proc/PID/root/...` (or `/proc/PID/map_files/...` when
//! the file was deleted or replaced), never through the host path: the process may live in
//! another mount namespace, and a replaced binary is not the one it runs.

use std::{
    fs,
    path::{Path, PathBuf},
};

pub(crate) mod cgroup;
pub(crate) mod cri;
pub(crate) mod membership;
pub(crate) mod pods;

use crate::error::{Error, Result};

/// The target of a trace, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One process and every object it maps.
    Process { pid: u32 },
    /// Every process, present and future, that runs or maps this file.
    Binary { path: PathBuf },
    /// The processes of a container, of pods or of the tracer's pid namespace, lead first:
    /// their functions are found in the objects any of them maps, and a
    /// [`membership::Membership`] finds those that join later.
    Processes { pids: Vec<u32> },
}

impl Target {
    /// The pid the kernel should filter on, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process { pid } => Some(*pid),
            Self::Binary { .. } | Self::Processes { .. } => None,
        }
    }

    /// Checks the target exists now.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Process { pid } => process_exists(*pid),
            Self::Processes { pids } => match pids.first() {
                Some(&lead) => process_exists(lead),
                None => Err(Error::Usage("no process to trace".into())),
            },
            Self::Binary { path } => match fs::metadata(path) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => Err(Error::Usage(format!(
                    "{} is not a regular file",
                    path.display()
                ))),
                Err(source) => Err(Error::io(path, source)),
            },
        }
    }
}

/// A text file of `/proc`, whatever bytes it holds: a process's name (in `status` and
/// `stat`) is its file name, which need not be UTF-8.
pub(crate) fn read_proc_text(path: &str) -> std::io::Result<String> {
    Ok(String::from_utf8_lossy(&fs::read(path)?).into_owned())
}

/// Why process `pid` cannot be traced, if it cannot: it does not exist, is a thread of
/// another process, has exited (a zombie), or is a kernel thread.
pub fn process_exists(pid: u32) -> Result<()> {
    if pid == 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let Ok(status) = read_proc_text(&format!("/proc/{pid}/status")) else {
        return Err(Error::NoSuchProcess { pid });
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    if let Some(tgid) = field("Tgid:").and_then(|t| t.parse::<u32>().ok())
        && tgid != pid
    {
        return Err(Error::Usage(format!(
            "{pid} is a thread of process {tgid}: trace the process (--pid {tgid})"
        )));
    }
    if field("State:").is_some_and(|state| state.starts_with('Z')) {
        return Err(Error::Usage(format!(
            "process {pid} is a zombie: it has exited and only waits for its parent to reap it"
        )));
    }
    if is_kernel_thread(pid) {
        return Err(Error::Usage(format!(
            "process {pid} is a kernel thread: it runs no user-space code to trace"
        )));
    }
    Ok(())
}

/// Whether `pid` is a kernel thread (`PF_KTHREAD` in the flags of `/proc/PID/stat`).
pub(crate) fn is_kernel_thread(pid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    stat_fields(pid)
        .and_then(|fields| fields.get(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces and
/// parentheses): `state` is field 0, `ppid` field 1, `flags` field 6.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = read_proc_text(&format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The parent of process `pid`, as its `/proc/PID/stat` names it.
fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Every process below `pid` (children, their children, ...), from the parents
/// `/proc/*/stat` names.
pub fn descendants(pid: u32) -> Vec<u32> {
    descendants_of(&[pid])
}

/// Every process below any of `roots` (not the roots themselves), from one walk of the
/// parents `/proc/*/stat` names.
pub fn descendants_of(roots: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|child| Some((child, parent_of(child)?)))
        .collect();
    let mut found = roots.to_vec();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        for &(child, _) in parents.iter().filter(|(_, ppid)| *ppid == parent) {
            if !found.contains(&child) {
                found.push(child);
            }
        }
        next += 1;
    }
    found.split_off(roots.len())
}

/// The processes of the container whose id is `id` or starts with it (at least 4 hex digits):
/// (its full id, its processes, the root of their tree first), from each process's cgroups.
/// Fails when no container or more than one has such an id.
pub fn container_processes(id: &str) -> Result<(String, Vec<u32>)> {
    let wanted = id.to_ascii_lowercase();
    if wanted.len() < 4 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Usage(format!(
            "--container {id}: a container id is hex digits, at least 4 of them (crictl ps, \
             docker ps or ctr task ls show them)"
        )));
    }
    let found: Vec<(String, u32)> = cgroup_identities()
        .filter_map(|(pid, identity)| Some((identity.container?, pid)))
        .filter(|(container, _)| container.starts_with(&wanted))
        .collect();
    let mut ids: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(Error::Usage(format!(
            "no running container has an id starting with {id} (no process's cgroup names it)"
        ))),
        [one] => {
            let full = (*one).to_string();
            let pids: Vec<u32> = found.iter().map(|(_, pid)| *pid).collect();
            Ok((full, tree_roots_first(pids)))
        }
        many => Err(Error::Usage(format!(
            "--container {id} names {} containers ({}): give more of its id",
            many.len(),
            many.iter().map(|c| &c[..12]).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process with what its cgroups say of it (its container and pod).
pub(crate) fn cgroup_identities() -> impl Iterator<Item = (u32, cgroup::CgroupIdentity)> {
    all_pids().into_iter().filter_map(|pid| {
        let text = read_proc_text(&format!("/proc/{pid}/cgroup")).ok()?;
        Some((pid, cgroup::identity(&text)))
    })
}

/// `pids` with those whose parent is not among them (the roots of their trees) first,
/// lowest first.
pub(crate) fn tree_roots_first(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_unstable();
    let (roots, rest): (Vec<u32>, Vec<u32>) = pids
        .iter()
        .partition(|&&pid| parent_of(pid).is_none_or(|p| !pids.contains(&p)));
    roots.into_iter().chain(rest).collect()
}

/// A file a process maps with execute permission: a place where uprobes can go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedObject {
    /// The path as the process sees it (from `/proc/PID/maps`).
    pub path: String,
    /// A path that opens the same file from here.
    pub open_path: PathBuf,
    /// Device and inode from the maps line: what the kernel's uprobes key on.
    pub dev: String,
    pub inode: u64,
    /// Whether this is the process's main executable.
    pub is_main: bool,
    /// For a file of an overlay mount (a container's image layers): the device and inode of
    /// the layer's file behind it, where the kernel's uprobes go. Two containers of one
    /// image map one such file through two overlay mounts of different devices.
    pub backing: Option<(u64, u64)>,
}

/// One line of `/proc/PID/maps` that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    /// Where in the file the mapping starts.
    pub offset: u64,
    pub dev: &'a str,
    pub inode: u64,
    pub path: &'a str,
}

/// Parses one line of `/proc/PID/maps`; `None` for anonymous and special mappings.
pub(crate) fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start();
    if inode == 0 || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev,
        inode,
        path,
    })
}

/// Where this process itself maps an address, from `/proc/self/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnMapping {
    /// The address's offset in the mapped file.
    pub file_offset: u64,
    pub executable: bool,
    /// Device and inode as the kernel shows them in the maps.
    pub dev: u64,
    pub inode: u64,
}

/// The file mapping of this process that holds `address`; `None` for anonymous memory.
pub(crate) fn own_mapping(address: u64) -> Option<OwnMapping> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps
        .lines()
        .filter_map(parse_maps_line)
        .find(|line| (line.start..line.end).contains(&address))?;
    Some(OwnMapping {
        file_offset: address - line.start + line.offset,
        executable: line.perms.contains('x'),
        dev: parse_dev(line.dev)?,
        inode: line.inode,
    })
}

/// How `/proc/PID/maps` marks a file replaced or deleted since it was mapped.
pub const DELETED_SUFFIX: &str = " (deleted)";

/// The copies of `path` that running processes still map after the file was replaced (`mv
/// new PATH`, a package upgrade): each distinct deleted inode once, opened through the
/// `/proc/PID/map_files` entry of one process that maps it. Uprobes live on inodes, so these
/// need probes of their own.
pub fn deleted_copies(path: &Path) -> Vec<(u32, MappedObject)> {
    let Some(wanted) = path.to_str() else {
        return Vec::new();
    };
    let mut copies: Vec<(u32, MappedObject)> = Vec::new();
    for pid in all_pids() {
        let Ok(maps) = read_maps(pid) else {
            continue;
        };
        for line in maps.lines().filter_map(parse_maps_line) {
            if !line.perms.contains('x') || line.path.strip_suffix(DELETED_SUFFIX) != Some(wanted) {
                continue;
            }
            if copies
                .iter()
                .any(|(_, o)| o.inode == line.inode && o.dev == line.dev)
            {
                continue;
            }
            copies.push((
                pid,
                MappedObject {
                    path: line.path.to_string(),
                    open_path: PathBuf::from(format!(
                        "/proc/{pid}/map_files/{:x}-{:x}",
                        line.start, line.end
                    )),
                    dev: line.dev.to_string(),
                    inode: line.inode,
                    is_main: true,
                    backing: None,
                },
            ));
        }
    }
    copies
}

/// Why `path` of process `pid` cannot be read, and what would let us.
fn not_permitted(pid: u32, path: &str) -> Error {
    let owner = read_proc_text(&format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let uids = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .to_string();
            uids.split_whitespace().nth(1)?.parse::<u32>().ok()
        });
    let us = crate::sys::effective_uid();
    let (what, hint) = if us == 0 {
        (
            format!("cannot read {path}: the kernel refuses it even to root"),
            format!(
                "process {pid} may be protected (not dumpable, or kept by a security module \
                 such as Yama, SELinux or AppArmor, or in another user namespace)"
            ),
        )
    } else if owner.is_some_and(|owner| owner != us) {
        (
            format!("cannot read {path}: process {pid} belongs to another user"),
            "reading its memory map and its files (/proc/PID/root) needs root, or \
             CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON"
                .to_string(),
        )
    } else {
        (
            format!("cannot read {path} of process {pid}"),
            "it is not dumpable or protected by a security module: reading it needs root, or \
             CAP_SYS_PTRACE besides CAP_BPF and CAP_PERFMON"
                .to_string(),
        )
    };
    Error::Privilege { what, hint }
}

/// `/proc/PID/maps` as text. Paths are bytes to the kernel: one that is not UTF-8 reads with
/// U+FFFD in it, and such a file is opened through `/proc/PID/map_files` (see
/// [`open_path_of`]), never by that path.
pub(crate) fn read_maps(pid: u32) -> Result<String> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read(&maps_path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        std::io::ErrorKind::PermissionDenied => not_permitted(pid, &maps_path),
        _ => Error::io(&maps_path, source),
    })?;
    Ok(String::from_utf8_lossy(&maps).into_owned())
}

/// The `major:minor` of a maps line as a device number.
pub(crate) fn parse_dev(dev: &str) -> Option<u64> {
    let (major, minor) = dev.split_once(':')?;
    let (major, minor) = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    Some(libc::makedev(major, minor))
}

/// A path that opens, from here, the file of maps line `line` of process `pid`: the path as
/// the process sees it under `/proc/PID/root` (a container's own mount namespace), else the
/// path itself (the kernel writes paths from the reader's root: a process that is only
/// chroot-ed shows host paths), else `/proc/PID/map_files` (a path that is not UTF-8, or
/// one no root reaches). The first whose device and inode are the mapping's.
fn open_path_of(pid: u32, line: &MapsLine<'_>, path: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let map_files = PathBuf::from(format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        line.start, line.end
    ));
    let wanted = parse_dev(line.dev).map(|dev| (dev, line.inode));
    let is_the_file = |candidate: &Path| {
        fs::metadata(candidate).is_ok_and(|meta| Some((meta.dev(), meta.ino())) == wanted)
    };
    if !path.contains(char::REPLACEMENT_CHARACTER) {
        let in_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
        if is_the_file(&in_root) {
            return in_root;
        }
        if is_the_file(Path::new(path)) {
            return PathBuf::from(path);
        }
    }
    map_files
}

/// `\040` and the other octal escapes of `/proc/PID/mountinfo`, decoded.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')),
                );
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For `path` (as the process sees it) on an overlay mount of `mountinfo`: the device and
/// inode of the file behind it, the first of the upper layer and then the lower layers that
/// holds it. None for other file systems, or where the layers are out of reach.
fn overlay_backing(mountinfo: &str, path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let inside = |point: &str| {
        point == "/"
            || path == point
            || path
                .strip_prefix(point)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    // The deepest mount that holds the path; later lines of one point shadow earlier ones.
    let (point, root, options) = mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let fields: Vec<&str> = mount.split(' ').collect();
            let mut fs_fields = fs.split(' ');
            let fs_type = fs_fields.next()?;
            let options = fs_fields.nth(1).unwrap_or("");
            Some((
                unescape_mountinfo(fields.get(4)?),
                unescape_mountinfo(fields.get(3)?),
                fs_type,
                options,
            ))
        })
        .filter(|(point, ..)| inside(point))
        .max_by_key(|(point, ..)| point.len())
        .filter(|(_, _, fs_type, _)| *fs_type == "overlay")
        .map(|(point, root, _, options)| (point, root, options))?;
    let relative = path
        .strip_prefix(point.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    let within = root.trim_start_matches('/');
    let option = |name: &str| {
        options
            .split(',')
            .find_map(|option| option.strip_prefix(name)?.strip_prefix('='))
            .map(unescape_mountinfo)
    };
    let upper = option("upperdir");
    let lowers = option("lowerdir").unwrap_or_default();
    let layers = upper
        .iter()
        .map(String::as_str)
        .chain(lowers.split(':').filter(|dir| !dir.is_empty()));
    for layer in layers {
        let file = Path::new(layer).join(within).join(relative);
        match fs::symlink_metadata(&file) {
            Ok(meta) if meta.is_file() => return Some((meta.dev(), meta.ino())),
            // A whiteout (a 0:0 character device) hides the lower layers' file.
            Ok(_) => return None,
            Err(_) => {}
        }
    }
    None
}

/// Faults in, in process `pid`, the read-only mappings of the file it maps at `path` (at most
/// `limit` bytes), by reading them through `/proc/PID/mem` as a debugger would. The programs'
/// reads never fault a page in, and a Go program's type names sit in pages it may not have
/// touched yet: read through once, they are there for every call. Returns the bytes read.
pub fn fault_in_read_only(pid: u32, path: &str, limit: u64) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let Ok(maps) = read_maps(pid) else {
        return 0;
    };
    let Ok(mem) = fs::File::open(format!("/proc/{pid}/mem")) else {
        return 0;
    };
    let mut buffer = vec![0u8; 1 << 20];
    let mut read = 0u64;
    for line in maps.lines().filter_map(parse_maps_line) {
        if line.perms != "r--p" || line.path != path {
            continue;
        }
        let mut at = line.start;
        while at < line.end && read < limit {
            let want = (line.end - at).min(buffer.len() as u64) as usize;
            match mem.read_at(&mut buffer[..want], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    at += n as u64;
                    read += n as u64;
                }
            }
        }
    }
    read
}

/// The objects process `pid` maps executable, main executable first, each once.
pub fn mapped_objects(pid: u32) -> Result<Vec<MappedObject>> {
    let maps = read_maps(pid)?;
    let exe_path = format!("/proc/{pid}/exe");
    let exe = match fs::read_link(&exe_path) {
        Ok(exe) => Some(exe),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(not_permitted(pid, &exe_path));
        }
        Err(_) => None,
    };
    // Lossy as the maps are, so a path that is not UTF-8 still matches.
    let exe = exe.map(|exe| exe.to_string_lossy().into_owned());
    let exe = exe
        .as_deref()
        .map(|exe| exe.trim_end_matches(DELETED_SUFFIX));

    let mountinfo = read_proc_text(&format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut objects: Vec<MappedObject> = Vec::new();
    for line in maps.lines().filter_map(parse_maps_line) {
        if !line.perms.contains('x') {
            continue;
        }
        if objects
            .iter()
            .any(|o| o.inode == line.inode && o.dev == line.dev)
        {
            continue;
        }
        let (path, deleted) = match line.path.strip_suffix(DELETED_SUFFIX) {
            Some(path) => (path, true),
            None => (line.path, false),
        };
        let open_path = if deleted {
            PathBuf::from(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                line.start, line.end
            ))
        } else {
            open_path_of(pid, &line, path)
        };
        objects.push(MappedObject {
            path: path.to_string(),
            open_path,
            dev: line.dev.to_string(),
            inode: line.inode,
            is_main: Some(path) == exe,
            backing: (!deleted)
                .then(|| overlay_backing(&mountinfo, path))
                .flatten(),
        });
    }
    objects.sort_by_key(|o| !o.is_main);
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_mappings_and_skips_the_rest() {
        let line = "7f3c1a400000-7f3c1a428000 r-xp 00028000 fe:01 1311 /usr/lib/x86_64-linux-gnu/libc.so.6";
        assert_eq!(
            parse_maps_line(line),
            Some(MapsLine {
                start: 0x7f3c1a400000,
                end: 0x7f3c1a428000,
                perms: "r-xp",
                offset: 0x28000,
                dev: "fe:01",
                inode: 1311,
                path: "/usr/lib/x86_64-linux-gnu/libc.so.6",
            })
        );
        assert_eq!(
            parse_maps_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]"),
            None
        );
        assert_eq!(
            parse_maps_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0"),
            None
        );
        assert_eq!(parse_maps_line("garbage"), None);
    }

    #[test]
    fn a_file_of_an_overlay_is_the_layer_file_behind_it() {
        use std::os::unix::fs::MetadataExt as _;
        let base = std::env::temp_dir().join(format!("koolkit-overlay-{}", std::process::id()));
        let (upper, lower1, lower2) = (base.join("up"), base.join("low 1"), base.join("low2"));
        for dir in [&upper, &lower1, &lower2] {
            fs::create_dir_all(dir.join("app")).unwrap();
        }
        fs::write(lower1.join("app/shop"), "lower one").unwrap();
        fs::write(lower2.join("app/shop"), "lower two").unwrap();
        fs::write(upper.join("app/copied"), "upper").unwrap();
        fs::write(lower2.join("app/copied"), "older").unwrap();
        let escaped = |p: &Path| p.display().to_string().replace(' ', "\\040");
        let mountinfo = format!(
            "47 1 0:25 / /dev rw - devtmpfs udev rw\n\
             71 47 0:39 / / rw,relatime - overlay overlay rw,lowerdir={}:{},upperdir={},workdir=/w\n\
             72 71 0:40 / /data rw - ext4 /dev/sdb rw\n",
            escaped(&lower1),
            escaped(&lower2),
            escaped(&upper)
        );
        let id = |p: PathBuf| {
            let meta = fs::metadata(p).unwrap();
            Some((meta.dev(), meta.ino()))
        };
        assert_eq!(
            overlay_backing(&mountinfo, "/app/shop"),
            id(lower1.join("app/shop"))
        );
        assert_eq!(
            overlay_backing(&mountinfo, "/app/copied"),
            id(upper.join("app/copied"))
        );
        assert_eq!(
            overlay_backing(&mountinfo, "/data/lib.so"),
            None,
            "not an overlay"
        );
        assert_eq!(overlay_backing(&mountinfo, "/app/missing"), None);
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn keeps_spaces_and_deleted_marker_in_paths() {
        let line = "1000-2000 r-xp 00000000 08:01 42 /opt/my app/bin (deleted)";
        assert_eq!(
            parse_maps_line(line).unwrap().path,
            "/opt/my app/bin (deleted)"
        );
    }

    #[test]
    fn own_process_maps_its_executable_first() {
        let objects = mapped_objects(std::process::id()).unwrap();
        assert!(objects[0].is_main, "{objects:?}");
        assert!(objects.iter().skip(1).all(|o| !o.is_main));
        assert!(objects[0].open_path.exists());
    }

    #[test]
    fn threads_kernel_threads_and_children_are_told_apart() {
        // A thread of this process.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // `/proc/thread-self` is `PID/task/TID`.
            let link = fs::read_link("/proc/thread-self").unwrap();
            let tid: u32 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
            tx.send(tid).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let err = process_exists(tid).unwrap_err().to_string();
        assert!(
            err.contains(&format!("is a thread of process {}", std::process::id())),
            "{err}"
        );
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        // kthreadd is pid 2 on Linux.
        let err = process_exists(2).unwrap_err().to_string();
        assert!(err.contains("kernel thread"), "{err}");
        assert!(process_exists(std::process::id()).is_ok());

        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(descendants(std::process::id()).contains(&child.id()));
        child.kill().unwrap();
        // Killed but not reaped: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let err = process_exists(child.id()).unwrap_err().to_string();
        assert!(err.contains("zombie"), "{err}");
        child.wait().unwrap();
    }

    #[test]
    fn dead_pid_is_reported_as_such() {
        assert!(matches!(
            process_exists(0),
            Err(Error::NoSuchProcess { pid: 0 })
        ));
        // Pids are below 2^22 on Linux.
        assert!(matches!(
            mapped_objects(4_194_305),
            Err(Error::NoSuchProcess { pid: 4_194_305 })
        ));
    }
}
