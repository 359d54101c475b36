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

use crate::error::{Error, Result};

/// The target of a trace, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One process and every object it maps.
    Process { pid: u32 },
    /// Every process, present and future, that runs or maps this file.
    Binary { path: PathBuf },
}

impl Target {
    /// The pid the kernel should filter on, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process { pid } => Some(*pid),
            Self::Binary { .. } => None,
        }
    }

    /// Checks the target exists now.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Process { pid } => process_exists(*pid),
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

/// Errors with [`Error::NoSuchProcess`] unless `/proc/PID` exists.
pub fn process_exists(pid: u32) -> Result<()> {
    if pid == 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        Ok(())
    } else {
        Err(Error::NoSuchProcess { pid })
    }
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
}

/// One line of `/proc/PID/maps` that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    pub dev: &'a str,
    pub inode: u64,
    pub path: &'a str,
}

/// Parses one line of `/proc/PID/maps`; `None` for anonymous and special mappings.
pub(crate) fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
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
        dev,
        inode,
        path,
    })
}

const DELETED_SUFFIX: &str = " (deleted)";

/// The objects process `pid` maps executable, main executable first, each once.
pub fn mapped_objects(pid: u32) -> Result<Vec<MappedObject>> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&maps_path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess { pid }
        } else {
            Error::io(&maps_path, source)
        }
    })?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe
        .as_deref()
        .and_then(Path::to_str)
        .map(|exe| exe.trim_end_matches(DELETED_SUFFIX));

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
            PathBuf::from(format!("/proc/{pid}/root{path}"))
        };
        objects.push(MappedObject {
            path: path.to_string(),
            open_path,
            dev: line.dev.to_string(),
            inode: line.inode,
            is_main: Some(path) == exe,
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
