//! The `koolkit-trace` binary: set up logging (`RUST_LOG`), parse, run, exit with the code the
//! outcome deserves. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser as _;
use tracer::cli;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let code = cli::exit_code_of(cli::run(cli::Cli::parse()));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
