//! `koolkit-trace replay`: the calls of a trace file printed as the live trace printed them
//! (human lines or JSON Lines), through a filter. Streams: lines are written as frames are
//! read, whatever the file's size.

use std::io::{self, Write};

use super::{
    filter::CallFilter,
    reader::{ReadOutcome, TraceReader},
};
use crate::sinks::line::{HumanLines, Style, json_line};

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
    let outcome = reader.try_for_each_call(&options.filter, |event, probe| {
        line.clear();
        if options.json {
            json_line(&mut line, event, probe, &clock);
        } else {
            human.write(&mut line, event, probe, &clock);
        }
        out.write_all(line.as_bytes())
    })?;
    out.flush()?;
    Ok(outcome)
}
