//! `koolkit-trace merge`: one trace from the traces of many pods or nodes of one service.
//! Identical probes (same function, object and plan) become one, so a report covers the whole
//! service; calls are merged in the order they returned, onto one clock.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{
    file_format::{
        AggregatedProbe, AggregatesRecord, CountersRecord, EndRecord, ProcessInfo, TargetInfo,
        TraceHeader,
    },
    output::{StagedOutput, refuse_input_as_output},
    reader::{Batches, TraceReader, stack_key},
    writer::{TraceWriter, WriterOptions, WriterStats},
};
use crate::{
    error::{Error, Result},
    events::{
        CallEvent,
        probe_table::{ProbeInfo, ProbeTable},
    },
};

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub stats: WriterStats,
    /// Notes about damaged inputs.
    pub notes: Vec<String>,
}

/// One input being read: its calls in order, its probe ids mapped into the merged table and
/// its clock shifted onto the merged one.
struct Input<'a> {
    batches: Batches<'a>,
    pending: std::vec::IntoIter<CallEvent>,
    ids: Vec<u32>,
    shift: i128,
    /// The host its header names: where its processes ran when it names none itself.
    host: String,
    /// Its probe table, which says where its calls keep their stack ids.
    probes: &'a ProbeTable,
}

/// The processes of the merged trace: each (host, pid) of an input keeps its pid unless
/// another host's process has it already, and then gets a free one (the file says which).
#[derive(Default)]
struct MergedProcesses {
    by_origin: HashMap<(String, u32), u32>,
    taken: HashSet<u32>,
    /// Named since the writer last took them.
    new: Vec<ProcessInfo>,
    /// The stacks of the merged trace (by merged pid), and those found since the writer
    /// last took them.
    stacks: HashSet<super::reader::StackKey>,
    new_stacks: Vec<super::StackInfo>,
}

/// Where merged pids for processes whose own is taken start: above any pid Linux gives.
const RENUMBERED_FROM: u32 = 1 << 30;

impl MergedProcesses {
    /// The merged pid of the process the input names `process` (or knows only as `pid` on
    /// `host`).
    fn pid_of(&mut self, pid: u32, process: Option<&ProcessInfo>, host: &str) -> u32 {
        let info = process.cloned().unwrap_or_else(|| ProcessInfo {
            pid,
            host: host.to_string(),
            ..ProcessInfo::default()
        });
        let host_pid = info.host_pid();
        let origin = (info.host.clone(), host_pid);
        if let Some(&merged) = self.by_origin.get(&origin) {
            return merged;
        }
        let mut merged = host_pid;
        if self.taken.contains(&merged) {
            merged = RENUMBERED_FROM;
            while self.taken.contains(&merged) {
                merged += 1;
            }
        }
        self.taken.insert(merged);
        self.by_origin.insert(origin, merged);
        self.new.push(ProcessInfo {
            pid: merged,
            host_pid: (merged != host_pid).then_some(host_pid),
            ..info
        });
        merged
    }
}

impl Input<'_> {
    fn next_event(&mut self, processes: &mut MergedProcesses) -> Option<CallEvent> {
        loop {
            if let Some(mut event) = self.pending.next() {
                let Some(&id) = self.ids.get(event.probe_id as usize) else {
                    continue;
                };
                let stack = self
                    .probes
                    .get(event.probe_id)
                    .and_then(|probe| Some((stack_key(&event, probe)?, probe)))
                    .and_then(|(key, probe)| Some((key, self.batches.stack(&event, probe)?)));
                event.probe_id = id;
                let merged =
                    processes.pid_of(event.pid, self.batches.process(event.pid), &self.host);
                if let Some(((_, stack_id, caller), frames)) = stack
                    && processes.stacks.insert((merged, stack_id, caller))
                {
                    processes.new_stacks.push(super::StackInfo {
                        pid: merged,
                        stack_id,
                        caller,
                        frames: frames.to_vec(),
                    });
                }
                // Threads keep their ids relative to their process.
                event.tid = event.tid.wrapping_sub(event.pid).wrapping_add(merged);
                event.pid = merged;
                event.entry_ns = (i128::from(event.entry_ns) + self.shift).max(0) as u64;
                event.exit_ns = (i128::from(event.exit_ns) + self.shift).max(0) as u64;
                return Some(event);
            }
            self.pending = self.batches.next()?.into_iter();
        }
    }
}

/// Merges `inputs` into `output`.
/// The same file given twice would count each of its calls twice; `allow_duplicates` says
/// that is what the user wants.
pub fn merge(inputs: &[PathBuf], output: &Path, allow_duplicates: bool) -> Result<MergeSummary> {
    if inputs.is_empty() {
        return Err(Error::Usage("merge needs at least one trace file".into()));
    }
    refuse_input_as_output(inputs, output)?;
    if !allow_duplicates {
        refuse_duplicates(inputs)?;
    }
    let readers = inputs
        .iter()
        .map(|path| TraceReader::open(path))
        .collect::<Result<Vec<_>>>()?;
    // The earliest trace's clock anchors the merged one.
    let anchor = readers
        .iter()
        .map(TraceReader::header)
        .min_by_key(|h| h.start_realtime_ns)
        .expect("at least one input");
    let mut probes: Vec<ProbeInfo> = Vec::new();
    let mut sources = Vec::new();
    let mut merged_from = Vec::new();
    for (reader, path) in readers.iter().zip(inputs) {
        let header = reader.header();
        merged_from.push(describe_input(path, header));
        sources.push(Input {
            batches: reader.batches(),
            pending: Vec::new().into_iter(),
            ids: join_probes(&mut probes, &header.probes),
            shift: clock_offset(header) - clock_offset(anchor),
            host: header.hostname.clone(),
            probes: &header.probes,
        });
    }
    let header = merged_header(anchor, ProbeTable::from_probes(probes), merged_from);
    let staged = StagedOutput::new(output);
    let mut writer = TraceWriter::create(staged.path(), &header, WriterOptions::default())?;
    let events = interleave(&mut sources, &mut writer)?;

    let mut counters = CountersRecord::default();
    let mut notes = Vec::new();
    let mut unfinished = 0;
    let mut aggregates = MergedAggregates::default();
    for (input, path) in sources.into_iter().zip(inputs) {
        let ids = input.ids.clone();
        let shift = input.shift;
        let outcome = input.batches.finish();
        if let Some(record) = &outcome.aggregates {
            aggregates.add(record, &ids, shift);
        }
        notes.extend(outcome.notes(path));
        unfinished += outcome.end.as_ref().map_or(0, |end| end.unfinished);
        if let Some(input_counters) = outcome.counters {
            // Filtered calls count under the merged probe ids.
            for (id, n) in input_counters.filtered.iter().enumerate() {
                let Some(&merged) = ids.get(id) else { continue };
                let merged = merged as usize;
                if counters.filtered.len() <= merged {
                    counters.filtered.resize(merged + 1, 0);
                }
                counters.filtered[merged] += n;
            }
            add_counters(&mut counters, input_counters);
        }
    }
    if let Some(record) = aggregates.record() {
        writer.write_aggregates(&record)?;
    }
    let stats = writer.finish(
        &counters,
        &EndRecord {
            stop: format!("merged from {} traces", inputs.len()),
            events,
            unfinished,
        },
    )?;
    staged.commit()?;
    Ok(MergeSummary { stats, notes })
}

/// The calls the inputs counted in the kernel (`--histogram`, `--stats`), added up under the
/// merged probe ids (and argument values, with `--by-arg`).
#[derive(Default)]
struct MergedAggregates {
    /// The latest moment an input's counts were read, on the merged clock.
    at_ns: u64,
    by_probe: std::collections::BTreeMap<(u32, Option<String>), AggregatedProbe>,
}

impl MergedAggregates {
    /// Adds an input's totals (its last aggregates record), its probe ids mapped by `ids`
    /// and its clock shifted by `shift`.
    fn add(&mut self, record: &AggregatesRecord, ids: &[u32], shift: i128) {
        self.at_ns = self
            .at_ns
            .max((i128::from(record.at_ns) + shift).max(0) as u64);
        for counted in &record.functions {
            let Some(&probe) = ids.get(counted.probe as usize) else {
                continue;
            };
            let merged = self
                .by_probe
                .entry((probe, counted.by.clone()))
                .or_insert_with(|| AggregatedProbe {
                    probe,
                    by: counted.by.clone(),
                    min_ns: counted.min_ns,
                    ..AggregatedProbe::default()
                });
            merged.min_ns = merged.min_ns.min(counted.min_ns);
            merged.max_ns = merged.max_ns.max(counted.max_ns);
            merged.calls += counted.calls;
            merged.total_ns = merged.total_ns.wrapping_add(counted.total_ns);
            let mut buckets: std::collections::BTreeMap<u32, u64> =
                merged.buckets.iter().copied().collect();
            for &(bucket, n) in &counted.buckets {
                *buckets.entry(bucket).or_default() += n;
            }
            merged.buckets = buckets.into_iter().collect();
        }
    }

    fn record(self) -> Option<AggregatesRecord> {
        (!self.by_probe.is_empty()).then(|| AggregatesRecord {
            at_ns: self.at_ns,
            functions: self.by_probe.into_values().collect(),
        })
    }
}

/// Refuses inputs that are one file twice (by device and inode, whatever the paths).
fn refuse_duplicates(inputs: &[PathBuf]) -> Result<()> {
    let mut seen: Vec<((u64, u64), &PathBuf)> = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| Error::io(input, source))?;
        let id = (meta.dev(), meta.ino());
        if let Some((_, first)) = seen.iter().find(|(seen_id, _)| *seen_id == id) {
            return Err(Error::Usage(format!(
                "{} and {} are the same file: merging it twice would count each of its calls \
                 twice (--allow-duplicates if that is what you want)",
                first.display(),
                input.display()
            )));
        }
        seen.push((id, input));
    }
    Ok(())
}

/// Realtime minus monotonic at a trace's anchor: what shifts its timestamps onto another's.
fn clock_offset(header: &TraceHeader) -> i128 {
    i128::from(header.start_realtime_ns) - i128::from(header.start_monotonic_ns)
}

/// `a.kt (/usr/bin/shop on node-1, koolkit-trace 0.1.0)`: where an input came from.
fn describe_input(path: &Path, header: &TraceHeader) -> String {
    format!(
        "{} ({} on {}, {})",
        path.display(),
        header
            .target
            .binary
            .clone()
            .or(header.target.pid.map(|p| format!("pid {p}")))
            .unwrap_or_default(),
        header.hostname,
        header.tool
    )
}

/// Adds the probes of `table` to `merged`, joining those identical to one already there (same
/// function, object, plan); returns the merged id of each of `table`'s probes.
fn join_probes(merged: &mut Vec<ProbeInfo>, table: &ProbeTable) -> Vec<u32> {
    table
        .iter()
        .map(|probe| {
            let same = merged.iter().position(|p| {
                ProbeInfo {
                    id: p.id,
                    ..probe.clone()
                } == *p
            });
            match same {
                Some(index) => index as u32,
                None => {
                    let id = merged.len() as u32;
                    merged.push(ProbeInfo {
                        id,
                        ..probe.clone()
                    });
                    id
                }
            }
        })
        .collect()
}

/// The header of the merged trace, on the clock of `anchor` (the earliest input).
fn merged_header(
    anchor: &TraceHeader,
    probes: ProbeTable,
    merged_from: Vec<String>,
) -> TraceHeader {
    TraceHeader {
        tool: super::tool_version(),
        hostname: "merged".into(),
        kernel: String::new(),
        start_realtime_ns: anchor.start_realtime_ns,
        start_monotonic_ns: anchor.start_monotonic_ns,
        target: TargetInfo {
            kind: "merged".into(),
            pid: None,
            binary: None,
            command: anchor.target.command.clone(),
        },
        probes,
        merged_from,
        request: None,
    }
}

/// Writes the calls of every input in the order they returned (a k-way merge: each file is
/// already in that order); returns how many.
fn interleave(inputs: &mut [Input<'_>], writer: &mut TraceWriter) -> Result<u64> {
    let mut written = 0;
    let mut heads = BinaryHeap::new();
    let mut processes = MergedProcesses::default();
    for (index, input) in inputs.iter_mut().enumerate() {
        if let Some(event) = input.next_event(&mut processes) {
            heads.push(Reverse((event.exit_ns, index, HeapEvent(event))));
        }
    }
    while let Some(Reverse((_, index, HeapEvent(event)))) = heads.pop() {
        // Every process is named before its calls (the writer puts the names first).
        for process in processes.new.drain(..) {
            writer.add_process(process);
        }
        for stack in processes.new_stacks.drain(..) {
            writer.add_stack(stack);
        }
        writer.push(&event)?;
        written += 1;
        if let Some(next) = inputs[index].next_event(&mut processes) {
            heads.push(Reverse((next.exit_ns, index, HeapEvent(next))));
        }
    }
    Ok(written)
}

/// Adds one input's drop counters to the merged ones, counter by counter.
fn add_counters(total: &mut CountersRecord, input: CountersRecord) {
    total.undecodable += input.undecodable;
    total.abandoned += input.abandoned;
    for (name, n) in input.kernel {
        match total.kernel.iter_mut().find(|(k, _)| *k == name) {
            Some((_, sum)) => *sum += n,
            None => total.kernel.push((name, n)),
        }
    }
}

/// A call ordered by nothing: the heap orders by (time, input), which are unique per input.
struct HeapEvent(CallEvent);

impl PartialEq for HeapEvent {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapEvent {}
impl PartialOrd for HeapEvent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEvent {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
