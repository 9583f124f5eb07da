//! The `coordinator` binary: parse, set up logging, call the library, map errors to the
//! documented exit codes.

use std::process::ExitCode;

use clap::FromArgMatches;
use coordinator::{
    cli::{self, Cli, Command},
    error::CoordError,
    run,
    stdio::{eline, out},
    synth,
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
    let code = match dispatch(&cli) {
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

fn dispatch(cli: &Cli) -> Result<i32, CoordError> {
    // Before any work: started by a process that takes the command with it when it dies (the
    // Python package, BLOCKSUM_PARENT_PID), its death is a SIGTERM here, handled as above; a
    // parent already gone stops the command now, as that SIGTERM would (exit 130).
    if let Some(parent) = cli::parent_pid(&|k| std::env::var(k).ok())? {
        coordinator::os::term_with_parent(parent)
            .map_err(|e| CoordError::Internal(format!("following the parent process: {e}")))?;
        engine::interrupt::check()?;
    }
    match &cli.command {
        Command::Resample(r) => resample(cli, &cli::resolve(cli, &r.job, r)?.0),
        Command::Map(m) => resample(cli, &cli::resolve_map(cli, m)?.0),
        Command::Plan(p) => plan(cli, p),
        Command::BenchDispatch(b) => {
            let workers = match cli.workers {
                Some(cli::Workers::N(n)) => n,
                _ => 2,
            };
            let bin = b.worker_bin.clone().unwrap_or_else(run::default_worker_bin);
            let text = coordinator::bench::bench_dispatch(&coordinator::bench::BenchConfig {
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
        Command::BenchWriter(b) => bench_writer(b),
        Command::Config(pool) => {
            let st = cli::settings(cli.config.as_deref(), pool)?;
            engine::interrupt::check()?;
            out(&st.describe());
            Ok(0)
        }
        Command::Report(r) => {
            coordinator::html::report_to_html(&r.report, &r.html, r.overwrite)?;
            if !cli.quiet {
                eline(&format!("wrote {}", r.html.display()));
            }
            Ok(0)
        }
        Command::Completions(c) => {
            out_bytes(&cli::completions(c.shell));
            Ok(0)
        }
        Command::Man => {
            let page = cli::man_page().map_err(|e| CoordError::Internal(e.to_string()))?;
            out_bytes(&page);
            Ok(0)
        }
        Command::Merge(m) => {
            let line = coordinator::merge::merge(&coordinator::merge::MergeConfig {
                output: m.output.clone(),
                vrt: m.vrt,
                overwrite: m.overwrite,
                keep_shards: m.keep_shards || m.vrt,
            })?;
            if !cli.quiet {
                eline(&line);
            }
            Ok(0)
        }
        Command::Synth(s) => {
            let cfg = synth::SynthConfig {
                width: s.width,
                height: s.height,
                seed: s.seed,
                overwrite: s.overwrite,
            };
            synth::synth(&s.output, &cfg)?;
            if !cli.quiet {
                eline(&format!(
                    "wrote {} ({}x{} Float32, seed {})",
                    s.output.display(),
                    s.width,
                    s.height,
                    s.seed
                ));
            }
            Ok(0)
        }
    }
}

/// `coordinator resample` and `coordinator map`: the run, and its summary on stderr.
fn resample(cli: &Cli, cfg: &cli::RunConfig) -> Result<i32, CoordError> {
    let summary = run::resample(cfg)?;
    if !cli.quiet {
        eline(&summary.message);
    }
    Ok(summary.exit_code)
}

/// `coordinator plan`: what a run would do, as text or JSON.
fn plan(cli: &Cli, p: &cli::PlanArgs) -> Result<i32, CoordError> {
    let (cfg, _) = cli::resolve_plan(cli, p)?;
    let prep = run::prepare(&cfg, &p.input)?;
    let decoder = coordinator::decoder::plan_choice(&cfg, &p.input, &prep)?;
    if p.json {
        let summary = coordinator::report::PlanSummary::new(
            &prep.plan,
            prep.layout.slots,
            prep.layout.slot_bytes(),
        );
        let mut v =
            serde_json::to_value(&summary).map_err(|e| CoordError::Internal(e.to_string()))?;
        v["memory"] =
            serde_json::to_value(&prep.memory).map_err(|e| CoordError::Internal(e.to_string()))?;
        v["decoder"] =
            serde_json::to_value(&decoder).map_err(|e| CoordError::Internal(e.to_string()))?;
        // As the report's options name them ("Int8" for signed bytes, whichever way GDAL
        // shows them).
        v["sample_type"] = prep.sample.gdal_name().into();
        v["output_type"] = prep.out_type.gdal_name().into();
        engine::interrupt::check()?;
        if p.chunks {
            v["chunk_list"] = serde_json::to_value(&prep.plan.chunks)
                .map_err(|e| CoordError::Internal(e.to_string()))?;
        }
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).map_err(|e| CoordError::Internal(e.to_string()))?
        ));
    } else {
        engine::interrupt::check()?;
        let mut text = run::describe(&prep, &cfg);
        text.push_str(&format!("decoder      {decoder}\n"));
        if p.chunks {
            for c in &prep.plan.chunks {
                let (w, o) = (c.window, c.out);
                text.push_str(&format!(
                    "chunk {:>6}  in {}x{}+{}+{}  out {}x{}+{}+{}\n",
                    c.id.0, w.w, w.h, w.x, w.y, o.w, o.h, o.x, o.y
                ));
            }
        }
        out(&text);
    }
    Ok(0)
}

/// `coordinator bench-writer`: the writer alone, on synthetic chunks.
fn bench_writer(b: &cli::BenchWriterArgs) -> Result<i32, CoordError> {
    let co = cli::resolve::with_default_creation_options(cli::CreationOptions::parse(
        b.creation_options.clone(),
    )?);
    let text =
        coordinator::bench_writer::bench_writer(&coordinator::bench_writer::WriterBenchConfig {
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

/// Bytes on stdout; lost if stdout is closed.
fn out_bytes(b: &[u8]) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    let _ = o.flush();
}
