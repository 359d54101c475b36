//! What the tracer knows of the Go runtime's own layout, per release: where a goroutine's id
//! is in `runtime.g` (R14 points at the running goroutine's `g` in the register ABI).
//!
//! Stripped builds carry no DWARF to read it from, so the offsets are a table; the Go tests
//! check it against the DWARF of `runtime.g` in a build of every fixture release.

use super::elf::go_release;

/// The releases whose `runtime.g` layout is checked or follows from the source: `goid` has
/// sat at offset 152 from Go 1.17 (stack, stackguard0/1, _panic, _defer, m, a 7-word gobuf,
/// syscallsp, syscallpc, stktopsp, param, atomicstatus, stackLock) through 1.27.
const GOID_AT_152: std::ops::RangeInclusive<(u32, u32)> = (1, 17)..=(1, 27);

/// The offset of `goid` in `runtime.g` for the Go `version` (`go1.26.6`); None for releases
/// whose layout is not known, whose calls then show no goroutine rather than a wrong one.
pub fn goroutine_id_offset(version: &str) -> Option<i32> {
    go_release(version)
        .filter(|release| GOID_AT_152.contains(release))
        .map(|_| 152)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_releases_have_the_offset_and_others_none() {
        assert_eq!(goroutine_id_offset("go1.19.8"), Some(152));
        assert_eq!(goroutine_id_offset("go1.26.6"), Some(152));
        assert_eq!(goroutine_id_offset("go1.16"), None);
        assert_eq!(goroutine_id_offset("go1.28rc1"), None);
        assert_eq!(goroutine_id_offset("devel +abc"), None);
    }
}
