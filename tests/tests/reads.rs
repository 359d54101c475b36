//! End-to-end: reads of user memory that do not miss. A string in a page the process has not
//! touched yet is read by the sleepable entry program, which faults the page in; the plain
//! one (forced with `KOOLKIT_TRACE_NO_SLEEPABLE`) cannot, which shows the fixture really
//! passes untouched pages. Run as root through `cargo xtask test`.

use tests::{Fixture, Tracer, c_fixture, private_dir};

fn names(output: &tests::TracerOutput) -> Vec<serde_json::Value> {
    output
        .calls_of("greet")
        .iter()
        .map(|c| c["args"]["name"].clone())
        .collect()
}

#[test]
fn a_string_in_a_page_not_touched_yet_is_read() {
    let binary = c_fixture("untouched", &["-g", "-O1"]);
    let file = private_dir("untouched").join("text");
    let mut fixture = Fixture::start(&binary, &[file.to_str().unwrap()]);
    let pid = fixture.pid.to_string();
    let args = ["--pid", pid.as_str(), "--json", "--fn", "greet"];

    let tracer = Tracer::start(&args);
    fixture.round();
    let read = tracer.interrupt();
    assert!(read.status.success(), "{}", read.stderr);
    assert_eq!(
        names(&read),
        vec![serde_json::json!("hello-untouched-page"); 5],
        "{}",
        read.stdout
    );

    let tracer = Tracer::start_under(&["env", "KOOLKIT_TRACE_NO_SLEEPABLE=1"], &args);
    fixture.round();
    let missed = tracer.interrupt();
    assert!(missed.status.success(), "{}", missed.stderr);
    let missed_names = names(&missed);
    assert_eq!(missed_names.len(), 5, "{}", missed.stdout);
    assert!(
        missed_names.iter().all(|n| n != "hello-untouched-page"),
        "the plain entry cannot fault pages in, so these pages were untouched: {}",
        missed.stdout
    );
}
