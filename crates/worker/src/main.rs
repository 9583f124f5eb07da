//! The `worker` binary: spawned by the coordinator, never by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOCKSUM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    let args = match protocol::WorkerArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("worker: {e} (this program is started by `coordinator`, not by hand)");
            return ExitCode::from(protocol::exit::worker::SETUP as u8);
        }
    };
    match worker::process::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(protocol::exit::worker::SETUP as u8)
        }
    }
}
