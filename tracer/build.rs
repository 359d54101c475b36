//! Builds the eBPF programs of `tracer-ebpf` for the BPF target (nightly + bpf-linker) so
//! `src/probes/object.rs` can embed them: the `koolkit-trace` binary is one self-contained file.
//!
//! `AYA_BUILD_SKIP=1` skips the nested build (aya-build honours it) for tools that only need
//! the host code; the binary then embeds no object and says so when asked to trace.

use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../tracer-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    println!("cargo::rustc-check-cfg=cfg(ebpf_object_missing)");
    let skipped =
        env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skipped {
        println!("cargo::rustc-cfg=ebpf_object_missing");
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
