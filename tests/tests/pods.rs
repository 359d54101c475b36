//! End-to-end: `--pod` on real pods. A containerd of the test's own runs pods through CRI as
//! kubelet would (its labels, cgroupfs parents under `/kubepods/besteffort`), from an image
//! built here of the shop fixture and its libraries. Traced from the node (pods found through
//! the CRI socket) and from inside a pod's pid namespace (no target flag, as in
//! `kubectl debug --target`). Run as root through `cargo xtask test`.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use tests::{
    Tracer, c_fixture,
    pods::{Containerd, RunningPod, oci_image},
};

/// A pod UID as kubelet writes them, told apart by `n`.
fn pod_uid(n: u8) -> String {
    format!(
        "{:08x}-5f60-4718-9a2b-3c4d5e6f70{n:02x}",
        std::process::id()
    )
}

/// `lookup_customer(customer_id)` returns `customer_id % 3`: what every traced call must show,
/// read inside the container.
fn assert_lookups_are_right(calls: &[Value]) {
    assert!(!calls.is_empty(), "no call traced");
    for call in calls {
        let id = call["args"]["customer_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{call}"));
        assert_eq!(call["ret"].as_i64(), Some(id % 3), "{call}");
    }
}

/// What a run printed, for `--nocapture`: its status lines and first calls.
fn show(what: &str, output: &tests::TracerOutput) {
    println!("--- {what}\n{}", output.stderr);
    for line in output.stdout.lines().take(3) {
        println!("{line}");
    }
}

fn pids_of(calls: &[Value]) -> BTreeSet<u64> {
    calls.iter().map(|c| c["pid"].as_u64().unwrap()).collect()
}

#[test]
fn pods_of_a_real_containerd_are_traced_from_the_node_and_from_inside() {
    let work = tests::private_dir("pods");
    let shop = c_fixture("shop", &["-g", "-O1"]);
    let mut containerd = Containerd::start(&work);
    let image = oci_image(
        &work,
        "docker.io/local/shop:1",
        &[(&shop, "/shop")],
        &["/shop"],
    );
    containerd.import(&image);
    // Two pods of one Deployment and a pod of another: one image, one inode in the layer.
    let checkout_a = containerd.run_pod(
        "shop",
        "checkout-7d9-a",
        &pod_uid(1),
        "app",
        "local/shop:1",
        &["200"],
    );
    let checkout_b = containerd.run_pod(
        "shop",
        "checkout-7d9-b",
        &pod_uid(2),
        "app",
        "local/shop:1",
        &["200"],
    );
    let cart = containerd.run_pod(
        "shop",
        "cart-5f6-c",
        &pod_uid(3),
        "app",
        "local/shop:1",
        &["200"],
    );

    from_the_node(&containerd, &checkout_a, &checkout_b, &cart);
    from_inside_the_pod(&checkout_a);
}

/// `--pod 'checkout-7d9-*'` through the CRI socket: both checkout pods and a process started
/// in one of them while tracing, never the cart pod.
fn from_the_node(containerd: &Containerd, a: &RunningPod, b: &RunningPod, cart: &RunningPod) {
    let socket = containerd.socket.to_str().unwrap();
    let recorded = tests::private_dir("pod-trace").join("pods.kt");
    let tracer = Tracer::start(&[
        "-o",
        recorded.to_str().unwrap(),
        "--pod",
        "checkout-7d9-*",
        "-n",
        "shop",
        "--cri-socket",
        socket,
        "--fn",
        "lookup_customer",
        "--json",
    ]);
    let start = tracer.stderr.seen().join("\n");
    for pod in [a, b] {
        let line = format!("  shop/{} (app): 1 process (pid {})", pod.name, pod.pid);
        assert!(start.contains(&line), "{line}:\n{start}");
    }
    assert!(!start.contains("cart-5f6-c"), "{start}");
    // A second shop in pod a (`kubectl exec`): not a child of the traced ones, so only the
    // membership asked again finds it. It runs 3 s, then the runtime kills it.
    containerd.exec(a, &["/shop", "200"], Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    let output = tracer.interrupt();
    show("from the node", &output);
    assert!(output.status.success(), "{}", output.stderr);
    let calls = output.calls_of("lookup_customer");
    assert!(!calls.is_empty(), "{}\n{}", output.stderr, output.stdout);
    assert_lookups_are_right(&calls);
    let pids = pids_of(&calls);
    assert!(pids.contains(&u64::from(a.pid)), "{pids:?}");
    assert!(pids.contains(&u64::from(b.pid)), "{pids:?}");
    assert!(
        !pids.contains(&u64::from(cart.pid)),
        "the cart pod is not traced: {pids:?}"
    );
    let worker: Vec<&u64> = pids
        .iter()
        .filter(|&&p| p != u64::from(a.pid) && p != u64::from(b.pid))
        .collect();
    assert_eq!(
        worker.len(),
        1,
        "the process started in pod a: {pids:?}\n{}",
        output.stderr
    );
    for call in &calls {
        let pod = if call["pid"] == b.pid {
            &b.name
        } else {
            &a.name
        };
        assert_eq!(
            (&call["namespace"], &call["pod"], &call["container"]),
            (&"shop".into(), &Value::from(pod.as_str()), &"app".into()),
            "{call}"
        );
    }
    assert!(
        output
            .stderr
            .contains("processes: 3 traced (1 joined while tracing), 3 with calls"),
        "{}",
        output.stderr
    );
    // The trace file names each process's host and pod: its replay labels the calls as the
    // live trace did.
    let replay = tests::run_tracer(&["replay", recorded.to_str().unwrap(), "--json"]);
    assert!(replay.status.success(), "{}", replay.stderr);
    let replayed = replay.calls_of("lookup_customer");
    assert_eq!(replayed.len(), calls.len());
    for (live, again) in calls.iter().zip(&replayed) {
        for field in ["pid", "namespace", "pod", "container", "args", "ret"] {
            assert_eq!(live[field], again[field], "{field}: {again}");
        }
    }
}

/// The tracer run in the pod's pid namespace with its own `/proc` (what `kubectl debug -it POD
/// --target=app` gives): with no target flag, the container's processes; with `--pid 1`, the
/// pod's pid 1. Pids are as the pod sees them.
fn from_inside_the_pod(pod: &RunningPod) {
    let target = pod.pid.to_string();
    let inside = [
        "nsenter",
        "-t",
        &target,
        "-p",
        "--",
        "unshare",
        "-m",
        "--mount-proc",
    ];
    for target_args in [&[][..], &["--pid", "1", "--children"][..]] {
        let mut args = target_args.to_vec();
        args.extend(["--fn", "lookup_customer", "--json"]);
        let tracer = Tracer::start_under(&inside, &args);
        let start = tracer.stderr.seen().join("\n");
        if target_args.is_empty() {
            assert!(
                start.contains("inside a container's pid namespace") && start.contains("(pid 1)"),
                "{start}"
            );
        }
        std::thread::sleep(Duration::from_millis(700));
        let output = tracer.interrupt();
        show(&format!("inside the pod, {target_args:?}"), &output);
        assert!(
            output.status.success(),
            "{target_args:?}: {}",
            output.stderr
        );
        let calls = output.calls_of("lookup_customer");
        assert_lookups_are_right(&calls);
        assert_eq!(pids_of(&calls), BTreeSet::from([1]), "{target_args:?}");
    }
}
