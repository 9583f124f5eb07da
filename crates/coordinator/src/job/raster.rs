//! What the coordinator learns about the input before planning: size, bands, sample types,
//! nodata, block size, georeferencing. All validation of the input happens here, so the rest
//! of the run can assume a readable raster.

use std::path::{Path, PathBuf};

use gdal::{Dataset, Metadata};
use worker::{ffi::gdal::band_type_name, Agg, SampleType};

use crate::{error::CoordError, os::gdal_err};

#[derive(Debug, Clone)]
pub struct BandInfo {
    /// 1-based band number.
    pub index: u32,
    pub sample: SampleType,
    pub nodata: Option<f64>,
    pub description: String,
    /// GDAL's mask says more than nodata: a per-band or per-dataset mask (internal or a
    /// `.msk` sidecar) or an alpha band.
    pub masked: bool,
    /// What the output may carry over (see [`crate::fidelity`]).
    pub meta: crate::fidelity::InputBandMeta,
}

#[derive(Debug, Clone)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub width: u64,
    pub height: u64,
    pub bands: Vec<BandInfo>,
    pub block: (u64, u64),
    pub geo_transform: Option<[f64; 6]>,
    pub projection: String,
    pub driver: String,
    /// The dataset's `AREA_OR_POINT` metadata item, carried over.
    pub area_or_point: Option<String>,
}

/// Refuses an input that is a FIFO, a socket or a device before GDAL opens it: opening a
/// FIFO blocks until something writes to it (forever, as a rule), and a device is read
/// without end. A directory passes: some formats are directories (ArcInfo grids).
fn refuse_special_file(path: &Path) -> Result<(), CoordError> {
    match special_file(path) {
        None => Ok(()),
        Some(what) => Err(CoordError::not_raster(
            path,
            format!("it is {what}, not a file (INPUT must be a regular file)"),
        )),
    }
}

/// What `path` is when it is a FIFO, a socket or a device, which GDAL would block on or read
/// without end (`None` for a file, a directory, or a missing path: GDAL's to judge).
pub(crate) fn special_file(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    // Follows symbolic links: a link to a raster is fine.
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        None
    }
}

/// Opens and validates `path`. GDAL is asked first: `/vsizip/`, `/vsicurl/` and other
/// virtual paths exist only for it; the filesystem is consulted only to explain a failure.
pub fn inspect(path: &Path) -> Result<RasterInfo, CoordError> {
    let not_raster = |reason: String| CoordError::not_raster(path, reason);
    refuse_special_file(path)?;
    gdal_err::reset();
    let ds = Dataset::open(path).map_err(|e| {
        // The bindings' open error does not carry GDAL's message; its error state does.
        let gdal_msg = gdal_err::take().unwrap_or_default();
        let is_virtual = path.to_string_lossy().starts_with("/vsi");
        if !is_virtual && !path.exists() {
            return CoordError::InputMissing(path.to_path_buf());
        }
        let msg = e.to_string();
        let reason = if !gdal_msg.is_empty() {
            gdal_msg
        } else if msg.contains("NULL pointer") {
            "GDAL recognises no raster format in it".to_string()
        } else {
            msg.lines().next().unwrap_or("").to_string()
        };
        CoordError::InputNotRaster {
            path: path.to_path_buf(),
            reason,
            source: Some(Box::new(e)),
        }
    })?;
    if ds.raster_count() == 0 {
        return Err(not_raster("it has no raster bands".into()));
    }
    let (w, h) = ds.raster_size();
    let mut bands = Vec::new();
    let mut block = (0, 0);
    for i in 1..=ds.raster_count() {
        let rb = ds.rasterband(i).map_err(|source| CoordError::InputGdal {
            path: path.to_path_buf(),
            step: String::new(),
            source: Box::new(source),
        })?;
        // Signed bytes are Int8 whichever way GDAL shows them (3.6: Byte with
        // PIXELTYPE=SIGNEDBYTE; 3.7 and later: Int8).
        let sample = worker::read::band_sample(&rb).ok_or_else(|| {
            let name = band_type_name(&rb).unwrap_or_else(|| rb.band_type().name());
            CoordError::BadInput(format!(
                "input '{}': band {i} has data type {name}, which is not supported (supported: Byte, Int8, Int16, UInt16, Int32, UInt32, Float32, Float64)",
                path.display()
            ))
        })?;
        if i == 1 {
            let (bw, bh) = rb.block_size();
            block = (bw as u64, bh as u64);
        }
        let (masked, _) = worker::exec::band_has_mask(&rb)
            .map_err(|e| not_raster(format!("band {i}: its GDAL mask: {e}")))?;
        bands.push(BandInfo {
            index: i as u32,
            sample,
            nodata: rb.no_data_value(),
            description: rb.description().unwrap_or_default(),
            masked,
            meta: crate::fidelity::InputBandMeta::read(&rb),
        });
    }
    Ok(RasterInfo {
        path: path.to_path_buf(),
        width: w as u64,
        height: h as u64,
        bands,
        block,
        geo_transform: ds.geo_transform().ok(),
        projection: ds.projection(),
        driver: ds.driver().short_name(),
        area_or_point: ds.metadata_item("AREA_OR_POINT", ""),
    })
}

impl RasterInfo {
    /// The bands picked by `--band` (all when empty), validated.
    pub fn select(&self, wanted: &[u32]) -> Result<Vec<BandInfo>, CoordError> {
        if wanted.is_empty() {
            return Ok(self.bands.clone());
        }
        wanted
            .iter()
            .map(|&b| {
                self.bands
                    .iter()
                    .find(|x| x.index == b)
                    .cloned()
                    .ok_or_else(|| {
                        CoordError::BadInput(format!(
                            "band {b} does not exist: '{}' has {} band(s)",
                            self.path.display(),
                            self.bands.len()
                        ))
                    })
            })
            .collect()
    }
}

/// The sample type the selected bands are read as: their common type, or Float64 when they
/// differ (GDAL converts on read; Float64 holds every supported type exactly).
pub fn common_sample(bands: &[BandInfo]) -> SampleType {
    let first = bands[0].sample;
    if bands.iter().all(|b| b.sample == first) {
        first
    } else {
        SampleType::F64
    }
}

/// The default output type: never overflows, never loses precision against the input.
///
/// | agg        | output                                                      |
/// |------------|-------------------------------------------------------------|
/// | sum        | Float64 (integers exact up to 2^53; no float overflow)      |
/// | mean       | Float32 for Float32 input, else Float64                     |
/// | min, max   | the input type (the result is one of the input values; widened by |
/// |            | `fidelity::choose_nodata` when a nodata is needed and none is free); |
/// |            | Int16 for Int8, the smallest type GDAL 3.6 writes that holds it |
/// | count      | UInt32                                                      |
pub fn default_out_type(agg: Agg, sample: SampleType) -> SampleType {
    match agg {
        Agg::Sum => SampleType::F64,
        Agg::Mean if sample == SampleType::F32 => SampleType::F32,
        Agg::Mean => SampleType::F64,
        // GDAL 3.6 has no Int8 type to write (a Byte band with PIXELTYPE=SIGNEDBYTE, which
        // later GDALs read as Int8, is refused by `--ot`, see `cli::schema`).
        Agg::Min | Agg::Max if sample == SampleType::I8 => SampleType::I16,
        Agg::Min | Agg::Max => sample,
        Agg::Count => SampleType::U32,
    }
}
