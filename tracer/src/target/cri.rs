//! Pods from the container runtime's CRI socket (containerd, CRI-O): what kubelet itself asks.
//! `ListPodSandbox` names each pod (namespace, name, UID), `ListContainers` its containers
//! (id, name), and `ContainerStatus` (verbose) the init pid of a container whose processes no
//! cgroup path names. The gRPC client is async (tonic); callers here are not, so each query
//! runs on a thread of its own with its own small runtime, bounded by [`QUERY_TIMEOUT`].

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxState, runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::pods::Pod;

/// How long one query of the runtime may take (connect and answer).
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Where runtimes put their CRI socket, under the host root: containerd, then CRI-O.
pub const DEFAULT_SOCKETS: [&str; 2] = ["run/containerd/containerd.sock", "run/crio/crio.sock"];

/// The CRI sockets that exist under `host_root`, in [`DEFAULT_SOCKETS`] order.
pub fn sockets_under(host_root: &Path) -> Vec<PathBuf> {
    DEFAULT_SOCKETS
        .iter()
        .map(|socket| host_root.join(socket))
        .filter(|path| {
            use std::os::unix::fs::FileTypeExt as _;
            std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
        })
        .collect()
}

/// Why the runtime could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        socket: String,
        source: tonic::transport::Error,
    },
    #[error("{socket} did not answer {call}: {status}")]
    Call {
        socket: String,
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("{socket} did not answer within {}s", QUERY_TIMEOUT.as_secs())]
    Timeout { socket: String },
    #[error("cannot query {socket}: {source}")]
    Runtime {
        socket: String,
        source: std::io::Error,
    },
}

/// The ready pods the runtime at `socket` runs, each with its running containers (id → name).
pub fn list_pods(socket: &Path) -> Result<Vec<Pod>, CriError> {
    let socket = socket.to_path_buf();
    block_on(socket.clone(), async move {
        let mut client = connect(&socket).await?;
        let name = socket.display().to_string();
        let sandboxes = client
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(|status| call_error(&name, "ListPodSandbox", status))?
            .into_inner()
            .items;
        let containers = client
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map_err(|status| call_error(&name, "ListContainers", status))?
            .into_inner()
            .containers;
        let mut by_sandbox: HashMap<String, HashMap<String, String>> = HashMap::new();
        for container in containers {
            if container.state != ContainerState::ContainerRunning as i32 {
                continue;
            }
            let name = container
                .metadata
                .map(|m| m.name)
                .filter(|n| !n.is_empty())
                .or_else(|| {
                    container
                        .labels
                        .get("io.kubernetes.container.name")
                        .cloned()
                })
                .unwrap_or_else(|| "?".into());
            by_sandbox
                .entry(container.pod_sandbox_id)
                .or_default()
                .insert(container.id, name);
        }
        Ok(sandboxes
            .into_iter()
            .filter(|sandbox| sandbox.state == PodSandboxState::SandboxReady as i32)
            .filter_map(|sandbox| {
                let meta = sandbox.metadata?;
                Some(Pod {
                    namespace: meta.namespace,
                    name: meta.name,
                    uid: meta.uid,
                    containers: by_sandbox.remove(&sandbox.id).unwrap_or_default(),
                })
            })
            .collect())
    })
}

/// The init pid of container `id`, from `ContainerStatus` verbose (its `info` JSON).
pub fn container_pid(socket: &Path, id: &str) -> Result<Option<u32>, CriError> {
    let socket = socket.to_path_buf();
    let id = id.to_string();
    block_on(socket.clone(), async move {
        let mut client = connect(&socket).await?;
        let status = client
            .container_status(ContainerStatusRequest {
                container_id: id,
                verbose: true,
            })
            .await
            .map_err(|status| call_error(&socket.display().to_string(), "ContainerStatus", status))?
            .into_inner();
        Ok(status.info.get("info").and_then(|info| pid_in_info(info)))
    })
}

/// The `pid` of a verbose container status's `info` JSON (containerd and CRI-O both write it).
fn pid_in_info(info: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(info).ok()?;
    let pid = value.get("pid")?.as_u64()?;
    u32::try_from(pid).ok().filter(|&pid| pid > 0)
}

fn call_error(socket: &str, call: &'static str, status: tonic::Status) -> CriError {
    CriError::Call {
        socket: socket.to_string(),
        call,
        status: Box::new(status),
    }
}

/// A gRPC channel to the CRI server listening on the Unix socket `socket`.
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    // The URI is required by the API and never used: the connector dials the socket.
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

async fn connect(socket: &Path) -> Result<RuntimeServiceClient<Channel>, CriError> {
    let channel = channel(socket).await.map_err(|source| CriError::Connect {
        socket: socket.display().to_string(),
        source,
    })?;
    Ok(RuntimeServiceClient::new(channel))
}

/// Runs `query` to its end on a thread of its own (the caller may be inside another runtime).
fn block_on<T: Send + 'static>(
    socket: PathBuf,
    query: impl Future<Output = Result<T, CriError>> + Send + 'static,
) -> Result<T, CriError> {
    let name = socket.display().to_string();
    let thread = std::thread::Builder::new()
        .name("cri query".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| CriError::Runtime {
                    socket: socket.display().to_string(),
                    source,
                })?;
            runtime.block_on(async {
                tokio::time::timeout(QUERY_TIMEOUT, query)
                    .await
                    .unwrap_or_else(|_| {
                        Err(CriError::Timeout {
                            socket: socket.display().to_string(),
                        })
                    })
            })
        })
        .map_err(|source| CriError::Runtime {
            socket: name.clone(),
            source,
        })?;
    thread.join().unwrap_or_else(|_| {
        Err(CriError::Timeout {
            socket: name.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_pid_comes_from_the_verbose_info() {
        // As containerd 1.6 writes it (abridged).
        let info = r#"{"sandboxID":"5f1c","pid":4242,"removing":false,"snapshotKey":"ab"}"#;
        assert_eq!(pid_in_info(info), Some(4242));
        assert_eq!(pid_in_info(r#"{"pid":0}"#), None);
        assert_eq!(pid_in_info("not json"), None);
    }

    #[test]
    fn a_socket_that_is_not_there_is_an_error_that_names_it() {
        let err = list_pods(Path::new("/nonexistent/containerd.sock")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot connect to /nonexistent/containerd.sock"),
            "{err}"
        );
    }
}
