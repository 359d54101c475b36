//! `cargo xtask kernels`: the kernel-sensitive checks on the kernels production nodes run.
//!
//! Debian's cloud kernels (5.10 from bullseye, 6.1 from bookworm, 6.12 from
//! bookworm-backports) are fetched with apt, a small initramfs is written (a static busybox,
//! the static `koolkit-trace`, the static `kernel-checks` runner and the static `shop` fixture,
//! and an init that mounts /proc, /sys and tracefs, runs the checks and powers off), and each
//! kernel boots it under `qemu-system-x86_64` with TCG (nested KVM does not work here). This
//! machine's own kernel runs the same checks natively. The table is kernel × check: `ok`,
//! `fail`, or `needs` (the tracer said which kernel feature is missing, exit 3: what a user
//! there sees). Any `fail`, or a kernel whose checks did not finish, fails the task.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{cargo, run, setup, workspace_root};

/// How long one kernel may take to boot and run every check under TCG: longer than the
/// runner's own bounds (a minute a check), so a slow check shows as one that failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// A kernel of the matrix: its name in the table and the Debian suite its cloud kernel comes
/// from (`linux-image-cloud-amd64` there names the package).
struct Kernel {
    series: &'static str,
    suite: &'static str,
}

const KERNELS: [Kernel; 3] = [
    Kernel {
        series: "5.10",
        suite: "bullseye",
    },
    Kernel {
        series: "6.1",
        suite: "bookworm",
    },
    Kernel {
        series: "6.12",
        suite: "bookworm-backports",
    },
];

/// What one kernel's run printed: its release, each check's verdict, the doctor's JSON.
#[derive(Debug, Default)]
struct Run {
    release: String,
    checks: BTreeMap<String, (String, String)>,
    order: Vec<String>,
    doctor: String,
    done: bool,
}

fn work_dir() -> PathBuf {
    workspace_root().join("target/kernels")
}

pub fn kernels(only: &[String]) -> Result<(), String> {
    setup::setup()?;
    setup::kernel_matrix_prerequisites()?;
    let work = work_dir();
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let tracer = crate::dist::build_static()?;
    let checks = build_checks()?;
    let shop = work.join("shop");
    run(Command::new("gcc")
        .args(["-static", "-O1", "-g", "-o"])
        .arg(&shop)
        .arg(workspace_root().join("tests/fixtures/c/shop.c")))?;
    let busybox = crate::image::static_busybox(&work)?;
    let initramfs = work.join("initramfs.cpio");
    write_initramfs(&initramfs, &busybox, &tracer, &checks, &shop)?;

    let mut runs: Vec<(String, Run)> = Vec::new();
    // This machine's kernel, natively.
    let native = Command::new(&checks)
        .arg(&tracer)
        .arg(&shop)
        // What failed checks print, on the task's own stderr.
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", checks.display()))?;
    let mut host = parse(&String::from_utf8_lossy(&native.stdout));
    host.release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    runs.push(("this machine".into(), host));
    for kernel in KERNELS
        .iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o == k.series))
    {
        let vmlinuz = fetch_kernel(kernel, &work)?;
        eprintln!(
            "xtask: booting {} ({}) under qemu",
            kernel.series,
            vmlinuz.display()
        );
        let started = Instant::now();
        let console = work.join(format!("console-{}.log", kernel.series));
        let output = boot_until_init(&vmlinuz, &initramfs, &console, kernel.series)?;
        let run = parse(&output);
        eprintln!(
            "xtask: {} done in {:.0}s{}",
            kernel.series,
            started.elapsed().as_secs_f64(),
            if run.done { "" } else { " (did not finish)" }
        );
        runs.push((kernel.series.to_string(), run));
    }
    let table = table(&runs);
    println!("{table}");
    println!(
        "5.15: no Debian package of it can be had here (bullseye-backports is archived): not in the matrix"
    );
    fs::write(work.join("matrix.txt"), &table).map_err(|e| e.to_string())?;
    for (name, run) in &runs {
        println!("{name}: {}", doctor_summary(&run.doctor));
    }
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|(name, run)| {
            let unfinished = (!run.done).then(|| format!("{name}: did not finish"));
            run.checks
                .iter()
                .filter(|(_, (word, _))| word == "fail")
                .map(move |(check, (_, detail))| format!("{name}: {check}: {detail}"))
                .chain(unfinished)
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the kernel matrix failed:\n  {}",
            failed.join("\n  ")
        ))
    }
}

/// The static check runner, built as the static tracer is.
fn build_checks() -> Result<PathBuf, String> {
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            crate::dist::TARGET,
            "--package",
            "tests",
            "--bin",
            "kernel-checks",
        ])
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            crate::dist::STATIC_RUSTFLAGS,
        ))?;
    Ok(workspace_root().join(format!(
        "target/{}/release/kernel-checks",
        crate::dist::TARGET
    )))
}

/// The cloud kernel of `kernel.suite`, downloaded and unpacked once: its `vmlinuz`.
fn fetch_kernel(kernel: &Kernel, work: &Path) -> Result<PathBuf, String> {
    let package = kernel_package(kernel)?;
    let unpacked = work.join(&package);
    let boot = unpacked.join("boot");
    if let Some(found) = vmlinuz_in(&boot) {
        return Ok(found);
    }
    let deb = crate::image::download_and_unpack(&package, work, &unpacked)?;
    vmlinuz_in(&boot).ok_or_else(|| format!("{} holds no boot/vmlinuz-*", deb.display()))
}

fn vmlinuz_in(boot: &Path) -> Option<PathBuf> {
    fs::read_dir(boot)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// `linux-image-5.10.0-32-cloud-amd64`: what `linux-image-cloud-amd64` of `kernel.suite`
/// depends on (the newest of the suite's versions, its security updates included).
fn kernel_package(kernel: &Kernel) -> Result<String, String> {
    let madison = Command::new("apt-cache")
        .args(["madison", "linux-image-cloud-amd64"])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let text = String::from_utf8_lossy(&madison.stdout);
    let version = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            let suite = fields
                .get(2)?
                .split_whitespace()
                .nth(1)?
                .split('/')
                .next()?;
            let ours = suite == kernel.suite || suite == format!("{}-security", kernel.suite);
            (ours && fields.get(1)?.starts_with(kernel.series)).then(|| fields[1].to_string())
        })
        .next()
        .ok_or_else(|| {
            format!(
                "no linux-image-cloud-amd64 {} in {} (apt sources: `cargo xtask kernels` adds \
                 them)",
                kernel.series, kernel.suite
            )
        })?;
    let show = Command::new("apt-cache")
        .args(["show", &format!("linux-image-cloud-amd64={version}")])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let text = String::from_utf8_lossy(&show.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("Depends: "))
        .and_then(|depends| depends.split([' ', ',']).next())
        .map(str::to_string)
        .ok_or_else(|| format!("linux-image-cloud-amd64={version} depends on no kernel"))
}

/// How many times a kernel that died before its init ran is booted.
const BOOTS: usize = 3;

/// Boots until the VM's init starts (it prints `KOOLKIT-KERNEL`): under TCG on a busy host an
/// early boot check may fail (`IO-APIC + timer doesn't work`, a panic) before anything of ours
/// ran, and that says nothing of the kernel's tracing.
fn boot_until_init(
    vmlinuz: &Path,
    initramfs: &Path,
    console: &Path,
    series: &str,
) -> Result<String, String> {
    let mut output = String::new();
    for attempt in 1..=BOOTS {
        output = boot(vmlinuz, initramfs, console)?;
        if output.contains("KOOLKIT-KERNEL") {
            break;
        }
        let why = output
            .lines()
            .find(|l| l.contains("Kernel panic"))
            .map_or("no output from its init", str::trim);
        eprintln!("xtask: {series} died before its init ran (boot {attempt} of {BOOTS}): {why}");
    }
    Ok(output)
}

/// Boots `vmlinuz` with `initramfs` under TCG; returns what the serial console printed, which
/// is written to `console` as it comes (`tail -f` it to watch a slow kernel).
fn boot(vmlinuz: &Path, initramfs: &Path, console: &Path) -> Result<String, String> {
    let log = fs::File::create(console).map_err(|e| format!("{}: {e}", console.display()))?;
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1024"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while qemu.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = qemu.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.wait();
    let bytes = fs::read(console).map_err(|e| format!("{}: {e}", console.display()))?;
    Ok(String::from_utf8_lossy(&bytes).replace('\r', ""))
}

/// The lines the runner printed (the console holds the kernel's too).
fn parse(console: &str) -> Run {
    let mut run = Run::default();
    for line in console.lines() {
        // The console may put its escape sequences before a line of the runner's.
        let line = line.find("KOOLKIT-").map_or(line, |at| &line[at..]);
        if let Some(release) = line.strip_prefix("KOOLKIT-KERNEL ") {
            run.release = release.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("KOOLKIT-CHECK ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(word)) = (parts.next(), parts.next()) else {
                continue;
            };
            let detail = parts.next().unwrap_or_default().to_string();
            run.order.push(name.to_string());
            run.checks
                .insert(name.to_string(), (word.to_string(), detail));
        } else if let Some(json) = line.strip_prefix("KOOLKIT-DOCTOR ") {
            run.doctor = json.trim().to_string();
        } else if line.trim() == "KOOLKIT-DONE" {
            run.done = true;
        }
    }
    run
}

/// One line of what `koolkit-trace doctor --json` said: the mode, the features missing.
fn doctor_summary(json: &str) -> String {
    let Ok(doctor) = serde_json::from_str::<serde_json::Value>(json) else {
        return "the doctor said nothing readable".to_string();
    };
    let missing: Vec<&str> = doctor["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|feature| feature["present"] == false)
        .filter_map(|feature| feature["name"].as_str())
        .collect();
    format!(
        "probes attach with {}; missing: {}",
        doctor["mode"].as_str().unwrap_or("?"),
        if missing.is_empty() {
            "nothing".to_string()
        } else {
            missing.join(", ")
        }
    )
}

/// The kernel × check table, then each `needs` and `fail` said in full.
fn table(runs: &[(String, Run)]) -> String {
    let mut checks: Vec<String> = Vec::new();
    for (_, run) in runs {
        for name in &run.order {
            if !checks.contains(name) {
                checks.push(name.clone());
            }
        }
    }
    let width = checks.iter().map(String::len).max().unwrap_or(5).max(5);
    // Named by series; the releases follow the table.
    let columns: Vec<String> = runs.iter().map(|(name, _)| name.clone()).collect();
    let mut out = String::new();
    let _ = write!(out, "{:width$}", "check");
    for column in &columns {
        let _ = write!(out, "  {column:>24}");
    }
    out.push('\n');
    for check in &checks {
        let _ = write!(out, "{check:width$}");
        for (_, run) in runs {
            let word = match run.checks.get(check) {
                Some((word, _)) => word.as_str(),
                None if run.done => "-",
                None => "no result",
            };
            let _ = write!(out, "  {word:>24}");
        }
        out.push('\n');
    }
    for (name, run) in runs {
        let release = if run.release.is_empty() {
            "release unknown"
        } else {
            run.release.as_str()
        };
        let _ = writeln!(out, "{name}: Linux {release}");
    }
    for ((_, run), column) in runs.iter().zip(&columns) {
        for check in &run.order {
            let (word, detail) = &run.checks[check];
            if word != "ok" {
                let _ = writeln!(out, "{column}: {check}: {word}: {detail}");
            }
        }
    }
    out
}

use std::fmt::Write as _;

/// Writes the initramfs: an uncompressed `newc` cpio archive, as the kernel unpacks it.
fn write_initramfs(
    path: &Path,
    busybox: &Path,
    tracer: &Path,
    checks: &Path,
    shop: &Path,
) -> Result<(), String> {
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut archive = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        archive.directory(dir);
    }
    archive.file("bin/busybox", &read(busybox)?, 0o755);
    for applet in [
        "sh", "mount", "mkdir", "cat", "echo", "poweroff", "sleep", "uname", "ls",
    ] {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.file("koolkit-trace", &read(tracer)?, 0o755);
    archive.file("kernel-checks", &read(checks)?, 0o755);
    archive.file("shop", &read(shop)?, 0o755);
    archive.file("init", INIT.as_bytes(), 0o755);
    let bytes = archive.finish();
    let mut file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The VM's init: the file systems the tracer reads, the checks, power off.
const INIT: &str = "#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || mount -t debugfs debugfs /sys/kernel/debug
echo KOOLKIT-KERNEL $(uname -r)
/kernel-checks /koolkit-trace /shop
poweroff -f
";

/// A `newc` cpio archive being written.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn directory(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8], permissions: u32) {
        self.entry(name, 0o100000 | permissions, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.inode = 0;
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doctor_summary_names_the_mode_and_each_missing_feature() {
        let json = r#"{"kernel":"5.10.0","features":[
            {"name":"bpf","present":true},
            {"name":"attach cookies","present":false},
            {"name":"uprobe-multi links","present":false}],"mode":"perf-event links"}"#;
        assert_eq!(
            doctor_summary(json),
            "probes attach with perf-event links; missing: attach cookies, uprobe-multi links"
        );
        assert_eq!(
            doctor_summary("garbage"),
            "the doctor said nothing readable"
        );
    }

    #[test]
    fn a_cpio_entry_is_a_newc_header_its_name_and_its_data_each_padded_to_four() {
        let mut archive = Cpio::default();
        archive.file("init", b"#!/bin/sh\n", 0o755);
        let bytes = archive.finish();
        assert_eq!(&bytes[..6], b"070701");
        // 110 bytes of header, "init\0", padded to 116; then 10 bytes of data, padded to 128.
        assert_eq!(&bytes[110..114], b"init");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701");
        let mode = u32::from_str_radix(std::str::from_utf8(&bytes[14..22]).unwrap(), 16).unwrap();
        assert_eq!(mode, 0o100755);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn the_runner_s_lines_make_the_table() {
        let console = "[    0.1] Linux version 5.10.0\n\x1bc\x1b[?7lKOOLKIT-KERNEL 5.10.0-32-cloud-amd64\n\
                       KOOLKIT-CHECK attach ok 20 calls (1.0s)\nKOOLKIT-CHECK perf needs no \
                       cookies (2.0s)\nKOOLKIT-DOCTOR {}\nKOOLKIT-DONE\n";
        let run = parse(console);
        assert!(run.done);
        assert_eq!(run.release, "5.10.0-32-cloud-amd64");
        assert_eq!(run.checks["perf"].0, "needs");
        let table = table(&[("5.10".into(), run)]);
        assert!(table.contains("attach"), "{table}");
        assert!(
            table.contains("5.10: Linux 5.10.0-32-cloud-amd64"),
            "{table}"
        );
        assert!(
            table.contains("5.10: perf: needs: no cookies (2.0s)"),
            "{table}"
        );
    }
}
