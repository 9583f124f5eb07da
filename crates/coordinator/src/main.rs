//! The `coordinator` binary: parse, set up logging and signals, call the command
//! (`coordinator::commands`), map its error to the documented exit code.

use std::process::ExitCode;

use clap::FromArgMatches;
use coordinator::{
    cli::{self, Cli},
    commands,
    error::CoordError,
    stdio::eline,
};

fn main() -> ExitCode {
    // The layered options record whether a flag or the environment gave each value as they
    // are parsed (`cli::PoolArgs`); the config file sits below both.
    // `--version` names the protocol's and GDAL's versions too: the command is built at run
    // time (`cli::command`).
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, like every other error; `--help` has the rest.
            let text = e.render().to_string();
            eline(&format!(
                "{} (see --help)",
                text.lines().next().unwrap_or("error: bad command line")
            ));
            return ExitCode::from(protocol::exit::USAGE as u8);
        }
    };
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOCKSUM_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(|| coordinator::stdio::Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    // A write past `ulimit -f` must fail with EFBIG and be reported, not kill us silently.
    coordinator::os::ignore_sigxfsz();
    // SIGINT, SIGTERM and SIGHUP are recorded from here on, for every command: each step
    // checks and unwinds (temporaries and lock removed), and the command exits 130.
    if let Err(e) = engine::interrupt::install() {
        eline(&format!("error: {e}"));
        return ExitCode::from(protocol::exit::INTERNAL as u8);
    }
    // GDAL's messages go through our logging (one-line errors on stderr carry GDAL's text
    // where it matters); the write path checks GDAL's error state itself.
    gdal::config::set_error_handler(|kind, num, msg| {
        use gdal::errors::CplErrType;
        match kind {
            CplErrType::Failure | CplErrType::Fatal => {
                coordinator::os::gdal_err::record(msg);
                tracing::debug!("GDAL error {num}: {msg}")
            }
            CplErrType::Warning => tracing::info!("GDAL warning {num}: {msg}"),
            _ => tracing::trace!("GDAL: {msg}"),
        }
    });
    let code = match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e @ CoordError::Usage(_)) => {
            eline(&format!("error: {e} (see --help)"));
            e.exit_code()
        }
        Err(e) => {
            eline(&format!("error: {e}"));
            e.exit_code()
        }
    };
    coordinator::os::exit_now(code)
}
