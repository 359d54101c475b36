//! End-to-end: the static build (`cargo xtask dist`) runs in an empty root, with no C library
//! and no loader there, only itself and a fixture (and for tracing `/proc` and `/sys`, which a
//! container runtime mounts in a scratch image under `kubectl debug`), and lists and traces.
//! Run as root through `cargo xtask test`, which builds it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use tests::{Fixture, Tracer, c_fixture};

/// A pseudo file system (`proc`, `sysfs`) mounted in the root for the test's length.
struct Mounted(PathBuf);

impl Mounted {
    fn mount(root: &Path, kind: &str, at: &str) -> Self {
        let at = root.join(at);
        fs::create_dir_all(&at).unwrap();
        tests::run_ok("mount", &["-t", kind, kind, at.to_str().unwrap()]);
        Self(at)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn the_static_binary_lists_and_traces_in_an_empty_root() {
    let root = tests::private_dir("empty-root");
    let binary = tests::built_by_xtask(
        "KOOLKIT_TRACE_STATIC_BIN",
        "target/dist/koolkit-trace",
        "dist",
    );
    fs::copy(binary, root.join("koolkit-trace")).unwrap();
    fs::copy(
        c_fixture("calls", &["-static", "-g", "-O1"]),
        root.join("calls"),
    )
    .unwrap();
    let in_root = |args: &[&str]| {
        let output = Command::new("chroot")
            .arg(&root)
            .arg("/koolkit-trace")
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    assert!(in_root(&["--version"]).starts_with("koolkit-trace "));
    let listed = in_root(&["list", "--binary", "/calls", "comp*"]);
    assert!(listed.contains("compute"), "{listed}");

    let _proc = Mounted::mount(&root, "proc", "proc");
    let mut fixture = Fixture::start_with(
        Command::new("chroot").arg(&root).args(["/calls", "100"]),
        &root.join("calls"),
    );
    let pid = fixture.pid.to_string();
    // Without /sys the tracer says what it misses before attaching anything.
    let output = Command::new("chroot")
        .arg(&root)
        .args(["/koolkit-trace", "--pid", &pid, "--fn", "compute"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot read /sys/devices/system/cpu/possible")
            && stderr.contains("mount sysfs"),
        "{stderr}"
    );
    let _sys = Mounted::mount(&root, "sysfs", "sys");
    let mut command = Command::new("chroot");
    command
        .arg(&root)
        .args(["/koolkit-trace", "--pid", &pid, "--json", "--fn", "compute"]);
    let tracer = Tracer::start_command(command);
    fixture.round();
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    let calls = output.calls_of("compute");
    assert_eq!(calls.len(), 100, "{}", output.stderr);
    for call in &calls {
        let (a, b) = (call["args"]["a"].as_i64(), call["args"]["b"].as_i64());
        assert_eq!(
            call["ret"].as_i64(),
            Some(a.unwrap() * 1000 + b.unwrap()),
            "{call}"
        );
    }
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}
