//! What the project's tasks share with its tests: OCI image tarballs ([`oci`]), which
//! `cargo xtask image` and the pod tests' fixture images are written with.

pub mod oci;
