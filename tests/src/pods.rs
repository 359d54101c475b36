//! Real pods without a cluster: a containerd of the test's own (its CRI plugin, runc, overlayfs)
//! started from `../shared/containerd-test.toml`'s settings, OCI images built here from
//! fixture binaries and imported with `ctr`, and pods run through CRI calls as kubelet makes
//! them (its labels, a cgroupfs parent `/kubepods/besteffort/pod<uid>`, host network).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;

/// The containerd configuration of a test: cgroupfs driver (PID 1 is no systemd here), no CNI
/// (host-network pods), `restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE), the sandbox
/// image imported locally (no registry is reachable).
const CONFIG: &str = r#"version = 2
root = "@ROOT@/root"
state = "@ROOT@/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "@ROOT@/containerd.sock"
[ttrpc]
  address = "@ROOT@/containerd.sock.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "@ROOT@/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "local/pause:1"
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "@ROOT@/cni/bin"
      conf_dir = "@ROOT@/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
"#;

/// A pause program for the pod sandboxes: sleeps until told to stop.
const PAUSE_SOURCE: &str = r#"#include <signal.h>
#include <unistd.h>
static void done(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }
"#;

/// Builds an OCI image tarball named `reference` (`docker.io/local/shop:1`) of one layer: the
/// files `(host path, path in the image)`, and the shared libraries each needs (from `ldd`),
/// at their own paths. Returns the tarball's path.
pub fn oci_image(
    work: &Path,
    reference: &str,
    files: &[(&Path, &str)],
    entrypoint: &[&str],
) -> PathBuf {
    let name = reference.replace(['/', ':'], "_");
    let dir = work.join(&name);
    let _ = fs::remove_dir_all(&dir);
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let copy_in = |source: &Path, inside: &str| {
        let to = rootfs.join(inside.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(source, &to).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    };
    for (source, inside) in files {
        copy_in(source, inside);
        let ldd = Command::new("ldd").arg(source).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux...`
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                copy_in(Path::new(path), path);
            }
        }
    }
    xtask::oci::write_image(
        &rootfs,
        &dir,
        reference,
        &xtask::oci::ImageConfig {
            entrypoint,
            ..Default::default()
        },
    )
    .unwrap_or_else(|err| panic!("image {reference}: {err}"))
}

/// How a pod's one container runs beyond its image and arguments: what a DaemonSet's pod
/// spec says (host pid namespace, mounts, capabilities, a read-only root, environment).
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// `hostPID: true`.
    pub host_pid: bool,
    /// `(host path, container path, read-only)`.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// `capabilities: {drop: [ALL], add: [...]}` when given (names without `CAP_`).
    pub capabilities: Option<Vec<String>>,
    pub read_only_root: bool,
    pub env: Vec<(String, String)>,
}

/// A pod this test runs: its sandbox, its one container and that container's init process.
#[derive(Debug, Clone)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    pub container_id: String,
    pub container: String,
    /// The container's init process (host pid).
    pub pid: u32,
    /// Where the runtime writes the container's output (CRI's log format).
    pub log: PathBuf,
}

impl RunningPod {
    /// What the container wrote on stdout and stderr so far, without CRI's prefixes.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            // `2026-12-01T12:00:00.000000000Z stderr F text`
            .map(|line| line.splitn(4, ' ').nth(3).unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A containerd of the test's own, stopped (its pods removed, its mounts gone) when dropped.
pub struct Containerd {
    pub root: PathBuf,
    pub socket: PathBuf,
    daemon: Child,
    runtime: tokio::runtime::Runtime,
    pods: Vec<RunningPod>,
}

impl Containerd {
    /// Starts containerd under a new folder of `work` and imports the sandbox image.
    pub fn start(work: &Path) -> Self {
        assert!(
            Command::new("containerd").arg("--version").output().is_ok(),
            "containerd is not installed: `cargo xtask test` installs it"
        );
        let root = work.join(format!("containerd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let config = root.join("config.toml");
        fs::write(&config, CONFIG.replace("@ROOT@", root.to_str().unwrap())).unwrap();
        let log = fs::File::create(root.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let socket = root.join("containerd.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut containerd = Self {
            root,
            socket,
            daemon,
            runtime,
            pods: Vec::new(),
        };
        containerd.wait_until_serving();
        let pause = work.join("pause");
        if !pause.exists() {
            let source = work.join("pause.c");
            fs::write(&source, PAUSE_SOURCE).unwrap();
            let status = Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&pause)
                .arg(&source)
                .status()
                .unwrap();
            assert!(status.success(), "build pause");
        }
        let image = oci_image(
            work,
            "docker.io/local/pause:1",
            &[(&pause, "/pause")],
            &["/pause"],
        );
        containerd.import(&image);
        containerd
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self.socket.exists() && {
                let socket = self.socket.clone();
                self.runtime.block_on(async move {
                    let Ok(channel) = tracer::cri_channel(&socket).await else {
                        return false;
                    };
                    RuntimeServiceClient::new(channel)
                        .version(k8s_cri::v1::VersionRequest::default())
                        .await
                        .is_ok()
                })
            };
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!("containerd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd does not serve CRI: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("containerd.log")).unwrap_or_default()
    }

    /// Imports an image tarball into the namespace CRI uses.
    pub fn import(&self, tarball: &Path) {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "image", "import"])
            .arg(tarball)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr image import {}: {}",
            tarball.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        let socket = self.socket.clone();
        let channel = self
            .runtime
            .block_on(async move { tracer::cri_channel(&socket).await })
            .expect("connect to containerd");
        RuntimeServiceClient::new(channel)
    }

    /// Runs pod `namespace/name` as kubelet would (its labels, a cgroupfs parent under
    /// `/kubepods/besteffort`, host network, a pid namespace per container) with one
    /// container `container` running `image` with `args`.
    pub fn run_pod(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
        container: &str,
        image: &str,
        args: &[&str],
    ) -> RunningPod {
        self.run_pod_with(
            namespace,
            name,
            uid,
            (container, image, args),
            &PodSpec::default(),
        )
    }

    /// [`run_pod`](Self::run_pod) with the container run as `spec` says.
    pub fn run_pod_with(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
        (container, image, args): (&str, &str, &[&str]),
        spec: &PodSpec,
    ) -> RunningPod {
        let logs = self
            .root
            .join("pod-logs")
            .join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir_all(&logs).unwrap();
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let namespaces = NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: if spec.host_pid {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Container as i32
            },
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // Host-network pods keep the node's host name (there is no UTS namespace to set).
            labels: labels.clone(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut client = self.client();
        let config = sandbox_config.clone();
        let sandbox_id = self
            .runtime
            .block_on(client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            }))
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id;
        let mut container_labels = labels;
        container_labels.insert("io.kubernetes.container.name".into(), container.into());
        let container_id = self
            .runtime
            .block_on(
                client.create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(ContainerConfig {
                        metadata: Some(ContainerMetadata {
                            name: container.into(),
                            attempt: 0,
                        }),
                        image: Some(ImageSpec {
                            image: image.into(),
                            ..Default::default()
                        }),
                        args: args.iter().map(|a| a.to_string()).collect(),
                        labels: container_labels,
                        log_path: format!("{container}/0.log"),
                        mounts: spec
                            .mounts
                            .iter()
                            .map(|(host, path, read_only)| Mount {
                                container_path: path.clone(),
                                host_path: host.display().to_string(),
                                readonly: *read_only,
                                ..Default::default()
                            })
                            .collect(),
                        envs: spec
                            .env
                            .iter()
                            .map(|(key, value)| KeyValue {
                                key: key.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                        linux: Some(LinuxContainerConfig {
                            security_context: Some(LinuxContainerSecurityContext {
                                namespace_options: Some(namespaces),
                                capabilities: spec.capabilities.as_ref().map(|added| Capability {
                                    add_capabilities: added.clone(),
                                    drop_capabilities: vec!["ALL".into()],
                                    ..Default::default()
                                }),
                                readonly_rootfs: spec.read_only_root,
                                run_as_user: Some(Int64Value { value: 0 }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox_config),
                }),
            )
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", self.log()))
            .into_inner()
            .container_id;
        self.runtime
            .block_on(client.start_container(StartContainerRequest {
                container_id: container_id.clone(),
            }))
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", self.log()));
        let info = self
            .runtime
            .block_on(client.container_status(ContainerStatusRequest {
                container_id: container_id.clone(),
                verbose: true,
            }))
            .unwrap()
            .into_inner()
            .info;
        let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        let pod = RunningPod {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            sandbox_id,
            container_id,
            container: container.into(),
            pid: info["pid"].as_u64().expect("the container's pid") as u32,
            log: logs.join(container).join("0.log"),
        };
        self.pods.push(pod.clone());
        pod
    }

    /// Stops the container of `pod` as kubelet does when a pod is deleted: SIGTERM, then
    /// SIGKILL after `grace`.
    pub fn stop_container(&self, pod: &RunningPod, grace: Duration) {
        let mut client = self.client();
        self.runtime
            .block_on(client.stop_container(StopContainerRequest {
                container_id: pod.container_id.clone(),
                timeout: grace.as_secs() as i64,
            }))
            .unwrap_or_else(|e| panic!("StopContainer {}: {e}\n{}", pod.name, self.log()));
    }

    /// Deletes `pod` as kubelet does: its sandbox stopped (its containers killed) and removed.
    pub fn remove_pod(&self, pod: &RunningPod) {
        let mut client = self.client();
        self.runtime
            .block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            }))
            .unwrap_or_else(|e| panic!("StopPodSandbox {}: {e}", pod.name));
        self.runtime
            .block_on(client.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            }))
            .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", pod.name));
    }

    /// Runs `cmd` in the container of `pod` (a new process of the pod, as `kubectl exec`
    /// starts), killed after `timeout`.
    pub fn exec(&self, pod: &RunningPod, cmd: &[&str], timeout: Duration) {
        let mut client = self.client();
        // The runtime kills the command at the timeout and answers with an error then.
        let _ = self.runtime.block_on(client.exec_sync(ExecSyncRequest {
            container_id: pod.container_id.clone(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            timeout: timeout.as_secs() as i64,
        }));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let mut client = self.client();
        for pod in &self.pods {
            let _ = self
                .runtime
                .block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.sandbox_id.clone(),
                }));
            let _ = self
                .runtime
                .block_on(client.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.sandbox_id.clone(),
                }));
        }
        // SAFETY: sending a signal to our own child has no memory-safety preconditions.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        if crate::wait_timeout(&mut self.daemon, Duration::from_secs(10)).is_none() {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        // Whatever mounts a pod left under the root (overlay, shm) go before the folder.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let root = self.root.to_string_lossy().into_owned();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|point| point.starts_with(&root))
            .collect();
        under.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in under {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
        let _ = fs::remove_dir_all(&self.root);
        // runc removes the containers' cgroups; the pods' parents are left in every hierarchy.
        let hierarchies: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for pod in &self.pods {
            for hierarchy in &hierarchies {
                let _ =
                    fs::remove_dir(hierarchy.join(format!("kubepods/besteffort/pod{}", pod.uid)));
            }
        }
    }
}
