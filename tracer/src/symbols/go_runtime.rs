//! What the tracer knows of the Go runtime's own layout, per release: where a goroutine's id
//! is in `runtime.g` (R14 points at the running goroutine's `g` in the register ABI), and
//! where the module data says the type descriptors start (`runtime.types`, which the names
//! of dynamic types count from).
//!
//! Stripped builds carry no DWARF to read them from, so the offsets are a table; the Go tests
//! check it against the DWARF of `runtime.g` and `runtime.moduledata` in a build of every
//! fixture release.

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

/// The offset of `types` in `runtime.moduledata`: 280 in Go 1.17 to 1.19, 296 from 1.20
/// (which added the coverage counters `covctrs`, `ecovctrs` before it) through 1.27.
pub fn module_types_offset(version: &str) -> Option<usize> {
    match go_release(version)? {
        release if ((1, 17)..=(1, 19)).contains(&release) => Some(280),
        release if ((1, 20)..=(1, 27)).contains(&release) => Some(296),
        _ => None,
    }
}

/// `types` of the module data `module` (the runtime's `moduledata`, as the file holds it),
/// checked by its first word pointing at the function table: None where the layout is not
/// known or the words are left to relocations (a PIE's zeros).
pub fn module_types(module: &[u8], pclntab_address: u64, version: &str) -> Option<u64> {
    let word = |at: usize| -> Option<u64> {
        let bytes = module.get(at..at.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    };
    let types = word(module_types_offset(version)?)?;
    (word(0)? == pclntab_address && types != 0).then_some(types)
}

/// Where the module data is in `data` (the section that holds it: `.noptrdata` before Go
/// 1.26): the aligned word that points at the function table, at `pclntab_address`.
pub fn find_module(data: &[u8], pclntab_address: u64) -> Option<&[u8]> {
    let needle = pclntab_address.to_le_bytes();
    (0..data.len().saturating_sub(8))
        .step_by(8)
        .find(|&at| data[at..at + 8] == needle)
        .map(|at| &data[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_types_follow_the_release_layout() {
        let mut module = vec![0u8; 400];
        module[..8].copy_from_slice(&0x7a_1000u64.to_le_bytes());
        module[280..288].copy_from_slice(&0x64b000u64.to_le_bytes());
        module[296..304].copy_from_slice(&0x65a000u64.to_le_bytes());
        assert_eq!(module_types(&module, 0x7a_1000, "go1.19.8"), Some(0x64b000));
        assert_eq!(
            module_types(&module, 0x7a_1000, "go1.22.10"),
            Some(0x65a000)
        );
        assert_eq!(
            module_types(&module, 0x7a_2000, "go1.22.10"),
            None,
            "another table"
        );
        assert_eq!(
            module_types(&module, 0x7a_1000, "go1.28"),
            None,
            "unknown layout"
        );
        assert_eq!(module_types(&module[..290], 0x7a_1000, "go1.22.10"), None);
        let mut data = vec![0u8; 64];
        data.extend_from_slice(&module);
        assert_eq!(find_module(&data, 0x7a_1000).map(<[u8]>::len), Some(400));
        assert_eq!(find_module(&data, 0x7a_3000), None);
    }

    #[test]
    fn known_releases_have_the_offset_and_others_none() {
        assert_eq!(goroutine_id_offset("go1.19.8"), Some(152));
        assert_eq!(goroutine_id_offset("go1.26.6"), Some(152));
        assert_eq!(goroutine_id_offset("go1.16"), None);
        assert_eq!(goroutine_id_offset("go1.28rc1"), None);
        assert_eq!(goroutine_id_offset("devel +abc"), None);
    }
}
