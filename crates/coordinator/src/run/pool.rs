//! Bringing the pool up, the one way a single run and a batch do it: the worker binary and
//! the descriptor limit checked, the coordinator's GDAL cache set, the shared slot ring
//! created ([`bring_up`]); then the engine's configuration from the run's options
//! ([`engine_config`]) and the engine's error as the run's ([`engine_error`]).

use super::*;

/// Descriptors the coordinator needs besides its workers (input and output files, the
/// ring, GDAL, signals, the in-process lanes), and per worker process (its channel's
/// sockets, the handshake, its stderr pipe): measured ~5 per worker, with margin.
const FDS_BASE: u64 = 48;
const FDS_PER_WORKER: u64 = 8;

/// The pool a run brings up: its memory plan, in-process lanes and slot ring layout.
#[derive(Clone, Copy)]
pub(super) struct Pool<'a> {
    pub(super) memory: &'a MemoryPlan,
    pub(super) lanes: u32,
    pub(super) layout: SlotLayout,
}

impl<'a> Pool<'a> {
    /// A single run's pool, as `prepare` planned it.
    pub(super) fn of(prep: &'a Prepared) -> Pool<'a> {
        Pool {
            memory: &prep.memory,
            lanes: prep.lanes,
            layout: prep.layout,
        }
    }
}

/// Checks what the workers need and creates the shared slot ring. `outputs`: the batch's
/// outputs, each holding its lock file and its journal open for the run (0 for a single
/// run, whose own two are in [`FDS_BASE`]).
pub(super) fn bring_up(
    cfg: &RunConfig,
    pool: Pool<'_>,
    outputs: usize,
) -> Result<Arc<SlotRing>, CoordError> {
    let memory = pool.memory;
    if memory.workers > 0 && !cfg.pool.worker_bin.is_file() {
        return Err(CoordError::Workers(format!(
            "worker binary not found at '{}' (set --worker-bin or BLOCKSUM_WORKER_BIN)",
            cfg.pool.worker_bin.display()
        )));
    }
    if memory.workers > 0 {
        // Refuse now rather than fail inside a channel's thread halfway through the run.
        let processes = memory.workers + memory.spares;
        let need = FDS_BASE + FDS_PER_WORKER * (processes as u64 + 1) + 2 * outputs as u64;
        let what = match outputs {
            0 => String::new(),
            n => format!(" and {n} output lock(s) and journal(s)"),
        };
        crate::os::ensure_nofile(need).map_err(|(have, why)| {
            CoordError::Resources(format!(
                "too few file descriptors: {processes} worker process(es){what} need about {need}, the limit is {have}{why} (raise it with ulimit -n, or lower --workers)"
            ))
        })?;
    }
    crate::os::set_gdal_cache(memory.coordinator - memory.ring - budget::COORDINATOR_BASE);
    let layout = pool.layout;
    SlotRing::create(layout).map_err(|e| {
        let hint = if e.raw_os_error() == Some(nix::libc::EFBIG) {
            " (the file-size limit, ulimit -f, is below the ring's size: raise it, or lower --chunk-mib or --workers)"
        } else {
            ""
        };
        CoordError::Resources(format!(
            "creating the shared slot ring of {:.1} MiB: {e}{hint}",
            layout.total_bytes() as f64 / (1 << 20) as f64
        ))
    })
}

/// The engine's configuration from the run's options and its pool. `setup` is the workers'
/// (and, when the pool has lanes, the in-process lanes'); `job` names the run in each
/// worker's environment (`BLOCKSUM_JOB`), for whoever looks at a process table (the command
/// line carries only the connection and the segment).
pub(super) fn engine_config(
    cfg: &RunConfig,
    pool: Pool<'_>,
    tasks: usize,
    setup: Vec<u8>,
    job: String,
    events: Option<engine::observe::EventLog>,
) -> EngineConfig {
    let (memory, lanes, layout) = (pool.memory, pool.lanes, pool.layout);
    // A plug-in is loaded into the coordinator only when the user asks for it (`lanes` is
    // then non-zero); a Rust kernel's binary never runs here (`resolve_map` refuses it).
    let executor: Option<ExecutorFactory> = (lanes > 0).then(|| {
        let lane_setup = setup.clone();
        let f: ExecutorFactory = Arc::new(move || runtime::open::<WorkerKernel>(&lane_setup));
        f
    });
    let mut sc = SchedConfig::new(memory.workers + memory.spares, lanes, layout.slots);
    sc.max_busy = memory.workers;
    sc.admission_open = cfg
        .pool
        .min_free_memory
        .is_none_or(|m| available_memory() >= m);
    sc.max_attempts = cfg.pool.max_attempts;
    sc.timeout = cfg.pool.task_timeout;
    sc.timeout_floor = cfg.pool.task_timeout_floor;
    sc.speculation = cfg.pool.speculation;
    sc.start_timeout = cfg.pool.start_timeout;
    sc.kill_grace = cfg.pool.kill_grace;
    sc.faults = cfg.pool.faults.clone();
    sc.can_split = true;
    sc.suspect = suspect(cfg);
    EngineConfig {
        sched: sc,
        layout,
        tasks,
        worker_bin: cfg.pool.worker_bin.clone(),
        worker_env: vec![
            (
                "GDAL_CACHEMAX".into(),
                format!("{}", (memory.gdal_cache >> 20).max(1)),
            ),
            ("GDAL_NUM_THREADS".into(), "1".into()),
            ("BLOCKSUM_JOB".into(), job),
        ],
        data_limit: memory.limit,
        setup,
        executor,
        memory_poll: cfg.pool.memory_poll,
        soft_limit: memory.soft,
        min_free_memory: cfg.pool.min_free_memory,
        kill_grace: cfg.pool.kill_grace,
        progress: !cfg.observe.quiet,
        events,
        spawn: engine::Spawn::from_env(),
    }
}

/// The engine's error as the run's: a sink failure is a write failure of `output`.
pub(super) fn engine_error(cfg: &RunConfig, output: &Path, e: EngineError) -> CoordError {
    match e {
        EngineError::Fatal(why) => CoordError::Workers(why),
        EngineError::VersionMismatch { theirs, ours } => CoordError::Workers(format!(
            "the worker binary '{}' speaks protocol version {theirs}, this coordinator {ours}: build both from the same source",
            cfg.pool.worker_bin.display()
        )),
        EngineError::Sink(e) => sink_error(output, e),
        EngineError::Interrupted(name) => CoordError::Interrupted(name),
        EngineError::Internal(why) => CoordError::Internal(why),
    }
}

/// What computes a chunk, for the systematic-failure breaker's message: the user's kernel
/// for `map`, the reader of the input for `resample` (the built-in kernels are the tested
/// part; a crash there on every chunk is GDAL's or the decoder's on this input).
fn suspect(cfg: &RunConfig) -> String {
    let name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    match &cfg.job.kernel {
        Kernel::Map(m) => match &m.lib {
            Some(lib) => format!("the kernel {}", name(lib)),
            None => format!("the kernel worker {}", name(&cfg.pool.worker_bin)),
        },
        Kernel::BlockAgg(_) => match &cfg.target {
            Target::Batch(_) => "reading the inputs".into(),
            Target::Single(Io { input, .. }) | Target::Plan(input) => {
                format!("reading the input {}", name(input))
            }
        },
    }
}

/// The sink's failure as the run's: the job's own error comes back as it was, causes and
/// exit code kept; the engine's text (a slot it could not lease, a panic in the sink) is a
/// write failure of `output`.
fn sink_error(output: &Path, e: engine::SinkError) -> CoordError {
    match e.downcast::<CoordError>() {
        Ok(own) => *own,
        Err(text) => CoordError::Write {
            path: output.to_path_buf(),
            reason: text.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_sink_error_crosses_the_engine_with_its_cause() {
        let io = std::io::Error::from_raw_os_error(libc_enospc());
        let own = CoordError::write_io("o.tif", "flushing", io);
        let back = sink_error(Path::new("o.tif"), Box::new(own));
        assert!(matches!(back, CoordError::WriteIo { .. }), "{back:?}");
        assert_eq!(back.exit_code(), protocol::exit::OUTPUT);
        let cause = back.source().expect("the io error as the source");
        assert_eq!(
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error()),
            Some(libc_enospc())
        );
        // The engine's own text names the output.
        let text = sink_error(Path::new("o.tif"), "chunk 3: the sink panicked: x".into());
        assert_eq!(
            text.to_string(),
            "writing output 'o.tif': chunk 3: the sink panicked: x"
        );
    }

    fn libc_enospc() -> i32 {
        nix::errno::Errno::ENOSPC as i32
    }
}
