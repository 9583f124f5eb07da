//! The `map` job's compute side: a user's kernel over chunks of a raster. The worker reads
//! the chunk's window of every selected band as `f64` into the slot's input region, with a
//! validity mask beside it (nodata, NaN and what GDAL's mask band marks invalid), and the kernel fills `out_bands`
//! planes of `f64` in the slot's output region (NaN: no value).
//!
//! Two ways to bring a kernel:
//! - a C ABI shared library ([`PluginKernel`], the standard `worker` binary serves it as
//!   [`crate::WorkerKernel::Map`]): the library is loaded by worker processes only, through
//!   `crate::ffi::plugin` (the crate's `unsafe` is all in `crate::ffi`);
//! - a Rust crate that implements [`runtime::ChunkKernel`] with `Setup = MapSetup` and
//!   `Chunk = MapChunk`, reads with [`MapInput::read`] and serves itself with
//!   `runtime::serve::<MyKernel>()` (see `examples/rust-kernel`).
//!
//! Slot layout: input region = `bands * w * h` f64 samples, band-major and row-major, then
//! `bands * w * h` mask bytes; output region = `out_bands * ow * oh` f64.
//!
//! It does not plan, schedule or write anything.

pub use crate::ffi::plugin as ffi;

use std::{path::Path, time::Instant};

use gdal::{raster::GdalDataType, Dataset};
use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};
use serde::{Deserialize, Serialize};

use crate::{
    read::{read_mask, read_window},
    types::SampleType,
    Window,
};

/// What every process of a `map` run opens, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSetup {
    /// The input raster.
    pub input: String,
    /// 1-based band numbers, in order.
    pub bands: Vec<u32>,
    /// Output pixel (r, c) covers input rows `r*F..r*F+F` and columns `c*F..c*F+F`.
    pub factor: u32,
    /// Output planes the kernel fills.
    pub out_bands: u32,
    /// `--kernel-arg K=V`, in the order given.
    pub args: Vec<(String, String)>,
    /// The C ABI library (`--kernel-lib`); `None` for a Rust kernel's own worker binary.
    pub lib: Option<String>,
    /// Size of the whole raster (the kernel may want to know where it is).
    pub raster_size: (u64, u64),
}

/// One chunk: its input window and the output window it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapChunk {
    pub window: Window,
    pub out_window: Window,
}

/// Bytes of a slot's input region for `bands` bands of `window`: the f64 samples, then the
/// mask.
pub fn input_bytes(bands: u64, window: Window) -> u64 {
    window.pixels() * bands * 9
}

/// Bytes of a slot's output region for `out_bands` planes of `out_window`.
pub fn output_bytes(out_bands: u64, out_window: Window) -> u64 {
    out_window.pixels() * out_bands * 8
}

/// One chunk as a kernel sees it, inside the slot.
pub struct MapView<'a> {
    pub bands: usize,
    pub window: Window,
    pub out_window: Window,
    /// `bands * h * w` samples; invalid ones hold NaN.
    pub data: &'a [f64],
    /// `bands * h * w`: 1 valid, 0 nodata or NaN.
    pub valid: &'a [u8],
    /// `out_bands * oh * ow`, prefilled with NaN.
    pub out: &'a mut [f64],
}

/// The input raster, open: reads a chunk's window into a slot as a [`MapView`]. A GDAL
/// `Dataset` is not `Sync`: each process or thread owns one.
pub struct MapInput {
    ds: Dataset,
    bands: Vec<usize>,
    /// Per band: nodata as the samples hold it (rounded to Float32 for a Float32 band).
    nodata: Vec<Option<f64>>,
    /// Per band: GDAL's mask says more than nodata (a mask band or an alpha band).
    masked: Vec<bool>,
    out_bands: usize,
    pub setup: MapSetup,
}

impl MapInput {
    pub fn open(setup: MapSetup) -> Result<MapInput, KernelError> {
        let ds = Dataset::open(Path::new(&setup.input))
            .map_err(|e| KernelError::new(format!("opening {}: {e}", setup.input)))?;
        let mut nodata = Vec::with_capacity(setup.bands.len());
        let mut masked = Vec::with_capacity(setup.bands.len());
        for &b in &setup.bands {
            let rb = ds
                .rasterband(b as usize)
                .map_err(|_| KernelError::new(format!("band {b} does not exist")))?;
            let (m, _) = crate::exec::band_has_mask(&rb)
                .map_err(|e| KernelError::new(format!("band {b}: its GDAL mask: {e}")))?;
            masked.push(m);
            let nd = rb.no_data_value();
            nodata.push(match rb.band_type() {
                GdalDataType::Float32 => nd.map(|v| v as f32 as f64),
                _ => nd,
            });
        }
        if setup.factor == 0 || setup.out_bands == 0 {
            return Err(KernelError::new("factor and out_bands must be at least 1"));
        }
        Ok(MapInput {
            ds,
            bands: setup.bands.iter().map(|&b| b as usize).collect(),
            nodata,
            masked,
            out_bands: setup.out_bands as usize,
            setup,
        })
    }

    /// Reads `chunk`'s window into the slot, builds the mask, prefills the output with NaN.
    pub fn read<'a>(&self, chunk: &MapChunk, slot: Slot<'a>) -> Result<MapView<'a>, KernelError> {
        let (win, ow) = (chunk.window, chunk.out_window);
        let f = self.setup.factor as u64;
        if ow.w != win.w.div_ceil(f) || ow.h != win.h.div_ceil(f) {
            return Err(KernelError::new(format!(
                "output window {}x{} does not match input window {}x{} at factor {f}",
                ow.w, ow.h, win.w, win.h
            )));
        }
        let n = win.pixels() as usize * self.bands.len();
        let need_in = input_bytes(self.bands.len() as u64, win) as usize;
        let need_out = output_bytes(self.out_bands as u64, ow) as usize;
        if slot.input.len() < need_in || slot.output.len() < need_out {
            return Err(KernelError::new(format!(
                "slot regions of {} and {} bytes cannot hold {need_in} and {need_out}",
                slot.input.len(),
                slot.output.len()
            )));
        }
        let (samples, mask) = slot.input[..need_in].split_at_mut(n * 8);
        read_window(&self.ds, &self.bands, win, SampleType::F64, samples)
            .map_err(KernelError::new)?;
        let data: &mut [f64] = bytemuck::try_cast_slice_mut(samples)
            .map_err(|_| KernelError::new("the slot's input region is misaligned"))?;
        let per_band = win.pixels() as usize;
        for (i, ((vals, ok), nd)) in data
            .chunks_mut(per_band.max(1))
            .zip(mask.chunks_mut(per_band.max(1)))
            .zip(&self.nodata)
            .enumerate()
        {
            // GDAL's mask first (0 invalid), then nodata and NaN on top of it.
            match self.masked[i] {
                true => read_mask(&self.ds, self.bands[i], win, ok).map_err(KernelError::new)?,
                false => ok.fill(1),
            }
            for (v, m) in vals.iter_mut().zip(ok.iter_mut()) {
                let valid = *m != 0 && !v.is_nan() && Some(*v) != *nd;
                *m = valid as u8;
                if !valid {
                    *v = f64::NAN;
                }
            }
        }
        let out: &mut [f64] = bytemuck::try_cast_slice_mut(&mut slot.output[..need_out])
            .map_err(|_| KernelError::new("the slot's output region is misaligned"))?;
        out.fill(f64::NAN);
        Ok(MapView {
            bands: self.bands.len(),
            window: win,
            out_window: ow,
            data,
            valid: mask,
            out,
        })
    }
}

/// Valid samples of a view (the task's statistic).
fn valid_count(valid: &[u8]) -> u64 {
    valid.iter().map(|&v| v as u64).sum()
}

/// A C ABI kernel from a shared library (see `include/blocksum_kernel.h`): the standard
/// `worker` binary's `map` kernel.
pub struct PluginKernel {
    input: MapInput,
    kernel: ffi::Plugin,
}

impl ChunkKernel for PluginKernel {
    type Setup = MapSetup;
    type Chunk = MapChunk;

    fn open(setup: MapSetup) -> Result<Self, KernelError> {
        let Some(lib) = setup.lib.clone() else {
            return Err(KernelError::new(
                "the standard worker runs a C kernel: the setup names no library (--kernel-lib)",
            ));
        };
        // The library first: a missing symbol is the likelier mistake and says more.
        let kernel = ffi::Plugin::load(Path::new(&lib), &setup.args)?;
        let input = MapInput::open(setup)?;
        Ok(PluginKernel { input, kernel })
    }

    fn run(&mut self, chunk: MapChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let t0 = Instant::now();
        let view = self.input.read(&chunk, slot)?;
        let read_us = t0.elapsed().as_micros() as u64;
        let t1 = Instant::now();
        let valid = valid_count(view.valid);
        let s = &self.input.setup;
        self.kernel.call(view, s.factor, s.raster_size)?;
        Ok(TaskStats {
            read_us,
            compute_us: t1.elapsed().as_micros() as u64,
            valid_pixels: valid,
            // `map` reads through GDAL (the native decoder serves block aggregation).
            native_read: false,
            fallback_read: false,
            opened_inputs: 0,
        })
    }
}
