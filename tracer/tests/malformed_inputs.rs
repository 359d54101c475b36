//! Property tests of the ELF and DWARF readers on broken input: a real binary with DWARF,
//! truncated at many offsets and with bytes flipped all over (headers, symbol tables, debug
//! sections). Every reader must answer or fail with an error; none may panic.
//! Needs gcc (installed by `cargo xtask setup`), not root.

use std::{
    panic,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use tracer::{DebugInfo, ElfFile};

/// A small deterministic generator (xorshift64*), so failures can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixture() -> Vec<u8> {
    static BUILDS: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kt-malformed-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("typed");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/c/typed.c");
    let status = Command::new("gcc")
        .args(["-g", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("gcc (cargo xtask setup installs it)");
    assert!(status.success());
    let bytes = std::fs::read(&binary).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

/// Runs every reader over `bytes`; returns how far it got (for the record, not asserted).
fn exercise(bytes: Vec<u8>) -> usize {
    let Ok(elf) = ElfFile::from_bytes("mutated", bytes) else {
        return 0;
    };
    let Ok(functions) = elf.functions() else {
        return 1;
    };
    for function in functions.iter().take(40) {
        let _ = elf.file_offset(function.address);
    }
    let _ = elf.build_id();
    let _ = elf.debuglink();
    let _ = elf.mini_debuginfo();
    let Ok(Some(dwarf)) = DebugInfo::load(&elf) else {
        return 2;
    };
    for function in functions.iter().take(40) {
        let _ = dwarf.function_summary(function.address);
        let _ = dwarf.function_at(function.address);
    }
    let _ = dwarf.line_addresses("typed.c", 27);
    let _ = dwarf.inlined_only("twice");
    3
}

fn check(case: &str, bytes: Vec<u8>) {
    if let Err(panic) = panic::catch_unwind(|| exercise(bytes)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("readers panicked on {case}: {message}");
    }
}

#[test]
fn the_unbroken_fixture_is_read_all_the_way() {
    assert_eq!(exercise(fixture()), 3);
}

#[test]
fn truncated_files_never_panic() {
    let original = fixture();
    let len = original.len();
    let mut cuts: Vec<usize> = (0..=64).map(|i| len * i / 64).collect();
    cuts.extend([1, 4, 16, 63, 64, 65, len.saturating_sub(1)]);
    for cut in cuts {
        check(
            &format!("a cut at {cut} of {len}"),
            original[..cut.min(len)].to_vec(),
        );
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let original = fixture();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let mut bytes = original.clone();
        // Half the cases hit the first 4 KiB (headers), the rest anywhere (DWARF is large).
        let region = if case % 2 == 0 {
            4096.min(bytes.len())
        } else {
            bytes.len()
        };
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(region);
            bytes[at] = rng.next() as u8;
        }
        check(&format!("case {case}"), bytes);
    }
}
