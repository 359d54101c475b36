//! Where the agent's recordings go, `OUT/<namespace>/<pod>/<request>-<start>.kt` (rotated
//! files beside them, `<request>-<start>.1.kt` ...), and how `OUT` is kept within its limits:
//! files past the age limit go, then the oldest until the total fits. The files being written
//! are never removed.

use std::{
    collections::HashSet,
    fs,
    path::{Component, Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// A recording on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    /// Its path under `OUT`: `shop/checkout-7d9-a/slow-20261201T120000Z.kt`.
    pub path: String,
    pub bytes: u64,
    /// Seconds since the Unix epoch it was last written.
    pub modified: u64,
}

/// The recording of request `request` of pod `namespace/pod` started at `start`.
pub fn recording_path(
    out: &Path,
    namespace: &str,
    pod: &str,
    request: &str,
    start: SystemTime,
) -> PathBuf {
    out.join(namespace)
        .join(pod)
        .join(format!("{request}-{}.kt", utc_stamp(start)))
}

/// `20261201T120304Z`: a UTC time that sorts as text and is safe in a file name.
pub fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Every `.kt` file under `out` (three levels: namespace, pod, file), oldest first.
pub fn stored_files(out: &Path) -> Vec<StoredFile> {
    let mut files = Vec::new();
    for namespace in read_dirs(out) {
        for pod in read_dirs(&namespace) {
            let Ok(entries) = fs::read_dir(&pod) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || path.extension().is_none_or(|ext| ext != "kt") {
                    continue;
                }
                let Ok(relative) = path.strip_prefix(out) else {
                    continue;
                };
                files.push(StoredFile {
                    path: relative.display().to_string(),
                    bytes: meta.len(),
                    modified: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                });
            }
        }
    }
    files.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
    files
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

/// How much `OUT` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All files together, in bytes.
    pub total_bytes: u64,
    /// Files last written longer ago than this go.
    pub max_age: Duration,
}

/// Removes what is over `limits` from `out`, never a file of `active` (paths under `out`):
/// first what is too old, then the oldest until the total fits. Returns the files removed.
pub fn enforce(
    out: &Path,
    limits: Limits,
    active: &HashSet<String>,
    now: SystemTime,
) -> Vec<StoredFile> {
    let files = stored_files(out);
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut removed = Vec::new();
    for file in files {
        if active.contains(&file.path) {
            continue;
        }
        let too_old = now_secs.saturating_sub(file.modified) > limits.max_age.as_secs();
        if !too_old && total <= limits.total_bytes {
            continue;
        }
        let path = out.join(&file.path);
        match fs::remove_file(&path) {
            Ok(()) => {
                total -= file.bytes;
                if let Some(pod) = path.parent() {
                    // Empty folders of pods and namespaces that are gone go too.
                    if fs::remove_dir(pod).is_ok()
                        && let Some(namespace) = pod.parent()
                    {
                        let _ = fs::remove_dir(namespace);
                    }
                }
                removed.push(file);
            }
            Err(err) => log::warn!("cannot remove {}: {err}", path.display()),
        }
    }
    removed
}

/// The file `relative` names under `out`, if it is a recording there: no `..`, no absolute
/// path, no link out.
pub fn served_file(out: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let plain = relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    if !plain || relative.extension().is_none_or(|ext| ext != "kt") {
        return None;
    }
    let path = out.join(relative);
    let meta = fs::symlink_metadata(&path).ok()?;
    meta.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_utc_stamps() {
        let at = |secs: u64| utc_stamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        // 2026-12-01T12:03:04Z and a leap day.
        assert_eq!(at(1_796_126_584), "20261201T120304Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        let path = recording_path(
            Path::new("/out"),
            "shop",
            "checkout-a",
            "slow",
            UNIX_EPOCH + Duration::from_secs(1_796_126_584),
        );
        assert_eq!(
            path,
            Path::new("/out/shop/checkout-a/slow-20261201T120304Z.kt")
        );
    }

    fn write_aged(out: &Path, relative: &str, bytes: usize, age_secs: u64, now: SystemTime) {
        let path = out.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, vec![0u8; bytes]).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(now - Duration::from_secs(age_secs))
            .unwrap();
    }

    #[test]
    fn the_oldest_files_go_first_and_the_active_ones_stay() {
        let out = std::env::temp_dir().join(format!("koolkit-agent-out-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        let now = SystemTime::now();
        write_aged(&out, "shop/a/r-1.kt", 1000, 400, now);
        write_aged(&out, "shop/a/r-2.kt", 1000, 300, now);
        write_aged(&out, "shop/b/r-1.kt", 1000, 200, now);
        write_aged(&out, "shop/b/r-2.kt", 1000, 100, now);
        write_aged(&out, "shop/b/notes.txt", 5000, 1000, now);
        let listed: Vec<String> = stored_files(&out).into_iter().map(|f| f.path).collect();
        assert_eq!(
            listed,
            [
                "shop/a/r-1.kt",
                "shop/a/r-2.kt",
                "shop/b/r-1.kt",
                "shop/b/r-2.kt"
            ]
        );
        let limits = Limits {
            total_bytes: 2500,
            max_age: Duration::from_secs(3600),
        };
        let active: HashSet<String> = ["shop/a/r-1.kt".to_string()].into();
        let removed: Vec<String> = enforce(&out, limits, &active, now)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(removed, ["shop/a/r-2.kt", "shop/b/r-1.kt"]);
        // By age: only what is older than the limit.
        let limits = Limits {
            total_bytes: u64::MAX,
            max_age: Duration::from_secs(150),
        };
        let removed = enforce(&out, limits, &HashSet::new(), now);
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert_eq!(removed[0].path, "shop/a/r-1.kt");
        assert!(!out.join("shop/a").exists(), "an emptied pod folder goes");
        assert!(out.join("shop/b/r-2.kt").exists());
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn only_recordings_under_out_are_served() {
        let out = std::env::temp_dir().join(format!("koolkit-agent-srv-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        write_aged(&out, "shop/a/r-1.kt", 10, 0, SystemTime::now());
        assert_eq!(
            served_file(&out, "shop/a/r-1.kt"),
            Some(out.join("shop/a/r-1.kt"))
        );
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "shop/../../x.kt",
            "shop/a",
            "nope.kt",
        ] {
            assert_eq!(served_file(&out, bad), None, "{bad}");
        }
        let _ = fs::remove_dir_all(&out);
    }
}
