//! The block-aggregation kernel as a process serves it: a small cache of open inputs, so
//! that one worker serves every raster of a batch (`coordinator resample IN1 IN2 ...
//! --out-dir DIR`) without being respawned between files, and without reopening a raster
//! for each of its chunks.
//!
//! The setup lists the run's inputs; each chunk names one by index. The first input is
//! opened at setup (so a setup that cannot open it fails, as before batches existed); the
//! others on the first chunk that names them. At most [`CAPACITY`] stay open, the least
//! recently used closed first: chunks arrive in input order, so a worker rarely holds more
//! than the input it finishes and the one it starts.
//!
//! It does not read or aggregate (that is [`crate::exec`]) and does not decide the order
//! of chunks (the engine does).

use std::path::Path;

use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};

use crate::exec::{BlockAggChunk, BlockAggSetup, ChunkRunner};

/// Open inputs a process keeps: each holds a GDAL dataset (its block cache is bounded by
/// the worker's `GDAL_CACHEMAX`, shared by all) and, for the native decoder, a file
/// descriptor and the parsed directory.
pub const CAPACITY: usize = 4;

/// The block-aggregation kernel over the run's inputs, with its cache of open ones.
pub struct BlockAggKernel {
    setup: BlockAggSetup,
    /// Most recently used last.
    open: Vec<(u32, ChunkRunner)>,
    /// Opens not yet reported in an answer's stats.
    unreported_opens: u32,
}

impl BlockAggKernel {
    /// The runner for input `index`, opened if the cache does not hold it.
    fn runner(&mut self, index: u32) -> Result<&ChunkRunner, KernelError> {
        if let Some(at) = self.open.iter().position(|(i, _)| *i == index) {
            let hit = self.open.remove(at);
            self.open.push(hit);
        } else {
            let input = self.setup.inputs.get(index as usize).ok_or_else(|| {
                KernelError::new(format!(
                    "the chunk names input {index}, the setup has {}",
                    self.setup.inputs.len()
                ))
            })?;
            let runner = ChunkRunner::open_with(
                Path::new(&input.path),
                &input.bands,
                self.setup.decoder,
                self.setup.ignore_mask,
                input.unscale,
            )
            .map_err(KernelError::new)?;
            self.unreported_opens += 1;
            if self.open.len() >= CAPACITY {
                // Dropping the runner closes its dataset.
                self.open.remove(0);
            }
            self.open.push((index, runner));
        }
        let (_, runner) = self.open.last().expect("pushed above");
        Ok(runner)
    }

    /// Indexes of the inputs held open, least recently used first.
    pub fn cached(&self) -> Vec<u32> {
        self.open.iter().map(|(i, _)| *i).collect()
    }
}

impl ChunkKernel for BlockAggKernel {
    type Setup = BlockAggSetup;
    type Chunk = BlockAggChunk;

    fn open(setup: BlockAggSetup) -> Result<Self, KernelError> {
        if setup.inputs.is_empty() {
            return Err(KernelError::new("the setup lists no input"));
        }
        let mut k = BlockAggKernel {
            setup,
            open: Vec::new(),
            unreported_opens: 0,
        };
        k.runner(0)?;
        Ok(k)
    }

    fn run(&mut self, chunk: BlockAggChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let runner = self.runner(chunk.input)?;
        let mut stats = runner
            .run(&chunk, slot.input, slot.output)
            .map_err(KernelError::new)?;
        stats.opened_inputs = std::mem::take(&mut self.unreported_opens);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        exec::BlockAggInput,
        types::{Agg, Decoder, KernelSpec, SampleType, Window},
    };
    use gdal::{raster::Buffer, DriverManager};

    const SIDE: usize = 16;

    /// A SIDE x SIDE Float32 GeoTIFF whose every pixel is `value`.
    fn raster(path: &Path, value: f32) {
        let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
        let ds = driver
            .create_with_band_type::<f32, _>(path, SIDE, SIDE, 1)
            .unwrap();
        let mut buf = Buffer::new((SIDE, SIDE), vec![value; SIDE * SIDE]);
        ds.rasterband(1)
            .unwrap()
            .write((0, 0), (SIDE, SIDE), &mut buf)
            .unwrap();
    }

    /// Runs the whole raster of input `input` as one chunk: (opens reported, the block sum).
    fn run(k: &mut BlockAggKernel, input: u32) -> Result<(u32, f64), KernelError> {
        let chunk = BlockAggChunk {
            input,
            window: Window {
                x: 0,
                y: 0,
                w: SIDE as u64,
                h: SIDE as u64,
            },
            kernel: KernelSpec {
                agg: Agg::Sum,
                footprint: crate::types::Footprint::Blocks(SIDE as u32),
                sample: SampleType::F32,
                out_nodata: f64::NAN,
            },
        };
        let mut input_buf = vec![0f32; SIDE * SIDE];
        let mut out = [0f64; 1];
        let stats = k.run(
            chunk,
            Slot {
                input: bytemuck::cast_slice_mut(&mut input_buf),
                output: bytemuck::cast_slice_mut(&mut out),
            },
        )?;
        Ok((stats.opened_inputs, out[0]))
    }

    #[test]
    fn keeps_the_last_inputs_open_and_reopens_an_evicted_one() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<BlockAggInput> = (0..6)
            .map(|i| {
                let path = dir.path().join(format!("r{i}.tif"));
                raster(&path, i as f32 + 1.0);
                BlockAggInput {
                    path: path.to_string_lossy().into_owned(),
                    bands: vec![1],
                    unscale: false,
                }
            })
            .collect();
        let mut k = BlockAggKernel::open(BlockAggSetup {
            inputs,
            decoder: Decoder::Gdal,
            ignore_mask: false,
        })
        .unwrap();
        let area = (SIDE * SIDE) as f64;
        // The setup opened input 0: its first chunk reports that open, the next none.
        assert_eq!(run(&mut k, 0).unwrap(), (1, area));
        assert_eq!(run(&mut k, 0).unwrap(), (0, area));
        for i in 1..4 {
            assert_eq!(run(&mut k, i).unwrap(), (1, area * (i as f64 + 1.0)));
        }
        assert_eq!(k.cached(), [0, 1, 2, 3]);
        // A fifth input closes the least recently used one; going back to it reopens it.
        assert_eq!(run(&mut k, 4).unwrap(), (1, area * 5.0));
        assert_eq!(k.cached(), [1, 2, 3, 4]);
        assert_eq!(run(&mut k, 2).unwrap(), (0, area * 3.0));
        assert_eq!(run(&mut k, 0).unwrap(), (1, area));
        assert_eq!(k.cached(), [3, 4, 2, 0]);
        let err = run(&mut k, 9).unwrap_err().to_string();
        assert!(err.contains("input 9") && err.contains("6"), "{err}");
    }

    #[test]
    fn a_setup_whose_first_input_does_not_open_fails() {
        let dir = tempfile::tempdir().unwrap();
        let setup = BlockAggSetup {
            inputs: vec![BlockAggInput {
                path: dir
                    .path()
                    .join("missing.tif")
                    .to_string_lossy()
                    .into_owned(),
                bands: vec![1],
                unscale: false,
            }],
            decoder: Decoder::Gdal,
            ignore_mask: false,
        };
        assert!(BlockAggKernel::open(setup).is_err());
        let empty = BlockAggSetup {
            inputs: Vec::new(),
            decoder: Decoder::Gdal,
            ignore_mask: false,
        };
        assert!(BlockAggKernel::open(empty).is_err());
    }
}
