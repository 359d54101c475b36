//! Project tasks: `cargo xtask setup | demo | test | bench | dist | image | kernels`.
//!
//! Every task that needs prerequisites runs `setup` first; `setup` is idempotent and cheap when
//! everything is already there, so the README's commands work on a fresh Debian machine with
//! nothing else to do.

mod attach_cost;
mod bench;
mod call_cost;
mod demo;
mod dist;
mod entry_share;
mod image;
mod kernels;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "koolkit-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install every prerequisite (Debian packages, nightly rust-src, bpf-linker); idempotent.
    Setup,
    /// Build koolkit-trace, start the bundled demo program and trace it for a few seconds.
    Demo {
        /// How long to trace.
        #[arg(long, default_value = "4s")]
        duration: String,
    },
    /// Measure against the peers on this machine (bpftrace) and print figures and ratios.
    Bench {
        /// Only these groups: symbols, calls, prologues (the per-call costs and throughput of
        /// calls), attach, files (default: all).
        only: Vec<String>,
    },
    /// Build the static, stripped koolkit-trace (target/dist/koolkit-trace) and print its size.
    Dist,
    /// Write the debug image (the static koolkit-trace and a static busybox) as an OCI image
    /// tarball, target/image/image.tar, for `ctr image import` and `kubectl debug --image`.
    Image,
    /// Run the kernel-sensitive checks on Debian's 5.10, 6.1 and 6.12 cloud kernels under
    /// qemu (TCG) and on this machine's kernel; print the kernel × check table.
    Kernels {
        /// Only these kernels (5.10, 6.1, 6.12; default: all).
        only: Vec<String>,
    },
    /// Build everything and run the whole test suite (unit and end-to-end, as root).
    Test {
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Runs `command`, failing with its description if it does not succeed.
pub fn run(command: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|err| format!("cannot start {command:?}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// `cargo` as the one running xtask.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Builds the tracer binary (debug) and returns its path.
pub fn build_tracer() -> Result<PathBuf, String> {
    run(cargo().args(["build", "--package", "tracer", "--bin", "koolkit-trace"]))?;
    Ok(workspace_root().join("target/debug/koolkit-trace"))
}

fn test(cargo_test_args: &[String]) -> Result<(), String> {
    setup::setup()?;
    let tracer = build_tracer()?;
    // The static build, for the test that runs it in an empty root, and the image holding
    // it, for the test that runs that.
    let image = image::build_image()?;
    let static_tracer = dist::dist_binary();
    run(cargo()
        .args(["test", "--workspace"])
        .arg("--")
        .args(cargo_test_args)
        .env("KOOLKIT_TRACE_BIN", &tracer)
        .env("KOOLKIT_TRACE_STATIC_BIN", &static_tracer)
        .env("KOOLKIT_TRACE_IMAGE", &image)
        .env("KOOLKIT_TRACE_IMAGE_REF", image::image_reference()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::setup(),
        Task::Demo { duration } => demo::demo(&duration),
        Task::Bench { only } => bench::bench(&only),
        Task::Dist => dist::dist(),
        Task::Image => image::image(),
        Task::Kernels { only } => kernels::kernels(&only),
        Task::Test { cargo_test_args } => test(&cargo_test_args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
