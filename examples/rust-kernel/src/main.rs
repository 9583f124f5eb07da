//! A user's own kernel in Rust, served as a worker binary in one line. It computes, for
//! every band, the range (max - min) of the valid samples of each F x F block; a block with
//! no valid sample stays NaN (the output's nodata). One output band per input band.
//!
//! ```text
//! cargo build -p blocksum-example-rust-kernel
//! coordinator map in.tif range.tif --worker-bin target/debug/block-range-worker --factor 4
//! ```
//!
//! The coordinator sends a Rust kernel's binary the bare `worker::map::MapSetup` and
//! `MapChunk` (the standard `worker` binary gets them inside its own enums).

use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};
use worker::map::{MapChunk, MapInput, MapSetup};

struct BlockRange {
    input: MapInput,
}

impl ChunkKernel for BlockRange {
    type Setup = MapSetup;
    type Chunk = MapChunk;

    fn open(setup: MapSetup) -> Result<Self, KernelError> {
        if setup.out_bands as usize != setup.bands.len() {
            return Err(KernelError::new(format!(
                "block-range writes one band per input band: --out-bands {}",
                setup.bands.len()
            )));
        }
        Ok(BlockRange {
            input: MapInput::open(setup)?,
        })
    }

    fn run(&mut self, chunk: MapChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let f = self.input.setup.factor as usize;
        let v = self.input.read(&chunk, slot)?;
        let (w, h) = (v.window.w as usize, v.window.h as usize);
        let (ow, oh) = (v.out_window.w as usize, v.out_window.h as usize);
        let mut valid = 0;
        for b in 0..v.bands {
            let src = &v.data[b * w * h..(b + 1) * w * h];
            let ok = &v.valid[b * w * h..(b + 1) * w * h];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                    for y in oy * f..((oy + 1) * f).min(h) {
                        for x in ox * f..((ox + 1) * f).min(w) {
                            if ok[y * w + x] == 1 {
                                lo = lo.min(src[y * w + x]);
                                hi = hi.max(src[y * w + x]);
                                valid += 1;
                            }
                        }
                    }
                    if lo <= hi {
                        v.out[(b * oh + oy) * ow + ox] = hi - lo;
                    }
                }
            }
        }
        Ok(TaskStats {
            valid_pixels: valid,
            ..TaskStats::default()
        })
    }
}

fn main() -> std::process::ExitCode {
    runtime::serve::<BlockRange>()
}
