//! `cargo xtask bench calls`, first part: on real binaries (redis-server, postgres, libc and
//! koolkit-trace's own), the share of functions whose entry probe the kernel emulates (no
//! single-step: ~0.5 µs a hit here against ~13 µs), as `koolkit-trace list` places them.

use std::{collections::BTreeMap, path::Path, process::Command};

use crate::setup::install_packages;

/// Where each cost class of `list --json` of every function of `binary` falls, and how many
/// probes were moved past their first instruction.
fn cost_classes(tracer: &Path, binary: &Path) -> Result<(BTreeMap<String, u64>, u64), String> {
    let output = Command::new(tracer)
        .args(["list", "--json", "--binary"])
        .arg(binary)
        .arg("*")
        .output()
        .map_err(|err| format!("starting {}: {err}", tracer.display()))?;
    if !output.status.success() {
        return Err(format!(
            "list of {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut classes = BTreeMap::new();
    let mut moved = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let cost = entry["probe"]["cost"].as_str().unwrap_or("?").to_string();
        if entry["probe"]["skip"].as_u64().unwrap_or(0) > 0 {
            moved += 1;
        }
        *classes.entry(cost).or_insert(0) += 1;
    }
    Ok((classes, moved))
}

pub fn entry_share(tracer: &Path, own: &Path) -> Result<(), String> {
    install_packages(&["redis-server", "postgresql"])?;
    let postgres = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|mut versions| versions.next())
        .and_then(Result::ok)
        .map(|version| version.path().join("bin/postgres"));
    let mut binaries = vec![
        Path::new("/usr/bin/redis-server").to_path_buf(),
        Path::new("/lib/x86_64-linux-gnu/libc.so.6").to_path_buf(),
        own.to_path_buf(),
    ];
    binaries.extend(postgres);
    println!(
        "\nEntry probes the kernel emulates (trap-free of a single step), of every function\n"
    );
    for binary in binaries {
        if !binary.exists() {
            println!("  {}: not found", binary.display());
            continue;
        }
        let (classes, moved) = cost_classes(tracer, &binary)?;
        let total: u64 = classes.values().sum();
        let emulated = classes.get("emulated").copied().unwrap_or(0);
        let rest: Vec<String> = classes
            .iter()
            .filter(|(class, _)| class.as_str() != "emulated")
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        println!(
            "  {:<44} {emulated:>6} of {total:>6} emulated ({:.1}%; {moved} moved past their \
             first instruction); {}",
            binary.display().to_string(),
            100.0 * emulated as f64 / total.max(1) as f64,
            rest.join(", ")
        );
    }
    Ok(())
}
