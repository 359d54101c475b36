//! The `koolkit-trace` binary: parse, run, map the outcome to an exit code and one line.

use std::process::ExitCode;

use clap::Parser as _;
use tracer::{cli, error::exit_code};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = cli::Cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err
                .downcast_ref::<tracer::Error>()
                .map_or(exit_code::RUNTIME, tracer::Error::exit_code);
            eprintln!("koolkit-trace: error: {err:#}");
            code
        }
    };
    ExitCode::from(code as u8)
}
