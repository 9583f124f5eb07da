//! `coordinator bench-dispatch` (no-op chunks through the pool) and `coordinator
//! bench-writer` (the writer alone, on synthetic chunks).

use crate::{bench, bench_writer, cli, error::CoordError, run, stdio::out};

pub(super) fn dispatch(cli: &cli::Cli, b: &cli::schema::BenchArgs) -> Result<i32, CoordError> {
    let workers = match cli.workers {
        Some(cli::Workers::N(n)) => n,
        _ => 2,
    };
    let bin = b.worker_bin.clone().unwrap_or_else(run::default_worker_bin);
    let text = bench::bench_dispatch(&bench::BenchConfig {
        input: &b.input,
        worker_bin: &bin,
        workers,
        chunks: b.chunks,
        slot_bytes: b.slot_mib.max(1) << 20,
        handovers: b.handovers.max(1),
    })?;
    engine::interrupt::check()?;
    out(&text);
    Ok(0)
}

pub(super) fn writer(b: &cli::BenchWriterArgs) -> Result<i32, CoordError> {
    let co = cli::resolve::with_default_creation_options(cli::CreationOptions::parse(
        b.creation_options.clone(),
    )?);
    let text = bench_writer::bench_writer(&bench_writer::WriterBenchConfig {
        output: &b.output,
        overwrite: b.overwrite,
        side: b.side,
        factor: b.factor as u64,
        chunk_bytes: (b.chunk_mib * (1 << 20) as f64) as u64,
        out_type: b.ot,
        creation_options: co,
        distinct: b.distinct,
        worker_bytes_per_s: b.worker_gibps * (1u64 << 30) as f64,
    })?;
    out(&text);
    Ok(0)
}
