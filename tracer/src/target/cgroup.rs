//! Which container and pod a process belongs to, from `/proc/PID/cgroup`: the container id
//! and the pod UID that container runtimes and kubelet write into cgroup paths, in every
//! layout they use. cgroup v1 has one line per controller (`4:memory:/kubepods/...`), v2 one
//! (`0::/...`). kubelet's cgroupfs driver writes `/kubepods/<qos>/pod<uid>/<id>` (Guaranteed
//! pods without the qos level), its systemd driver
//! `kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`; Docker writes
//! `/docker/<id>` or `docker-<id>.scope`. CRI-O's monitor (`crio-conmon-<id>.scope`) is not
//! the container.

/// What a process's cgroups say of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// The container's id: 64 hex digits.
    pub container: Option<String>,
    /// The pod's UID, with dashes (`1b2c…-…`).
    pub pod_uid: Option<String>,
}

/// The identity in the text of a `/proc/PID/cgroup` file: from the v2 line where there is
/// one with a container, else from the v1 lines.
pub fn identity(cgroup_file: &str) -> CgroupIdentity {
    let mut found = CgroupIdentity::default();
    for line in cgroup_file.lines() {
        // hierarchy-id:controllers:path; the path may hold colons.
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let here = identity_of_path(path);
        if here.container.is_some() || (found.container.is_none() && here.pod_uid.is_some()) {
            found = here;
            if found.container.is_some() && found.pod_uid.is_some() {
                break;
            }
        }
    }
    found
}

/// The identity one cgroup path gives.
fn identity_of_path(path: &str) -> CgroupIdentity {
    let mut identity = CgroupIdentity::default();
    for component in path.split('/') {
        if let Some(uid) = pod_uid(component) {
            identity.pod_uid = Some(uid);
        } else if let Some(id) = container_id(component) {
            identity.container = Some(id);
        }
    }
    identity
}

/// The pod UID of a cgroup path component: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(component: &str) -> Option<String> {
    let rest = match component.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1,
        None => component.strip_prefix("pod")?,
    };
    let uid = rest.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// Whether `text` is a UUID as kubelet writes pod UIDs: 8-4-4-4-12 hex digits.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The container id of a cgroup path component: 64 hex digits, alone (cgroupfs, Docker's
/// `/docker/<id>`) or in a runtime's systemd scope (`cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `docker-<id>.scope`); never CRI-O's monitor, `crio-conmon-<id>.scope`.
fn container_id(component: &str) -> Option<String> {
    let id = match component.strip_suffix(".scope") {
        Some(scope) => {
            if scope.starts_with("crio-conmon-") {
                return None;
            }
            scope.rsplit_once('-')?.1
        }
        None => component,
    };
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2f1a7c0e9d3b5a6c8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
    const UID: &str = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7081";

    fn both() -> CgroupIdentity {
        CgroupIdentity {
            container: Some(ID.into()),
            pod_uid: Some(UID.into()),
        }
    }

    #[test]
    fn kubelet_cgroupfs_layouts() {
        // cgroup v2, a Burstable pod.
        let v2 = format!("0::/kubepods/burstable/pod{UID}/{ID}\n");
        assert_eq!(identity(&v2), both());
        // A Guaranteed pod has no qos level.
        let guaranteed = format!("0::/kubepods/pod{UID}/{ID}\n");
        assert_eq!(identity(&guaranteed), both());
        // cgroup v1: one line per controller, the unified line empty.
        let v1 = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n\
             11:memory:/kubepods/besteffort/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n\
             0::/\n"
        );
        assert_eq!(identity(&v1), both());
    }

    #[test]
    fn kubelet_systemd_layouts_of_each_runtime() {
        let uid_ = UID.replace('-', "_");
        for scope in [
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
        ] {
            let v2 = format!(
                "0::/kubepods.slice/kubepods-burstable.slice/\
                 kubepods-burstable-pod{uid_}.slice/{scope}\n"
            );
            assert_eq!(identity(&v2), both(), "{scope}");
        }
        // A Guaranteed pod's slice has no qos level.
        let guaranteed =
            format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(identity(&guaranteed), both());
        // CRI-O's monitor is in the pod, but not the container.
        let conmon = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(
            identity(&conmon),
            CgroupIdentity {
                container: None,
                pod_uid: Some(UID.into())
            }
        );
    }

    #[test]
    fn docker_and_plain_processes() {
        assert_eq!(
            identity(&format!("0::/system.slice/docker-{ID}.scope\n"))
                .container
                .as_deref(),
            Some(ID)
        );
        assert_eq!(
            identity(&format!("4:memory:/docker/{ID}\n"))
                .container
                .as_deref(),
            Some(ID)
        );
        // A host process, and this machine's own sandbox cgroup (32 hex digits, not an id).
        let host =
            "9:name=systemd:/\n4:memory:/process_api/0d0dfefec2cde232aa9964c79d31c6d5\n0::/\n";
        assert_eq!(identity(host), CgroupIdentity::default());
        assert_eq!(
            identity("0::/user.slice/user-0.slice/session-1.scope\n"),
            CgroupIdentity::default()
        );
        assert_eq!(identity(""), CgroupIdentity::default());
    }
}
