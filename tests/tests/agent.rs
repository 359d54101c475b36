//! End-to-end: `koolkit-trace agent` as its DaemonSet runs it. A containerd of the test's own
//! runs the debug image (`cargo xtask image`) through CRI as a pod with exactly the
//! DaemonSet's security context (read from `deploy/agent/daemonset.yaml`: drop ALL, the four
//! capabilities, a read-only root, the host's pid namespace), its requests folder laid out and
//! updated as kubelet does a ConfigMap's (`..data` swapped), and fixture pods to record. Run
//! as root through `cargo xtask test`, which builds the image.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use tests::{
    c_fixture,
    manifests::{agent_capabilities, agent_container, agent_host_pid},
    pods::{Containerd, PodSpec, RunningPod, oci_image},
};

fn pod_uid(n: u8) -> String {
    format!(
        "{:08x}-6a70-4718-9a2b-3c4d5e6f70{n:02x}",
        std::process::id()
    )
}

/// Writes `text` as kubelet's atomic writer updates a ConfigMap volume: a new timestamped
/// folder, a `..data` link swapped to it by a rename, `requests.yaml` a link through `..data`.
fn publish_requests(folder: &Path, generation: u32, text: &str) {
    let data = format!("..2026_12_01_00_00_{generation:02}.{}", std::process::id());
    fs::create_dir_all(folder.join(&data)).unwrap();
    fs::write(folder.join(&data).join("requests.yaml"), text).unwrap();
    let _ = fs::remove_file(folder.join("..data_tmp"));
    symlink(&data, folder.join("..data_tmp")).unwrap();
    let previous = fs::read_link(folder.join("..data")).ok();
    fs::rename(folder.join("..data_tmp"), folder.join("..data")).unwrap();
    if fs::symlink_metadata(folder.join("requests.yaml")).is_err() {
        symlink("..data/requests.yaml", folder.join("requests.yaml")).unwrap();
    }
    if let Some(previous) = previous {
        let _ = fs::remove_dir_all(folder.join(previous));
    }
}

/// `GET path` of the agent: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, response[end + 4..].to_vec()))
}

fn status(port: u16) -> Option<Value> {
    let (code, body) = get(port, "/status")?;
    (code == 200).then(|| serde_json::from_slice(&body).ok())?
}

/// Waits until the agent's `/status` meets `done`; panics with the status and the agent's
/// output after `timeout`.
fn wait_for_status(
    port: u16,
    agent: &RunningPod,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let now = status(port);
        if let Some(now) = &now
            && done(now)
        {
            return now.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\nstatus: {}\nagent:\n{}",
            now.map(|s| serde_json::to_string_pretty(&s).unwrap())
                .unwrap_or_else(|| "no answer".into()),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The recording of `request` in the status, if it runs.
fn recording<'a>(status: &'a Value, request: &str) -> Option<&'a Value> {
    status["pods"]
        .as_array()?
        .iter()
        .find(|p| p["request"] == request)
}

fn calls_of(status: &Value, request: &str) -> u64 {
    recording(status, request).map_or(0, |p| p["calls"].as_u64().unwrap_or(0))
}

fn request_state<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["requests"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

/// `report --json` of a recording: it must read whole.
fn report(file: &Path) -> Value {
    let report = report_of_any(file);
    assert!(report["torn_tail"].is_null(), "{report}");
    report
}

/// `report --json` of a recording that may end in a torn frame (its writer was killed).
fn report_of_any(file: &Path) -> Value {
    let output = tests::run_tracer(&["report", "--json", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", output.stderr);
    serde_json::from_str(&output.stdout).unwrap()
}

/// The recording of `request` in pod `pod`, if it runs.
fn recording_in<'a>(status: &'a Value, request: &str, pod: &str) -> Option<&'a Value> {
    status["pods"]
        .as_array()?
        .iter()
        .find(|p| p["request"] == request && p["pod"] == pod)
}

/// A free TCP port of this host (the agent's pods use its network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's container arguments: the DaemonSet's, with this test's port, a size limit the
/// earlier files exceed, and a quick scan.
fn agent_args(port: u16) -> Vec<String> {
    let manifest = agent_container();
    let mut args: Vec<String> = manifest.command.clone().unwrap();
    for arg in manifest.args.clone().unwrap() {
        let arg = match arg.split_once('=') {
            Some(("--listen", _)) => format!("--listen=127.0.0.1:{port}"),
            Some(("--max-total-size", _)) => "--max-total-size=2MiB".into(),
            _ => arg,
        };
        args.push(arg);
    }
    args.push("--scan-interval=500ms".into());
    args
}

/// The agent pod's spec, as the DaemonSet's: its security context, host pid namespace and
/// mounts (the node's folders where this host has them).
fn agent_spec(requests: &Path, out: &Path, cri_folder: &Path) -> PodSpec {
    let manifest = agent_container();
    let security = manifest.security_context.clone().unwrap();
    let mounts = manifest
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|mount| {
            let read_only = mount.read_only.unwrap_or(false);
            let host = match mount.mount_path.as_str() {
                "/etc/koolkit-trace" => requests.to_path_buf(),
                "/var/lib/koolkit-trace" => out.to_path_buf(),
                // The CRI socket's folder: this test's containerd's.
                "/run/containerd" => cri_folder.to_path_buf(),
                // The node's own, where it has them (kubelet's folders are not here).
                other if Path::new(other).exists() => PathBuf::from(other),
                _ => return None,
            };
            Some((host, mount.mount_path, read_only))
        })
        .collect();
    PodSpec {
        host_pid: agent_host_pid(),
        mounts,
        capabilities: Some(agent_capabilities()),
        read_only_root: security.read_only_root_filesystem == Some(true),
        env: vec![("NODE_NAME".into(), "node-a".into())],
    }
}

const CHECKOUT: &str = "  - name: checkout\n    namespace: shop\n    pod: 'checkout-7d9-*'\n    \
                        functions: [lookup_customer]\n";
const BROKEN: &str = "  - name: broken\n    pod: 'checkout-*'\n    functions: [lookup_customer]\n    \
                      filters: --min-latencyy 5ms\n";
const MISSING: &str = "  - name: missing\n    namespace: shop\n    pod: 'checkout-7d9-*'\n    \
                       functions: [no_such_function]\n";
const BRIEF: &str = "  - name: brief\n    namespace: shop\n    pod: 'cart-*'\n    functions: \
                     [apply_discount]\n    duration: 2s\n";
const CART: &str = "  - name: cart\n    namespace: shop\n    pod: 'cart-*'\n    functions: \
                    [lookup_customer]\n    filters: ['--where', 'customer_id >= 0']\n";

#[test]
fn the_agent_records_requested_pods_as_its_daemonset_runs_it() {
    let (tarball, reference) = tests::debug_image();
    let work = tests::private_dir("agent");
    let shop = c_fixture("shop", &["-g", "-O1"]);
    let mut containerd = Containerd::start(&work);
    containerd.import(&tarball);
    containerd.import(&oci_image(
        &work,
        "docker.io/local/shop:1",
        &[(&shop, "/shop")],
        &["/shop"],
    ));
    let checkout = containerd.run_pod(
        "shop",
        "checkout-7d9-a",
        &pod_uid(1),
        "app",
        "local/shop:1",
        &["200"],
    );
    let cart = containerd.run_pod(
        "shop",
        "cart-5f6-c",
        &pod_uid(2),
        "app",
        "local/shop:1",
        &["100"],
    );

    // The node's folders: the requests (a ConfigMap volume), the output with files of an
    // earlier agent: one past the age limit, one that the total size limit removes.
    let requests = work.join("requests");
    fs::create_dir_all(&requests).unwrap();
    publish_requests(
        &requests,
        1,
        &format!("requests:\n{CHECKOUT}{BROKEN}{MISSING}"),
    );
    let out = work.join("out");
    let old_folder = out.join("shop/checkout-gone");
    fs::create_dir_all(&old_folder).unwrap();
    let now = SystemTime::now();
    for (name, bytes, age_days) in [
        ("checkout-20261101T000000Z.kt", 4096, 30),
        ("checkout-20261130T000000Z.kt", 3 << 20, 1),
    ] {
        fs::write(old_folder.join(name), vec![0u8; bytes]).unwrap();
        fs::File::options()
            .write(true)
            .open(old_folder.join(name))
            .unwrap()
            .set_modified(now - Duration::from_secs(age_days * 86_400))
            .unwrap();
    }

    // The agent's pod, as deploy/agent/daemonset.yaml says.
    let port = free_port();
    let args = agent_args(port);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = containerd.run_pod_with(
        "koolkit-trace",
        "koolkit-trace-agent-x1",
        &pod_uid(9),
        ("agent", &reference, &arg_refs),
        &agent_spec(&requests, &out, &containerd.root),
    );

    // The request for the checkout pod records; the invalid ones are reported, each with its
    // reason, and do not stop it.
    let first = wait_for_status(
        port,
        &agent,
        "the checkout recording with calls",
        Duration::from_secs(30),
        |s| calls_of(s, "checkout") >= 20,
    );
    println!("{}", serde_json::to_string_pretty(&first).unwrap());
    let file = recording(&first, "checkout").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        file.starts_with("shop/checkout-7d9-a/checkout-") && file.ends_with(".kt"),
        "{file}"
    );
    let broken = request_state(&first, "broken").expect("the invalid request in the status");
    assert_eq!(broken["state"], "rejected", "{broken}");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("--min-latencyy"),
        "{broken}"
    );
    let missing = wait_for_status(
        port,
        &agent,
        "the request of an unknown function reported",
        Duration::from_secs(10),
        |s| {
            request_state(s, "missing")
                .is_some_and(|r| !r["not_recorded"].as_array().unwrap().is_empty())
        },
    );
    let why = &request_state(&missing, "missing").unwrap()["not_recorded"][0]["reason"];
    assert!(
        why.as_str().unwrap().contains("no_such_function"),
        "{why}\n{}",
        agent.output()
    );
    assert_eq!(first["node"], "node-a", "NODE_NAME names the node");

    // A pod that starts later is recorded too.
    let late = containerd.run_pod(
        "shop",
        "checkout-7d9-b",
        &pod_uid(3),
        "app",
        "local/shop:1",
        &["200"],
    );
    let with_late = wait_for_status(
        port,
        &agent,
        "the pod started later recorded",
        Duration::from_secs(20),
        |s| {
            recording_in(s, "checkout", "checkout-7d9-b")
                .is_some_and(|r| r["calls"].as_u64() >= Some(10))
        },
    );
    let late_file = recording_in(&with_late, "checkout", "checkout-7d9-b").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();

    // OUT's limits: the file past the age limit went, then the oldest until the total fits;
    // the recording stays.
    wait_for_status(
        port,
        &agent,
        "the earlier files removed",
        Duration::from_secs(10),
        |_| !old_folder.exists(),
    );
    let output = agent.output();
    for name in [
        "checkout-20261101T000000Z.kt",
        "checkout-20261130T000000Z.kt",
    ] {
        assert!(output.contains(name), "{name} removed, and said:\n{output}");
    }
    assert!(out.join(&file).exists());

    // A second request, added to the ConfigMap, starts; removed, it stops, its file whole.
    publish_requests(
        &requests,
        2,
        &format!("requests:\n{CHECKOUT}{BROKEN}{MISSING}{CART}{BRIEF}"),
    );
    let with_cart = wait_for_status(
        port,
        &agent,
        "the cart request recording",
        Duration::from_secs(20),
        |s| calls_of(s, "cart") >= 10,
    );
    let cart_file = recording(&with_cart, "cart").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        cart_file.starts_with("shop/cart-5f6-c/cart-"),
        "{cart_file}"
    );
    let listed = get(port, "/traces").unwrap();
    assert_eq!(listed.0, 200);
    let listed: Value = serde_json::from_slice(&listed.1).unwrap();
    for wanted in [&file, &cart_file] {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == wanted.as_str()),
            "{wanted} in /traces: {listed}"
        );
    }
    let checkout_calls = calls_of(&with_cart, "checkout");
    // A request with a duration ends by itself and is not started again.
    let brief = wait_for_status(
        port,
        &agent,
        "the brief request finished",
        Duration::from_secs(20),
        |s| request_state(s, "brief").is_some_and(|r| r["state"] == "finished"),
    );
    assert!(recording(&brief, "brief").is_none());
    let brief_files: Vec<_> = fs::read_dir(out.join("shop/cart-5f6-c"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("brief-"))
        .collect();
    assert_eq!(brief_files.len(), 1, "{brief_files:?}");
    let brief_report = report(&brief_files[0].path());
    assert_eq!(
        brief_report["functions"][0]["fn"], "apply_discount",
        "{brief_report}"
    );
    publish_requests(
        &requests,
        3,
        &format!("requests:\n{CHECKOUT}{BROKEN}{MISSING}"),
    );
    let without_cart = wait_for_status(
        port,
        &agent,
        "the cart request stopped",
        Duration::from_secs(20),
        |s| recording(s, "cart").is_none() && request_state(s, "cart").is_none(),
    );
    assert!(
        calls_of(&without_cart, "checkout") > checkout_calls,
        "the checkout recording goes on"
    );
    let cart_report = report(&out.join(&cart_file));
    assert_eq!(cart_report["request"]["name"], "cart", "{cart_report}");
    assert_eq!(cart_report["request"]["pod"], "cart-5f6-c");
    let cart_size = fs::metadata(out.join(&cart_file)).unwrap().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fs::metadata(out.join(&cart_file)).unwrap().len(),
        cart_size,
        "a stopped recording is not written to"
    );

    // A pod deleted: its recording stops, whole.
    containerd.remove_pod(&late);
    wait_for_status(
        port,
        &agent,
        "the deleted pod's recording stopped",
        Duration::from_secs(20),
        |s| recording_in(s, "checkout", "checkout-7d9-b").is_none(),
    );
    let late_report = report(&out.join(&late_file));
    assert_eq!(late_report["request"]["pod"], "checkout-7d9-b");
    assert!(late_report["calls"].as_u64() >= Some(10), "{late_report}");
    assert!(
        agent.output().contains("pod shop/checkout-7d9-b: ")
            && agent.output().contains("stopped: its pod is gone"),
        "{}",
        agent.output()
    );

    // A recording is served over HTTP as it is on disk.
    let (code, body) = get(port, &format!("/traces/{file}")).unwrap();
    assert_eq!(code, 200);
    assert!(body.len() > 100, "{} bytes", body.len());
    assert_eq!(get(port, "/traces/../../etc/passwd").unwrap().0, 404);
    assert_eq!(get(port, "/healthz").unwrap(), (200, b"ok\n".to_vec()));

    // SIGTERM, as kubelet stops a pod: every trace stops, its file closed whole, every probe
    // detached, within the grace period.
    let stopping = Instant::now();
    containerd.stop_container(&agent, Duration::from_secs(20));
    let took = stopping.elapsed();
    let output = agent.output();
    println!("--- the agent\n{output}\n--- stopped in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}\n{output}");
    assert!(
        output.contains("SIGTERM: stopped 1 trace, every probe detached and every file closed"),
        "{output}"
    );
    let shop_path = Path::new("/shop");
    let address =
        tests::runtime_address_as_mapped(checkout.pid, shop_path, &shop, "lookup_customer");
    assert_eq!(
        tests::byte_in_process(checkout.pid, address),
        tests::byte_in_file(&shop, "lookup_customer"),
        "the probe on lookup_customer is gone"
    );
    let checkout_report = report(&out.join(&file));
    let text = tests::run_tracer(&["report", out.join(&file).to_str().unwrap()]);
    println!("--- koolkit-trace report {file}\n{}", text.stdout);
    assert!(
        text.stdout.starts_with(
            "Recorded by the agent on node node-a for request checkout: pod shop/checkout-7d9-a"
        ),
        "{}",
        text.stdout
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&checkout_report["request"]).unwrap()
    );
    assert_eq!(
        checkout_report["request"],
        serde_json::json!({"name": "checkout", "node": "node-a", "namespace": "shop", "pod": "checkout-7d9-a"})
    );
    let function = &checkout_report["functions"][0];
    assert_eq!(function["fn"], "lookup_customer", "{checkout_report}");
    assert!(function["calls"].as_u64().unwrap() >= calls_of(&without_cart, "checkout"));
    // Its calls as recorded: each returns customer_id % 3.
    let replay = tests::run_tracer(&["replay", "--json", out.join(&file).to_str().unwrap()]);
    assert!(replay.status.success(), "{}", replay.stderr);
    let calls = replay.calls_of("lookup_customer");
    assert!(!calls.is_empty());
    for call in &calls {
        let id = call["args"]["customer_id"].as_i64().unwrap();
        assert_eq!(call["ret"].as_i64(), Some(id % 3), "{call}");
        assert_eq!(call["pod"], "checkout-7d9-a", "{call}");
        assert_eq!(call["pid"], u64::from(checkout.pid), "{call}");
    }

    // SIGKILL: no flush, but every file reads up to its last whole frame, and the kernel
    // detaches every probe with the agent's file descriptors.
    let port = free_port();
    let args = agent_args(port);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let killed = containerd.run_pod_with(
        "koolkit-trace",
        "koolkit-trace-agent-x2",
        &pod_uid(10),
        ("agent", &reference, &arg_refs),
        &agent_spec(&requests, &out, &containerd.root),
    );
    let running = wait_for_status(
        port,
        &killed,
        "the second agent recording",
        Duration::from_secs(30),
        |s| calls_of(s, "checkout") >= 20,
    );
    let unflushed = recording(&running, "checkout").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(unflushed, file, "a new file for a new start");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: a signal to a process of this test's pod; no memory is involved.
    assert_eq!(unsafe { libc::kill(killed.pid as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}/exe", killed.pid)).exists() {
        assert!(Instant::now() < deadline, "the agent outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The kernel releases a dead process's links after its files close, on a work queue.
    let original = tests::byte_in_file(&shop, "lookup_customer");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tests::byte_in_process(checkout.pid, address) != original {
        assert!(
            Instant::now() < deadline,
            "a probe outlived the killed agent by 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_kill = report_of_any(&out.join(&unflushed));
    println!(
        "after SIGKILL: {} calls, torn tail {}",
        after_kill["calls"], after_kill["torn_tail"]
    );
    assert!(after_kill["calls"].as_u64() >= Some(1), "{after_kill}");
    let _ = cart;
}
