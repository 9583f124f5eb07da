//! Preparing a run: validate the input and the options, plan the chunks, do the memory
//! arithmetic; nothing starts here. `coordinator plan` prints what this computes.

use super::*;

/// The validated input and the plan derived from it (shared with `coordinator plan`).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub info: RasterInfo,
    pub bands: Vec<BandInfo>,
    pub sample: SampleType,
    pub out_type: SampleType,
    /// `None`: no block can be empty, so the output declares no nodata.
    pub out_nodata: Option<f64>,
    /// The kernels apply the bands' scale and offset before aggregating.
    pub unscale: bool,
    pub plan: Plan,
    pub layout: SlotLayout,
    pub lanes: u32,
    pub memory: MemoryPlan,
}

/// Validates `input` and the options and plans its run, without starting anything.
pub fn prepare(cfg: &RunConfig, input: &Path) -> Result<Prepared, CoordError> {
    if cfg.job.grid == GridRequest::Factor(0) {
        return Err(CoordError::BadInput("--factor must be at least 1".into()));
    }
    let mut info = raster::inspect(input)?;
    grid::adopt_like_crs(&cfg.job.grid, &mut info)?;
    // A factor beyond the raster's sides is fine: the partial-edge rule gives one block.
    let bands = info.select(&cfg.job.bands)?;
    if cfg.job.decoder == worker::types::Decoder::Native && cfg.job.kernel.agg().is_some() {
        // Asked for by name: refuse now, with the reason, rather than let every worker fail
        // its setup. The workers run the same check.
        let numbers: Vec<u32> = bands.iter().map(|b| b.index).collect();
        if let Err(e) =
            worker::exec::ChunkRunner::open(input, &numbers, worker::types::Decoder::Native)
        {
            return Err(CoordError::BadInput(e.to_string()));
        }
    }
    let sample = raster::common_sample(&bands);
    let mapping = grid::resolve(&cfg.job.grid, &info)?;
    let (unscale, out_type, out_nodata) = output_type(cfg, &bands, sample, (&mapping, &info));
    let running = running_workers(cfg);
    let (plan, out_planes) = plan_chunks(cfg, (&info, &bands, sample), mapping, running)?;
    // In-process lanes: all the work without workers, one fallback lane with them; none
    // for a plug-in kernel unless the user lets the coordinator load it.
    let lanes = match &cfg.job.kernel {
        Kernel::Map(m) if !m.in_process_fallback => 0,
        _ if cfg.pool.workers == 0 => cfg.pool.in_process_threads.max(1),
        _ => 1,
    };
    let (layout, memory) = plan_memory(cfg, &plan, (out_type, out_planes), lanes)?;
    Ok(Prepared {
        info,
        bands,
        sample,
        out_type,
        out_nodata,
        unscale,
        plan,
        layout,
        lanes,
        memory,
    })
}

/// How many workers run at once: the workers, no more than the CPUs (at least 1).
fn running_workers(cfg: &RunConfig) -> u64 {
    cfg.pool.workers.min(crate::cli::settings::cpus()).max(1) as u64
}

impl Prepared {
    /// The chunks as a machine where `running` workers run at once plans them: only a small
    /// raster's chunk grid differs (see `plan_chunks`). With the output planes, for
    /// [`Prepared::with_plan`]. For `--resume` of a journal written on a machine with another
    /// CPU count (`durable::adopt_grid`).
    pub(super) fn chunks_for(
        &self,
        cfg: &RunConfig,
        running: u64,
    ) -> Result<(Plan, u64), CoordError> {
        let mapping = self.plan.mapping.clone();
        let input = (&self.info, self.bands.as_slice(), self.sample);
        plan_chunks(cfg, input, mapping, running)
    }

    /// This run with `plan` instead of its own, and the memory plan and slot ring for it.
    pub(super) fn with_plan(
        &mut self,
        cfg: &RunConfig,
        (plan, out_planes): (Plan, u64),
    ) -> Result<(), CoordError> {
        let (layout, memory) = plan_memory(cfg, &plan, (self.out_type, out_planes), self.lanes)?;
        self.plan = plan;
        self.layout = layout;
        self.memory = memory;
        Ok(())
    }
}

/// The input bytes a chunk aims at: `--chunk-mib`, or less on a small raster, so that each
/// of the `running` workers gets about four chunks (never under 1 MiB). A shard's plan must
/// be the same on every node, whatever its core count: no spread.
pub(super) fn chunk_target(cfg: &RunConfig, total: u64, running: u64) -> u64 {
    match cfg.durability.shard {
        Some(_) => cfg.pool.chunk_bytes,
        None => spread(cfg.pool.chunk_bytes, total, running),
    }
}

/// `chunk_bytes`, or less so that each of `running` workers gets about four chunks of
/// `total` bytes, never under 1 MiB.
pub(super) fn spread(chunk_bytes: u64, total: u64, running: u64) -> u64 {
    chunk_bytes.min((total / (4 * running.max(1))).max(1 << 20))
}

/// Whether the kernels unscale, and the output's type and nodata.
fn output_type(
    cfg: &RunConfig,
    bands: &[BandInfo],
    sample: SampleType,
    (mapping, info): (&Mapping, &RasterInfo),
) -> (bool, SampleType, Option<f64>) {
    let agg = match &cfg.job.kernel {
        // A map kernel's output is Float64 with nodata NaN, whatever its input.
        Kernel::Map(_) => return (false, SampleType::F64, Some(f64::NAN)),
        Kernel::BlockAgg(agg) => *agg,
    };
    // Scale and offset that do not commute with the aggregate are applied by the kernels;
    // the values are then no longer of the input's type.
    let unscale = fidelity::needs_unscale(agg, bands);
    let cells = match mapping {
        Mapping::Cells { target } => Some(target),
        Mapping::Factor { .. } => None,
    };
    let default = match raster::default_out_type(agg, sample) {
        _ if unscale && agg != worker::Agg::Count => SampleType::F64,
        // Cells count input pixels fractionally.
        _ if cells.is_some() && agg == worker::Agg::Count => SampleType::F64,
        t => t,
    };
    let empty = fidelity::empty_block_possible(agg, bands, cfg.job.ignore_mask)
        || cells
            .is_some_and(|t| agg != worker::Agg::Count && !t.covered_by((info.width, info.height)));
    let c = fidelity::choose_nodata(
        agg,
        cfg.job.out_type.unwrap_or(default),
        cfg.job.out_type.is_some(),
        bands,
        empty,
    );
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    if cells.is_some()
        && matches!(agg, worker::Agg::Count | worker::Agg::Sum)
        && !c.out_type.is_float()
    {
        tracing::warn!(
            "--ot {}: a {} on a target grid is fractional (overlap weights); it is rounded to whole numbers, so the output's total is no longer the input's",
            c.out_type,
            agg.name()
        );
    }
    for n in &c.notes {
        tracing::info!("{n}");
    }
    (unscale, c.out_type, c.nodata)
}

/// The chunks, and the output planes each fills.
fn plan_chunks(
    cfg: &RunConfig,
    (info, bands, sample): (&RasterInfo, &[BandInfo], SampleType),
    mapping: Mapping,
    running: u64,
) -> Result<(Plan, u64), CoordError> {
    let nb = bands.len() as u64;
    // Input bytes per pixel (all bands) and output planes: a map kernel reads f64 samples
    // and a mask byte per sample, and fills its own number of planes.
    let (pixel_bytes, out_planes) = match &cfg.job.kernel {
        Kernel::Map(m) => (
            worker::map::input_bytes(nb, unit_window()),
            m.out_bands as u64,
        ),
        Kernel::BlockAgg(_) => (sample.size() * nb, nb),
    };
    // Small rasters still get a few chunks per running worker, so that every CPU has work.
    // Only as many workers run at once as there are CPUs: more workers than CPUs (asked for
    // isolation or memory) do not cut the chunks smaller, which would cut the output's tiles
    // (each then written in parts) and pay every chunk's overhead more often. Measured on 2
    // CPUs, 16384², F = 8, `--workers 50`: 256 chunks of 5 MiB 2.62 s, 64 of 16 MiB 2.43 s.
    let total = info.width * info.height * pixel_bytes;
    let target = chunk_target(cfg, total, running);
    let tile = cfg.output.creation_options.gtiff_tile();
    let size = (info.width, info.height);
    let plan = match mapping {
        Mapping::Factor { factor } => plan(
            size,
            info.block,
            factor,
            (out_planes, pixel_bytes),
            target,
            tile,
        ),
        Mapping::Cells { .. } if matches!(cfg.job.kernel, Kernel::Map(_)) => {
            return Err(CoordError::Usage(
                "map kernels take --factor only: a target grid is for resample".into(),
            ))
        }
        Mapping::Cells { target: grid } => plan_cells(
            &grid,
            size,
            info.block,
            (out_planes, pixel_bytes),
            target,
            tile,
        ),
    };
    for fault in cfg.input_faults() {
        if let Some(c) = fault.chunk {
            if c as usize >= plan.chunks.len() {
                return Err(CoordError::BadInput(format!(
                    "--inject-fault names chunk {c}, but the plan has {} chunks (0..{})",
                    plan.chunks.len(),
                    plan.chunks.len() - 1
                )));
            }
        }
    }
    Ok((plan, out_planes))
}

/// The slot ring's layout and the memory plan: how many workers fit, their limits.
fn plan_memory(
    cfg: &RunConfig,
    plan: &Plan,
    (out_type, out_planes): (SampleType, u64),
    lanes: u32,
) -> Result<(SlotLayout, MemoryPlan), CoordError> {
    let slots_for = |workers: u32| {
        // A slot per worker and per lane, plus the prefetch so the writer never starves the
        // pool; `chunk_queue` caps the ring.
        let want = workers + lanes + cfg.pool.chunk_prefetch.max(1);
        cfg.pool
            .chunk_queue
            .map_or(want, |q| want.min(q.max(lanes + 1)))
    };
    let layout_for = |workers: u32| {
        SlotLayout::new(
            slots_for(workers),
            plan.max_input_bytes(),
            plan.max_output_bytes(),
        )
    };
    layout_for(cfg.pool.workers).map_err(|e| CoordError::BadInput(format!("chunk size: {e}")))?;
    let coordinator_cache = coordinator_cache_bytes(
        plan,
        out_type,
        out_planes,
        slots_for(cfg.pool.workers),
        lanes,
        cfg.pool.workers,
    );
    let memory = budget::plan_memory(
        available_memory(),
        asked(cfg),
        cfg.pool.memory_limit,
        cfg.pool.soft_fraction,
        coordinator_cache,
        |w| {
            layout_for(w)
                .map(|l| l.total_bytes())
                .unwrap_or(u64::MAX / 4)
        },
    )
    .map_err(|e| match e {
        // Name the limit's real source: the file's key or the variable, not the flag.
        CoordError::Resources(m) => CoordError::Resources(
            m.replace("--memory-limit-per-worker", &cfg.pool.memory_limit_from),
        ),
        other => other,
    })?;
    if let Some(min) = cfg.pool.min_free_memory {
        let total = total_memory();
        if min > total {
            return Err(CoordError::Resources(format!(
                "--min-free-memory {} MiB is more than this machine's {} MiB of memory: the run would wait forever",
                min >> 20,
                total >> 20
            )));
        }
    }
    let layout =
        layout_for(memory.workers).map_err(|e| CoordError::BadInput(format!("chunk size: {e}")))?;
    if layout.slots < memory.workers + lanes {
        tracing::warn!(
            "queue_sizes.chunk_queue allows {} chunks in flight for {} workers: some will idle",
            layout.slots,
            memory.workers
        );
    }
    Ok((layout, memory))
}

/// For `plan`: a human-readable description.
pub fn describe(prep: &Prepared, cfg: &RunConfig) -> String {
    let p = &prep.plan;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut s = String::new();
    // GDAL 3.6's gdalinfo says Byte for signed bytes: say which view was recognised.
    let sample = match prep.sample {
        SampleType::I8 => "Int8 (signed bytes)".to_string(),
        t => t.to_string(),
    };
    s.push_str(&format!(
        "input        {} ({}x{}, {} band(s) selected, {sample}, block {}x{})\n",
        prep.info.path.display(),
        p.width,
        p.height,
        prep.bands.len(),
        prep.info.block.0,
        prep.info.block.1
    ));
    s.push_str(&format!(
        "output       {}x{} {} ({} of {}), nodata {}\n",
        p.out_width,
        p.out_height,
        prep.out_type,
        cfg.job.kernel.agg().map_or("map", |a| a.name()),
        p.mapping.describe(),
        prep.out_nodata
            .map_or("none (no block can be empty)".to_string(), |v| v
                .to_string())
    ));
    if let Mapping::Cells { target } = &p.mapping {
        s.push_str(&format!(
            "weights      x: {}\n             y: {}\n",
            first_cell(&target.x, p.width),
            first_cell(&target.y, p.height)
        ));
    }
    s.push_str(&format!(
        "chunks       {} of {}x{} pixels ({:.1} MiB each){}\n",
        p.chunks.len(),
        p.chunk_w,
        p.chunk_h,
        mib(p.max_input_bytes()),
        match p.whole_tiles {
            Some((tw, th)) => format!(", whole {tw}x{th} output tiles"),
            None => String::new(),
        }
    ));
    s.push_str(&format!(
        "workers      {}{}\n",
        prep.memory.workers,
        if prep.memory.workers == 0 {
            format!(" (in process, {} thread(s))", prep.lanes)
        } else {
            String::new()
        }
    ));
    s.push_str(&format!(
        "slots        {} x {:.1} MiB = {:.1} MiB of shared memory in flight\n",
        prep.layout.slots,
        mib(prep.layout.slot_bytes()),
        mib(prep.layout.total_bytes())
    ));
    s.push_str(&prep.memory.describe());
    s
}

/// The weights of the first cell of `axis` that lies wholly inside the input (or cell 0), for
/// `plan`: "cell 1 <- pixels 7-15: 0.5 1 1 1 1 1 1 1 0.5 (sum 7.5)".
fn first_cell(axis: &worker::Axis, pixels: u64) -> String {
    let i = if axis.origin < 0.0 {
        (-axis.origin / axis.step).ceil() as u64
    } else {
        0
    };
    let (p0, p1) = axis.span((i, i + 1), pixels);
    let w: Vec<f64> = (p0..p1).map(|p| axis.weight(i, p)).collect();
    let short = |v: f64| {
        let t = format!("{v:.4}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let shown: Vec<String> = w.iter().take(12).map(|&v| short(v)).collect();
    format!(
        "cell {i} <- pixels {p0}-{}: {}{} (sum {})",
        p1.saturating_sub(1),
        shown.join(" "),
        if w.len() > 12 { " ..." } else { "" },
        short(w.iter().sum::<f64>())
    )
}

/// The coordinator's GDAL block cache, plus the read cache of the in-process lanes; not
/// GDAL's 5 % of RAM. With whole-tile chunks: the output tiles of two chunks (flat in the
/// raster's size). Otherwise (striped output, or a budget below one tile's window): two
/// rows of output tiles and the chunks in flight, so a tile is complete before it is
/// evicted and compressed.
pub fn coordinator_cache_bytes(
    p: &Plan,
    out_type: SampleType,
    bands: u64,
    slots: u32,
    lanes: u32,
    workers: u32,
) -> u64 {
    let reading = if workers == 0 {
        lanes as u64 * (64 << 20)
    } else {
        0
    };
    let chunk_out = p.max_output_bytes() / 8 * out_type.size();
    if p.whole_tiles.is_some() {
        // Each chunk fills whole tiles, each complete before it can be evicted: room for
        // the tiles of two chunks is enough, whatever the raster's width. (The parts of a
        // split chunk share tiles; a tile evicted half-filled is then read back and
        // compressed again: slower, still exact.)
        return (2 * chunk_out).clamp(8 << 20, 256 << 20) + reading;
    }
    let tile_row = p.out_width * 256 * out_type.size() * bands;
    let in_flight = slots as u64 * p.max_output_bytes();
    (2 * tile_row + in_flight).clamp(8 << 20, 256 << 20) + reading
}

/// The pool the options ask for, before memory has its say (`budget::plan_memory`): the
/// busy workers, the warm spares beside them (none in process), and whether `auto` may
/// lower the count.
pub(super) fn asked(cfg: &RunConfig) -> budget::Asked {
    budget::Asked {
        workers: cfg.pool.workers,
        spares: if cfg.pool.workers > 0 {
            cfg.pool.spare_workers
        } else {
            0
        },
        auto: cfg.pool.workers_auto,
    }
}
