//! The block-aggregation kernel: read the chunk's window into the slot's input region,
//! aggregate every band into its output region; or, for F x F blocks the native decoder
//! reads, aggregate straight from the decoded tiles ([`crate::fused`]), the input region
//! untouched. The runtime runs it in worker processes and
//! in the coordinator's in-process lanes alike.

use std::{path::Path, time::Instant};

use gdal::Dataset;
use protocol::TaskStats;
use serde::{Deserialize, Serialize};

use crate::{
    choice::{self, DecoderChoice},
    fused::{self, aggregate_native, FusedBand, FusedError},
    kernel::{aggregate_masked, BandKernel, Fold, Sample},
    read::{read_mask, read_window, NativeReader, ReadError},
    types::{Decoder, Footprint, KernelSpec, SampleType, Window},
    weighted::{aggregate_cells, AxisWeights},
};

/// What every process is told once: the rasters of the run (one, or a batch's several) and
/// the bands to read of each. The first is opened at setup (a setup that cannot open it
/// fails); the others when a chunk first names them (see [`crate::cache`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAggSetup {
    pub inputs: Vec<BlockAggInput>,
    /// Which decoder reads the pixels.
    #[serde(default)]
    pub decoder: Decoder,
    /// Count pixels that a GDAL mask band (per-dataset mask, alpha band, `.msk` sidecar)
    /// marks invalid as valid (`--ignore-mask`).
    #[serde(default)]
    pub ignore_mask: bool,
}

/// One raster of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAggInput {
    pub path: String,
    /// 1-based band numbers, in order.
    pub bands: Vec<u32>,
    /// Apply each band's scale and offset to every valid pixel before aggregating (the
    /// coordinator asks for it when the aggregate does not commute with them).
    #[serde(default)]
    pub unscale: bool,
}

/// One chunk: which input (an index into [`BlockAggSetup::inputs`]), its window and the
/// aggregation to apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockAggChunk {
    pub input: u32,
    pub window: Window,
    pub kernel: KernelSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: gdal::errors::GdalError,
    },
    #[error("--decoder native cannot read {path}: {reason}")]
    NativeUnsupported { path: String, reason: String },
    #[error("--decoder native: the chunk asks for {want} samples, the file stores {have}")]
    NativeSample { want: SampleType, have: SampleType },
    #[error("band {0} does not exist")]
    NoBand(usize),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("slot regions are too small or misaligned for the chunk")]
    Region,
    #[error("band {band}: its GDAL mask: {reason}")]
    Mask { band: u32, reason: String },
}

/// One open dataset and the bands to read: a GDAL `Dataset` is not `Sync`, so each thread or
/// process that reads owns one runner.
pub struct ChunkRunner {
    ds: Dataset,
    bands: Vec<usize>,
    /// Per band: nodata as the kernels compare it (rounded to the sample type).
    nodata: Vec<Option<f64>>,
    /// The native decoder, when the setup allows it and the input suits it.
    native: Option<Box<NativeReader>>,
    decoder: Decoder,
    /// Which decoder reads chunks of the file's own type, and why.
    choice: DecoderChoice,
    /// Per band: how its GDAL mask is read (none when every pixel's validity follows from
    /// nodata and NaN alone, or with `--ignore-mask`).
    masks: Vec<MaskRead>,
    /// Per band: the scale and offset to apply before aggregating.
    affine: Vec<Option<(f64, f64)>>,
}

/// Where a band's validity beyond nodata and NaN comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskRead {
    /// Nodata and NaN say it all (GDAL's mask is "all valid" or derived from nodata).
    None,
    /// The band's own mask band (a per-band mask, or an alpha band GDAL uses as the mask).
    Band,
    /// One mask for the whole dataset: read once per window, for the first such band.
    PerDataset,
}

/// Whether GDAL's mask of band `rb` says more than its nodata value: a real mask (internal
/// or `.msk` sidecar, per band or per dataset) or an alpha band. Shared with the
/// coordinator, which must know whether an empty block can occur.
pub fn band_has_mask(rb: &gdal::raster::RasterBand<'_>) -> Result<(bool, bool), String> {
    let flags = rb.mask_flags().map_err(|e| e.to_string())?;
    let real = !flags.is_all_valid() && !flags.is_nodata();
    Ok((real, flags.is_per_dataset()))
}

impl ChunkRunner {
    pub fn open(path: &Path, bands: &[u32], decoder: Decoder) -> Result<ChunkRunner, ExecError> {
        Self::open_with(path, bands, decoder, false, false)
    }

    /// [`ChunkRunner::open`], with the fidelity options of [`BlockAggSetup`].
    pub fn open_with(
        path: &Path,
        bands: &[u32],
        decoder: Decoder,
        ignore_mask: bool,
        unscale: bool,
    ) -> Result<ChunkRunner, ExecError> {
        let ds = Dataset::open(path).map_err(|source| ExecError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut nodata = Vec::with_capacity(bands.len());
        let mut masks = Vec::with_capacity(bands.len());
        let mut affine = Vec::with_capacity(bands.len());
        for &b in bands {
            let rb = ds
                .rasterband(b as usize)
                .map_err(|_| ExecError::NoBand(b as usize))?;
            nodata.push(rb.no_data_value());
            let (real, per_dataset) =
                band_has_mask(&rb).map_err(|reason| ExecError::Mask { band: b, reason })?;
            masks.push(match (real && !ignore_mask, per_dataset) {
                (false, _) => MaskRead::None,
                (true, true) => MaskRead::PerDataset,
                (true, false) => MaskRead::Band,
            });
            let (s, o) = (rb.scale().unwrap_or(1.0), rb.offset().unwrap_or(0.0));
            affine.push((unscale && (s, o) != (1.0, 0.0)).then_some((s, o)));
        }
        let bands: Vec<usize> = bands.iter().map(|&b| b as usize).collect();
        let (native, choice) = match decoder {
            Decoder::Gdal => (None, DecoderChoice::gdal("--decoder gdal".into())),
            Decoder::Auto => match NativeReader::open(path, &ds, &bands, &nodata) {
                Err(why) => (None, DecoderChoice::gdal(why)),
                Ok(n) => match choice::auto_prefers_gdal(n.layout()) {
                    Some(why) => (None, DecoderChoice::gdal(why)),
                    None => {
                        let what = choice::describe(n.layout());
                        (Some(Box::new(n)), DecoderChoice::native(what))
                    }
                },
            },
            Decoder::Native => {
                let n = NativeReader::open(path, &ds, &bands, &nodata).map_err(|reason| {
                    ExecError::NativeUnsupported {
                        path: path.display().to_string(),
                        reason,
                    }
                })?;
                let what = format!("{} (--decoder native)", choice::describe(n.layout()));
                (Some(Box::new(n)), DecoderChoice::native(what))
            }
        };
        Ok(ChunkRunner {
            ds,
            bands,
            nodata,
            native,
            decoder,
            masks,
            affine,
            choice,
        })
    }

    /// Which decoder reads chunks whose kernel asks for `sample`, and why (`coordinator
    /// plan` prints it; `run` makes the same decision per chunk).
    pub fn choice_for(&self, sample: SampleType) -> DecoderChoice {
        match &self.native {
            Some(n) if n.sample() != sample => {
                DecoderChoice::gdal(choice::sample_mismatch(sample, n.sample()))
            }
            _ => self.choice.clone(),
        }
    }

    /// Reads and aggregates `chunk` into `output`, using `input` as the read buffer. A
    /// chunk of F x F blocks that the native decoder reads is aggregated straight from the
    /// decoded blocks ([`crate::fused`]) and leaves `input` untouched.
    pub fn run(
        &self,
        chunk: &BlockAggChunk,
        input: &mut [u8],
        output: &mut [u8],
    ) -> Result<TaskStats, ExecError> {
        let t0 = Instant::now();
        let win = chunk.window;
        let k = chunk.kernel;
        let (ow, oh) = k.footprint.out_dims(win.w, win.h);
        let out_band = (ow * oh * 8) as usize;
        if win.pixels() == 0 {
            // Cells of a target grid that no input pixel reaches: nothing to read.
            let out = output
                .get_mut(..out_band * self.bands.len())
                .ok_or(ExecError::Region)?;
            return self.empty_cells(&k, out);
        }
        // The native decoder returns the stored type; a chunk asking for another goes to GDAL.
        let native = match &self.native {
            Some(n) if n.sample() == k.sample => Some(n),
            Some(n) if self.decoder == Decoder::Native => {
                return Err(ExecError::NativeSample {
                    want: k.sample,
                    have: n.sample(),
                })
            }
            _ => None,
        };
        let shape = Shape::new(&k.footprint, win);
        let in_bytes = (win.pixels() * k.sample.size()) as usize * self.bands.len();
        let fused = match (native, &shape) {
            (Some(n), &Shape::Blocks(f)) => {
                let l = n.layout();
                let fold = fused::fold_for(win, f, (l.block_w, l.block_h));
                (fused::accumulator_bytes(win, fold, self.bands.len()) <= in_bytes)
                    .then_some((n, f, fold))
            }
            _ => None,
        };
        let fallback = match fused {
            Some((n, f, fold)) => match self.run_fused(n, chunk, (f, fold), output, t0)? {
                Ok(stats) => return Ok(stats),
                Err(e) => {
                    // Under `auto` only (`run_fused` returns the others as errors).
                    tracing::info!(error = %e, "re-reading the window through GDAL");
                    read_window(&self.ds, &self.bands, win, k.sample, input)?;
                    true
                }
            },
            None => match native {
                Some(n) => self.read_native(n, win, k.sample, input)?,
                None => {
                    read_window(&self.ds, &self.bands, win, k.sample, input)?;
                    false
                }
            },
        };
        let read_us = t0.elapsed().as_micros() as u64;
        let t1 = Instant::now();
        let valid = self.aggregate_window(&shape, &k, win, input, output)?;
        Ok(TaskStats {
            read_us,
            compute_us: t1.elapsed().as_micros() as u64,
            valid_pixels: valid,
            native_read: native.is_some() && !fallback,
            fallback_read: fallback,
            opened_inputs: 0,
        })
    }
}

impl ChunkRunner {
    /// Aggregates the window read into `input` into `output`, band after band.
    fn aggregate_window(
        &self,
        shape: &Shape,
        k: &KernelSpec,
        win: Window,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<u64, ExecError> {
        let (w, h) = (win.w as usize, win.h as usize);
        let in_band = w * h * k.sample.size() as usize;
        let (ow, oh) = k.footprint.out_dims(win.w, win.h);
        let out_band = (ow * oh * 8) as usize;
        let nb = self.bands.len();
        if output.len() < out_band * nb || input.len() < in_band * nb {
            return Err(ExecError::Region);
        }
        // The mask is read with GDAL whichever decoder read the pixels: the native decoder
        // reads pixels only, and a mask is one byte a pixel, usually compressed to little.
        let masks = self.read_masks(win)?;
        let mut valid = 0;
        for i in 0..nb {
            let src = &input[i * in_band..(i + 1) * in_band];
            let dst: &mut [f64] =
                bytemuck::try_cast_slice_mut(&mut output[i * out_band..(i + 1) * out_band])
                    .map_err(|_| ExecError::Region)?;
            let bk = self.band_kernel(i, k);
            let mask = masks.band(i);
            valid += match k.sample {
                SampleType::U8 => shape.agg::<u8>(src, mask, (w, h), &bk, dst)?,
                SampleType::I8 => shape.agg::<i8>(src, mask, (w, h), &bk, dst)?,
                SampleType::I16 => shape.agg::<i16>(src, mask, (w, h), &bk, dst)?,
                SampleType::U16 => shape.agg::<u16>(src, mask, (w, h), &bk, dst)?,
                SampleType::I32 => shape.agg::<i32>(src, mask, (w, h), &bk, dst)?,
                SampleType::U32 => shape.agg::<u32>(src, mask, (w, h), &bk, dst)?,
                SampleType::F32 => shape.agg::<f32>(src, mask, (w, h), &bk, dst)?,
                SampleType::F64 => shape.agg::<f64>(src, mask, (w, h), &bk, dst)?,
            };
        }
        Ok(valid)
    }

    /// Decodes and aggregates `chunk` at factor `f` in one pass ([`crate::fused`]). The
    /// inner error is the decoder's, under `--decoder auto` (the caller reads the window
    /// again through GDAL and aggregates it: whatever the fused pass wrote is overwritten).
    fn run_fused(
        &self,
        n: &NativeReader,
        chunk: &BlockAggChunk,
        (f, fold): (usize, Fold),
        output: &mut [u8],
        t0: Instant,
    ) -> Result<Result<TaskStats, ReadError>, ExecError> {
        let (win, k) = (chunk.window, &chunk.kernel);
        let (ow, oh) = k.footprint.out_dims(win.w, win.h);
        let out_band = (ow * oh * 8) as usize;
        let output = output
            .get_mut(..out_band * self.bands.len())
            .ok_or(ExecError::Region)?;
        let masks = self.read_masks(win)?;
        let mut bands = Vec::with_capacity(self.bands.len());
        for (i, out) in output.chunks_exact_mut(out_band).enumerate() {
            bands.push(FusedBand {
                kernel: self.band_kernel(i, k),
                mask: masks.band(i),
                out: bytemuck::try_cast_slice_mut(out).map_err(|_| ExecError::Region)?,
            });
        }
        let res = match k.sample {
            SampleType::U8 => aggregate_native::<u8>(n, win, f, fold, bands),
            SampleType::I8 => aggregate_native::<i8>(n, win, f, fold, bands),
            SampleType::I16 => aggregate_native::<i16>(n, win, f, fold, bands),
            SampleType::U16 => aggregate_native::<u16>(n, win, f, fold, bands),
            SampleType::I32 => aggregate_native::<i32>(n, win, f, fold, bands),
            SampleType::U32 => aggregate_native::<u32>(n, win, f, fold, bands),
            SampleType::F32 => aggregate_native::<f32>(n, win, f, fold, bands),
            SampleType::F64 => aggregate_native::<f64>(n, win, f, fold, bands),
        };
        let s = match res {
            Ok(s) => s,
            Err(FusedError::Misaligned) => return Err(ExecError::Region),
            Err(FusedError::Read(e)) if self.decoder == Decoder::Auto => return Ok(Err(e)),
            Err(FusedError::Read(e)) => return Err(e.into()),
        };
        let total = t0.elapsed();
        Ok(Ok(TaskStats {
            read_us: total.saturating_sub(s.compute).as_micros() as u64,
            compute_us: s.compute.as_micros() as u64,
            valid_pixels: s.valid,
            native_read: true,
            fallback_read: false,
            opened_inputs: 0,
        }))
    }

    /// Band `i`'s kernel for `k`.
    fn band_kernel(&self, i: usize, k: &KernelSpec) -> BandKernel {
        BandKernel {
            agg: k.agg,
            nodata: self.nodata[i].map(|v| round_to(v, k.sample)),
            out_nodata: k.out_nodata,
            affine: self.affine[i],
        }
    }

    /// Each band's GDAL mask over `win`, where it says more than nodata; a per-dataset
    /// mask is read once, for the first band that uses it.
    fn read_masks(&self, win: Window) -> Result<WindowMasks, ExecError> {
        let n = (win.w * win.h) as usize;
        let mut m = WindowMasks {
            bufs: Vec::new(),
            of_band: Vec::with_capacity(self.bands.len()),
        };
        let mut shared = None;
        for (i, kind) in self.masks.iter().enumerate() {
            let at = match (kind, shared) {
                (MaskRead::None, _) => None,
                (MaskRead::PerDataset, Some(j)) => Some(j),
                (MaskRead::Band | MaskRead::PerDataset, _) => {
                    let mut buf = vec![0u8; n];
                    read_mask(&self.ds, self.bands[i], win, &mut buf)?;
                    m.bufs.push(buf);
                    let j = m.bufs.len() - 1;
                    if *kind == MaskRead::PerDataset {
                        shared = Some(j);
                    }
                    Some(j)
                }
            };
            m.of_band.push(at);
        }
        Ok(m)
    }

    /// Reads `win` with the native decoder; under `auto`, a window it cannot read is read
    /// again through GDAL (whatever the native decoder wrote is overwritten), so that `auto`
    /// fails only where GDAL fails. `true` when GDAL read it.
    fn read_native(
        &self,
        n: &NativeReader,
        win: Window,
        sample: SampleType,
        input: &mut [u8],
    ) -> Result<bool, ExecError> {
        match n.read_window(win, input) {
            Ok(()) => Ok(false),
            Err(e) if self.decoder == Decoder::Auto => {
                tracing::info!(error = %e, "re-reading the window through GDAL");
                read_window(&self.ds, &self.bands, win, sample, input)?;
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The output of a chunk whose cells no input pixel reaches: every cell empty.
    fn empty_cells(&self, k: &KernelSpec, output: &mut [u8]) -> Result<TaskStats, ExecError> {
        let dst: &mut [f64] =
            bytemuck::try_cast_slice_mut(output).map_err(|_| ExecError::Region)?;
        dst.fill(match k.agg {
            crate::types::Agg::Count => 0.0,
            _ => k.out_nodata,
        });
        Ok(TaskStats::default())
    }
}

/// Each band's GDAL mask over a window: `of_band[i]` indexes `bufs` (`None`: nodata and NaN
/// say it all).
struct WindowMasks {
    bufs: Vec<Vec<u8>>,
    of_band: Vec<Option<usize>>,
}

impl WindowMasks {
    fn band(&self, i: usize) -> Option<&[u8]> {
        self.of_band[i].map(|j| self.bufs[j].as_slice())
    }
}

/// How a chunk's window maps onto its output: F x F blocks, or cells with their weights
/// (computed once per chunk, for all its bands).
enum Shape {
    Blocks(usize),
    Cells(AxisWeights, AxisWeights),
}

impl Shape {
    fn new(footprint: &Footprint, win: Window) -> Shape {
        match *footprint {
            Footprint::Blocks(f) => Shape::Blocks(f as usize),
            Footprint::Cells { out, x, y } => Shape::Cells(
                AxisWeights::new(&x, (out.x, out.w), (win.x, win.w)),
                AxisWeights::new(&y, (out.y, out.h), (win.y, win.h)),
            ),
        }
    }

    fn agg<T: Sample>(
        &self,
        src: &[u8],
        mask: Option<&[u8]>,
        dims: (usize, usize),
        k: &BandKernel,
        dst: &mut [f64],
    ) -> Result<u64, ExecError> {
        let src: &[T] = bytemuck::try_cast_slice(src).map_err(|_| ExecError::Region)?;
        Ok(match self {
            Shape::Blocks(f) => aggregate_masked(src, mask, dims, *f, k, dst),
            Shape::Cells(xw, yw) => aggregate_cells(src, mask, dims, (xw, yw), k, dst),
        })
    }
}

/// The nodata value as a pixel of type `sample` holds it: a Float32 raster with nodata
/// 1e20 stores `1e20f32`, which is not `1e20f64`.
fn round_to(v: f64, sample: SampleType) -> f64 {
    match sample {
        SampleType::F32 => v as f32 as f64,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Agg;
    use gdal::{
        raster::{Buffer, RasterCreationOptions},
        DriverManager,
    };

    /// A 2-band Float32 GeoTIFF, tiled 32, DEFLATE predictor 3, nodata 7, scale and offset,
    /// and a per-dataset internal mask (a hole and every 5th pixel).
    fn masked_scaled(path: &Path) -> (usize, usize) {
        let (w, h) = (100usize, 90usize);
        let opts = RasterCreationOptions::from_iter([
            "TILED=YES",
            "BLOCKXSIZE=32",
            "BLOCKYSIZE=32",
            "COMPRESS=DEFLATE",
            "PREDICTOR=3",
        ]);
        let ds = DriverManager::get_driver_by_name("GTiff")
            .unwrap()
            .create_with_band_type_with_options::<f32, _>(path, w, h, 2, &opts)
            .unwrap();
        for b in 1..=2 {
            let mut band = ds.rasterband(b).unwrap();
            band.set_no_data_value(Some(7.0)).unwrap();
            band.set_scale(0.37).unwrap();
            band.set_offset(-3.0).unwrap();
            let vals: Vec<f32> = (0..w * h)
                .map(|i| match (i * 7 + b) % 13 {
                    0 => 7.0,
                    1 => f32::NAN,
                    r => (i as f32).sqrt() * 10f32.powi(r as i32 % 6 - 2),
                })
                .collect();
            band.write((0, 0), (w, h), &mut Buffer::new((w, h), vals))
                .unwrap();
        }
        let mut band = ds.rasterband(1).unwrap();
        band.create_mask_band(true).unwrap();
        let mask: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let hole = (20..50).contains(&x) && (10..40).contains(&y);
                if hole || (x + 3 * y).is_multiple_of(5) {
                    0
                } else {
                    255
                }
            })
            .collect();
        band.open_mask_band()
            .unwrap()
            .write((0, 0), (w, h), &mut Buffer::new((w, h), mask))
            .unwrap();
        (w, h)
    }

    /// The fused path (native decoder) writes the bytes of the materialised one (GDAL's
    /// read, then the block kernel) with a per-dataset mask, nodata and unscaling, on windows
    /// on the tile grid (one row of accumulators) and off it (the ring), F dividing the tile
    /// or not.
    #[test]
    fn fused_chunks_are_the_materialised_chunks_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tif");
        masked_scaled(&path);
        let open = |d| ChunkRunner::open_with(&path, &[2, 1], d, false, true).unwrap();
        let (native, gdal) = (open(Decoder::Native), open(Decoder::Gdal));
        // The case is the one meant: the mask read per dataset, every band unscaled.
        assert_eq!(native.masks, [MaskRead::PerDataset; 2]);
        assert_eq!(native.affine, [Some((0.37, -3.0)); 2]);
        let windows = [
            (0, 0, 64, 64, 8),
            (5, 3, 77, 61, 3),
            (32, 32, 68, 58, 5),
            (0, 0, 100, 90, 32),
        ];
        for (x, y, w, h, f) in windows {
            for agg in [Agg::Sum, Agg::Mean, Agg::Min, Agg::Max, Agg::Count] {
                let chunk = BlockAggChunk {
                    input: 0,
                    window: Window { x, y, w, h },
                    kernel: KernelSpec {
                        agg,
                        footprint: Footprint::Blocks(f),
                        sample: SampleType::F32,
                        out_nodata: -1.0,
                    },
                };
                let run = |r: &ChunkRunner| {
                    let mut input = vec![0u64; (w * h) as usize];
                    let mut output = vec![0u64; (w * h) as usize * 2];
                    let s = r
                        .run(
                            &chunk,
                            bytemuck::cast_slice_mut(&mut input),
                            bytemuck::cast_slice_mut(&mut output),
                        )
                        .unwrap();
                    (s, output)
                };
                let ((sn, on), (sg, og)) = (run(&native), run(&gdal));
                assert!(sn.native_read && !sg.native_read);
                assert_eq!(sn.valid_pixels, sg.valid_pixels, "{chunk:?}");
                assert!(sn.valid_pixels > 0);
                assert_eq!(on, og, "{chunk:?}");
            }
        }
    }
}
