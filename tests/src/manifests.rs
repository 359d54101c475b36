//! `deploy/agent/`'s manifests read into the Kubernetes API's own types (k8s-openapi), for the
//! test that checks them and for the pod test that runs the agent as their DaemonSet says.

use std::{fs, path::PathBuf};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container, Namespace, ServiceAccount},
};
use serde_json::Value;

/// The folder of the agent's manifests.
pub fn agent_folder() -> PathBuf {
    crate::workspace_root().join("deploy/agent")
}

/// A manifest document, typed by its kind.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    DaemonSet(Box<DaemonSet>),
}

/// Every document of every `.yaml` file in `deploy/agent/`, by file: as written (JSON
/// values) and typed.
pub fn agent_manifests() -> Vec<(String, Value, Object)> {
    let mut files: Vec<PathBuf> = fs::read_dir(agent_folder())
        .expect("deploy/agent")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for document in serde_norway::Deserializer::from_str(&text) {
            let written: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|err| panic!("{name}: not YAML: {err}"));
            let typed = typed(&written).unwrap_or_else(|err| panic!("{name}: {err}"));
            objects.push((name.clone(), written, typed));
        }
    }
    objects
}

fn typed(written: &Value) -> Result<Object, String> {
    fn as_type<T: serde::de::DeserializeOwned>(written: &Value) -> Result<Box<T>, String> {
        serde_json::from_value(written.clone())
            .map(Box::new)
            .map_err(|err| err.to_string())
    }
    match (written["apiVersion"].as_str(), written["kind"].as_str()) {
        (Some("v1"), Some("Namespace")) => as_type(written).map(Object::Namespace),
        (Some("v1"), Some("ServiceAccount")) => as_type(written).map(Object::ServiceAccount),
        (Some("v1"), Some("ConfigMap")) => as_type(written).map(Object::ConfigMap),
        (Some("apps/v1"), Some("DaemonSet")) => as_type(written).map(Object::DaemonSet),
        (version, kind) => Err(format!("an object of no known kind: {version:?} {kind:?}")),
    }
}

/// The DaemonSet's agent container.
pub fn agent_container() -> Container {
    agent_manifests()
        .into_iter()
        .find_map(|(_, _, object)| match object {
            Object::DaemonSet(set) => set.spec?.template.spec?.containers.into_iter().next(),
            _ => None,
        })
        .expect("a DaemonSet with a container in deploy/agent/")
}

/// Whether the DaemonSet's pods run in the host's pid namespace.
pub fn agent_host_pid() -> bool {
    agent_manifests()
        .into_iter()
        .any(|(_, _, object)| match object {
            Object::DaemonSet(set) => set
                .spec
                .and_then(|spec| spec.template.spec)
                .and_then(|spec| spec.host_pid)
                .unwrap_or(false),
            _ => false,
        })
}

/// The capabilities the agent container adds (it drops ALL).
pub fn agent_capabilities() -> Vec<String> {
    agent_container()
        .security_context
        .and_then(|context| context.capabilities)
        .and_then(|caps| caps.add)
        .unwrap_or_default()
}

/// The requests file of the ConfigMap.
pub fn example_requests() -> String {
    agent_manifests()
        .into_iter()
        .find_map(|(_, _, object)| match object {
            Object::ConfigMap(map) => map.data?.get("requests.yaml").cloned(),
            _ => None,
        })
        .expect("a ConfigMap with requests.yaml in deploy/agent/")
}
