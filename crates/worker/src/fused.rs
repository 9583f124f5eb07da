//! Block aggregation straight from the native decoder's blocks
//! ([`tiffdec::Tiff::visit_window`]): each decoded tile's rows are folded into per-band
//! column accumulators ([`BlockRows`]) while the tile is still in cache, and output rows are
//! folded as soon as all their input rows are in. The window is never assembled in the
//! slot's input region, and no second pass reads it back. The bits are those of reading the
//! window and then aggregating it ([`crate::kernel::aggregate_masked`]): both add rows
//! through one loop, each column's rows top to bottom. Target grids' weighted cells are not
//! fused (they read the assembled window).

use std::time::{Duration, Instant};

use crate::{
    kernel::{BandKernel, BlockRows, Sample},
    read::{NativeReader, ReadError},
    types::Window,
};

/// One band of a fused chunk: its kernel, its GDAL mask's window (if any) and its output.
pub struct FusedBand<'a> {
    pub kernel: BandKernel,
    pub mask: Option<&'a [u8]>,
    pub out: &'a mut [f64],
}

/// What a fused chunk measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedStats {
    pub valid: u64,
    /// Time spent aggregating (the rest of the call decoded).
    pub compute: Duration,
}

/// Why a fused chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum FusedError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The decoder handed rows that are not whole, aligned samples of `T` (a bug, never a
    /// file's fault: the decoder's rows are aligned).
    #[error("the native decoder's rows are misaligned for the sample type")]
    Misaligned,
}

/// Bytes the accumulators of a fused `win` at factor `f` need, for `bands` bands of a file
/// whose blocks are `block_h` rows tall: the caller fuses only when that is no more than
/// the assembled window would take.
pub fn accumulator_bytes(win: Window, f: usize, block_h: u64, bands: usize) -> usize {
    let (w, h) = (win.w as usize, win.h as usize);
    let ring = BlockRows::<u8>::ring_for(block_h.min(h as u64) as usize, f, h);
    ring * w * (8 + 4) * bands
}

/// Decodes `win` with `n` and aggregates it at factor `f` into each band's output.
pub fn aggregate_native<T: Sample>(
    n: &NativeReader,
    win: Window,
    f: usize,
    bands: Vec<FusedBand<'_>>,
) -> Result<FusedStats, FusedError> {
    let (w, h) = (win.w as usize, win.h as usize);
    let block_h = n.layout().block_h.min(win.h) as usize;
    let ring = BlockRows::<T>::ring_for(block_h, f, h);
    let mut sink: Sink<'_, T> = Sink {
        rows: Vec::with_capacity(bands.len()),
        outs: Vec::with_capacity(bands.len()),
        buf: Vec::new(),
        misaligned: false,
        compute: Duration::ZERO,
    };
    for b in bands {
        sink.rows
            .push(BlockRows::new(&b.kernel, b.mask, (w, h), f, ring));
        sink.outs.push(b.out);
    }
    n.visit_window(win, &mut sink)?;
    if sink.misaligned {
        return Err(FusedError::Misaligned);
    }
    Ok(FusedStats {
        valid: sink.rows.iter().map(|r| r.valid()).sum(),
        compute: sink.compute,
    })
}

/// The decoder's sink: per band, its accumulators and output.
struct Sink<'a, T> {
    rows: Vec<BlockRows<'a, T>>,
    outs: Vec<&'a mut [f64]>,
    /// A row of a pixel-interleaved block, gathered.
    buf: Vec<u64>,
    misaligned: bool,
    compute: Duration,
}

impl<T: Sample> tiffdec::BlockSink for Sink<'_, T> {
    fn part(&mut self, band: usize, part: &tiffdec::BlockPart<'_>) {
        let t = Instant::now();
        let rows = &mut self.rows[band];
        for r in 0..part.height() {
            match bytemuck::try_cast_slice::<u8, T>(part.row(r, &mut self.buf)) {
                Ok(vals) => rows.add(part.y() + r, part.x(), vals),
                Err(_) => self.misaligned = true,
            }
        }
        self.compute += t.elapsed();
    }

    fn rows_done(&mut self, y_end: usize) {
        let t = Instant::now();
        for (rows, out) in self.rows.iter_mut().zip(&mut self.outs) {
            rows.rows_done(y_end, out);
        }
        self.compute += t.elapsed();
    }
}
