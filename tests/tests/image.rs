//! End-to-end: the debug image (`cargo xtask image`) imports into a real containerd with
//! `ctr image import`, runs its shell and the tracer, and from a container in the node's pid
//! namespace traces a process of the node. Run as root through `cargo xtask test`, which
//! builds the image.

use std::{path::Path, process::Command, time::Duration};

use tests::{Fixture, Tracer, c_fixture, pods::Containerd};

/// `ctr run --rm` of the image in `containerd`, with `flags`, running `command`.
fn ctr_run(
    socket: &Path,
    reference: &str,
    name: &str,
    flags: &[&str],
    command: &[&str],
) -> Command {
    let mut ctr = Command::new("ctr");
    ctr.arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "run", "--rm"])
        .args(flags)
        .args([reference, name])
        .args(command);
    ctr
}

#[test]
fn the_debug_image_imports_runs_its_shell_and_traces_the_node() {
    let (tarball, reference) = tests::debug_image();
    let work = tests::private_dir("image");
    let containerd = Containerd::start(&work);
    containerd.import(&tarball);

    let output = ctr_run(
        &containerd.socket,
        &reference,
        "koolkit-shell",
        &[],
        &[
            "sh",
            "-c",
            "echo from $0; koolkit-trace --version; ls /bin | grep -c .",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"from sh"), "{stdout}");
    assert!(lines[1].starts_with("koolkit-trace "), "{stdout}");
    // busybox's applets: a shell and the usual tools.
    let applets: usize = lines[2].trim().parse().unwrap_or(0);
    assert!(applets > 100, "{stdout}");

    // As the agent will run: the node's pid namespace, and the privileges to load eBPF.
    let mut fixture = Fixture::start(&c_fixture("calls", &["-g", "-O1"]), &["50"]);
    let pid = fixture.pid.to_string();
    // The node's pid namespace: this test's own (pid 1's may not be readable here).
    let host_pid_namespace = format!("pid:/proc/{}/ns/pid", std::process::id());
    let tracer = Tracer::start_command(ctr_run(
        &containerd.socket,
        &reference,
        "koolkit-trace-node",
        &["--privileged", "--with-ns", &host_pid_namespace],
        &[
            "koolkit-trace",
            "--pid",
            &pid,
            "--json",
            "--fn",
            "compute",
            "--duration",
            "3s",
        ],
    ));
    fixture.round();
    let output = tracer.wait(Duration::from_secs(30));
    assert!(output.status.success(), "{}", output.stderr);
    let calls = output.calls_of("compute");
    assert_eq!(calls.len(), 50, "{}", output.stderr);
    assert!(output.stderr.contains("drops: none"), "{}", output.stderr);
}
