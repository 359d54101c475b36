//! Finding the separate debug file of a stripped binary: by build-id under
//! `/usr/lib/debug/.build-id/`, then by `.gnu_debuglink` next to the binary, in its `.debug/`
//! folder and under `/usr/lib/debug/`. Every path is looked up inside the target's root
//! (`/proc/PID/root` for a process in a container), never on the host alone.
//!
//! Only the search is here; reading the file is `elf`'s job. A candidate is accepted only when
//! its build-id (or debuglink CRC) matches, so a stale debug file is never used.

use std::path::{Path, PathBuf};

use super::elf::ElfFile;

/// The paths a debug file for build-id `id` may have under `root`.
pub fn build_id_paths(root: &Path, id: &[u8]) -> Vec<PathBuf> {
    if id.len() < 2 {
        return Vec::new();
    }
    let hex = super::elf::hex(id);
    vec![root.join(format!(
        "usr/lib/debug/.build-id/{}/{}.debug",
        &hex[..2],
        &hex[2..]
    ))]
}

/// The paths GDB searches for `.gnu_debuglink` name `link` of the binary at `binary` (the path
/// as the target sees it), under `root`.
pub fn debuglink_paths(root: &Path, binary: &str, link: &str) -> Vec<PathBuf> {
    if link.contains('/') || link.is_empty() {
        return Vec::new();
    }
    let dir = Path::new(binary).parent().unwrap_or(Path::new("/"));
    let relative_dir = dir.strip_prefix("/").unwrap_or(dir);
    vec![
        root.join(relative_dir).join(link),
        root.join(relative_dir).join(".debug").join(link),
        root.join("usr/lib/debug").join(relative_dir).join(link),
    ]
}

/// CRC-32 as `.gnu_debuglink` uses it (the zlib/IEEE polynomial).
pub fn debuglink_crc(data: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(data)
}

/// Every path [`find_debug_file`] tries for `binary`, in order.
pub fn candidates(binary: &ElfFile, binary_path: &str, root: &Path) -> Vec<PathBuf> {
    let mut paths = binary
        .build_id()
        .map(|id| build_id_paths(root, &id))
        .unwrap_or_default();
    if let Some((link, _)) = binary.debuglink() {
        paths.extend(debuglink_paths(root, binary_path, &link));
    }
    paths
}

/// Finds and opens the separate debug file of `binary` (opened from `binary_path`, the path the
/// target knows it by), looking under `root`.
pub fn find_debug_file(binary: &ElfFile, binary_path: &str, root: &Path) -> Option<ElfFile> {
    if let Some(id) = binary.build_id() {
        for candidate in build_id_paths(root, &id) {
            if let Ok(debug) = ElfFile::open(&candidate)
                && debug.build_id().as_deref() == Some(&id[..])
            {
                log::debug!(
                    "debug file for {binary_path}: {} (build-id)",
                    candidate.display()
                );
                return Some(debug);
            }
        }
    }
    let (link, crc) = binary.debuglink()?;
    for candidate in debuglink_paths(root, binary_path, &link) {
        if candidate == binary.path() {
            continue;
        }
        let Ok(debug) = ElfFile::open(&candidate) else {
            continue;
        };
        if debuglink_crc(debug.bytes_at(0, usize::MAX)) == crc {
            log::debug!(
                "debug file for {binary_path}: {} (debuglink)",
                candidate.display()
            );
            return Some(debug);
        }
        log::warn!(
            "{}: CRC does not match {binary_path}'s debuglink; ignored",
            candidate.display()
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths_split_the_first_byte() {
        let paths = build_id_paths(Path::new("/proc/42/root"), &[0xab, 0xcd, 0xef]);
        assert_eq!(
            paths,
            [PathBuf::from(
                "/proc/42/root/usr/lib/debug/.build-id/ab/cdef.debug"
            )]
        );
        assert!(build_id_paths(Path::new("/"), &[1]).is_empty());
    }

    #[test]
    fn debuglink_paths_follow_gdb() {
        let paths = debuglink_paths(Path::new("/"), "/usr/bin/app", "app.debug");
        assert_eq!(
            paths,
            [
                PathBuf::from("/usr/bin/app.debug"),
                PathBuf::from("/usr/bin/.debug/app.debug"),
                PathBuf::from("/usr/lib/debug/usr/bin/app.debug"),
            ]
        );
        assert!(debuglink_paths(Path::new("/"), "/usr/bin/app", "../../etc/passwd").is_empty());
    }

    #[test]
    fn crc_is_the_zlib_one() {
        assert_eq!(debuglink_crc(b"123456789"), 0xcbf4_3926);
    }
}
