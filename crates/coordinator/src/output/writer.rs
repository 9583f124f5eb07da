//! The one writer, the block-aggregation job's sink: owns the output dataset, converts and
//! writes finished chunk windows (or nodata for quarantined chunks), and on success closes
//! the file under its temporary name so the caller can move it into place. The output is
//! never visible under its final name unless the whole run succeeded.

use std::path::{Path, PathBuf};

use gdal::{
    raster::{Buffer, GdalType, RasterCreationOptions},
    Dataset, DriverManager, Metadata,
};
use protocol::TaskId;
use worker::{SampleType, Window};

use crate::{
    error::CoordError,
    os::gdal_err::{check, GdalFailure},
    raster::BandInfo,
};

/// Everything needed to create the output.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub path: PathBuf,
    pub width: u64,
    pub height: u64,
    pub bands: Vec<BandInfo>,
    pub out_type: SampleType,
    /// The output's nodata, one for all bands (a GeoTIFF holds one nodata value per file);
    /// `None` when no block can be empty (a quarantined window is then marked in a mask).
    pub nodata: Option<f64>,
    pub geo_transform: Option<[f64; 6]>,
    pub projection: String,
    pub creation_options: Vec<String>,
    /// Per output band: the metadata carried over (empty: none).
    pub band_meta: Vec<crate::fidelity::OutBandMeta>,
    /// The input's `AREA_OR_POINT`.
    pub area_or_point: Option<String>,
}

/// Per output band: valid values that the output type could not hold as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adjusted {
    /// Out of the type's range, clamped to its nearest end.
    pub clamped: u64,
    /// Equal to the nodata value once converted: moved one step (one unit, or one ulp for
    /// floats) off it, so that a valid pixel never reads as nodata.
    pub moved_off_nodata: u64,
}

/// The kernels mark a block with no valid pixel as NaN; the writer turns it into the
/// output's nodata. Every other value is a valid result: it is rounded (integer types) and
/// clamped into the type's range, and a result equal to the nodata value is moved one step
/// off it, so that a valid pixel never becomes nodata. Returns the value and what was done.
pub fn convert(v: f64, nodata: f64, t: SampleType) -> (f64, bool, bool) {
    if v.is_nan() {
        return (nodata, false, false);
    }
    let (lo, hi) = t.range();
    let (mut r, clamped) = match t {
        SampleType::F64 => (v, false),
        SampleType::F32 => {
            if v.is_finite() && v.abs() > f32::MAX as f64 {
                (v.signum() * f32::MAX as f64, true)
            } else {
                ((v as f32) as f64, false)
            }
        }
        _ => {
            let x = v.round();
            if x < lo {
                (lo, true)
            } else if x > hi {
                (hi, true)
            } else {
                (x, false)
            }
        }
    };
    let mut moved = false;
    if r == nodata {
        moved = true;
        r = match t {
            SampleType::F64 => step_f64(r, v, lo, hi),
            SampleType::F32 => step_f32(r, v),
            _ if r >= hi => hi - 1.0,
            _ if r <= lo => lo + 1.0,
            _ if v > r => r + 1.0,
            _ => r - 1.0,
        };
    }
    (r, clamped, moved)
}

fn step_f64(r: f64, toward: f64, lo: f64, hi: f64) -> f64 {
    let up = toward > r || r <= lo;
    if r >= hi || !up {
        r.next_down()
    } else {
        r.next_up()
    }
}

fn step_f32(r: f64, toward: f64) -> f64 {
    let x = r as f32;
    let up = toward > r || x == f32::MIN;
    (if x == f32::MAX || !up {
        x.next_down()
    } else {
        x.next_up()
    }) as f64
}

/// Why no output is Int8: GDAL 3.6 writes signed bytes only as Byte with
/// PIXELTYPE=SIGNEDBYTE, which its conversions treat as unsigned.
const INT8_OUTPUT: &str =
    "Int8 output is not supported (GDAL 3.6 has no Int8 type): Int16 holds every Int8 value";

/// Creates the output under `tmp`.
pub fn create(spec: &OutputSpec, tmp: &Path) -> Result<Dataset, CoordError> {
    let err = |step: &str| {
        let path = spec.path.clone();
        let step = step.to_string();
        move |e| CoordError::write_gdal(path.clone(), step.clone(), e)
    };
    let driver = check(|| DriverManager::get_driver_by_name("GTiff")).map_err(err(""))?;
    let opts = RasterCreationOptions::from_iter(spec.creation_options.iter().map(String::as_str));
    let (w, h, n) = (spec.width as usize, spec.height as usize, spec.bands.len());
    let mut ds = check(|| match spec.out_type {
        SampleType::U8 => driver.create_with_band_type_with_options::<u8, _>(tmp, w, h, n, &opts),
        SampleType::I16 => driver.create_with_band_type_with_options::<i16, _>(tmp, w, h, n, &opts),
        SampleType::U16 => driver.create_with_band_type_with_options::<u16, _>(tmp, w, h, n, &opts),
        SampleType::I32 => driver.create_with_band_type_with_options::<i32, _>(tmp, w, h, n, &opts),
        SampleType::U32 => driver.create_with_band_type_with_options::<u32, _>(tmp, w, h, n, &opts),
        SampleType::F32 => driver.create_with_band_type_with_options::<f32, _>(tmp, w, h, n, &opts),
        SampleType::F64 => driver.create_with_band_type_with_options::<f64, _>(tmp, w, h, n, &opts),
        // `--ot` refuses it and no default picks it (`raster::default_out_type`).
        SampleType::I8 => Err(gdal::errors::GdalError::BadArgument(INT8_OUTPUT.into())),
    })
    .map_err(|e| {
        // GDAL may have left a file behind before failing.
        let _ = std::fs::remove_file(tmp);
        err("creating the file")(e)
    })?;
    if let Some(gt) = spec.geo_transform {
        check(|| ds.set_geo_transform(&gt)).map_err(err("setting the geotransform"))?;
    }
    if !spec.projection.is_empty() {
        check(|| ds.set_projection(&spec.projection)).map_err(err("setting the projection"))?;
    }
    if let Some(aop) = &spec.area_or_point {
        check(|| ds.set_metadata_item("AREA_OR_POINT", aop, ""))
            .map_err(err("setting AREA_OR_POINT"))?;
    }
    for (i, b) in spec.bands.iter().enumerate() {
        let band_err = err(&format!("band {}", i + 1));
        let mut rb = check(|| ds.rasterband(i + 1)).map_err(&band_err)?;
        if let Some(nd) = spec.nodata {
            check(|| rb.set_no_data_value(Some(nd))).map_err(&band_err)?;
        }
        if !b.description.is_empty() {
            check(|| rb.set_description(&b.description)).map_err(&band_err)?;
        }
        if let Some(m) = spec.band_meta.get(i) {
            crate::fidelity::apply(&mut rb, m).map_err(&band_err)?;
        }
    }
    Ok(ds)
}

/// The one writer, as the engine's sink: owns the output dataset, converts and writes each
/// finished window (or nodata for a quarantined one), and at the end sets the metadata,
/// flushes, closes and reopens the file to check it.
pub struct GtiffSink {
    ds: Dataset,
    spec: OutputSpec,
    tmp: PathBuf,
    adjusted: Vec<Adjusted>,
    /// The output's block size, when a window of whole blocks goes straight to GTiff's
    /// block writer (one band: with several, GTiff interleaves the bands of a block
    /// through its cache).
    blocks: Option<(usize, usize)>,
    /// Windows written as quarantined, for the mask when there is no nodata to mark them.
    quarantined: Vec<Window>,
    /// The file under its temporary name, read-only, and the windows written since its
    /// writeback last started (`os::start_writeback`; see [`GtiffSink::writeback`]): the
    /// disk takes the output while the workers compute.
    writeback: Option<(std::fs::File, u32)>,
}

/// Windows written between two starts of the output's writeback.
const WRITEBACK_EVERY: u32 = 8;

impl GtiffSink {
    pub fn new(ds: Dataset, spec: OutputSpec, tmp: PathBuf) -> GtiffSink {
        let adjusted = vec![Adjusted::default(); spec.bands.len()];
        let blocks = if spec.bands.len() == 1 {
            ds.rasterband(1)
                .ok()
                .map(|b| b.block_size())
                .filter(|&(w, h)| w > 0 && h > 0)
        } else {
            None
        };
        GtiffSink {
            ds,
            spec,
            adjusted,
            blocks,
            quarantined: Vec::new(),
            writeback: None,
            tmp,
        }
    }

    /// Starts the file's writeback as windows are written (`os::start_writeback`, every
    /// `WRITEBACK_EVERY` windows) when `on`: for a file that will be committed, whose
    /// `fsync` then waits for the last blocks only; not for one that is read back and
    /// replaced (the GeoTIFF a COG is copied from) or thrown away.
    pub fn writeback(mut self, on: bool) -> GtiffSink {
        self.writeback = match on {
            true => std::fs::File::open(&self.tmp).ok().map(|f| (f, 0)),
            false => None,
        };
        self
    }
}

impl engine::ChunkSink for GtiffSink {
    /// The output window (a chunk's place in the file).
    type Item = Window;
    /// Metadata to set before closing.
    type Close = Vec<(String, String)>;
    /// Per band: the valid values the output type could not hold as they were.
    type Closed = Vec<Adjusted>;
    type Error = CoordError;

    fn write(
        &mut self,
        task: TaskId,
        out: Window,
        output: Option<&[u8]>,
    ) -> Result<(), CoordError> {
        if output.is_none() {
            self.quarantined.push(out);
        }
        // A window of whole blocks (those cut by the raster's edge count as whole) skips
        // GDAL's block cache: each block is converted into a block-sized buffer and handed
        // to GTiff's block writer (compressed on its threads), one copy fewer.
        let whole = self.blocks.filter(|&(bw, bh)| {
            let (bw, bh) = (bw as u64, bh as u64);
            out.x.is_multiple_of(bw)
                && out.y.is_multiple_of(bh)
                && (out.w.is_multiple_of(bw) || out.x + out.w == self.spec.width)
                && (out.h.is_multiple_of(bh) || out.y + out.h == self.spec.height)
        });
        write_job(
            &mut self.ds,
            &self.spec,
            task,
            out,
            output,
            &mut self.adjusted,
            whole,
        )?;
        if let Some((file, written)) = &mut self.writeback {
            *written += 1;
            if *written >= WRITEBACK_EVERY {
                *written = 0;
                // Only a head start for the disk: the commit's fsync is what makes it durable.
                let _ = crate::os::start_writeback(file);
            }
        }
        Ok(())
    }

    fn close(mut self, metadata: Vec<(String, String)>) -> Result<Vec<Adjusted>, CoordError> {
        if self.spec.nodata.is_none() && !self.quarantined.is_empty() {
            mask_quarantined(&mut self.ds, &self.spec, &self.quarantined)?;
        }
        close(self.ds, &self.spec, &self.tmp, &metadata, &self.adjusted)?;
        Ok(self.adjusted)
    }
}

/// Metadata, flush, close (each checked: GDAL reports disk-full and codec failures at flush
/// and close only through its error state), then reopens the file and checks its shape.
fn close(
    mut d: Dataset,
    spec: &OutputSpec,
    tmp: &Path,
    metadata: &[(String, String)],
    adjusted: &[Adjusted],
) -> Result<(), CoordError> {
    let err = |step: String| move |e| CoordError::write_gdal(spec.path.clone(), step, e);
    for (k, v) in metadata {
        check(|| d.set_metadata_item(k, v, "")).map_err(err(format!("setting metadata {k}")))?;
    }
    for (i, a) in adjusted.iter().enumerate() {
        if a.clamped + a.moved_off_nodata > 0 {
            let step = || format!("setting band {}'s metadata", i + 1);
            let mut rb = check(|| d.rasterband(i + 1)).map_err(err(step()))?;
            let v = format!("{}", a.clamped + a.moved_off_nodata);
            check(|| rb.set_metadata_item("BLOCKSUM_ADJUSTED_PIXELS", &v, ""))
                .map_err(err(step()))?;
        }
    }
    check(|| d.flush_cache()).map_err(err("flushing the file".into()))?;
    check(|| d.close()).map_err(err("closing the file".into()))?;
    let back = check(|| Dataset::open(tmp))
        .map_err(err("the finished file does not open again".into()))?;
    let (w, h) = back.raster_size();
    if (w as u64, h as u64) != (spec.width, spec.height) || back.raster_count() != spec.bands.len()
    {
        return Err(CoordError::Write {
            path: spec.path.clone(),
            reason: format!(
                "the finished file reads back as {w}x{h} with {} band(s), not {}x{} with {}",
                back.raster_count(),
                spec.width,
                spec.height,
                spec.bands.len()
            ),
        });
    }
    Ok(())
}

/// An output without nodata (no block could be empty) marks its quarantined windows in a
/// per-dataset mask instead: 255 everywhere, 0 in each quarantined window.
fn mask_quarantined(
    ds: &mut Dataset,
    spec: &OutputSpec,
    windows: &[Window],
) -> Result<(), CoordError> {
    let what = |e| {
        let step = "marking quarantined windows in a mask band";
        CoordError::write_gdal(spec.path.clone(), step, e)
    };
    let mut rb = check(|| ds.rasterband(1)).map_err(what)?;
    // Inside the file, not a `.msk` sidecar (GDAL's default before 3.9), which would stay
    // behind under the temporary name. GDAL's configuration is per thread here: the writer's.
    gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "YES")
        .map_err(|e| what(e.into()))?;
    let created = check(|| rb.create_mask_band(true));
    let _ = gdal::config::clear_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK");
    created.map_err(what)?;
    let mut mb = check(|| rb.open_mask_band()).map_err(what)?;
    let (w, h) = (spec.width as usize, spec.height as usize);
    let rows = (1 << 20) / w.max(1) + 1;
    for y in (0..h).step_by(rows) {
        let n = rows.min(h - y);
        let mut buf = Buffer::new((w, n), vec![255u8; w * n]);
        check(|| mb.write((0, y as isize), (w, n), &mut buf)).map_err(what)?;
    }
    for o in windows {
        let size = (o.w as usize, o.h as usize);
        let mut buf = Buffer::new(size, vec![0u8; size.0 * size.1]);
        check(|| mb.write((o.x as isize, o.y as isize), size, &mut buf)).map_err(what)?;
    }
    Ok(())
}

fn write_job(
    ds: &mut Dataset,
    spec: &OutputSpec,
    task: TaskId,
    o: Window,
    output: Option<&[u8]>,
    adjusted: &mut [Adjusted],
    whole: Option<(usize, usize)>,
) -> Result<(), CoordError> {
    let (w, h) = (o.w as usize, o.h as usize);
    let n = w * h;
    let at = |i: usize| {
        format!(
            "band {} at output window {},{} {}x{} (chunk {task})",
            i + 1,
            o.x,
            o.y,
            o.w,
            o.h,
        )
    };
    let gdal = |i: usize| move |e| CoordError::write_gdal(spec.path.clone(), at(i), e);
    let wrong = |i: usize, e: String| CoordError::Write {
        path: spec.path.clone(),
        reason: format!("{}: {e}", at(i)),
    };
    for (i, adj) in adjusted.iter_mut().enumerate() {
        let values: &[f64] = match output {
            Some(bytes) => {
                let band = bytes
                    .get(i * n * 8..(i + 1) * n * 8)
                    .ok_or_else(|| wrong(i, "the slot's output is too short".into()))?;
                bytemuck::try_cast_slice::<u8, f64>(band).map_err(|e| wrong(i, e.to_string()))?
            }
            None => &[],
        };
        let mut rb = check(|| ds.rasterband(i + 1)).map_err(gdal(i))?;
        let win = (o.x as isize, o.y as isize);
        // Without a nodata value no valid result can be NaN; quarantined windows get 0 and
        // the mask (`mask_quarantined`).
        let plane = Plane {
            values,
            nodata: spec.nodata.unwrap_or(f64::NAN),
            t: spec.out_type,
        };
        let res = match spec.out_type {
            SampleType::U8 => put::<u8>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::I16 => put::<i16>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::U16 => put::<u16>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::I32 => put::<i32>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::U32 => put::<u32>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::F32 => put::<f32>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::F64 => put::<f64>(&mut rb, win, (w, h), plane, adj, whole),
            SampleType::I8 => return Err(wrong(i, INT8_OUTPUT.into())),
        };
        res.map_err(gdal(i))?;
    }
    Ok(())
}

/// A value the writer converts exactly (the conversion already rounded and clamped it).
pub trait OutSample: GdalType + Copy {
    fn from_f64(v: f64) -> Self;
}
macro_rules! out_sample {
    ($($t:ty),*) => {$(
        impl OutSample for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    )*};
}
out_sample!(u8, i16, u16, i32, u32, f32, f64);

/// [`convert`] over a band, with a fast path for the common value (valid, in range, not the
/// nodata value once converted): there the result is what `convert` gives, computed
/// without its branches; every other value goes through `convert` itself. The writer does
/// this on its one thread for every output pixel, so it is kept tight.
pub fn convert_all<T: OutSample>(
    values: &[f64],
    nodata: f64,
    t: SampleType,
    adj: &mut Adjusted,
) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); values.len()];
    convert_into(values, &mut out, nodata, t, adj);
    out
}

/// [`convert_all`] into `out` (as long as `values`).
pub fn convert_into<T: OutSample>(
    values: &[f64],
    out: &mut [T],
    nodata: f64,
    t: SampleType,
    adj: &mut Adjusted,
) {
    let mut slow = |v: f64| {
        let (r, clamped, moved) = convert(v, nodata, t);
        adj.clamped += clamped as u64;
        adj.moved_off_nodata += (moved && !clamped) as u64;
        T::from_f64(r)
    };
    let (lo, hi) = t.range();
    let pairs = out.iter_mut().zip(values);
    match t {
        // Floats in one pass that the compiler vectorises: NaN to nodata and every other
        // value as `convert` gives it when nothing needs adjusting, with a count of the values
        // that do (a result equal to nodata, or out of Float32's range), which, if any, go
        // through `convert` again. A NaN nodata never equals a value.
        SampleType::F64 => {
            let mut odd = 0usize;
            for (o, &v) in pairs {
                *o = T::from_f64(if v.is_nan() { nodata } else { v });
                odd += (v == nodata) as usize;
            }
            if odd > 0 {
                for (o, &v) in out.iter_mut().zip(values) {
                    if v == nodata {
                        *o = slow(v);
                    }
                }
            }
        }
        SampleType::F32 => {
            let fits = |v: f64| v.is_nan() || (v.abs() <= hi && (v as f32) as f64 != nodata);
            let mut odd = 0usize;
            for (o, &v) in pairs {
                *o = T::from_f64(if v.is_nan() {
                    nodata
                } else {
                    (v as f32) as f64
                });
                odd += !fits(v) as usize;
            }
            if odd > 0 {
                for (o, &v) in out.iter_mut().zip(values) {
                    if !fits(v) {
                        *o = slow(v);
                    }
                }
            }
        }
        _ => {
            for (o, &v) in pairs {
                let x = v.round();
                *o = if x >= lo && x <= hi && x != nodata {
                    T::from_f64(x)
                } else {
                    slow(v)
                };
            }
        }
    }
}

/// One band of a window as the kernels left it (`values`, empty for a window of nodata),
/// the output's nodata and type.
#[derive(Clone, Copy)]
struct Plane<'a> {
    values: &'a [f64],
    nodata: f64,
    t: SampleType,
}

/// Converts one band of a window (or nodata, for an empty `values`) and writes it: block by
/// block when `whole` (the window is made of whole blocks of that size), else through
/// GDAL's block cache.
fn put<T: OutSample>(
    rb: &mut gdal::raster::RasterBand,
    win: (isize, isize),
    size: (usize, usize),
    plane: Plane<'_>,
    adj: &mut Adjusted,
    whole: Option<(usize, usize)>,
) -> Result<(), GdalFailure> {
    let Plane { values, nodata, t } = plane;
    if let Some(block) = whole {
        return put_blocks::<T>(rb, win, size, plane, adj, block);
    }
    let n = size.0 * size.1;
    let data: Vec<T> = if values.is_empty() {
        let fill = if nodata.is_nan() && !t.is_float() {
            0.0
        } else {
            nodata
        };
        vec![T::from_f64(fill); n]
    } else {
        convert_all(values, nodata, t, adj)
    };
    let mut buf = Buffer::new(size, data);
    check(|| rb.write(win, size, &mut buf))
}

/// Writes a window of whole blocks one block at a time, converting each block's rows
/// straight into a block-sized buffer. The part of an edge block past the raster's edge
/// (which no reader sees) is nodata.
fn put_blocks<T: OutSample>(
    rb: &mut gdal::raster::RasterBand,
    win: (isize, isize),
    (w, h): (usize, usize),
    plane: Plane<'_>,
    adj: &mut Adjusted,
    (bw, bh): (usize, usize),
) -> Result<(), GdalFailure> {
    let Plane { values, nodata, t } = plane;
    let fill = T::from_f64(nodata);
    let mut block = vec![fill; bw * bh];
    let (bx0, by0) = (win.0 as usize / bw, win.1 as usize / bh);
    for by in 0..h.div_ceil(bh) {
        for bx in 0..w.div_ceil(bw) {
            let cols = bw.min(w - bx * bw);
            let rows = bh.min(h - by * bh);
            if cols < bw || rows < bh {
                block.fill(fill);
            }
            for r in 0..rows {
                let dst = &mut block[r * bw..r * bw + cols];
                if values.is_empty() {
                    dst.fill(fill);
                } else {
                    let start = (by * bh + r) * w + bx * bw;
                    convert_into(&values[start..start + cols], dst, nodata, t, adj);
                }
            }
            let mut buf = Buffer::new((bw, bh), block);
            check(|| rb.write_block((bx0 + bx, by0 + by), &mut buf))?;
            block = buf.into_shape_and_vec().1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_fast_conversion_is_convert(
            raw in proptest::collection::vec(proptest::prelude::any::<f64>(), 0..64),
            picks in proptest::collection::vec(0usize..12, 64),
            nd in 0usize..6,
        ) {
            // Random values mixed with the edge cases: NaN, infinities, type ends, nodata.
            let special = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 255.0, 254.6, -32768.0,
                f32::MAX as f64, -9999.0, 0.4, -0.4, 1e39, 0.0];
            let values: Vec<f64> = raw
                .iter()
                .zip(&picks)
                .map(|(&v, &p)| if p < special.len() && p % 2 == 0 { special[p] } else { v })
                .collect();
            let nodata = [f64::NAN, -9999.0, 255.0, -32768.0, 0.0, f32::MAX as f64][nd];
            for t in [SampleType::U8, SampleType::I16, SampleType::U16, SampleType::I32,
                SampleType::U32, SampleType::F32, SampleType::F64] {
                let mut a = Adjusted::default();
                let fast: Vec<f64> = convert_all::<f64>(&values, nodata, t, &mut a);
                let mut b = Adjusted::default();
                for (i, &v) in values.iter().enumerate() {
                    let (r, clamped, moved) = convert(v, nodata, t);
                    b.clamped += clamped as u64;
                    b.moved_off_nodata += (moved && !clamped) as u64;
                    proptest::prop_assert_eq!(fast[i].to_bits(), r.to_bits(), "{:?} {} nodata {}", t, v, nodata);
                }
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_valid_value_never_becomes_nodata() {
        // Byte output whose nodata is its maximum: sums above 254 clamp to 254, not 255.
        assert_eq!(convert(300.0, 255.0, SampleType::U8), (254.0, true, true));
        assert_eq!(convert(255.0, 255.0, SampleType::U8), (254.0, false, true));
        assert_eq!(convert(254.6, 255.0, SampleType::U8), (254.0, false, true));
        assert_eq!(convert(-3.0, 255.0, SampleType::U8), (0.0, true, false));
        assert_eq!(
            convert(f64::NAN, 255.0, SampleType::U8),
            (255.0, false, false)
        );
        // Signed type whose nodata is its minimum.
        assert_eq!(
            convert(-40000.0, -32768.0, SampleType::I16),
            (-32767.0, true, true)
        );
        // A nodata inside the range: moved toward the true value.
        assert_eq!(convert(0.4, 0.0, SampleType::I16), (1.0, false, true));
        assert_eq!(convert(-0.4, 0.0, SampleType::I16), (-1.0, false, true));
        // Floats: out of Float32's range clamps; an exact hit on nodata moves one ulp.
        let (v, c, m) = convert(1e39, f64::NAN, SampleType::F32);
        assert_eq!((v, c, m), (f32::MAX as f64, true, false));
        let (v, c, m) = convert(-9999.0, -9999.0, SampleType::F64);
        assert!(v != -9999.0 && (v + 9999.0).abs() < 1e-9 && !c && m);
        let (v, _, m) = convert(-9999.0, -9999.0, SampleType::F32);
        assert!(v != -9999.0 && (v as f32) as f64 == v && m);
        // Ordinary values pass unchanged.
        assert_eq!(
            convert(12.5, -9999.0, SampleType::F64),
            (12.5, false, false)
        );
        assert_eq!(convert(12.5, 255.0, SampleType::U8), (13.0, false, false));
    }
}
