//! Kubernetes pods on this node, without a cluster API: kubelet keeps a log folder per pod,
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/`, and a link per container,
//! `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`. The pod's UID and the
//! container's id are what runtimes write into cgroup paths ([`super::cgroup`]), so a pod's
//! processes are the processes whose cgroups carry its UID. Pod and namespace names are
//! DNS labels (no `_`), so the folder names split cleanly.
//!
//! Everything is read under a host root: `/` on the node, `/host` in `kubectl debug node/N`.

use std::{collections::HashMap, fs, path::Path};

use super::{cgroup, read_proc_text};

/// A pod kubelet runs (or ran) on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Its containers that the source knows of: id → name.
    pub containers: HashMap<String, String>,
}

/// Which pod and container a call ran in, as lines and JSON show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
    /// The container's name (`?` where kubelet's links do not say).
    pub container: String,
}

/// The pod and container of each traced process, by container id: found at the start, and
/// for processes that start later (a worker forked, a container restarted with the same id)
/// from their cgroups on their first call.
#[derive(Debug, Clone, Default)]
pub struct Workloads {
    by_container: HashMap<String, PodLabels>,
    by_pid: HashMap<u32, Option<PodLabels>>,
}

impl Workloads {
    /// The labels of `members` (those of pods).
    pub fn of(members: &[super::membership::Member]) -> Self {
        let mut workloads = Self::default();
        for member in members {
            if let Some(labels) = &member.labels {
                workloads.add(member.pid, member.container_id.as_deref(), labels.clone());
            }
        }
        workloads
    }

    /// Notes the pod and container of process `pid` (one that joined later).
    pub fn add(&mut self, pid: u32, container_id: Option<&str>, labels: PodLabels) {
        if let Some(id) = container_id {
            self.by_container.insert(id.to_string(), labels.clone());
        }
        self.by_pid.insert(pid, Some(labels));
    }

    /// The pod and container of process `pid`, if it runs in one of them.
    pub fn labels_of(&mut self, pid: u32) -> Option<&PodLabels> {
        if self.by_container.is_empty() {
            return None;
        }
        let by_container = &self.by_container;
        self.by_pid
            .entry(pid)
            .or_insert_with(|| {
                let text = read_proc_text(&format!("/proc/{pid}/cgroup")).ok()?;
                by_container
                    .get(&cgroup::identity(&text).container?)
                    .cloned()
            })
            .as_ref()
    }
}

/// A process of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProcess {
    pub pid: u32,
    /// Index of its pod in the pods it was found for.
    pub pod: usize,
    /// Its container's name, where kubelet's links say.
    pub container: Option<String>,
    pub container_id: Option<String>,
}

/// Splits a pod log folder's name, `<namespace>_<pod>_<uid>`.
fn parse_pod_folder(name: &str) -> Option<Pod> {
    let mut parts = name.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!namespace.is_empty() && !pod.is_empty() && uid.len() == 36).then(|| Pod {
        namespace: namespace.into(),
        name: pod.into(),
        uid: uid.into(),
        containers: HashMap::new(),
    })
}

/// The pods of `host_root`'s kubelet log folders whose name `matches` (and in `namespace`,
/// when given), by namespace and name, with the containers kubelet's links name.
pub fn find_pods(
    host_root: &Path,
    matches: impl Fn(&str) -> bool,
    namespace: Option<&str>,
) -> Vec<Pod> {
    let Ok(entries) = fs::read_dir(host_root.join("var/log/pods")) else {
        return Vec::new();
    };
    let mut pods: Vec<Pod> = entries
        .filter_map(|entry| parse_pod_folder(entry.ok()?.file_name().to_str()?))
        .filter(|pod| matches(&pod.name) && namespace.is_none_or(|ns| ns == pod.namespace))
        .collect();
    for pod in &mut pods {
        pod.containers = container_names(host_root, pod);
    }
    sort_pods(&mut pods);
    pods
}

/// Pods by namespace, then name.
pub(crate) fn sort_pods(pods: &mut [Pod]) {
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
}

/// Container id → name for `pod`, from kubelet's `/var/log/containers` links
/// (`<pod>_<namespace>_<container>-<64-digit id>.log`).
pub fn container_names(host_root: &Path, pod: &Pod) -> HashMap<String, String> {
    let Ok(entries) = fs::read_dir(host_root.join("var/log/containers")) else {
        return HashMap::new();
    };
    let prefix = format!("{}_{}_", pod.name, pod.namespace);
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?.strip_suffix(".log")?;
            let (container, id) = rest.rsplit_once('-')?;
            (id.len() == 64).then(|| (id.to_string(), container.to_string()))
        })
        .collect()
}

/// The running processes of `pods` (of the container named `container` only, when given),
/// from every process's cgroups: those that carry the pod's UID or one of its containers' ids.
pub fn pod_processes(
    pods: &[Pod],
    container: Option<&str>,
    identities: &[(u32, cgroup::CgroupIdentity)],
) -> Vec<PodProcess> {
    let mut found = Vec::new();
    for (pid, identity) in identities {
        // The pod's sandbox (pause) and CRI-O's monitor have no container of the pod.
        let Some(id) = &identity.container else {
            continue;
        };
        let Some(index) = pods.iter().position(|pod| {
            identity.pod_uid.as_ref() == Some(&pod.uid) || pod.containers.contains_key(id)
        }) else {
            continue;
        };
        // Where the pod's containers are known, another id is its sandbox (pause).
        if !pods[index].containers.is_empty() && !pods[index].containers.contains_key(id) {
            continue;
        }
        let name = pods[index].containers.get(id).cloned();
        if container.is_some_and(|wanted| name.as_deref() != Some(wanted)) {
            continue;
        }
        found.push(PodProcess {
            pid: *pid,
            pod: index,
            container: name,
            container_id: Some(id.clone()),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_log_folders_name_the_pods() {
        let pod =
            parse_pod_folder("shop_checkout-7d9f8c6b5-x2x4q_1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081")
                .unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str(), pod.uid.as_str()),
            (
                "shop",
                "checkout-7d9f8c6b5-x2x4q",
                "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"
            )
        );
        assert_eq!(parse_pod_folder("shop_checkout"), None);
        assert_eq!(
            parse_pod_folder("_x_1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"),
            None
        );
    }

    #[test]
    fn pods_and_container_names_come_from_a_host_root() {
        let root = std::env::temp_dir().join(format!("koolkit-pods-{}", std::process::id()));
        let uid = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081";
        let id = "ab".repeat(32);
        for folder in [
            format!("shop_checkout-7d9-a_{uid}/app"),
            format!("shop_cart-1_{}/app", "2b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"),
            format!(
                "kube-system_checkout-7d9-b_{}/app",
                "3b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081"
            ),
        ] {
            fs::create_dir_all(root.join("var/log/pods").join(folder)).unwrap();
        }
        fs::create_dir_all(root.join("var/log/containers")).unwrap();
        fs::write(
            root.join(format!(
                "var/log/containers/checkout-7d9-a_shop_side-car-{id}.log"
            )),
            "",
        )
        .unwrap();
        let checkout = |name: &str| name.starts_with("checkout-");
        let all = find_pods(&root, checkout, None);
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["checkout-7d9-b", "checkout-7d9-a"],
            "by namespace, then name"
        );
        let shop = find_pods(&root, checkout, Some("shop"));
        assert_eq!(shop.len(), 1);
        assert_eq!(
            shop[0].containers.get(&id).map(String::as_str),
            Some("side-car")
        );
        let _ = fs::remove_dir_all(&root);
    }
}
