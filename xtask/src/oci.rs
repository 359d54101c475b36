//! OCI image tarballs written without a container engine: one layer made from a directory,
//! the image config, the manifest and the index, laid out as the OCI image layout and packed
//! in a tar that `ctr image import` takes. `cargo xtask image` writes the debug image with it,
//! and the pod tests their fixture images.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// What the image runs, and with what environment.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig<'a> {
    pub entrypoint: &'a [&'a str],
    pub cmd: &'a [&'a str],
    /// `NAME=value` pairs.
    pub env: &'a [&'a str],
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|err| format!("sha256sum: {err}"))?;
    if !out.status.success() {
        return Err(format!("sha256sum {} failed", path.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.get(..64)
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum {}: {text}", path.display()))
}

/// Copies `file` into the layout's blobs; returns its (digest, size).
fn add_blob(layout: &Path, file: &Path) -> Result<(String, u64), String> {
    let digest = sha256_of(file)?;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    fs::copy(file, blobs.join(&digest)).map_err(|e| format!("{}: {e}", file.display()))?;
    let size = fs::metadata(file).map_err(|e| e.to_string())?.len();
    Ok((format!("sha256:{digest}"), size))
}

/// `tar` of `dir`'s contents into `out`, the same bytes for the same files (sorted, owned by
/// root, one fixed time), so the same inputs give the same image digest.
fn tar_of(dir: &Path, out: &Path) -> Result<(), String> {
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .map_err(|err| format!("tar: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tar of {} failed", dir.display()))
    }
}

/// Writes the image `reference` (`docker.io/koolkit/koolkit-trace:0.1.0`) of one layer, the
/// contents of `rootfs`, under `work`; returns the path of its tarball.
pub fn write_image(
    rootfs: &Path,
    work: &Path,
    reference: &str,
    config: &ImageConfig<'_>,
) -> Result<PathBuf, String> {
    let layout = work.join("layout");
    let _ = fs::remove_dir_all(&layout);
    fs::create_dir_all(&layout).map_err(|e| e.to_string())?;
    let layer = work.join("layer.tar");
    tar_of(rootfs, &layer)?;
    let (layer_digest, layer_size) = add_blob(&layout, &layer)?;
    let mut image_config = serde_json::json!({});
    if !config.entrypoint.is_empty() {
        image_config["Entrypoint"] = serde_json::json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        image_config["Cmd"] = serde_json::json!(config.cmd);
    }
    if !config.env.is_empty() {
        image_config["Env"] = serde_json::json!(config.env);
    }
    let image = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        // An uncompressed layer: its digest is its diff id.
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config_file = work.join("config.json");
    fs::write(&config_file, image.to_string()).map_err(|e| e.to_string())?;
    let (config_digest, config_size) = add_blob(&layout, &config_file)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let manifest_file = work.join("manifest.json");
    fs::write(&manifest_file, manifest.to_string()).map_err(|e| e.to_string())?;
    let (manifest_digest, manifest_size) = add_blob(&layout, &manifest_file)?;
    let tag = reference.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"io.containerd.image.name": reference,
                                       "org.opencontainers.image.ref.name": tag}}],
    });
    fs::write(layout.join("index.json"), index.to_string()).map_err(|e| e.to_string())?;
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(|e| e.to_string())?;
    let tarball = work.join("image.tar");
    tar_of(&layout, &tarball)?;
    Ok(tarball)
}
