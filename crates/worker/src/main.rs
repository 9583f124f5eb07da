//! The `worker` binary: spawned by the coordinator, never by hand. Everything it needs
//! arrives over the protocol (the setup picks the kernel); its command line carries only
//! the connection and the shared segment.

fn main() -> std::process::ExitCode {
    runtime::serve::<worker::WorkerKernel>()
}
