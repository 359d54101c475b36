//! `koolkit-trace replay`: the calls of a trace file printed as the live trace printed them
//! (human lines or JSON Lines), through a filter. Streams: lines are written as frames are
//! read, whatever the file's size.

use std::io::{self, Write};

use super::{
    filter::CallFilter,
    reader::{ReadOutcome, TraceReader},
};
use crate::{
    record::Placed,
    sinks::line::{HumanLines, Style, json_line_labelled},
};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub filter: CallFilter,
    /// JSON Lines instead of human lines.
    pub json: bool,
    pub style: Style,
}

/// Writes the lines of every call `options.filter` accepts to `out`; returns what the reader
/// found besides them. Write errors (a closed pipe among them) end the replay.
pub fn replay(
    reader: &TraceReader,
    options: &ReplayOptions,
    out: &mut dyn Write,
) -> io::Result<ReadOutcome> {
    let clock = reader.header().clock();
    let mut line = String::new();
    let mut human = HumanLines::new(options.style);
    // Calls of a trace merged from several hosts say which host; their pid is the host's.
    let merged = !reader.header().merged_from.is_empty();
    let outcome = reader.try_for_each_call(&options.filter, |event, probe, process, stack| {
        line.clear();
        let placed = Placed::new(event, process, merged).with_stack(stack);
        if options.json {
            json_line_labelled(&mut line, &placed.event, probe, &clock, placed.origin());
        } else {
            human.write_labelled(&mut line, &placed.event, probe, &clock, placed.origin());
        }
        out.write_all(line.as_bytes())
    })?;
    out.flush()?;
    Ok(outcome)
}
