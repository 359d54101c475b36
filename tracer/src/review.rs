//! The review commands over trace files: `replay`, `report`, `export` and `merge`. No kernel,
//! no privilege, no access to the traced binaries: everything comes from the file.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use crate::{
    cli::{ExportArgs, ExportChoice, MergeArgs, ReplayArgs, ReportArgs},
    error::exit_code,
    format::{Style, WallClock, human_line, json_line},
    record::{
        export::{ExportFormat, export as export_calls},
        merge::merge as merge_files,
        reader::{ReadReport, TraceReader},
        report::{build, render_json, render_text},
    },
};

/// Prints what the reader skipped, on stderr.
fn print_notes(report: &ReadReport, path: &Path) {
    for note in report.notes(path) {
        eprintln!("koolkit-trace: warning: {note}");
    }
}

fn clock(reader: &TraceReader) -> WallClock {
    let header = reader.header();
    WallClock::from_anchor(header.start_realtime_ns, header.start_monotonic_ns)
}

/// Writes `text`; a closed pipe ends quietly.
fn write_out(out: &mut dyn Write, text: &[u8]) -> std::io::Result<bool> {
    match out.write_all(text) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err),
    }
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<i32> {
    let reader = TraceReader::open(&args.file)?;
    let clock = clock(&reader);
    let table = &reader.header().probes;
    let filter = args.filter.filter();
    let color = args.color.for_stdout();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = String::new();
    let mut open = true;
    let mut error = None;
    let report = reader.for_each_batch(|events| {
        if !open || error.is_some() {
            return;
        }
        line.clear();
        for event in &events {
            let Some(probe) = table.get(event.probe_id) else {
                continue;
            };
            if !filter.accepts(event, probe) {
                continue;
            }
            if args.json {
                json_line(&mut line, event, probe, &clock);
            } else {
                human_line(&mut line, event, probe, &clock, Style { color });
            }
        }
        match write_out(&mut out, line.as_bytes()) {
            Ok(still_open) => open = still_open,
            Err(err) => error = Some(err),
        }
    });
    if let Some(err) = error {
        return Err(err.into());
    }
    let _ = out.flush();
    print_notes(&report, &args.file);
    Ok(exit_code::OK)
}

pub fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let reader = TraceReader::open(&args.file)?;
    let report = build(&reader, &args.filter.filter());
    let clock = clock(&reader);
    let text = if args.json {
        format!("{}\n", render_json(&report, &clock))
    } else {
        render_text(&report, &clock)
    };
    write_out(&mut std::io::stdout().lock(), text.as_bytes())?;
    print_notes(&report.read, &args.file);
    Ok(exit_code::OK)
}

pub fn export(args: &ExportArgs) -> anyhow::Result<i32> {
    let reader = TraceReader::open(&args.file)?;
    let format = match args.format {
        ExportChoice::Chrome => ExportFormat::Chrome,
        ExportChoice::Jsonl => ExportFormat::JsonLines,
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).map_err(|source| crate::Error::io(path, source))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let report = match export_calls(&reader, &args.filter.filter(), format, &mut out) {
        Ok(report) => report,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(exit_code::OK),
        Err(err) => return Err(err.into()),
    };
    print_notes(&report, &args.file);
    Ok(exit_code::OK)
}

pub fn merge(args: &MergeArgs) -> anyhow::Result<i32> {
    let summary = merge_files(&args.files, &args.output)?;
    for note in &summary.notes {
        eprintln!("koolkit-trace: warning: {note}");
    }
    eprintln!(
        "merged {} calls from {} files into {} ({})",
        summary.stats.events,
        args.files.len(),
        args.output.display(),
        crate::summary::format_bytes(summary.stats.bytes)
    );
    Ok(exit_code::OK)
}
