//! Trace files without a kernel: round trips, torn tails at every offset, corrupt frames,
//! future versions, rotation and merging. No root needed.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use bytes::Bytes;
use tracer::{
    CallEvent, ProbeSite, ProbeTable, raw_register_args,
    record::{
        CHUNK_EVENTS, CallFilter, CountersRecord, EndRecord, FILE_HEADER, ProcessInfo, Report,
        Rotation, TargetInfo, TraceHeader, TraceReader, TraceWriter, WriterOptions, merge,
    },
};

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kt-files-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn header(functions: &[&str], start_realtime_ns: u64) -> TraceHeader {
    let sites: Vec<ProbeSite> = functions
        .iter()
        .map(|name| ProbeSite {
            build_id: Some("abcd".into()),
            ..ProbeSite::named(name, "/usr/bin/shop")
        })
        .collect();
    let plans = vec![raw_register_args(2).unwrap(); sites.len()];
    TraceHeader {
        tool: "test".into(),
        hostname: "host".into(),
        kernel: "6.18".into(),
        start_realtime_ns,
        start_monotonic_ns: 1_000_000_000,
        target: TargetInfo {
            kind: "binary".into(),
            pid: None,
            binary: Some("/usr/bin/shop".into()),
            command: Some("shop".into()),
        },
        probes: ProbeTable::new(&sites, &plans),
        merged_from: Vec::new(),
        request: None,
    }
}

/// A call with two integer arguments (16 status bytes, then two words), like the benchmark's.
fn call(seed: u64, probes: u32) -> CallEvent {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (seed >> 7);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut payload = vec![0u8; 16];
    payload.extend_from_slice(&(seed % 1000).to_le_bytes());
    payload.extend_from_slice(&(next() % 50).to_le_bytes());
    let entry = 1_000_000_000 + seed * 1_000 + next() % 500;
    CallEvent {
        probe_id: (next() % u64::from(probes)) as u32,
        pid: 4242 + (next() % 3) as u32,
        tid: 4242 + (next() % 9) as u32,
        cpu: (next() % 2) as u32,
        entry_ns: entry,
        exit_ns: entry + next() % 100_000,
        ret: if seed.is_multiple_of(13) {
            u64::MAX - (next() % 5)
        } else {
            next() % 10_000
        },
        payload: Bytes::from(payload),
    }
}

fn write(
    path: &Path,
    events: &[CallEvent],
    options: WriterOptions,
    flush_every: usize,
) -> TraceHeader {
    let header = header(
        &["price_order", "lookup_customer"],
        1_700_000_000_000_000_000,
    );
    let mut writer = TraceWriter::create(path, &header, options).unwrap();
    for (i, event) in events.iter().enumerate() {
        writer.push(event).unwrap();
        if flush_every > 0 && (i + 1) % flush_every == 0 {
            writer.flush(Some(&CountersRecord::default())).unwrap();
        }
    }
    writer
        .finish(
            &CountersRecord::default(),
            &EndRecord {
                stop: "test".into(),
                events: events.len() as u64,
                unfinished: 0,
            },
        )
        .unwrap();
    header
}

#[test]
fn calls_round_trip_at_every_batch_boundary() {
    let dir = scratch("roundtrip");
    let chunk = CHUNK_EVENTS as usize;
    for (count, compress) in [
        (0, true),
        (1, true),
        (chunk - 1, true),
        (chunk, false),
        (chunk + 1, true),
        (3 * chunk + 17, true),
    ] {
        let path = dir.join(format!("t-{count}-{compress}.kt"));
        let events: Vec<CallEvent> = (0..count as u64).map(|i| call(i, 2)).collect();
        let header = write(
            &path,
            &events,
            WriterOptions {
                compress,
                rotation: None,
            },
            0,
        );
        let reader = TraceReader::open(&path).unwrap();
        assert_eq!(reader.header(), &header);
        let (read, report) = reader.read_all();
        assert_eq!(read, events, "{count} calls, compress {compress}");
        assert!(
            report.warnings.is_empty() && report.torn_tail.is_none(),
            "{report:?}"
        );
        assert_eq!(report.end.unwrap().events, count as u64);
    }
}

#[test]
fn compact_on_disk() {
    let dir = scratch("size");
    let path = dir.join("t.kt");
    let events: Vec<CallEvent> = (0..200_000).map(|i| call(i, 2)).collect();
    write(&path, &events, WriterOptions::default(), 0);
    let per_event = fs::metadata(&path).unwrap().len() as f64 / events.len() as f64;
    // Pseudo-random arguments compress worse than real ones; the bench measures the budget.
    assert!(per_event < 24.0, "{per_event:.1} bytes per call");
}

/// Offsets of the frames of a trace file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = FILE_HEADER;
    while pos + 20 <= bytes.len() {
        offsets.push(pos);
        let stored = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        pos += 20 + stored;
    }
    offsets
}

#[test]
fn a_file_cut_anywhere_in_its_last_frames_gives_back_every_whole_frame() {
    let dir = scratch("torn");
    let path = dir.join("t.kt");
    // Three events frames of 100 calls (flushes write counters frames too), then the end.
    let events: Vec<CallEvent> = (0..300).map(|i| call(i, 2)).collect();
    write(&path, &events, WriterOptions::default(), 100);
    let bytes = fs::read(&path).unwrap();
    let offsets = frame_offsets(&bytes);
    let cut_from = offsets[offsets.len().saturating_sub(5)];
    let cut = dir.join("cut.kt");
    for end in cut_from..=bytes.len() {
        fs::write(&cut, &bytes[..end]).unwrap();
        let reader = TraceReader::open(&cut).unwrap();
        let (read, report) = reader.read_all();
        // Every whole frame before the cut is read: the calls are a prefix, in 100-call steps.
        assert_eq!(read.len() % 100, 0, "cut at {end}");
        assert_eq!(read[..], events[..read.len()], "cut at {end}");
        let inside_a_frame = end != bytes.len() && !offsets.contains(&end);
        assert_eq!(
            report.torn_tail.is_some(),
            inside_a_frame,
            "cut at {end}: {report:?}"
        );
        if end == bytes.len() {
            assert_eq!(read.len(), 300);
            assert!(report.end.is_some());
        }
    }
}

#[test]
fn a_corrupt_frame_is_skipped_with_a_warning() {
    let dir = scratch("corrupt");
    let path = dir.join("t.kt");
    let events: Vec<CallEvent> = (0..300).map(|i| call(i, 2)).collect();
    write(&path, &events, WriterOptions::default(), 100);
    let mut bytes = fs::read(&path).unwrap();
    let offsets = frame_offsets(&bytes);
    // Frames: header, events, counters, events, counters, events, counters, end. Corrupt the
    // second events frame's payload.
    let second_events = offsets[3];
    bytes[second_events + 25] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let (read, report) = TraceReader::open(&path).unwrap().read_all();
    assert_eq!(read.len(), 200);
    assert_eq!(read[..100], events[..100]);
    assert_eq!(read[100..], events[200..]);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("checksum mismatch")),
        "{report:?}"
    );

    // A corrupt length: the reader finds the next frame by its magic.
    let mut bytes = fs::read(&path).unwrap();
    bytes[second_events + 8] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let (read, report) = TraceReader::open(&path).unwrap().read_all();
    assert_eq!(read.len(), 200, "{report:?}");
}

#[test]
fn versions_and_foreign_files_are_refused_clearly() {
    let dir = scratch("version");
    let path = dir.join("t.kt");
    write(&path, &[call(1, 2)], WriterOptions::default(), 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let err = TraceReader::open(&path)
        .err()
        .expect("version 2 refused")
        .to_string();
    assert!(
        err.contains("version 2") && err.contains("up to version 1"),
        "{err}"
    );

    let other = dir.join("other");
    fs::write(&other, b"#!/bin/sh\necho not a trace\n").unwrap();
    let err = TraceReader::open(&other).err().unwrap().to_string();
    assert!(err.contains("not a koolkit-trace file"), "{err}");
    fs::write(&other, b"KOOLKTRC").unwrap();
    assert!(TraceReader::open(&other).is_err());
}

#[test]
fn rotation_keeps_the_newest_files_each_readable_alone() {
    let dir = scratch("rotate");
    let path = dir.join("trace.kt");
    let events: Vec<CallEvent> = (0..100_000).map(|i| call(i, 2)).collect();
    let options = WriterOptions {
        compress: true,
        rotation: Some(Rotation {
            size: 64 << 10,
            keep: 3,
        }),
    };
    write(&path, &events, options, 0);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["trace.1.kt", "trace.2.kt", "trace.3.kt", "trace.kt"]
    );
    // Newest last: .3 .2 .1 then the current; together, a contiguous tail of the calls.
    let mut read = Vec::new();
    for name in ["trace.3.kt", "trace.2.kt", "trace.1.kt", "trace.kt"] {
        let path = dir.join(name);
        let (calls, report) = TraceReader::open(&path).unwrap().read_all();
        // Each ended cleanly: no "stopped abruptly" for a file rotation closed.
        assert!(
            report.notes(&path).is_empty(),
            "{name}: {:?}",
            report.notes(&path)
        );
        let end = report.end.as_ref().expect("an end frame");
        if name != "trace.kt" {
            // A rotated file's end counts its own calls; the last one's, the whole trace's.
            assert_eq!(end.events, calls.len() as u64, "{name}");
        }
        // Files end close to the size asked: a frame never takes one far past it.
        let size = fs::metadata(&path).unwrap().len();
        assert!(size <= (64 << 10) + (64 << 10) / 8, "{name}: {size} bytes");
        read.extend(calls);
    }
    assert!(!read.is_empty());
    assert_eq!(read[..], events[events.len() - read.len()..]);
}

#[test]
fn merge_joins_identical_probes_and_orders_calls_on_one_clock() {
    let dir = scratch("merge");
    let (a, b) = (dir.join("a.kt"), dir.join("b.kt"));
    let events: Vec<CallEvent> = (0..1000).map(|i| call(i, 2)).collect();
    write(&a, &events[..500], WriterOptions::default(), 0);
    // The second file comes from a host whose clocks started 1 s later in wall time.
    let later = header(
        &["price_order", "lookup_customer", "checkout"],
        1_700_000_001_000_000_000,
    );
    let mut writer = TraceWriter::create(&b, &later, WriterOptions::default()).unwrap();
    for event in &events[500..] {
        writer.push(event).unwrap();
    }
    writer
        .finish(
            &CountersRecord::default(),
            &EndRecord {
                stop: "x".into(),
                events: 500,
                unfinished: 0,
            },
        )
        .unwrap();

    let merged = dir.join("all.kt");
    let summary = merge(&[a.clone(), b.clone()], &merged, false).unwrap();
    assert_eq!(summary.stats.events, 1000);
    let reader = TraceReader::open(&merged).unwrap();
    let names: Vec<&str> = reader
        .header()
        .probes
        .iter()
        .map(|p| p.function.as_str())
        .collect();
    assert_eq!(
        names,
        ["price_order", "lookup_customer", "checkout"],
        "identical probes joined"
    );
    let (read, _) = reader.read_all();
    assert_eq!(read.len(), 1000);
    // Each input's calls keep their order; b's come after a's on the merged clock.
    let a_part: Vec<u64> = read
        .iter()
        .filter(|e| e.entry_ns < 2_000_000_000)
        .map(|e| e.entry_ns)
        .collect();
    let expected: Vec<u64> = events[..500].iter().map(|e| e.entry_ns).collect();
    assert_eq!(a_part, expected);
    // b's calls moved 1 s later on the merged clock.
    let from_b = read.iter().filter(|e| e.entry_ns >= 2_000_000_000).count();
    assert_eq!(from_b, 500);
    let report = Report::build(&reader, &CallFilter::default());
    assert_eq!(report.calls, 1000);
}

#[test]
fn a_file_cut_short_while_it_is_read_reads_as_a_torn_tail() {
    let dir = scratch("shrink");
    let path = dir.join("t.kt");
    let events: Vec<CallEvent> = (0..5 * CHUNK_EVENTS).map(|i| call(i, 2)).collect();
    write(&path, &events, WriterOptions::default(), 0);
    let reader = TraceReader::open(&path).unwrap();
    let bytes = fs::read(&path).unwrap();
    let offsets = frame_offsets(&bytes);
    // Truncated after the reader opened it: a mapped file would fault (SIGBUS) here.
    let cut = offsets[2] + 100;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let (read, outcome) = reader.read_all();
    assert_eq!(
        read.len() as u64,
        CHUNK_EVENTS,
        "the one whole events frame"
    );
    assert_eq!(outcome.torn_tail.map(|(at, _)| at), Some(offsets[2] as u64));
}

#[test]
fn directories_pipes_and_devices_are_refused_without_waiting() {
    let dir = scratch("special");
    let err = TraceReader::open(&dir).err().unwrap().to_string();
    assert!(err.contains("a directory, not a trace file"), "{err}");
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a named pipe with no writer would block: the reader must say no first.
    let err = TraceReader::open(&fifo).err().unwrap().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let err = TraceReader::open(Path::new("/dev/null")).err().unwrap();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[test]
fn a_frame_claiming_a_huge_size_is_skipped_not_allocated() {
    let dir = scratch("bomb");
    let path = dir.join("t.kt");
    let events: Vec<CallEvent> = (0..100).map(|i| call(i, 2)).collect();
    write(&path, &events, WriterOptions::default(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let events_frame = frame_offsets(&bytes)[1];
    // 200 MiB decompressed, claimed by a frame of a few hundred bytes.
    bytes[events_frame + 12..events_frame + 16].copy_from_slice(&(200u32 << 20).to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let (read, outcome) = TraceReader::open(&path).unwrap().read_all();
    assert!(read.is_empty());
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("impossible frame length")),
        "{outcome:?}"
    );

    // A frame that decompresses to more than it claims is skipped too.
    let mut bytes = fs::read(&path).unwrap();
    bytes[events_frame + 12..events_frame + 16].copy_from_slice(&16u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let (read, outcome) = TraceReader::open(&path).unwrap().read_all();
    assert!(read.is_empty());
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("does not decompress")),
        "{outcome:?}"
    );
}

#[test]
fn merge_keeps_apart_two_hosts_processes_of_one_pid() {
    let dir = scratch("merge-hosts");
    let events: Vec<CallEvent> = (0..200).map(|i| call(i, 2)).collect();
    let mut inputs = Vec::new();
    for (host, pod) in [("node-1", Some("checkout-7d9-a")), ("node-2", None)] {
        let path = dir.join(format!("{host}.kt"));
        let mut header = header(
            &["price_order", "lookup_customer"],
            1_700_000_000_000_000_000,
        );
        header.hostname = host.into();
        let mut writer = TraceWriter::create(&path, &header, WriterOptions::default()).unwrap();
        for pid in 4242..4245 {
            writer.add_process(ProcessInfo {
                pid,
                host: host.into(),
                command: Some("shop".into()),
                namespace: pod.map(|_| "shop".into()),
                pod: pod.map(Into::into),
                container: pod.map(|_| "app".into()),
                ..ProcessInfo::default()
            });
        }
        for event in &events {
            writer.push(event).unwrap();
        }
        let end = EndRecord {
            stop: "x".into(),
            events: 200,
            unfinished: 0,
        };
        writer.finish(&CountersRecord::default(), &end).unwrap();
        inputs.push(path);
    }
    let merged = dir.join("all.kt");
    merge(&inputs, &merged, false).unwrap();
    let reader = TraceReader::open(&merged).unwrap();
    let (read, outcome) = reader.read_all();
    assert_eq!(read.len(), 400);
    // Six processes: node-1's keep their pids, node-2's get others and say their own.
    assert_eq!(outcome.processes.len(), 6, "{:?}", outcome.processes);
    for process in outcome.processes.values() {
        assert!((4242..4245).contains(&process.host_pid()), "{process:?}");
        match process.host.as_str() {
            "node-1" => {
                assert_eq!(process.host_pid, None);
                assert_eq!(process.pod.as_deref(), Some("checkout-7d9-a"));
            }
            "node-2" => assert_ne!(process.pid, process.host_pid(), "{process:?}"),
            other => panic!("host {other}"),
        }
    }
    // Every call names a process of the table, and each host's calls are all there.
    let per_host = |host: &str| {
        read.iter()
            .filter(|e| outcome.processes[&e.pid].host == host)
            .count()
    };
    assert_eq!((per_host("node-1"), per_host("node-2")), (200, 200));
    // A thread keeps its place in its process.
    for event in &read {
        let process = &outcome.processes[&event.pid];
        let own_tid = event
            .tid
            .wrapping_sub(event.pid)
            .wrapping_add(process.host_pid());
        assert!((4242..4251).contains(&own_tid), "{event:?}");
    }
}
