//! The review commands (`replay`, `report`, `export`, `merge`) through the binary, on the
//! golden trace file: no kernel and no root needed. What they must never do: destroy an input,
//! leave a half-written output, or count a file twice without being asked.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kt-review-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the golden trace file (nine calls) in `dir`.
fn trace_in(dir: &Path, name: &str) -> PathBuf {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trace-v1.kt");
    let path = dir.join(name);
    fs::copy(golden, &path).unwrap();
    path
}

fn koolkit_trace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_koolkit-trace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_input_is_never_the_output() {
    let dir = scratch("same");
    let a = trace_in(&dir, "a.kt");
    let b = trace_in(&dir, "b.kt");
    let link = dir.join("link.kt");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let before = fs::read(&a).unwrap();
    for args in [
        vec!["merge", text(&a), "-o", text(&a)],
        vec!["merge", text(&a), "-o", text(&link)],
        vec!["merge", text(&b), text(&a), "-o", text(&a)],
        vec!["export", text(&a), "--format", "chrome", "-o", text(&a)],
        vec!["export", text(&link), "--format", "jsonl", "-o", text(&a)],
    ] {
        let output = koolkit_trace(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("is the input"),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            fs::read(&a).unwrap(),
            before,
            "{args:?} left the input as it was"
        );
    }
}

#[test]
fn a_failed_output_leaves_nothing_half_written() {
    let dir = scratch("staged");
    let a = trace_in(&dir, "a.kt");
    let out = dir.join("calls.json");
    fs::write(&out, b"previous").unwrap();
    // A closed standard input cannot fail an export; a missing folder can.
    let missing = dir.join("no/such/folder/calls.json");
    let output = koolkit_trace(&[
        "export",
        text(&a),
        "--format",
        "chrome",
        "-o",
        text(&missing),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot write"),
        "{}",
        stderr(&output)
    );

    let output = koolkit_trace(&["export", text(&a), "--format", "chrome", "-o", text(&out)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let chrome: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert!(chrome["traceEvents"].as_array().unwrap().len() >= 9);
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_file_twice_is_merged_only_when_asked() {
    let dir = scratch("twice");
    let a = trace_in(&dir, "a.kt");
    let merged = dir.join("m.kt");
    let output = koolkit_trace(&["merge", text(&a), text(&a), "-o", text(&merged)]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--allow-duplicates"),
        "{}",
        stderr(&output)
    );
    assert!(!merged.exists());

    let output = koolkit_trace(&[
        "merge",
        text(&a),
        text(&a),
        "--allow-duplicates",
        "-o",
        text(&merged),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("merged 18 calls"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn what_is_not_a_trace_file_is_one_clear_line() {
    let dir = scratch("special");
    for path in [
        dir.clone(),
        PathBuf::from("/dev/null"),
        PathBuf::from("/dev/stdin"),
    ] {
        let output = koolkit_trace(&["report", text(&path)]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{path:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with("koolkit-trace: error: "), "{message}");
    }
}
