//! `cargo xtask setup`: what a fresh Debian 12 machine needs to build and test koolkit-trace.
//! Each step checks first and does nothing when its part is already there.

use std::process::Command;

use crate::run;

/// Debian packages: LLVM 22 for bpf-linker, compilers for the test fixtures, util-linux's
/// setpriv for the privilege tests, bpftrace for comparisons.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "gcc",
    "g++",
    "golang-go",
    "bpftrace",
    "util-linux",
];

/// bpf-linker must match the nightly's LLVM; 0.13.0 built against LLVM 22 does.
const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";

pub fn setup() -> Result<(), String> {
    apt_packages()?;
    rust_src()?;
    bpf_linker()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `apt-get ARGS`, through sudo when not root.
fn apt_get(args: &[&str]) -> Command {
    let mut command = if is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("apt-get");
        sudo
    };
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout) == "install ok installed")
}

fn apt_packages() -> Result<(), String> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(&mut apt_get(&["update", "-q"]))?;
    let mut install = apt_get(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)
}

fn rust_src() -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .map_err(|err| format!("rustup is needed: {err}"))?;
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.starts_with("rust-src"))
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn bpf_linker() -> Result<(), String> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if current.is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout).trim() == format!("bpf-linker {BPF_LINKER_VERSION}")
    }) {
        return Ok(());
    }
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path),
    )
}
