//! `coordinator bench-writer`: the one writer alone. It plans a resample of a synthetic
//! Float32 raster exactly as a run would (`plan` with the output's tiles, the run's default
//! creation options), fills each chunk's output area with the F x F sums the kernels would
//! produce (from `synth`'s field: same value distribution, nodata region included, so
//! DEFLATE sees realistic bytes), then feeds the finished chunks, as fast as it can, to the
//! real sink ([`GtiffSink`]) on one thread, closes it (flush, close, reopen and check) and
//! reports, per chunk:
//!
//! - the writer thread's wall time (what the one writer costs the run on this machine,
//!   waiting for GDAL's compression threads included);
//! - the writer thread's CPU time: the serial part, what stays on the one writer thread
//!   whatever the number of cores (conversion, GDAL's block cache, handing tiles to its
//!   compression pool, placing the compressed tiles in the file);
//! - the whole process's CPU time: the compression spread over GDAL's threads
//!   (`NUM_THREADS`);
//! - the writer's ceiling in workers' worth: how many workers, each reading `--worker-gibps`
//!   of input, one writer keeps fed at that serial time.
//!
//! The outputs are prepared before the clock starts; every chunk is a different output
//! window (a pool of distinct synthetic chunks is reused across windows).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use engine::ChunkSink;
use worker::{SampleType, Window};

use crate::{
    error::CoordError,
    plan::{plan, Plan},
    raster::BandInfo,
    synth,
    writer::{self, GtiffSink, OutputSpec},
};

pub struct WriterBenchConfig<'a> {
    pub output: &'a Path,
    pub overwrite: bool,
    /// The simulated input's side, in pixels (Float32, one band, tiled 256).
    pub side: u64,
    pub factor: u64,
    pub chunk_bytes: u64,
    pub out_type: SampleType,
    /// Complete creation options (defaults already added).
    pub creation_options: crate::cli::CreationOptions,
    /// Distinct synthetic chunk outputs to cycle through.
    pub distinct: usize,
    /// Input a worker decodes per second, for the ceiling.
    pub worker_bytes_per_s: f64,
}

/// CPU time of this thread, or of the whole process.
fn cpu(who: nix::sys::resource::UsageWho) -> Duration {
    nix::sys::resource::getrusage(who)
        .map(|u| {
            let d = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            d(u.user_time()) + d(u.system_time())
        })
        .unwrap_or_default()
}

fn thread_cpu() -> Duration {
    cpu(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

fn process_cpu() -> Duration {
    cpu(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// The F x F sums of `synth`'s field over input window `win` (NaN where a block has no valid
/// pixel, as the kernels mark it), in the slot's layout: row-major f64.
fn synthetic_sums(win: Window, f: u64, side: u64, seed: u64) -> Vec<u8> {
    let (ow, oh) = (win.w.div_ceil(f), win.h.div_ceil(f));
    let mut sums = vec![0f64; (ow * oh) as usize];
    let mut valid = vec![false; sums.len()];
    let phase = (seed % 1000) as f64 * 0.37;
    for y in win.y..win.y + win.h {
        let mut st = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (y + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
            | 1;
        let row = ((y - win.y) / f * ow) as usize;
        for x in win.x..win.x + win.w {
            let n = (synth::xorshift(&mut st) >> 11) as f64 / (1u64 << 53) as f64 * 10.0 - 5.0;
            let v = synth::pixel(x, y, side, side, phase, n);
            if v as f64 != synth::SYNTH_NODATA {
                let i = row + ((x - win.x) / f) as usize;
                sums[i] += v as f64;
                valid[i] = true;
            }
        }
    }
    for (s, ok) in sums.iter_mut().zip(&valid) {
        if !ok {
            *s = f64::NAN;
        }
    }
    bytemuck::cast_slice(&sums).to_vec()
}

/// The benchmark's output: one band, the plan's size, the options given.
fn output_spec(cfg: &WriterBenchConfig, p: &Plan) -> OutputSpec {
    OutputSpec {
        path: cfg.output.to_path_buf(),
        width: p.out_width,
        height: p.out_height,
        bands: vec![BandInfo {
            index: 1,
            sample: SampleType::F32,
            nodata: Some(synth::SYNTH_NODATA),
            description: String::new(),
            masked: false,
            meta: Default::default(),
        }],
        out_type: cfg.out_type,
        nodata: Some(synth::SYNTH_NODATA),
        geo_transform: None,
        projection: String::new(),
        creation_options: cfg.creation_options.as_slice().to_vec(),
        band_meta: Vec::new(),
        area_or_point: None,
    }
}

/// Conversion alone (the writer's per-value work before GDAL), for the breakdown.
fn conversion_time(cfg: &WriterBenchConfig, p: &Plan, distinct: &[Vec<u8>]) -> Duration {
    let t = Instant::now();
    let mut adjusted = writer::Adjusted::default();
    let mut into = vec![0f64; distinct.iter().map(Vec::len).max().unwrap_or(0) / 8];
    for c in &p.chunks {
        let bytes = &distinct[c.id.0 as usize % distinct.len()];
        let values: &[f64] = bytemuck::cast_slice(bytes);
        writer::convert_into::<f64>(
            values,
            &mut into[..values.len()],
            synth::SYNTH_NODATA,
            cfg.out_type,
            &mut adjusted,
        );
        std::hint::black_box(&into);
    }
    t.elapsed()
}

/// The creation options the summary names (BIGTIFF and TILED go without saying).
fn shown_options(cfg: &WriterBenchConfig) -> String {
    cfg.creation_options
        .as_slice()
        .iter()
        .filter(|o| !o.starts_with("BIGTIFF") && !o.starts_with("TILED"))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outputs of the first `cfg.distinct` chunks, which the benchmark writes in turn.
fn distinct_sums(cfg: &WriterBenchConfig, p: &Plan) -> Vec<Vec<u8>> {
    p.chunks
        .iter()
        .take(cfg.distinct)
        .map(|c| synthetic_sums(c.window, cfg.factor, cfg.side, 1))
        .collect()
}

/// The plan of the benchmark's synthetic raster, after checking the options and OUTPUT; sets
/// the coordinator's block cache as a run of that plan does.
fn bench_plan(cfg: &WriterBenchConfig) -> Result<Plan, CoordError> {
    if cfg.side == 0 || cfg.factor == 0 || cfg.distinct == 0 {
        return Err(CoordError::BadInput(
            "bench-writer needs --side, --factor and --distinct of at least 1".into(),
        ));
    }
    if cfg.output.exists() && !cfg.overwrite {
        return Err(CoordError::OutputExists(cfg.output.to_path_buf()));
    }
    let out_tile = cfg.creation_options.gtiff_tile();
    let p: Plan = plan(
        (cfg.side, cfg.side),
        (256, 256),
        cfg.factor,
        (1, 4),
        cfg.chunk_bytes,
        out_tile,
    );
    // As a run does: the coordinator's block cache for this plan.
    crate::os::set_gdal_cache(crate::run::coordinator_cache_bytes(
        &p,
        cfg.out_type,
        1,
        4,
        0,
        2,
    ));
    Ok(p)
}

pub fn bench_writer(cfg: &WriterBenchConfig) -> Result<String, CoordError> {
    let p = bench_plan(cfg)?;
    let distinct = distinct_sums(cfg, &p);
    let spec = output_spec(cfg, &p);
    let tmp: PathBuf = cfg.output.to_path_buf();
    if cfg.overwrite {
        let _ = std::fs::remove_file(&tmp);
    }
    let ds = writer::create(&spec, &tmp)?;
    let mut sink = GtiffSink::new(ds, spec, tmp.clone());

    let convert = conversion_time(cfg, &p, &distinct);

    let (wall0, tcpu0, pcpu0) = (Instant::now(), thread_cpu(), process_cpu());
    let mut worst = Duration::ZERO;
    for c in &p.chunks {
        if let Err(i) = engine::interrupt::check() {
            // The benchmark writes OUTPUT itself (no staging): an interrupted one goes.
            drop(sink);
            let _ = std::fs::remove_file(&tmp);
            return Err(i.into());
        }
        let bytes = &distinct[c.id.0 as usize % distinct.len()];
        let t = Instant::now();
        sink.write(c.id, c.out, Some(bytes))?;
        worst = worst.max(t.elapsed());
    }
    let wall1 = wall0.elapsed();
    sink.close(Vec::new())?;
    let wall = wall0.elapsed();
    let (tcpu, pcpu) = (thread_cpu() - tcpu0, process_cpu() - pcpu0);
    let file_bytes = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);

    let n = p.chunks.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    let chunk_in = p.max_input_bytes() as f64;
    let worker_chunk_ms = chunk_in / cfg.worker_bytes_per_s * 1e3;
    let ceiling = |per: f64| worker_chunk_ms / per.max(1e-9);
    let opts = shown_options(cfg);
    Ok(format!(
        "writer: {} chunks of {}x{} input ({:.1} MiB) -> {}x{} {} output tiles{}, F = {}, {}\n\
         output {}x{} ({:.1} MiB on disk), GDAL cache {:.0} MiB\n\
         per chunk: writer thread wall {:.3} ms (writes {:.3} ms + close {:.3} ms; slowest write {:.3} ms), \
         writer thread CPU {:.3} ms (serial), process CPU {:.3} ms (all threads), conversion alone {:.3} ms\n\
         ceiling at {:.2} GiB/s of input per worker ({:.1} ms a chunk): serial CPU {:.1} workers, writer wall on this machine {:.1} workers\n",
        p.chunks.len(),
        p.chunk_w.min(cfg.side),
        p.chunk_h.min(cfg.side),
        chunk_in / (1 << 20) as f64,
        p.chunk_w.min(cfg.side).div_ceil(cfg.factor),
        p.chunk_h.min(cfg.side).div_ceil(cfg.factor),
        cfg.out_type,
        match p.whole_tiles {
            Some((tw, th)) => format!(" (whole {tw}x{th} output tiles)"),
            None => " (not whole output tiles)".to_string(),
        },
        cfg.factor,
        opts,
        p.out_width,
        p.out_height,
        file_bytes as f64 / (1 << 20) as f64,
        crate::run::coordinator_cache_bytes(&p, cfg.out_type, 1, 4, 0, 2) as f64
            / (1 << 20) as f64,
        ms(wall),
        ms(wall1),
        ms(wall - wall1),
        worst.as_secs_f64() * 1e3,
        ms(tcpu),
        ms(pcpu),
        ms(convert),
        cfg.worker_bytes_per_s / (1u64 << 30) as f64,
        worker_chunk_ms,
        ceiling(ms(tcpu)),
        ceiling(ms(wall)),
    ))
}
