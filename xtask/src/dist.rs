//! `cargo xtask dist`: one static, stripped `koolkit-trace` (the eBPF object embedded), for
//! images without a C library (scratch, distroless, busybox) and copying onto any node.
//!
//! glibc's static-pie (`+crt-static`) is enough: the tracer resolves no user or host names
//! through NSS, the one thing static glibc cannot do. The build goes to its own target
//! directory (`--target` given), so the debug and release builds are left alone.

use std::path::{Path, PathBuf};

use crate::{cargo, run, setup::setup, workspace_root};

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// For the target only: build scripts and the eBPF build stay as they are.
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C strip=symbols";

/// Where `dist` leaves the binary.
pub fn dist_binary() -> PathBuf {
    workspace_root().join("target/dist/koolkit-trace")
}

/// Builds the static binary and returns its path.
pub fn build_static() -> Result<PathBuf, String> {
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--package",
            "tracer",
            "--bin",
            "koolkit-trace",
        ])
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            STATIC_RUSTFLAGS,
        ))?;
    let built = workspace_root().join(format!("target/{TARGET}/release/koolkit-trace"));
    let out = dist_binary();
    std::fs::create_dir_all(out.parent().expect("a parent")).map_err(|e| e.to_string())?;
    std::fs::copy(&built, &out)
        .map_err(|err| format!("copying {} to {}: {err}", built.display(), out.display()))?;
    check_static(&out)?;
    Ok(out)
}

pub fn dist() -> Result<(), String> {
    setup()?;
    let out = build_static()?;
    let size = std::fs::metadata(&out).map_err(|e| e.to_string())?.len();
    println!(
        "{}: static (no program interpreter, no shared libraries), stripped, {:.1} MiB \
         ({size} bytes)",
        out.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Fails unless `path` is an ELF file the kernel runs without a dynamic loader: no
/// `PT_INTERP` segment.
fn check_static(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    match has_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => Err(format!(
            "{} asks for a program interpreter: it is not static",
            path.display()
        )),
        None => Err(format!("{} is not a 64-bit ELF file", path.display())),
    }
}

/// Whether a 64-bit little-endian ELF image has a `PT_INTERP` program header; `None` when
/// `bytes` is not one.
fn has_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        if u32_at(phoff + index * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_has_an_interpreter() {
        // xtask itself is linked the usual way, against the system's loader.
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(has_interpreter(&own), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }
}
