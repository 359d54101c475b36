//! `deploy/agent/`: every manifest is an object of the Kubernetes API as written (read into
//! k8s-openapi's types and back, nothing lost: no misspelt or misplaced field), and the
//! DaemonSet asks for least privilege: named capabilities, never `privileged`.

use std::collections::BTreeSet;

use serde_json::Value;
use tests::manifests::{
    Object, agent_capabilities, agent_container, agent_host_pid, agent_manifests, example_requests,
};

/// `value` without its nulls, empty objects and the comments' nothing: what a round trip
/// through the API's types keeps.
fn pruned(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), pruned(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_manifest_is_an_api_object_as_written() {
    let manifests = agent_manifests();
    let kinds: BTreeSet<&str> = manifests
        .iter()
        .map(|(_, written, _)| written["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"])
    );
    for (file, written, typed) in &manifests {
        let again = match typed {
            Object::Namespace(o) => serde_json::to_value(o),
            Object::ServiceAccount(o) => serde_json::to_value(o),
            Object::ConfigMap(o) => serde_json::to_value(o),
            Object::DaemonSet(o) => serde_json::to_value(o),
        }
        .unwrap();
        let mut again = pruned(&again);
        // The typed objects write their own apiVersion and kind.
        for key in ["apiVersion", "kind"] {
            again[key] = written[key].clone();
        }
        assert_eq!(
            pruned(written),
            again,
            "{file}: a field the API does not know, or in the wrong place"
        );
        let namespace = written["metadata"]["namespace"].as_str();
        if written["kind"] != "Namespace" {
            assert_eq!(namespace, Some("koolkit-trace"), "{file}");
        }
    }
}

#[test]
fn the_daemonset_asks_for_named_capabilities_never_privileged() {
    let container = agent_container();
    let context = container
        .security_context
        .clone()
        .expect("a securityContext");
    assert_ne!(context.privileged, Some(true), "never privileged");
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    let caps = context.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    let added: BTreeSet<String> = agent_capabilities().into_iter().collect();
    assert_eq!(
        added,
        ["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"]
            .map(String::from)
            .into(),
        "exactly the four the tracer needs (SYS_RESOURCE, SYS_ADMIN only where commented)"
    );
    assert!(
        agent_host_pid(),
        "hostPID: the pods' processes are the host's"
    );
    // The node's folders are read only; only the output is written.
    let mounts = container.volume_mounts.unwrap_or_default();
    for path in [
        "/var/log/pods",
        "/sys/fs/cgroup",
        "/run/containerd",
        "/etc/koolkit-trace",
    ] {
        let mount = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        assert_eq!(mount.read_only, Some(true), "{path} read-only");
    }
    let output = mounts
        .iter()
        .find(|m| m.mount_path == "/var/lib/koolkit-trace")
        .expect("the output folder");
    assert_ne!(output.read_only, Some(true));
    let env = container.env.unwrap_or_default();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node
        .value_from
        .as_ref()
        .and_then(|from| from.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(field, Some("spec.nodeName"), "from the downward API");
    let args = container.args.unwrap_or_default().join(" ");
    assert!(args.contains("--requests=/etc/koolkit-trace/"), "{args}");
    assert!(args.contains("--output=/var/lib/koolkit-trace"), "{args}");
}

#[test]
fn the_configmap_s_example_request_is_one_the_agent_accepts() {
    let file = tests::private_dir("manifests").join("requests.yaml");
    std::fs::write(&file, example_requests()).unwrap();
    let checked = tests::run_tracer(&["agent", "--check", "--requests", file.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}{}",
        checked.stdout,
        checked.stderr
    );
    assert!(checked.stdout.starts_with("ok: "), "{}", checked.stdout);
    assert!(!checked.stdout.contains("rejected"), "{}", checked.stdout);
}
