//! `cargo xtask image`: the debug image, KoolKits-style, as an OCI image tarball written by
//! this task (no container engine): the static `koolkit-trace` and a static busybox for a
//! shell and the usual tools, nothing else. `ctr image import` takes it; `kubectl debug
//! --image` runs it next to the container to trace (see the README).

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use xtask::oci::{ImageConfig, write_image};

use crate::{dist, run, setup::setup, workspace_root};

/// The name the image is imported under.
pub fn image_reference() -> String {
    format!(
        "docker.io/koolkit/koolkit-trace:{}",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn image() -> Result<(), String> {
    setup()?;
    let tarball = build_image()?;
    let size = fs::metadata(&tarball).map_err(|e| e.to_string())?.len();
    println!(
        "{}: OCI image {} ({:.1} MiB): `ctr -n k8s.io image import {}`",
        tarball.display(),
        image_reference(),
        size as f64 / (1 << 20) as f64,
        tarball.display()
    );
    Ok(())
}

/// Builds the static binary and the image; returns the tarball's path.
pub fn build_image() -> Result<PathBuf, String> {
    let tracer = dist::build_static()?;
    let work = workspace_root().join("target/image");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let busybox = static_busybox(&work)?;
    let rootfs = work.join("rootfs");
    let _ = fs::remove_dir_all(&rootfs);
    for dir in ["bin", "usr/local/bin", "tmp", "proc", "sys", "etc"] {
        fs::create_dir_all(rootfs.join(dir)).map_err(|e| e.to_string())?;
    }
    let copy = |from: &Path, to: &str| {
        fs::copy(from, rootfs.join(to)).map_err(|err| format!("{}: {err}", from.display()))
    };
    copy(&tracer, "usr/local/bin/koolkit-trace")?;
    copy(&busybox, "bin/busybox")?;
    // Every applet busybox has, as /bin/NAME: sh, ls, cat, ps, grep, ...
    let applets = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|err| format!("{} --list: {err}", busybox.display()))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(|e| e.to_string())?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").map_err(|e| e.to_string())?;
    write_image(
        &rootfs,
        &work,
        &image_reference(),
        &ImageConfig {
            entrypoint: &[],
            cmd: &["/bin/sh"],
            env: &["PATH=/usr/local/bin:/bin"],
        },
    )
}

/// Debian's static busybox, unpacked from its package (downloaded, not installed: it would
/// replace a dynamic busybox the machine may rely on).
pub fn static_busybox(work: &Path) -> Result<PathBuf, String> {
    let unpacked = work.join("busybox-static");
    let binary = unpacked.join("bin/busybox");
    if binary.exists() {
        return Ok(binary);
    }
    let deb = download_and_unpack("busybox-static", work, &unpacked)?;
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("{} holds no bin/busybox", deb.display()))
    }
}

/// Downloads Debian package `package` (into `work/download`, not installed) and unpacks its
/// files into `unpacked`; returns the `.deb`.
pub fn download_and_unpack(package: &str, work: &Path, unpacked: &Path) -> Result<PathBuf, String> {
    let download = work.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    run(Command::new("apt-get")
        // As root, apt would hand the download to its `_apt` user, who cannot write here.
        .args(["-o", "APT::Sandbox::User=root", "download", "-q", package])
        .current_dir(&download))?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(unpacked))?;
    Ok(deb)
}
