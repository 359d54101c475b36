//! The review commands over trace files: `replay`, `report`, `export` and `merge`. No kernel,
//! no privilege, no access to the traced binaries: everything comes from the file. The work
//! is `record`'s; this is the glue from arguments to it and to stdout and stderr.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use super::{
    args::{ExportArgs, ExportChoice, MergeArgs, ReplayArgs, ReportArgs, TrackChoice},
    warn,
};
use crate::{
    error::{Error, exit_code},
    record::{
        export::{ExportFormat, export as export_calls},
        merge::merge as merge_files,
        output::{StagedOutput, refuse_input_as_output},
        reader::{ReadOutcome, TraceReader},
        replay::{ReplayOptions, replay as replay_calls},
        report::Report,
    },
    sinks::{line::Style, units::format_bytes},
};

/// Prints what the reader skipped, on stderr.
fn print_notes(outcome: &ReadOutcome, path: &Path) {
    for note in outcome.notes(path) {
        warn(note);
    }
}

/// An error writing `what`, as the user should read it.
fn write_error(what: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |err| Error::write(what, err)
}

pub(super) fn replay(args: &ReplayArgs) -> anyhow::Result<i32> {
    let reader = TraceReader::open(&args.file)?;
    let options = ReplayOptions {
        filter: args.filter.filter(),
        json: args.json,
        style: Style {
            color: args.color.for_stdout(),
            time: args.time.format(),
        },
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let outcome = replay_calls(&reader, &options, &mut out)
        .map_err(write_error(Path::new("standard output")))?;
    print_notes(&outcome, &args.file);
    Ok(exit_code::OK)
}

pub(super) fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let reader = TraceReader::open(&args.file)?;
    let report = Report::build(&reader, &args.filter.filter());
    let clock = reader.header().clock();
    let text = if args.json {
        format!("{}\n", report.render_json(&clock))
    } else {
        report.render_text(&clock)
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(write_error(Path::new("standard output")))?;
    print_notes(&report.read, &args.file);
    Ok(exit_code::OK)
}

pub(super) fn export(args: &ExportArgs) -> anyhow::Result<i32> {
    if args.format == ExportChoice::Jsonl && args.tracks != TrackChoice::Thread {
        return Err(crate::Error::Usage(
            "--tracks chooses the tracks of --format chrome; JSON Lines has none".into(),
        )
        .into());
    }
    let reader = TraceReader::open(&args.file)?;
    let format = match args.format {
        ExportChoice::Chrome if args.tracks == TrackChoice::Goroutine => {
            ExportFormat::ChromeByGoroutine
        }
        ExportChoice::Chrome => ExportFormat::Chrome,
        ExportChoice::Jsonl => ExportFormat::JsonLines,
    };
    let filter = args.filter.filter();
    let outcome = match &args.output {
        Some(path) => {
            refuse_input_as_output(std::slice::from_ref(&args.file), path)?;
            let staged = StagedOutput::new(path);
            let file = File::create(staged.path()).map_err(write_error(path))?;
            let mut out = BufWriter::new(file);
            let outcome =
                export_calls(&reader, &filter, format, &mut out).map_err(write_error(path))?;
            drop(out);
            staged.commit()?;
            outcome
        }
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            export_calls(&reader, &filter, format, &mut out)
                .map_err(write_error(Path::new("standard output")))?
        }
    };
    print_notes(&outcome, &args.file);
    Ok(exit_code::OK)
}

pub(super) fn merge(args: &MergeArgs) -> anyhow::Result<i32> {
    let summary = merge_files(&args.files, &args.output, args.allow_duplicates)?;
    for note in &summary.notes {
        warn(note);
    }
    eprintln!(
        "merged {} from {} into {} ({})",
        crate::sinks::units::count(summary.stats.events, "call"),
        crate::sinks::units::count(args.files.len() as u64, "file"),
        args.output.display(),
        format_bytes(summary.stats.bytes)
    );
    Ok(exit_code::OK)
}
