//! The block-aggregation kernel: read the chunk's window into the slot's input region,
//! aggregate every band into its output region. The runtime runs it in worker processes and
//! in the coordinator's in-process lanes alike.

use std::{path::Path, time::Instant};

use gdal::Dataset;
use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};
use serde::{Deserialize, Serialize};

use crate::{
    choice::{self, DecoderChoice},
    kernel::{aggregate, out_dims, BandKernel, Sample},
    read::{read_window, NativeReader, ReadError},
    types::{Decoder, KernelSpec, SampleType, Window},
};

/// What every process opens, once: the raster and the bands to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAggSetup {
    pub input: String,
    /// 1-based band numbers, in order.
    pub bands: Vec<u32>,
    /// Which decoder reads the pixels.
    #[serde(default)]
    pub decoder: Decoder,
}

/// One chunk: the input window and the aggregation to apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockAggChunk {
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
}

impl ChunkRunner {
    pub fn open(path: &Path, bands: &[u32], decoder: Decoder) -> Result<ChunkRunner, ExecError> {
        let ds = Dataset::open(path).map_err(|source| ExecError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut nodata = Vec::with_capacity(bands.len());
        for &b in bands {
            let rb = ds
                .rasterband(b as usize)
                .map_err(|_| ExecError::NoBand(b as usize))?;
            nodata.push(rb.no_data_value());
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

    /// Reads and aggregates `chunk` into `output`, using `input` as the read buffer.
    pub fn run(
        &self,
        chunk: &BlockAggChunk,
        input: &mut [u8],
        output: &mut [u8],
    ) -> Result<TaskStats, ExecError> {
        let t0 = Instant::now();
        let win = chunk.window;
        let k = chunk.kernel;
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
        match native {
            Some(n) => n.read_window(win, input)?,
            None => read_window(&self.ds, &self.bands, win, k.sample, input)?,
        }
        let read_us = t0.elapsed().as_micros() as u64;
        let t1 = Instant::now();
        let (w, h) = (win.w as usize, win.h as usize);
        let (ow, oh) = out_dims(w, h, k.factor as usize);
        let in_band = w * h * k.sample.size() as usize;
        let out_band = ow * oh * 8;
        if output.len() < out_band * self.bands.len() || input.len() < in_band * self.bands.len() {
            return Err(ExecError::Region);
        }
        let mut valid = 0;
        for (i, nodata) in self.nodata.iter().enumerate() {
            let src = &input[i * in_band..(i + 1) * in_band];
            let dst: &mut [f64] =
                bytemuck::try_cast_slice_mut(&mut output[i * out_band..(i + 1) * out_band])
                    .map_err(|_| ExecError::Region)?;
            let bk = BandKernel {
                agg: k.agg,
                factor: k.factor as usize,
                nodata: nodata.map(|v| round_to(v, k.sample)),
                out_nodata: k.out_nodata,
            };
            valid += match k.sample {
                SampleType::U8 => agg_bytes::<u8>(src, w, h, &bk, dst)?,
                SampleType::I16 => agg_bytes::<i16>(src, w, h, &bk, dst)?,
                SampleType::U16 => agg_bytes::<u16>(src, w, h, &bk, dst)?,
                SampleType::I32 => agg_bytes::<i32>(src, w, h, &bk, dst)?,
                SampleType::U32 => agg_bytes::<u32>(src, w, h, &bk, dst)?,
                SampleType::F32 => agg_bytes::<f32>(src, w, h, &bk, dst)?,
                SampleType::F64 => agg_bytes::<f64>(src, w, h, &bk, dst)?,
            };
        }
        Ok(TaskStats {
            read_us,
            compute_us: t1.elapsed().as_micros() as u64,
            valid_pixels: valid,
            native_read: native.is_some(),
        })
    }
}

fn agg_bytes<T: Sample>(
    src: &[u8],
    w: usize,
    h: usize,
    k: &BandKernel,
    dst: &mut [f64],
) -> Result<u64, ExecError> {
    let src: &[T] = bytemuck::try_cast_slice(src).map_err(|_| ExecError::Region)?;
    Ok(aggregate(src, w, h, k, dst))
}

/// The nodata value as a pixel of type `sample` holds it: a Float32 raster with nodata
/// 1e20 stores `1e20f32`, which is not `1e20f64`.
fn round_to(v: f64, sample: SampleType) -> f64 {
    match sample {
        SampleType::F32 => v as f32 as f64,
        _ => v,
    }
}

impl ChunkKernel for ChunkRunner {
    type Setup = BlockAggSetup;
    type Chunk = BlockAggChunk;

    fn open(setup: BlockAggSetup) -> Result<Self, KernelError> {
        ChunkRunner::open(Path::new(&setup.input), &setup.bands, setup.decoder)
            .map_err(KernelError::new)
    }

    fn run(&mut self, chunk: BlockAggChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        ChunkRunner::run(self, &chunk, slot.input, slot.output).map_err(KernelError::new)
    }
}
