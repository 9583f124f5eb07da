//! Documented process exit codes of the `coordinator` binary (the README lists them).

/// The run finished and every chunk is done.
pub const OK: i32 = 0;
/// An unexpected internal error (a bug: please report it).
pub const INTERNAL: i32 = 1;
/// Bad command line: unknown flag, value that does not parse (clap's own code), and options
/// that parse but do not go together (`--band` twice, `--inject-fault` without workers).
pub const USAGE: i32 = 2;
/// Bad input: missing or non-raster file, unsupported data type, unknown band, factor 0,
/// bad config file, fault index out of range.
pub const INPUT: i32 = 3;
/// Output problem: exists without `--overwrite`, directory missing or not writable, write failed.
pub const OUTPUT: i32 = 4;
/// The run completed but some chunks were quarantined: their pixels are nodata, the report
/// names them. The output file is in place and carries the list in its metadata.
pub const QUARANTINED: i32 = 5;
/// The worker pool could not be kept alive: workers cannot start (or never say hello), the
/// restart breaker tripped, attempts die on every chunk (systematic failure), or the worker
/// speaks another protocol version.
pub const WORKERS: i32 = 6;
/// Machine limits cannot be met: memory (limits asked for, `--min-free-memory` above the
/// machine's memory) or the file descriptors the worker pool needs.
pub const RESOURCES: i32 = 7;
/// A batch (`resample ... --out-dir DIR`) where some inputs failed (did not open, output
/// refused or not writable) and the others were written, complete: each input's line (and
/// the report's section) says which.
pub const PARTIAL: i32 = 8;
/// Interrupted by SIGINT, SIGTERM or SIGHUP: workers stopped, no output left behind.
pub const INTERRUPTED: i32 = 130;

/// Exit codes of the `worker` binary itself (seen by the coordinator, reported as causes).
pub mod worker {
    /// Bad arguments, or the shared segment / input could not be opened.
    pub const SETUP: i32 = 3;
    /// Exit requested by `--inject-fault exit:K`.
    pub const INJECTED: i32 = 42;
}
