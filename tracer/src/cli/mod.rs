//! The command line, and the only module that knows clap and anyhow: [`args`] is its shape,
//! [`parse`] the values clap cannot parse alone, and each command has its room: tracing here,
//! [`list`], and the review commands over trace files in [`review`]. `main.rs` parses, calls
//! [`run`], and turns the outcome into an exit code with [`exit_code_of`].
//!
//! Every line this tool writes on stderr about itself starts with `koolkit-trace:` ([`warn`],
//! [`exit_code_of`]); a closed standard output ends any command quietly, with success.

mod agent;
mod args;
mod list;
mod parse;
mod review;

use std::{
    fmt::Display,
    io::{self, IsTerminal as _},
};

pub use args::Cli;
use args::Command;

use crate::{
    error::{Error, exit_code},
    session::trace,
};

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    // `µs` only where it shows as such: a terminal whose locale is UTF-8.
    let utf8_terminal = io::stdout().is_terminal()
        && crate::sinks::units::locale_is_utf8(|name| std::env::var(name).ok());
    crate::sinks::units::use_ascii_micro(!utf8_terminal);
    let args = match cli.command {
        Some(Command::Trace(args)) => args,
        Some(Command::List(args)) => return list::run(&args),
        Some(Command::Replay(args)) => return review::replay(&args),
        Some(Command::Report(args)) => return review::report(&args),
        Some(Command::Export(args)) => return review::export(&args),
        Some(Command::Merge(args)) => return review::merge(&args),
        Some(Command::Agent(args)) => return agent::run(&args),
        Some(Command::Doctor(args)) => return doctor(&args),
        None => cli.trace,
    };
    args.check_filters()?;
    let resolved = args.target.resolve()?;
    if let Some(chosen) = &resolved.chosen {
        for line in chosen.lines() {
            say("", line);
        }
    }
    let options = args.options_for(resolved);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::internal(format!("cannot start the event loop: {err}")))?;
    let mut stderr = io::stderr();
    let traced = runtime.block_on(trace(&options, Box::new(io::stdout()), &mut stderr))?;
    eprint!("{}", traced.summary.render(&traced.table));
    let summary = traced.summary;
    let killed = summary.stop.target_killed();
    match summary.recording_failed.or(summary.output_failed) {
        Some(err) => Err(err.into()),
        // The trace is whole, but the program it watched died: say so to scripts too.
        None if killed => Ok(exit_code::RUNTIME),
        None => Ok(exit_code::OK),
    }
}

/// `koolkit-trace doctor`: the kernel's features, as text or one JSON object.
fn doctor(args: &args::DoctorArgs) -> anyhow::Result<i32> {
    use crate::probes::features::{self, Features};
    let found = Features::probe();
    if args.json {
        let mut value = serde_json::to_value(&found)?;
        value["mode"] = found.mode().to_string().into();
        println!("{value}");
    } else {
        print!("{}", features::render(&found));
    }
    let usable = features::ESSENTIAL.iter().all(|name| found.has(name));
    Ok(if usable {
        exit_code::OK
    } else {
        exit_code::PRIVILEGE
    })
}

/// The exit code for the outcome of [`run`]. An error is printed as one line with its causes;
/// a closed standard output (`koolkit-trace ... | head`) is success, as for other CLI tools.
pub fn exit_code_of(outcome: anyhow::Result<i32>) -> i32 {
    match outcome {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => exit_code::OK,
        Err(err) => {
            say("error: ", causes(&err));
            err.chain()
                .find_map(|cause| cause.downcast_ref::<Error>())
                .map_or(exit_code::RUNTIME, Error::exit_code)
        }
    }
}

/// `err` and its causes in one line, each said once: an error that already quotes its cause
/// (`cannot read x: No such file`) is not followed by that cause again.
fn causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Whether any cause of `err` is a write to a pipe whose reader has gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// One line about the tool itself on stderr: `koolkit-trace: {label}{message}`.
fn say(label: &str, message: impl Display) {
    eprintln!("{}", crate::error::tool_line(label, message));
}

/// `koolkit-trace: warning: ...` on stderr.
fn warn(message: impl Display) {
    say("warning: ", message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_said_once() {
        let missing = io::Error::from_raw_os_error(libc::ENOENT);
        let err = anyhow::Error::from(Error::io("/x", missing));
        assert_eq!(
            causes(&err),
            "cannot read /x: No such file or directory (os error 2)"
        );
        let wrapped = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(causes(&wrapped), "outer: inner cause");
    }

    #[test]
    fn a_closed_pipe_is_success_and_errors_keep_their_code() {
        let pipe = Error::io(
            "standard output",
            io::Error::from(io::ErrorKind::BrokenPipe),
        );
        assert_eq!(exit_code_of(Err(pipe.into())), exit_code::OK);
        let wrapped = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing the report");
        assert_eq!(exit_code_of(Err(wrapped)), exit_code::OK);
        let usage = Error::NoSuchProcess { pid: 7 };
        assert_eq!(exit_code_of(Err(usage.into())), exit_code::USAGE);
        let context = anyhow::Error::from(Error::NoSuchProcess { pid: 7 }).context("tracing");
        assert_eq!(exit_code_of(Err(context)), exit_code::USAGE);
        assert_eq!(
            exit_code_of(Err(anyhow::anyhow!("odd"))),
            exit_code::RUNTIME
        );
        assert_eq!(exit_code_of(Ok(3)), 3);
    }
}
