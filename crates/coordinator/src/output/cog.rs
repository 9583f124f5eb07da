//! The output's format and pyramid, the last step before the commit: `--pyramid` adds exact
//! aggregate overviews to the staged GeoTIFF, and `--of COG` turns it into a Cloud Optimized
//! GeoTIFF (GDAL's COG driver is CreateCopy-only, so the GTiff the writer staged is copied
//! into a second temporary, which then takes its place). Every GDAL call is checked; a
//! failure is a write error (exit 4) and nothing reaches OUTPUT.
//!
//! **Exact overviews.** Overview level `k` of an output at factor F is the same aggregation
//! at factor `F * 2^k`, computed from the input by the same chunk machinery and kernel (a
//! run per level into a scratch file, [`RunLevel`], which the run gives), then copied into the
//! level's overview bands. A sum of the base level's sums would be exact for integer inputs
//! and for min, max and count, but not for floating-point sums and means: the kernel adds
//! each block's columns row by row, and a sum of four sub-block sums rounds differently. A
//! re-aggregation is bit-identical by construction, for every aggregation and type, at the
//! cost of one more read of the input per level (measured in the README).
//!
//! **Levels.** Halve until the smaller side fits one tile: the COG's `BLOCKSIZE` (512 unless
//! `--co` says otherwise), or the GTiff's `BLOCKXSIZE`/`BLOCKYSIZE` (256).
//!
//! It does not write the base level (that is `writer`) and does not move anything to OUTPUT
//! (that is `output`).

use std::path::{Path, PathBuf};

use gdal::{
    raster::{Buffer, RasterCreationOptions},
    Dataset, DatasetOptions, DriverManager, GdalOpenFlags, Metadata,
};

use worker::{Agg, SampleType};

use crate::{
    cli::{CreationOptions, OneRun},
    error::CoordError,
    grid::GridRequest,
    os::gdal_err::check,
    output::Staging,
    pyramid,
};

/// One overview level to compute: the base run's aggregation onto the coarser `grid`, into
/// the scratch GTiff `output` written with `creation_options`. Nothing else of the base run
/// changes.
#[derive(Debug, Clone)]
pub struct LevelSpec {
    pub grid: GridRequest,
    pub output: PathBuf,
    pub creation_options: CreationOptions,
}

/// How a level is computed: a run of the base run's input, kernel and pool as `LevelSpec`
/// says, returning its exit code. Given by `crate::run`, which owns running; this module
/// only asks for levels.
pub type RunLevel<'a> = &'a dyn Fn(&LevelSpec) -> Result<(i32, String), CoordError>;

/// What OUTPUT is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// A GeoTIFF written directly (`--co` goes to the GTiff driver).
    GTiff,
    /// A Cloud Optimized GeoTIFF, copied from the staged GTiff by GDAL's COG driver with
    /// these creation options (the user's `--co`, then the defaults).
    Cog { options: CreationOptions },
}

/// The COG options the output gets unless `--co` sets the key: the same compression as the
/// GTiff default (DEFLATE at level 1, for the same reason), every CPU, BigTIFF when needed.
pub const COG_DEFAULTS: [(&str, &str); 4] = [
    ("COMPRESS", "DEFLATE"),
    ("LEVEL", "1"),
    ("NUM_THREADS", "ALL_CPUS"),
    ("BIGTIFF", "IF_SAFER"),
];

/// The GTiff options of a scratch file (an overview level, or the GTiff a COG is copied
/// from): tiled and lossless whatever `--co` says, since its pixels are copied on.
pub const SCRATCH_GTIFF: [&str; 5] = [
    "TILED=YES",
    "COMPRESS=DEFLATE",
    "ZLEVEL=1",
    "BIGTIFF=IF_SAFER",
    "NUM_THREADS=ALL_CPUS",
];

/// The tile side the GTiff driver uses when `--co` does not set one.
const GTIFF_TILE: u64 = 256;
/// The COG driver's default `BLOCKSIZE`.
const COG_TILE: u64 = 512;

/// Splits the user's `--co` between the formats; returns the format and the staged GTiff's
/// options. For a COG they go to the COG driver (with [`COG_DEFAULTS`] for the keys they
/// leave out) and the staged GTiff gets the scratch options; for a GTiff they stay where
/// they are. Refuses `--co OVERVIEWS` with `--pyramid` (the pyramid is this tool's).
pub fn resolve_format(
    cog: bool,
    pyramid: bool,
    user: CreationOptions,
) -> Result<(OutputFormat, CreationOptions), CoordError> {
    let refuse = |driver: &str, why: String| {
        CoordError::Usage(format!("--co refused by GDAL's {driver} driver: {why}"))
    };
    if !cog {
        crate::os::validate_creation_options("GTiff", user.as_slice())
            .map_err(|e| refuse("GTiff", e))?;
        return Ok((OutputFormat::GTiff, user));
    }
    if pyramid {
        for key in ["OVERVIEWS", "OVERVIEW_COUNT"] {
            if let Some(v) = user.get(key) {
                return Err(CoordError::Usage(format!(
                    "--co {key}={v} cannot be used with --pyramid: the overviews are the exact pyramid (drop --pyramid to let GDAL resample)"
                )));
            }
        }
    }
    let options = user.with_defaults(&COG_DEFAULTS);
    crate::os::validate_creation_options("COG", options.as_slice())
        .map_err(|e| refuse("COG", e))?;
    let staged = CreationOptions::of(&SCRATCH_GTIFF);
    Ok((OutputFormat::Cog { options }, staged))
}

/// The tile side the pyramid stops at, from the format's options.
pub fn tile_side(
    format: &OutputFormat,
    gtiff_options: &CreationOptions,
) -> Result<u64, CoordError> {
    let parse = |key: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| CoordError::Usage(format!("--co {key}={v} is not a positive number")))
    };
    match format {
        OutputFormat::Cog { options } => match options.get("BLOCKSIZE") {
            Some(v) => parse("BLOCKSIZE", v),
            None => Ok(COG_TILE),
        },
        OutputFormat::GTiff => {
            let mut side = u64::MAX;
            for key in ["BLOCKXSIZE", "BLOCKYSIZE"] {
                if let Some(v) = gtiff_options.get(key) {
                    side = side.min(parse(key, v)?);
                }
            }
            Ok(if side == u64::MAX { GTIFF_TILE } else { side })
        }
    }
}

/// The overview factors (relative to the output: 2, 4, 8, ...) of a `w x h` output: halve
/// until the smaller side fits one `tile`.
pub fn levels(w: u64, h: u64, tile: u64) -> Vec<u32> {
    let mut out = vec![];
    let mut side = w.min(h);
    let mut factor = 1u32;
    while side > tile.max(1) {
        let Some(next) = factor.checked_mul(2) else {
            break;
        };
        factor = next;
        side = side.div_ceil(2);
        out.push(factor);
    }
    out
}

/// What [`finish`] did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// The overview factors written (relative to the output).
    pub levels: Vec<u32>,
    /// Those derived from the level below (the others were re-aggregated from the input).
    pub derived: Vec<u32>,
    /// Chunks quarantined in the overview levels' runs (their pixels are nodata).
    pub quarantined: u64,
    /// Time spent on the pyramid (its runs and the copy into the overviews).
    pub pyramid_secs: f64,
    /// Time spent copying the GTiff into the COG.
    pub cog_secs: f64,
}

impl Finished {
    /// The summary's lines about the pyramid and the COG (empty when neither was asked for).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if !self.levels.is_empty() {
            let f: Vec<String> = self.levels.iter().map(|f| format!("x{f}")).collect();
            out.push_str(&format!(
                "\npyramid: {} exact overview level(s) ({}) in {:.2} s, {} derived from the level below, {} re-aggregated from the input",
                f.len(),
                f.join(" "),
                self.pyramid_secs,
                self.derived.len(),
                f.len() - self.derived.len()
            ));
        }
        if self.cog_secs > 0.0 {
            out.push_str(&format!(
                "\nCOG: copied from the staged GTiff in {:.2} s",
                self.cog_secs
            ));
        }
        if self.quarantined > 0 {
            out.push_str(&format!(
                "\nwarning: {} chunk(s) of the overview levels were quarantined: their overview pixels are nodata",
                self.quarantined
            ));
        }
        out
    }
}

/// What the base run tells the pyramid.
#[derive(Debug, Clone, Copy)]
pub struct BaseRun {
    /// The kernels' input sample type.
    pub input: SampleType,
    pub out_type: SampleType,
    /// Input pixels per band.
    pub input_pixels: u64,
    /// What the base grid is to the input (which levels derive exactly).
    pub grid: pyramid::BaseGrid,
    /// The base run quarantined chunks (their pixels are nodata).
    pub quarantined: bool,
    /// The base run's aggregation (`None` for a map kernel, which has no pyramid).
    pub agg: Option<Agg>,
}

/// Adds the pyramid to the staged file and converts it to a COG, as the run `one` asks. Called after
/// the writer closed and checked the staged GTiff, before the commit. A signal stops either
/// between blocks (GDAL's progress callback for the copy, a check between strips for the
/// pyramid): the failure it causes is then the interrupt, and the staging removes what the
/// steps had written.
pub fn finish(
    one: OneRun<'_>,
    base: BaseRun,
    staging: &mut Staging,
    run_level: RunLevel<'_>,
) -> Result<Finished, CoordError> {
    finish_steps(one, base, staging, run_level).map_err(|e| match engine::interrupt::received() {
        Some(i) => i.into(),
        None => e,
    })
}

fn finish_steps(
    one: OneRun<'_>,
    base: BaseRun,
    staging: &mut Staging,
    run_level: RunLevel<'_>,
) -> Result<Finished, CoordError> {
    let cfg = one.cfg;
    let mut done = Finished::default();
    let staged = staging.temp().to_path_buf();
    let err = |reason: String| CoordError::Write {
        path: one.io.output.clone(),
        reason,
    };
    let gdal = |step: String| move |e| CoordError::write_gdal(&one.io.output, step, e);
    if cfg.output.pyramid {
        let started = std::time::Instant::now();
        let (w, h) = check(|| Dataset::open(&staged))
            .map_err(gdal("opening the staged file for its pyramid".into()))?
            .raster_size();
        let tile = tile_side(&cfg.output.format, &cfg.output.creation_options)?;
        done.levels = levels(w as u64, h as u64, tile);
        if done.levels.is_empty() {
            tracing::warn!(
                "--pyramid: the output ({w}x{h}) already fits one {tile}-pixel tile: no overview level"
            );
        } else {
            let agg = base.agg.ok_or_else(|| {
                CoordError::Internal("--pyramid for a run that aggregates nothing".into())
            })?;
            let pyramid = Pyramid {
                one,
                base,
                agg,
                run_level,
            };
            build_pyramid(&pyramid, &staged, staging, &mut done)?;
        }
        done.pyramid_secs = started.elapsed().as_secs_f64();
    }
    if let OutputFormat::Cog { options } = &cfg.output.format {
        let started = std::time::Instant::now();
        let cog = staging.scratch("cog");
        to_cog(&staged, &cog, options, !done.levels.is_empty()).map_err(|e| {
            let _ = std::fs::remove_file(&cog);
            err(e)
        })?;
        std::fs::rename(&cog, &staged).map_err(|e| {
            CoordError::write_io(&one.io.output, "moving the COG over the staged GTiff", e)
        })?;
        done.cog_secs = started.elapsed().as_secs_f64();
    }
    Ok(done)
}

/// The pyramid's inputs: the base run's options and facts, and how to run a level.
struct Pyramid<'a> {
    one: OneRun<'a>,
    base: BaseRun,
    agg: Agg,
    run_level: RunLevel<'a>,
}

/// Allocates the overviews of the staged GTiff (GDAL's `NONE` method computes nothing) and
/// fills each level: derived from the level below where that is exact (`pyramid`), else
/// re-aggregated from the input.
fn build_pyramid(
    p: &Pyramid<'_>,
    staged: &Path,
    staging: &mut Staging,
    done: &mut Finished,
) -> Result<(), CoordError> {
    let (one, base, agg) = (p.one, p.base, p.agg);
    let gdal = |step: String| move |e| CoordError::write_gdal(&one.io.output, step, e);
    let mut ds = check(|| {
        Dataset::open_ex(
            staged,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_UPDATE | GdalOpenFlags::GDAL_OF_RASTER,
                ..Default::default()
            },
        )
    })
    .map_err(gdal("opening the staged file for update".into()))?;
    let factors: Vec<i32> = done.levels.iter().map(|&f| f as i32).collect();
    check(|| ds.build_overviews("NONE", &factors, &[]))
        .map_err(gdal("allocating the overviews".into()))?;
    let bands = ds.raster_count();
    let minmax = matches!(agg, Agg::Min | Agg::Max);
    let in_principle =
        pyramid::derivable(agg, base.input, base.out_type, base.input_pixels, base.grid);
    // The level below holds exact values: no quarantined chunk, and for sums and counts no
    // value the writer clamped or moved off nodata.
    let mut below_clean = !base.quarantined
        && (minmax
            || (1..=bands).all(|b| {
                ds.rasterband(b)
                    .ok()
                    .and_then(|rb| rb.metadata_item("BLOCKSUM_ADJUSTED_PIXELS", ""))
                    .is_none()
            }));
    let mut dir: Option<PathBuf> = None;
    for (i, &f) in done.levels.clone().iter().enumerate() {
        let what = format!("overview x{f}");
        if in_principle && below_clean {
            let mut changed = 0;
            for b in 1..=bands {
                let band = check(|| ds.rasterband(b)).map_err(gdal(what.to_string()))?;
                let src = match i {
                    0 => check(|| ds.rasterband(b)),
                    _ => check(|| band.overview(i - 1)),
                }
                .map_err(gdal(what.to_string()))?;
                let mut dst = check(|| band.overview(i)).map_err(gdal(what.to_string()))?;
                changed += pyramid::derive(&src, &mut dst, agg, base.out_type)
                    .map_err(|e| e.at(&one.io.output, format!("{what} band {b}")))?;
            }
            tracing::info!(
                "pyramid: {what} derived from the level below (exact for {})",
                agg.name()
            );
            done.derived.push(f);
            below_clean = minmax || changed == 0;
        } else {
            let d = match &dir {
                Some(d) => d.clone(),
                None => {
                    let d = staging.scratch("levels");
                    std::fs::create_dir(&d).map_err(|e| {
                        let step =
                            format!("creating the pyramid's scratch directory '{}'", d.display());
                        CoordError::write_io(&one.io.output, step, e)
                    })?;
                    dir = Some(d.clone());
                    d
                }
            };
            let base = (ds.geo_transform().ok(), {
                let (w, h) = ds.raster_size();
                (w as u64, h as u64)
            });
            let (path, quarantined) = run_level(p, &d, f, base)?;
            done.quarantined += quarantined;
            let adjusted = copy_level(&ds, &path, i, &what, &one.io.output)?;
            let _ = std::fs::remove_file(&path);
            below_clean = quarantined == 0 && (minmax || !adjusted);
        }
    }
    check(|| ds.flush_cache()).map_err(gdal("flushing the overviews".into()))?;
    check(|| ds.close()).map_err(gdal("closing the file with its overviews".into()))?;
    if let Some(d) = dir {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}

/// Copies the run of one level (`path`) into overview `i` of `ds`; whether any of its bands
/// holds pixels the writer adjusted (clamped, or moved off nodata).
fn copy_level(
    ds: &Dataset,
    path: &Path,
    i: usize,
    what: &str,
    output: &Path,
) -> Result<bool, CoordError> {
    let err = |reason: String| CoordError::Write {
        path: output.to_path_buf(),
        reason,
    };
    let gdal = |step: String| move |e| CoordError::write_gdal(output, step, e);
    let bands = ds.raster_count();
    let src = check(|| Dataset::open(path)).map_err(gdal(what.to_string()))?;
    if src.raster_count() != bands {
        return Err(err(format!(
            "{what}: {} band(s), the output {bands}",
            src.raster_count()
        )));
    }
    let mut adjusted = false;
    for b in 1..=bands {
        let sb = check(|| src.rasterband(b)).map_err(gdal(what.to_string()))?;
        adjusted |= sb.metadata_item("BLOCKSUM_ADJUSTED_PIXELS", "").is_some();
        let band = check(|| ds.rasterband(b)).map_err(gdal(what.to_string()))?;
        let mut ov = check(|| band.overview(i)).map_err(gdal(what.to_string()))?;
        if ov.size() != sb.size() {
            return Err(err(format!(
                "{what} band {b}: GDAL made it {:?}, the aggregation {:?}",
                ov.size(),
                sb.size()
            )));
        }
        copy_band(&sb, &mut ov).map_err(|e| e.at(output, format!("{what} band {b}")))?;
    }
    Ok(adjusted)
}

/// Runs the aggregation onto the grid `f` times coarser than the base output's `base` (its
/// geotransform and size) into a scratch GTiff in `dir`; returns it and the number of chunks
/// the run quarantined.
fn run_level(
    p: &Pyramid<'_>,
    dir: &Path,
    f: u32,
    base: (Option<[f64; 6]>, (u64, u64)),
) -> Result<(PathBuf, u64), CoordError> {
    let one = p.one;
    let grid = one.cfg.job.grid.coarsened(f, base)?;
    let path = dir.join(format!("x{f}.tif"));
    let level = LevelSpec {
        grid: grid.clone(),
        output: path.clone(),
        creation_options: CreationOptions::of(&SCRATCH_GTIFF),
    };
    tracing::info!("pyramid: overview x{f} = the aggregation onto {grid:?}");
    let (exit_code, message) = (p.run_level)(&level)
        .inspect_err(|_| tracing::error!("pyramid: the run of overview x{f} failed"))?;
    let quarantined = if exit_code == protocol::exit::QUARANTINED {
        tracing::warn!("pyramid: overview x{f}: {message}");
        // The level's run names its quarantined chunks in its own metadata; count them.
        let ds = check(|| Dataset::open(&path)).map_err(|e| {
            CoordError::write_gdal(&one.io.output, format!("reopening overview x{f}"), e)
        })?;
        ds.metadata_item("BLOCKSUM_QUARANTINED_CHUNKS", "")
            .map_or(1, |q| q.split(';').count() as u64)
    } else {
        0
    };
    Ok((path, quarantined))
}

/// Copies a band in strips of rows. As f64: every value of every output type converts to
/// f64 and back exactly.
fn copy_band(
    src: &gdal::raster::RasterBand,
    dst: &mut gdal::raster::RasterBand,
) -> Result<(), pyramid::LevelError> {
    let (w, h) = src.size();
    let strip = (((4 << 20) / 8 / w.max(1)).max(1)).min(h.max(1));
    let mut y = 0;
    while y < h {
        engine::interrupt::checkpoint("pyramid")?;
        let rows = strip.min(h - y);
        let buf: Buffer<f64> =
            check(|| src.read_as::<f64>((0, y as isize), (w, rows), (w, rows), None))?;
        let mut buf = buf;
        check(|| dst.write((0, y as isize), (w, rows), &mut buf))?;
        y += rows;
    }
    Ok(())
}

/// Copies the staged GTiff into a COG at `cog`, closes it (checked), reopens it and checks
/// its shape and its overviews.
fn to_cog(
    staged: &Path,
    cog: &Path,
    options: &CreationOptions,
    pyramid: bool,
) -> Result<(), String> {
    let mut options = options.clone();
    if options.get("OVERVIEWS").is_none() {
        // Without --pyramid, no GDAL-resampled overviews unless the user asks for them.
        options.push(
            "OVERVIEWS",
            if pyramid {
                "FORCE_USE_EXISTING"
            } else {
                "NONE"
            },
        );
    }
    let options = options.as_slice();
    let src = check(|| Dataset::open(staged))
        .map_err(|e| format!("opening the staged GTiff to copy it into a COG: {e}"))?;
    let driver = check(|| DriverManager::get_driver_by_name("COG"))
        .map_err(|e| format!("GDAL's COG driver (GDAL >= 3.1) is not available: {e}"))?;
    let opts = RasterCreationOptions::from_iter(options.iter().map(String::as_str));
    let out = crate::os::create_copy(&driver, &src, cog, &opts, "cog-copy")
        .map_err(|e| format!("writing the COG: {e}"))?;
    check(|| out.close()).map_err(|e| format!("closing the COG: {e}"))?;
    let back =
        check(|| Dataset::open(cog)).map_err(|e| format!("the COG does not open again: {e}"))?;
    if back.raster_size() != src.raster_size() || back.raster_count() != src.raster_count() {
        return Err(format!(
            "the COG reads back as {:?} with {} band(s), not {:?} with {}",
            back.raster_size(),
            back.raster_count(),
            src.raster_size(),
            src.raster_count()
        ));
    }
    if pyramid {
        let want = check(|| src.rasterband(1).and_then(|b| b.overview_count()))?;
        let got = check(|| back.rasterband(1).and_then(|b| b.overview_count()))?;
        if want != got {
            return Err(format!(
                "the COG has {got} overview level(s), the pyramid {want}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_halve_until_the_smaller_side_fits_a_tile() {
        assert_eq!(levels(512, 4000, 512), Vec::<u32>::new());
        assert_eq!(levels(513, 600, 512), vec![2]);
        assert_eq!(levels(1024, 1025, 256), vec![2, 4]);
        assert_eq!(levels(3000, 2049, 256), vec![2, 4, 8, 16]);
        assert_eq!(levels(1, 1, 256), Vec::<u32>::new());
    }

    #[test]
    fn co_goes_to_the_cog_driver_with_defaults_for_what_it_leaves_out() {
        let co = CreationOptions::of;
        let (f, staged) =
            resolve_format(true, false, co(&["compress=zstd", "BLOCKSIZE=256"])).unwrap();
        let OutputFormat::Cog { options } = &f else {
            panic!("not a COG: {f:?}")
        };
        assert_eq!(options.get("COMPRESS"), Some("zstd"));
        assert_eq!(options.get("LEVEL"), Some("1"));
        assert_eq!(tile_side(&f, &co(&[])).unwrap(), 256);
        assert!(staged.as_slice().iter().any(|o| o == "COMPRESS=DEFLATE"));
        assert!(matches!(
            resolve_format(true, true, co(&["OVERVIEWS=AUTO"])),
            Err(CoordError::Usage(_))
        ));
        let (g, given) = resolve_format(false, true, co(&["BLOCKXSIZE=128"])).unwrap();
        assert_eq!(
            (g.clone(), given),
            (OutputFormat::GTiff, co(&["BLOCKXSIZE=128"]))
        );
        assert_eq!(tile_side(&g, &co(&["BLOCKXSIZE=128"])).unwrap(), 128);
        assert_eq!(tile_side(&g, &co(&[])).unwrap(), 256);
        assert!(tile_side(&g, &co(&["BLOCKYSIZE=x"])).is_err());
    }
}
