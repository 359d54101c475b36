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
        // Processes leave when they exit (a cgroup empties a moment after); the directory
        // goes, then its parents while empty (another test's cgroups keep theirs).
        let remove = |dir: &std::path::Path| {
            (0..50).any(|_| {
                let gone = fs::remove_dir(dir).is_ok();
                if !gone {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                gone
            })
        };
        let mut dir = Some(self.0.as_path());
        while let Some(here) = dir.filter(|d| d.components().count() > 5) {
            let empty = fs::read_dir(here)
                .map(|entries| entries.flatten().all(|e| !e.path().is_dir()))
                .unwrap_or(false);
            if !empty || !remove(here) {
                break;
            }
            dir = here.parent();
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

/// A container running two programs: each function is found in the program that defines it,
/// whichever process came first.
#[test]
fn a_container_of_two_programs_is_traced_in_each() {
    let calls_binary = c_fixture("calls", &["-g", "-O1"]);
    let shop_binary = c_fixture("shop", &["-g", "-O1"]);
    let id = container_id(0x30);
    let cgroup = Cgroup::new(systemd_scope(&id));
    // The shop first: the lowest pid, the one whose objects were the only ones searched.
    let shop = Fixture::start(&shop_binary, &["200"]);
    let mut calls = Fixture::start(&calls_binary, &["5"]);
    cgroup.adopt(shop.pid);
    cgroup.adopt(calls.pid);
    let tracer = Tracer::start(&[
        "--container",
        &id[..16],
        "--fn",
        "compute",
        "--fn",
        "lookup_customer",
        "--json",
    ]);
    calls.round();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    let computed = output.calls_of("compute");
    assert_eq!(computed.len(), 5, "{}", output.stderr);
    assert!(computed.iter().all(|c| c["pid"] == calls.pid));
    let looked_up = output.calls_of("lookup_customer");
    assert!(!looked_up.is_empty(), "{}", output.stderr);
    assert!(looked_up.iter().all(|c| c["pid"] == shop.pid));
    // --binary names the program to look in, as the container sees it.
    let scoped = run_tracer(&[
        "list",
        "--container",
        &id[..16],
        "--binary",
        shop_binary.to_str().unwrap(),
        "compute",
    ]);
    assert_eq!(scoped.status.code(), Some(2), "not in the shop: {scoped:?}");
    let scoped = run_tracer(&[
        "list",
        "--container",
        &id[..16],
        "--binary",
        calls_binary.to_str().unwrap(),
        "compute",
    ]);
    assert!(scoped.status.success(), "{scoped:?}");
    assert!(scoped.stdout.contains("compute"), "{}", scoped.stdout);
    drop((shop, calls));
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

/// A pod UID of this run.
fn pod_uid(n: u16) -> String {
    format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id())
}

/// `--pod` on a node: kubelet's pod folders and container links under a host root (as
/// `kubectl debug node/N` mounts it at /host), the pods' processes in their cgroups (one pod
/// with the systemd driver on v2, one with cgroupfs on v1), and a pod of another name
/// running the same binary, whose calls are not emitted.
#[test]
fn pods_are_found_by_name_under_a_host_root() {
    let binary = c_fixture("calls", &["-g", "-O1"]);
    let host = tests::private_dir("host-root");
    let pods = [
        ("checkout-7d9-a", pod_uid(1), container_id(0x21)),
        ("checkout-7d9-b", pod_uid(2), container_id(0x22)),
        ("cart-5f6-c", pod_uid(3), container_id(0x23)),
    ];
    let mut cgroups = Vec::new();
    let mut fixtures = Vec::new();
    for (i, (name, uid, id)) in pods.iter().enumerate() {
        let folder = host.join(format!("var/log/pods/shop_{name}_{uid}/app"));
        fs::create_dir_all(&folder).unwrap();
        fs::create_dir_all(host.join("var/log/containers")).unwrap();
        std::os::unix::fs::symlink(
            folder.join("0.log"),
            host.join(format!("var/log/containers/{name}_shop_app-{id}.log")),
        )
        .unwrap();
        let cgroup = if i == 1 {
            PathBuf::from(format!(
                "/sys/fs/cgroup/pids/kubepods/besteffort/pod{uid}/{id}"
            ))
        } else {
            let uid_ = uid.replace('-', "_");
            PathBuf::from(format!(
                "/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/\
                 kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope"
            ))
        };
        let cgroup = Cgroup::new(cgroup);
        let fixture = Fixture::start(&binary, &["3"]);
        cgroup.adopt(fixture.pid);
        cgroups.push(cgroup);
        fixtures.push(fixture);
    }
    let host_root = host.to_str().unwrap();
    let tracer = Tracer::start(&[
        "--pod",
        "checkout-7d9-*",
        "-n",
        "shop",
        "--container",
        "app",
        "--host-root",
        host_root,
        "--fn",
        "compute",
        "--json",
    ]);
    for fixture in &mut fixtures {
        fixture.round();
    }
    let output = tracer.interrupt();
    assert!(output.status.success(), "{}", output.stderr);
    for (fixture, name) in fixtures.iter().zip(["checkout-7d9-a", "checkout-7d9-b"]) {
        let line = format!("  shop/{name} (app): 1 process (pid {})", fixture.pid);
        assert!(output.stderr.contains(&line), "{line}: {}", output.stderr);
    }
    let calls = output.calls_of("compute");
    let pids: std::collections::BTreeSet<u64> =
        calls.iter().map(|c| c["pid"].as_u64().unwrap()).collect();
    let wanted: std::collections::BTreeSet<u64> =
        fixtures[..2].iter().map(|f| u64::from(f.pid)).collect();
    assert_eq!(pids, wanted, "both checkout pods, not the cart pod");
    assert_eq!(calls.len(), 6, "{}", output.stderr);
    // Each call says its pod and container.
    for call in &calls {
        let name = if call["pid"] == fixtures[0].pid {
            "checkout-7d9-a"
        } else {
            "checkout-7d9-b"
        };
        assert_eq!(
            (&call["namespace"], &call["pod"], &call["container"]),
            (&"shop".into(), &name.into(), &"app".into()),
            "{call}"
        );
    }

    // A container name no pod has, a pod name no folder has, and the folder of a pod that
    // has gone (no cgroup names its UID): each refused, saying why.
    let refused = |pod: &str, extra: &[&str], why: &str| {
        let mut args = vec!["--pod", pod, "--host-root", host_root, "--fn", "compute"];
        args.extend_from_slice(extra);
        let output = run_tracer(&args);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(output.stderr.contains(why), "{}", output.stderr);
    };
    refused(
        "checkout-7d9-*",
        &["--container", "sidecar"],
        "named sidecar",
    );
    refused("web-*", &[], "no pod on this node matches `web-*`");
    fs::create_dir_all(host.join(format!("var/log/pods/shop_web-gone_{}/app", pod_uid(9))))
        .unwrap();
    refused("web-*", &[], "no pod on this node matches `web-*`");
    drop(fixtures);
}
