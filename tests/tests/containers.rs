//! End-to-end: `--container ID`, containers found by the cgroups their runtime puts them in.
//! The cgroups are made by hand here in the layouts kubelet and the runtimes write (cgroup v2
//! with kubelet's systemd driver, v1 with its cgroupfs driver), around processes of one
//! binary, so both share its inode and only the kernel's selection tells them apart. Run as
//! root through `cargo xtask test`.

use std::{fs, path::PathBuf};

use tests::{Fixture, Tracer, c_fixture, run_tracer};

/// A cgroup made for a test, removed (after its processes) when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(path: PathBuf) -> Self {
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }

    fn adopt(&self, pid: u32) {
        fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes leave when they exit; the directory (and empty parents made for it) goes.
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A container id of 64 hex digits: this run's pid, then `n`, so the first 12 digits tell
/// the test's containers apart.
fn container_id(n: u16) -> String {
    format!(
        "{:08x}{n:04x}{}",
        std::process::id(),
        "c0ffee".repeat(8) + "c0ff"
    )
}

const POD_UID: &str = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081";

/// kubelet's systemd driver with containerd, on cgroup v2.
fn systemd_scope(id: &str) -> PathBuf {
    let uid = POD_UID.replace('-', "_");
    PathBuf::from(format!(
        "/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/\
         kubepods-besteffort-pod{uid}.slice/cri-containerd-{id}.scope"
    ))
}

/// kubelet's cgroupfs driver, on the cgroup v1 pids hierarchy.
fn cgroupfs_dir(id: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/cgroup/pids/kubepods/besteffort/pod{POD_UID}/{id}"
    ))
}

#[test]
fn only_the_named_container_of_two_is_traced() {
    for (n, layout) in [(0, systemd_scope as fn(&str) -> PathBuf), (1, cgroupfs_dir)] {
        let binary = c_fixture("calls", &["-g", "-O1"]);
        let (traced_id, other_id) = (container_id(2 * n), container_id(2 * n + 1));
        let traced_cgroup = Cgroup::new(layout(&traced_id));
        let other_cgroup = Cgroup::new(layout(&other_id));
        // Two processes of one binary (one inode, so one set of probes), one per container.
        let mut traced = Fixture::start(&binary, &["7"]);
        let mut other = Fixture::start(&binary, &["7"]);
        traced_cgroup.adopt(traced.pid);
        other_cgroup.adopt(other.pid);

        let tracer = Tracer::start(&["--container", &traced_id[..16], "--fn", "compute", "--json"]);
        traced.round();
        other.round();
        let output = tracer.interrupt();
        assert!(output.status.success(), "{}", output.stderr);
        assert!(
            output.stderr.contains(&format!(
                "Container {}: 1 process (pid {})",
                &traced_id[..12],
                traced.pid
            )),
            "{}",
            output.stderr
        );
        let calls = output.calls_of("compute");
        assert_eq!(calls.len(), 7, "{}", output.stderr);
        assert!(
            calls.iter().all(|c| c["pid"] == traced.pid),
            "the other container's calls are not emitted"
        );
        drop((traced, other));
    }
}

#[test]
fn container_ids_that_match_none_or_several_are_refused() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let (a, b) = (container_id(0x10), container_id(0x11));
    let (first, second) = (
        Cgroup::new(systemd_scope(&a)),
        Cgroup::new(systemd_scope(&b)),
    );
    let one = Fixture::start(&binary, &["1"]);
    let two = Fixture::start(&binary, &["1"]);
    first.adopt(one.pid);
    second.adopt(two.pid);
    // Both ids start with this run's pid and `001`; the other test's with `000`.
    let shared = &a[..11];
    let several = run_tracer(&["--container", shared, "--fn", "compute"]);
    assert_eq!(several.status.code(), Some(2), "{several:?}");
    assert!(
        several.stderr.contains("names 2 containers"),
        "{}",
        several.stderr
    );
    let none = run_tracer(&["--container", "deadbeefdeadbeef", "--fn", "compute"]);
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    assert!(
        none.stderr.contains("no running container"),
        "{}",
        none.stderr
    );
    let bad = run_tracer(&["--container", "xyz", "--fn", "compute"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    drop((one, two));
}
