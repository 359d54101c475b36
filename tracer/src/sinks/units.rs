//! Units and plurals as people read them: `12.3µs`, `20.6 KiB`, `1 function`, `2 calls`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether microseconds are written `us` instead of `µs`.
static ASCII_MICRO: AtomicBool = AtomicBool::new(false);

/// From now on, writes microseconds as `us` (for output that is not a UTF-8 terminal) or
/// `µs`. The command line decides once, at start.
pub fn use_ascii_micro(ascii: bool) {
    ASCII_MICRO.store(ascii, Ordering::Relaxed);
}

/// Whether the locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`) encodes text as UTF-8.
pub fn locale_is_utf8(lookup: impl Fn(&str) -> Option<String>) -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| lookup(name).filter(|value| !value.is_empty()))
        .is_some_and(|locale| {
            let locale = locale.to_ascii_lowercase();
            locale.contains("utf-8") || locale.contains("utf8")
        })
}

/// `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn format_duration_ns(ns: u64) -> String {
    let ns_f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        let micro = if ASCII_MICRO.load(Ordering::Relaxed) {
            "us"
        } else {
            "µs"
        };
        format!("{:.1}{micro}", ns_f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns_f / 1e6)
    } else {
        format!("{:.2}s", ns_f / 1e9)
    }
}

/// `812 B`, `20.6 KiB`, `3.1 MiB`, `1.2 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 function`, `2 functions`: a count and its noun, in the plural unless the count is one.
pub fn count(n: u64, noun: &str) -> String {
    count_irregular(n, noun, &format!("{noun}s"))
}

/// [`count`] for nouns whose plural is not the singular plus `s` (`1 call was`, `2 calls were`).
pub fn count_irregular(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(format_duration_ns(850), "850ns");
        assert_eq!(format_duration_ns(12_345), "12.3µs");
        assert_eq!(format_duration_ns(10_123_456), "10.12ms");
        assert_eq!(format_duration_ns(1_234_000_000), "1.23s");
    }

    #[test]
    fn utf8_locales_are_told_apart() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(locale_is_utf8(env(&[("LANG", "C.UTF-8")])));
        assert!(locale_is_utf8(env(&[
            ("LC_ALL", "de_DE.utf8"),
            ("LANG", "C")
        ])));
        assert!(!locale_is_utf8(env(&[
            ("LC_ALL", "C"),
            ("LANG", "en_US.UTF-8")
        ])));
        assert!(!locale_is_utf8(env(&[("LANG", "POSIX")])));
        assert!(!locale_is_utf8(env(&[])));
        assert!(locale_is_utf8(env(&[
            ("LC_ALL", ""),
            ("LANG", "en_US.UTF-8")
        ])));
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(21_094), "20.6 KiB");
        assert_eq!(count(1, "function"), "1 function");
        assert_eq!(count(0, "call"), "0 calls");
        assert_eq!(count_irregular(2, "call was", "calls were"), "2 calls were");
    }
}
