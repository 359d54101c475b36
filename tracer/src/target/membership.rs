//! Who belongs to a target chosen by where processes run (a container, pods, the tracer's own
//! pid namespace) rather than by pid: asked at the start, and again every second while
//! tracing, so that a restarted container, a new worker or a pod scaled up is traced too.

use std::path::PathBuf;

use super::{
    cri,
    pods::{self, Pod, PodLabels},
    read_proc_text,
};
use crate::error::{Error, Result};

/// How the members of a target are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The processes whose cgroups name container `id` (its full id).
    Container { id: String },
    /// The processes of the pods a query selects.
    Pods(PodQuery),
    /// Inside a debug container sharing the target's pid namespace: every process of the
    /// namespace but the tracer's own container's.
    PidNamespace,
    /// Process `root` and its descendants (`--children` where forks cannot be followed in the
    /// kernel: inside a pid namespace).
    Family { root: u32 },
}

/// `--pod PATTERN [-n NAMESPACE] [--container NAME]`, asked of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodQuery {
    /// A glob on the pod's name.
    pub pattern: String,
    pub namespace: Option<String>,
    /// Only the container of this name.
    pub container: Option<String>,
    pub source: PodSource,
}

/// Where pods are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSource {
    /// The container runtime's CRI socket.
    Cri(PathBuf),
    /// kubelet's log folders under a host root (`/var/log/pods`, `/var/log/containers`).
    LogFolders(PathBuf),
}

impl std::fmt::Display for PodSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cri(socket) => write!(f, "the CRI socket {}", socket.display()),
            Self::LogFolders(root) => write!(
                f,
                "kubelet's pod folders in {}",
                root.join("var/log/pods").display()
            ),
        }
    }
}

/// A process of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    pub container_id: Option<String>,
    /// Its pod and container, for pods.
    pub labels: Option<PodLabels>,
}

/// What a lookup found: the members, and for pods the pods they belong to.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub members: Vec<Member>,
    /// The pods that matched (with or without processes).
    pub pods: Vec<Pod>,
}

impl Found {
    /// The members that belong to `pod`.
    pub fn members_of<'a>(&'a self, pod: &'a Pod) -> impl Iterator<Item = &'a Member> + 'a {
        self.members.iter().filter(move |m| {
            m.labels
                .as_ref()
                .is_some_and(|l| l.pod == pod.name && l.namespace == pod.namespace)
        })
    }
}

impl Membership {
    /// `the pods`, `the container`: the group, as messages name it.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Container { .. } => "the container",
            Self::Pods(_) => "the pods",
            Self::PidNamespace => "the pid namespace",
            Self::Family { .. } => "the family",
        }
    }

    /// The processes that belong to the target now.
    pub fn find(&self) -> Result<Found> {
        let unlabelled = |pids: Vec<u32>, container: Option<&String>| Found {
            members: pids
                .into_iter()
                .map(|pid| Member {
                    pid,
                    container_id: container.cloned(),
                    labels: None,
                })
                .collect(),
            pods: Vec::new(),
        };
        match self {
            Self::Container { id } => Ok(unlabelled(
                super::cgroup_identities()
                    .filter(|(_, identity)| identity.container.as_ref() == Some(id))
                    .map(|(pid, _)| pid)
                    .collect(),
                Some(id),
            )),
            Self::Pods(query) => query.find(),
            Self::Family { root } => Ok(unlabelled(
                std::iter::once(*root)
                    .filter(|&pid| super::process_exists(pid).is_ok())
                    .chain(super::descendants(*root))
                    .collect(),
                None,
            )),
            Self::PidNamespace => Ok(unlabelled(namespace_members(), None)),
        }
    }
}

impl PodQuery {
    fn find(&self) -> Result<Found> {
        let matches = |name: &str| crate::symbols::glob_match(&self.pattern, name);
        // One walk of every process's cgroups serves both what is live and who is whose.
        let identities: Vec<(u32, super::cgroup::CgroupIdentity)> =
            super::cgroup_identities().collect();
        let pods = match &self.source {
            PodSource::Cri(socket) => {
                let mut pods: Vec<Pod> = cri::list_pods(socket)
                    .map_err(|err| Error::Usage(format!("asking the container runtime: {err}")))?
                    .into_iter()
                    .filter(|pod| {
                        matches(&pod.name)
                            && self
                                .namespace
                                .as_ref()
                                .is_none_or(|ns| *ns == pod.namespace)
                    })
                    .collect();
                pods::sort_pods(&mut pods);
                pods
            }
            PodSource::LogFolders(root) => {
                // kubelet leaves the folders of pods that have gone: only a pod some live
                // cgroup still names is on this node.
                let live: std::collections::HashSet<&String> = identities
                    .iter()
                    .filter_map(|(_, identity)| identity.pod_uid.as_ref())
                    .collect();
                let mut found = pods::find_pods(root, matches, self.namespace.as_deref());
                found.retain(|pod| live.contains(&pod.uid));
                found
            }
        };
        let processes = pods::pod_processes(&pods, self.container.as_deref(), &identities);
        let mut members: Vec<Member> = processes
            .iter()
            .map(|process| Member {
                pid: process.pid,
                container_id: process.container_id.clone(),
                labels: Some(labels(&pods[process.pod], process.container.as_deref())),
            })
            .collect();
        // A runtime whose cgroup paths name neither pod nor container: the init pid it
        // reports, and that process's descendants.
        if let PodSource::Cri(socket) = &self.source {
            for pod in &pods {
                for (id, name) in &pod.containers {
                    let wanted = self.container.as_ref().is_none_or(|c| c == name);
                    if !wanted || members.iter().any(|m| m.container_id.as_ref() == Some(id)) {
                        continue;
                    }
                    let Ok(Some(init)) = cri::container_pid(socket, id) else {
                        continue;
                    };
                    for pid in std::iter::once(init).chain(super::descendants(init)) {
                        members.push(Member {
                            pid,
                            container_id: Some(id.clone()),
                            labels: Some(labels(pod, Some(name))),
                        });
                    }
                }
            }
        }
        Ok(Found { members, pods })
    }
}

fn labels(pod: &Pod, container: Option<&str>) -> PodLabels {
    PodLabels {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        container: container.unwrap_or("?").to_string(),
    }
}

/// Whether the tracer runs in a container's pid namespace and sees it in `/proc`: then the
/// ids it knows are that namespace's, not the host's.
pub fn in_own_child_pid_namespace() -> bool {
    proc_is_own_namespace() && in_child_pid_namespace()
}

/// Whether the tracer runs in a pid namespace below the host's (a container's), given that
/// `/proc` shows its own: kernel threads belong to the host's namespace only, so there
/// `kthreadd` (pid 2) is one, and in a container no kernel thread is visible at all.
pub fn in_child_pid_namespace() -> bool {
    !super::is_kernel_thread(2)
}

/// The processes of the tracer's pid namespace outside its own container (its cgroup): what
/// a debug container that shares the target's pid namespace is there to trace. When every
/// process shares the tracer's cgroup, all but the tracer and its ancestors.
fn namespace_members() -> Vec<u32> {
    let own_pid = std::process::id();
    let own_cgroup = read_proc_text("/proc/self/cgroup").unwrap_or_default();
    let processes: Vec<(u32, String)> = super::all_pids()
        .into_iter()
        .filter(|&pid| pid != own_pid)
        .filter_map(|pid| Some((pid, read_proc_text(&format!("/proc/{pid}/cgroup")).ok()?)))
        .collect();
    let others: Vec<u32> = processes
        .iter()
        .filter(|(_, cgroup)| *cgroup != own_cgroup)
        .map(|(pid, _)| *pid)
        .collect();
    if !others.is_empty() {
        return others;
    }
    let mut ancestors = Vec::new();
    let mut next = super::parent_of(own_pid);
    while let Some(pid) = next.filter(|&p| p > 0 && !ancestors.contains(&p)) {
        ancestors.push(pid);
        next = super::parent_of(pid);
    }
    processes
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| !ancestors.contains(pid))
        .collect()
}

/// Whether `/proc` shows the tracer's own pid namespace (a container that shares a pid
/// namespace must also mount its `/proc`, or pids would be the host's).
pub fn proc_is_own_namespace() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|link| link.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}
