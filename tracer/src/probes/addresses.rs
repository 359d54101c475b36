//! Probes told apart by address, on kernels whose perf-event links carry no BPF cookie
//! (before 5.15).
//!
//! A uprobe's handler sees the probed instruction's address in `rip`; in a process that
//! address is where the process mapped the probed file plus the probe's place in it. User
//! space writes `(process, address) → cookie` for every probe into the programs' map, for
//! each process that maps a probed file: at attach for the processes already running, and
//! for the others when the programs first meet them (a new process, an exec, a library
//! loaded later), which they flag in `UNIDENTIFIED`: their first calls, until the tracer's
//! next tick has read the process's maps, are counted as not told apart, never shown under
//! another probe's name. A return fires at its caller's address and is told by the frame its
//! entry parked in the thread's shadow instead.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_ebpf::AddressKey;

use crate::target::{all_pids, parse_dev, parse_maps_line, read_maps};

/// The device and inode `/proc/PID/maps` shows for a mapping of the file at `path` on this
/// kernel, read off a mapping of our own: for a file of an overlay mount (a container's
/// image) some kernels show the layer's file there and others the overlay's, which is what
/// `stat` says.
pub(crate) fn mapped_identity(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let file = std::fs::File::open(path)?;
    let stat = file.metadata()?;
    let seen = crate::sys::map_read_only(&file).ok().and_then(|map| {
        let mapping = crate::target::own_mapping(map.as_ptr() as u64)?;
        Some((mapping.dev, mapping.inode))
    });
    Ok(seen.unwrap_or((stat.dev(), stat.ino())))
}

/// One attached point: which file (by device and inode, as `/proc/PID/maps` names them,
/// see [`mapped_identity`]), where in it, and the cookie its programs would have been given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// [`tracer_ebpf::ADDRESS_OF_ENTRY`] or [`tracer_ebpf::ADDRESS_OF_WAY_OUT`].
    pub kind: u32,
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
    pub cookie: u64,
}

/// The addresses of every attached point in the processes met so far.
pub(crate) struct ProbeAddresses {
    addresses: BpfHashMap<MapData, AddressKey, u64>,
    unidentified: BpfHashMap<MapData, u32, u8>,
    points: Vec<Point>,
    /// What was written for each process, taken out again when it is read anew (an exec
    /// maps other files at other places).
    written: HashMap<u32, Vec<AddressKey>>,
}

impl ProbeAddresses {
    pub fn new(
        addresses: BpfHashMap<MapData, AddressKey, u64>,
        unidentified: BpfHashMap<MapData, u32, u8>,
    ) -> Self {
        Self {
            addresses,
            unidentified,
            points: Vec::new(),
            written: HashMap::new(),
        }
    }

    pub fn add_points(&mut self, points: impl IntoIterator<Item = Point>) {
        self.points.extend(points);
    }

    /// Writes the addresses for the processes traced now: `selected` when the programs
    /// select processes (a group, a family), else every process (a binary's, present and
    /// future).
    pub fn fill_running(&mut self, selected: Option<Vec<u32>>) {
        for pid in selected.unwrap_or_else(all_pids) {
            self.fill(pid);
        }
    }

    /// Reads the maps of the processes the programs flagged and writes their addresses.
    /// Returns how many processes were read.
    pub fn fill_flagged(&mut self) -> usize {
        let flagged: Vec<u32> = self.unidentified.keys().filter_map(Result::ok).collect();
        for &tgid in &flagged {
            self.fill(tgid);
            // Taken out after the fill: a probe firing meanwhile flags it again at worst.
            let _ = self.unidentified.remove(&tgid);
        }
        flagged.len()
    }

    /// Writes `tgid`'s addresses, then takes out those written for it before that it no
    /// longer has (an exec, a library unloaded): its probes keep firing meanwhile, and find
    /// their addresses throughout. A process that is gone, or whose maps cannot be read, keeps
    /// none.
    fn fill(&mut self, tgid: u32) {
        let before = self.written.remove(&tgid).unwrap_or_default();
        let keys = match read_maps(tgid) {
            Ok(maps) => addresses_in(&maps, &self.points, tgid),
            Err(_) => Vec::new(),
        };
        let mut written = Vec::with_capacity(keys.len());
        for (key, cookie) in keys {
            match self.addresses.insert(key, cookie, 0) {
                Ok(()) => written.push(key),
                Err(err) => log::debug!("probe address for process {tgid}: {err}"),
            }
        }
        for key in before.iter().filter(|key| !written.contains(key)) {
            let _ = self.addresses.remove(key);
        }
        if !written.is_empty() {
            self.written.insert(tgid, written);
        }
    }

    /// Takes out the addresses of processes that have exited (their ids may come back as
    /// other processes).
    pub fn forget_exited(&mut self) {
        let gone: Vec<u32> = self
            .written
            .keys()
            .copied()
            .filter(|tgid| !std::path::Path::new(&format!("/proc/{tgid}")).exists())
            .collect();
        for tgid in gone {
            for key in self.written.remove(&tgid).unwrap_or_default() {
                let _ = self.addresses.remove(&key);
            }
        }
    }
}

/// Where each point is in the process whose `/proc/PID/maps` is `maps`: an executable
/// mapping of its file that covers its offset.
fn addresses_in(maps: &str, points: &[Point], tgid: u32) -> Vec<(AddressKey, u64)> {
    let mut found = Vec::new();
    for line in maps.lines().filter_map(parse_maps_line) {
        if !line.perms.contains('x') {
            continue;
        }
        let length = line.end.saturating_sub(line.start);
        for point in points {
            if point.inode != line.inode
                || parse_dev(line.dev) != Some(point.dev)
                || point.offset < line.offset
                || point.offset - line.offset >= length
            {
                continue;
            }
            let key = AddressKey {
                tgid,
                kind: point.kind,
                address: line.start + (point.offset - line.offset),
            };
            found.push((key, point.cookie));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 4242 /usr/bin/shop
55d0c0a01000-55d0c0a05000 r-xp 00001000 fe:01 4242 /usr/bin/shop
7f3c1a400000-7f3c1a428000 r--p 00000000 fe:01 1311 /usr/lib/x86_64-linux-gnu/libc.so.6
7f3c1a428000-7f3c1a5bd000 r-xp 00028000 fe:01 1311 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn a_point_is_where_its_file_is_mapped_executable() {
        let points = [
            Point {
                kind: 0,
                dev: libc::makedev(0xfe, 1),
                inode: 4242,
                offset: 0x1139,
                cookie: 0,
            },
            Point {
                kind: 0,
                dev: libc::makedev(0xfe, 1),
                inode: 1311,
                offset: 0x2a0b0,
                cookie: 7 | (3 << 32),
            },
        ];
        let found = addresses_in(MAPS, &points, 99);
        assert_eq!(
            found,
            vec![
                (
                    AddressKey {
                        tgid: 99,
                        kind: 0,
                        address: 0x55d0c0a01139
                    },
                    0
                ),
                (
                    AddressKey {
                        tgid: 99,
                        kind: 0,
                        address: 0x7f3c1a42a0b0
                    },
                    7 | (3 << 32)
                ),
            ]
        );
    }

    #[test]
    fn points_outside_every_executable_mapping_have_no_address() {
        let points = [
            // In the read-only part of the file, not the code.
            Point {
                kind: 0,
                dev: libc::makedev(0xfe, 1),
                inode: 4242,
                offset: 0x10,
                cookie: 1,
            },
            // Past the end of the code mapping.
            Point {
                kind: 0,
                dev: libc::makedev(0xfe, 1),
                inode: 4242,
                offset: 0x5000,
                cookie: 2,
            },
            // Another file.
            Point {
                kind: 0,
                dev: libc::makedev(0xfe, 1),
                inode: 5,
                offset: 0x1139,
                cookie: 3,
            },
        ];
        assert!(addresses_in(MAPS, &points, 1).is_empty());
    }
}
