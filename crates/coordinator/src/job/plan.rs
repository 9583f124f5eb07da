//! The chunk plan: windows that are multiples of F on both axes (no block straddles two
//! chunks), whose output is a whole number of output tiles where that fits the byte budget
//! (so the writer writes and compresses each output tile exactly once, from one chunk, and
//! needs no cache that grows with the raster's width), that follow the file's block grid
//! where that fits, and that tile the raster exactly once. Chunk ids are the row-major order of windows: deterministic from the input
//! and the options, never from run order.
//!
//! On a target grid ([`plan_cells`]) the chunks are rectangles of cells that tile the grid
//! exactly once; each reads the input pixels its cells overlap, so pixels that straddle a
//! chunk's border are read by both chunks and weighed into each cell by exactly one.

use protocol::TaskId;
use serde::Serialize;
use worker::Window;

use crate::grid::{Mapping, TargetGrid};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Chunk {
    pub id: TaskId,
    /// Input window.
    pub window: Window,
    /// Output window it produces.
    pub out: Window,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub width: u64,
    pub height: u64,
    /// Blocks of F (serialised as `factor`) or a target grid (`target`).
    #[serde(flatten)]
    pub mapping: Mapping,
    pub out_width: u64,
    pub out_height: u64,
    /// Nominal chunk size in input pixels (edge chunks are smaller).
    pub chunk_w: u64,
    pub chunk_h: u64,
    /// Chunks in one row of chunks.
    pub per_row: u64,
    /// Pixels of the largest chunk's input window and of its output.
    pub max_window_pixels: u64,
    pub max_out_pixels: u64,
    /// Bytes of one pixel across all selected bands, as read.
    pub pixel_bytes: u64,
    /// The split grid: the smallest steps that are multiples of F and of the file's block
    /// (where not absurdly large). A failing chunk is bisected along its lines, down to one
    /// cell. On a target grid: steps in cells, about one input block.
    pub grid_w: u64,
    pub grid_h: u64,
    pub bands: u64,
    /// The output's tile size when every chunk's output is a whole number of output tiles
    /// (tiles cut by the output's right or bottom edge count as whole); `None` when the
    /// output is not tiled or one tile's input window does not fit the byte budget.
    pub whole_tiles: Option<(u64, u64)>,
    pub chunks: Vec<Chunk>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// The steps of a whole-tile plan on one axis: the input span of one output tile (`F x
/// tile`), widened to the input block grid when `block_aligned` and that stays within twice
/// the raster (else tile-aligned only: a block at a chunk's edge is then read by two
/// chunks). A raster narrower than one step is one step wide.
fn tile_step(factor: u64, tile: u64, block: u64, extent: u64, block_aligned: bool) -> u64 {
    let span = factor.saturating_mul(tile.max(1));
    let rounded = extent.div_ceil(factor) * factor;
    let aligned = lcm(span, block.max(1));
    let step = if block_aligned && aligned <= rounded.saturating_mul(2) {
        aligned
    } else {
        span
    };
    step.min(rounded)
}

/// Plans chunks of about `target_bytes` of input each.
///
/// `block` is the file's block size; `pixel_bytes` the bytes of one pixel across the bands;
/// `out_tile` the output's tile size (`None`: the output is striped), which the chunks
/// follow when one tile's input window fits `target_bytes`.
pub fn plan(
    (width, height): (u64, u64),
    block: (u64, u64),
    factor: u64,
    (bands, pixel_bytes): (u64, u64),
    target_bytes: u64,
    out_tile: Option<(u64, u64)>,
) -> Plan {
    assert!(width > 0 && height > 0 && factor > 0 && pixel_bytes > 0);
    let target = target_bytes.max(1);
    // Steps: the smallest sizes that are multiples of F and, where not absurdly large, of the block.
    let step = |b: u64, extent: u64| {
        let l = lcm(factor, b.max(1));
        if l <= extent.div_ceil(factor) * factor {
            l
        } else {
            factor
        }
    };
    let xstep = step(block.0, width);
    let ystep = step(block.1, height);
    let row_bytes = width * pixel_bytes;
    // Whole output tiles: steps of F x tile (block-aligned where possible), as many as fit
    // the budget, along a row first (sequential reads), then more rows.
    // Block-aligned steps first; where those do not fit, one tile's span.
    let tiled = out_tile.and_then(|(tw, th)| {
        [true, false].into_iter().find_map(|aligned| {
            let ax = tile_step(factor, tw, block.0, width, aligned);
            let ay = tile_step(factor, th, block.1, height, aligned);
            let step_bytes = ax.min(width) * ay.min(height) * pixel_bytes;
            (step_bytes <= target).then(|| {
                let kx = (target / step_bytes).min(width.div_ceil(ax)).max(1);
                let ky = (target / (step_bytes * kx)).max(1);
                ((kx * ax, ky * ay), (tw, th))
            })
        })
    });
    let (cw, ch) = if let Some((size, _)) = tiled {
        size
    } else if row_bytes * ystep <= target {
        // Full-width strips: every block of a strip is read once, sequentially.
        let rows = (target / row_bytes / ystep).max(1) * ystep;
        (width, rows)
    } else if xstep * ystep * pixel_bytes <= target {
        // Block-aligned rectangles: every block read by one chunk.
        let cols = (target / (ystep * pixel_bytes) / xstep).max(1) * xstep;
        (cols, ystep)
    } else if row_bytes * factor <= target {
        // Full-width strips as tall as the budget allows, off the block grid: a block row at
        // a chunk's edge is decoded by two chunks, not once for every F rows of it.
        let rows = (target / row_bytes / factor).max(1) * factor;
        (width, rows)
    } else {
        let cols = (target / (factor * pixel_bytes) / xstep).max(1) * xstep;
        (cols, factor)
    };
    // Never larger than the raster rounded up to F.
    let cw = cw.min(width.div_ceil(factor) * factor);
    let ch = ch.min(height.div_ceil(factor) * factor);
    let mut chunks = Vec::new();
    let mut y = 0;
    while y < height {
        let h = ch.min(height - y);
        let mut x = 0;
        while x < width {
            let w = cw.min(width - x);
            chunks.push(Chunk {
                id: TaskId(chunks.len() as u32),
                window: Window { x, y, w, h },
                out: Window {
                    x: x / factor,
                    y: y / factor,
                    w: w.div_ceil(factor),
                    h: h.div_ceil(factor),
                },
            });
            x += cw;
        }
        y += ch;
    }
    Plan {
        width,
        height,
        mapping: Mapping::Factor { factor },
        out_width: width.div_ceil(factor),
        out_height: height.div_ceil(factor),
        chunk_w: cw,
        chunk_h: ch,
        per_row: width.div_ceil(cw),
        max_window_pixels: cw.min(width) * ch.min(height),
        max_out_pixels: cw.min(width).div_ceil(factor) * ch.min(height).div_ceil(factor),
        pixel_bytes,
        grid_w: xstep,
        grid_h: ystep,
        bands,
        whole_tiles: tiled.map(|(_, tile)| tile),
        chunks,
    }
}

/// Plans a target grid's cells in chunks of about `target_bytes` of input each: whole output
/// tiles when the output is tiled and one tile's input fits, else full-width rows of cells,
/// else runs of cells along a row. `block` and `pixel_bytes` as for [`plan`].
pub fn plan_cells(
    grid: &TargetGrid,
    (width, height): (u64, u64),
    block: (u64, u64),
    (bands, pixel_bytes): (u64, u64),
    target_bytes: u64,
    out_tile: Option<(u64, u64)>,
) -> Plan {
    let (nx, ny) = (grid.width, grid.height);
    let target = target_bytes.max(1);
    // The bytes of a rectangle of cells: the input it reads, at most (its span, plus a pixel
    // straddling each side), or its output (f64 a cell and band) where that is more, as on a
    // grid finer than the input's: a slot holds both.
    let bytes = |cw: u64, ch: u64| {
        let span = |cells: u64, step: f64, pixels: u64| {
            ((cells as f64 * step).ceil() as u64 + 2).min(pixels)
        };
        let input = span(cw, grid.x.step, width) * span(ch, grid.y.step, height) * pixel_bytes;
        input.max(cw.saturating_mul(ch).saturating_mul(8 * bands))
    };
    // The most `n` (at least 1) for which `fits(n)`, by halving from `start`.
    let most = |start: u64, fits: &dyn Fn(u64) -> bool| {
        let mut n = start.max(1);
        while n > 1 && !fits(n) {
            n = n.div_ceil(2).max(n * 3 / 4);
        }
        n
    };
    let tiled = out_tile.filter(|&(tw, th)| bytes(tw, th) <= target);
    let (cw, ch) = if let Some((tw, th)) = tiled {
        let kx = most(nx.div_ceil(tw), &|k| bytes(k * tw, th) <= target);
        let ky = most(ny.div_ceil(th), &|k| bytes(kx * tw, k * th) <= target);
        (kx * tw, ky * th)
    } else if bytes(nx, 1) <= target {
        (nx, most(ny, &|r| bytes(nx, r) <= target))
    } else {
        (most(nx, &|c| bytes(c, 1) <= target), 1)
    };
    let (cw, ch) = (cw.min(nx), ch.min(ny));
    let mut chunks = Vec::new();
    for oy in (0..ny).step_by(ch as usize) {
        for ox in (0..nx).step_by(cw as usize) {
            let out = Window {
                x: ox,
                y: oy,
                w: cw.min(nx - ox),
                h: ch.min(ny - oy),
            };
            chunks.push(Chunk {
                id: TaskId(chunks.len() as u32),
                window: grid.window(out, (width, height)),
                out,
            });
        }
    }
    let widest = |f: fn(&Window) -> u64| chunks.iter().map(|c| f(&c.window)).max().unwrap_or(0);
    let (chunk_w, chunk_h) = (widest(|w| w.w), widest(|w| w.h));
    // Bisection leaves: about one input block of cells.
    let leaf = |b: u64, step: f64| ((b.max(1) as f64 / step).floor() as u64).max(1);
    Plan {
        width,
        height,
        out_width: nx,
        out_height: ny,
        chunk_w,
        chunk_h,
        per_row: nx.div_ceil(cw),
        max_window_pixels: chunks.iter().map(|c| c.window.pixels()).max().unwrap_or(0),
        max_out_pixels: cw * ch,
        pixel_bytes,
        grid_w: leaf(block.0, grid.x.step),
        grid_h: leaf(block.1, grid.y.step),
        bands,
        whole_tiles: tiled,
        chunks,
        mapping: Mapping::Cells { target: *grid },
    }
}

impl Plan {
    /// Splits `c` in two halves along the axis that crosses more lines of the split grid,
    /// at the middle line; `None` when it lies within one grid cell (a leaf). The parts get
    /// ids `first` and `first + 1`. Windows stay multiples of F, so the parts' output
    /// windows tile the parent's exactly.
    pub fn split(&self, c: &Chunk, first: TaskId) -> Option<[Chunk; 2]> {
        match &self.mapping {
            Mapping::Factor { factor } => self.split_blocks(*factor, c, first),
            Mapping::Cells { target } => self.split_cells(target, c, first),
        }
    }

    fn split_blocks(&self, f: u64, c: &Chunk, first: TaskId) -> Option<[Chunk; 2]> {
        let [a, b] = halves(c.window, (self.grid_w, self.grid_h))?;
        let chunk = |id: u32, window: Window| Chunk {
            id: TaskId(id),
            window,
            out: Window {
                x: window.x / f,
                y: window.y / f,
                w: window.w.div_ceil(f),
                h: window.h.div_ceil(f),
            },
        };
        Some([chunk(first.0, a), chunk(first.0 + 1, b)])
    }

    /// On a target grid: halves of the chunk's cells, each with the input its cells need.
    fn split_cells(&self, grid: &TargetGrid, c: &Chunk, first: TaskId) -> Option<[Chunk; 2]> {
        let [a, b] = halves(c.out, (self.grid_w, self.grid_h))?;
        let chunk = |id: u32, out: Window| Chunk {
            id: TaskId(id),
            window: grid.window(out, (self.width, self.height)),
            out,
        };
        Some([chunk(first.0, a), chunk(first.0 + 1, b)])
    }

    /// Input bytes of the largest chunk (all bands).
    pub fn max_input_bytes(&self) -> u64 {
        self.max_window_pixels * self.pixel_bytes
    }

    /// Output bytes (f64, all bands) of the largest chunk.
    pub fn max_output_bytes(&self) -> u64 {
        self.max_out_pixels * 8 * self.bands
    }
}

/// Splits `w` in two halves along the axis that crosses more lines of the grid `(gw, gh)`,
/// at the middle line; `None` when it lies within one grid cell (a leaf).
fn halves(w: Window, (grid_w, grid_h): (u64, u64)) -> Option<[Window; 2]> {
    // Grid lines strictly inside [start, start + len).
    let lines = |start: u64, len: u64, step: u64| {
        let first = (start / step + 1) * step;
        let end = start + len;
        let n = if first < end {
            (end - first).div_ceil(step)
        } else {
            0
        };
        (first, n)
    };
    let (fx, nx) = lines(w.x, w.w, grid_w);
    let (fy, ny) = lines(w.y, w.h, grid_h);
    if nx == 0 && ny == 0 {
        return None;
    }
    // n lines make n + 1 cells: cut after half of them.
    let along_x = nx > ny || (nx == ny && w.w >= w.h);
    let (a, b) = if along_x {
        let cut = fx + (nx.div_ceil(2) - 1) * grid_w;
        let left = cut - w.x;
        (
            Window { w: left, ..w },
            Window {
                x: cut,
                w: w.w - left,
                ..w
            },
        )
    } else {
        let cut = fy + (ny.div_ceil(2) - 1) * grid_h;
        let top = cut - w.y;
        (
            Window { h: top, ..w },
            Window {
                y: cut,
                h: w.h - top,
                ..w
            },
        )
    };
    Some([a, b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunks_tile_the_raster_exactly_once(
            w in 1u64..300, h in 1u64..300, f in 1u64..20,
            bw in 1u64..130, bh in 1u64..130, px in 1u64..9, target in 1u64..200_000,
            tile in proptest::option::of((1u64..40, 1u64..40)),
        ) {
            let p = plan((w, h), (bw, bh), f, (1, px), target, tile);
            if let Some((tw, th)) = tile {
                // Whole tiles whenever one tile's input window fits the budget.
                let one = (f * tw).min(w) * (f * th).min(h) * px;
                prop_assert_eq!(p.whole_tiles.is_some(), one <= target, "one tile's window: {} bytes", one);
            } else {
                prop_assert_eq!(p.whole_tiles, None);
            }
            if p.whole_tiles.is_some() {
                prop_assert!(p.max_input_bytes() <= target);
            }
            let mut seen = vec![0u8; (w * h) as usize];
            let mut out_seen = vec![0u8; (p.out_width * p.out_height) as usize];
            for (i, c) in p.chunks.iter().enumerate() {
                prop_assert_eq!(c.id.0 as usize, i);
                let win = c.window;
                // Multiples of F: no output block straddles two chunks.
                prop_assert_eq!(win.x % f, 0);
                prop_assert_eq!(win.y % f, 0);
                prop_assert!(win.w > 0 && win.h > 0 && win.x + win.w <= w && win.y + win.h <= h);
                prop_assert!(win.w * win.h * px <= p.max_input_bytes());
                for y in win.y..win.y + win.h {
                    for x in win.x..win.x + win.w {
                        seen[(y * w + x) as usize] += 1;
                    }
                }
                let o = c.out;
                prop_assert_eq!(o.w, win.w.div_ceil(f));
                prop_assert_eq!(o.h, win.h.div_ceil(f));
                if let Some((tw, th)) = p.whole_tiles {
                    // Whole output tiles: starts on the tile grid, ends on it or at the edge.
                    prop_assert_eq!(o.x % tw, 0);
                    prop_assert_eq!(o.y % th, 0);
                    prop_assert!((o.x + o.w) % tw == 0 || o.x + o.w == p.out_width);
                    prop_assert!((o.y + o.h) % th == 0 || o.y + o.h == p.out_height);
                }
                for y in o.y..o.y + o.h {
                    for x in o.x..o.x + o.w {
                        out_seen[(y * p.out_width + x) as usize] += 1;
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
            prop_assert!(out_seen.iter().all(|&n| n == 1));
        }
    }

    proptest! {
        #[test]
        fn bisection_tiles_each_chunk_exactly_once_down_to_one_grid_cell(
            w in 1u64..300, h in 1u64..300, f in 1u64..20,
            bw in 1u64..130, bh in 1u64..130, target in 1u64..200_000,
            tile in proptest::option::of((1u64..40, 1u64..40)),
        ) {
            let p = plan((w, h), (bw, bh), f, (1, 4), target, tile);
            prop_assert_eq!(p.grid_w % f, 0);
            prop_assert_eq!(p.grid_h % f, 0);
            let mut seen = vec![0u8; (p.out_width * p.out_height) as usize];
            let mut next = p.chunks.len() as u32;
            let mut stack: Vec<Chunk> = p.chunks.clone();
            while let Some(c) = stack.pop() {
                match p.split(&c, TaskId(next)) {
                    Some([a, b]) => {
                        prop_assert_eq!((a.id.0, b.id.0), (next, next + 1));
                        next += 2;
                        for part in [a, b] {
                            let (pw, cw) = (part.window, c.window);
                            prop_assert!(pw.w > 0 && pw.h > 0);
                            prop_assert!(pw.x >= cw.x && pw.x + pw.w <= cw.x + cw.w);
                            prop_assert!(pw.y >= cw.y && pw.y + pw.h <= cw.y + cw.h);
                            prop_assert_eq!(pw.x % f, 0);
                            prop_assert_eq!(pw.y % f, 0);
                        }
                        prop_assert_eq!(a.window.pixels() + b.window.pixels(), c.window.pixels());
                        stack.extend([a, b]);
                    }
                    None => {
                        // A leaf lies within one cell of the split grid.
                        let cw = c.window;
                        prop_assert_eq!(cw.x / p.grid_w, (cw.x + cw.w - 1) / p.grid_w);
                        prop_assert_eq!(cw.y / p.grid_h, (cw.y + cw.h - 1) / p.grid_h);
                        let o = c.out;
                        for y in o.y..o.y + o.h {
                            for x in o.x..o.x + o.w {
                                seen[(y * p.out_width + x) as usize] += 1;
                            }
                        }
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }

    proptest! {
        #[test]
        fn cells_tile_the_grid_once_and_windows_hold_every_weighted_pixel(
            w in 1u64..200, h in 1u64..200, ox in -3.0f64..1.0, oy in -3.0f64..1.0,
            sx in 0.3f64..12.0, sy in 0.3f64..12.0, target in 1u64..100_000,
            tile in proptest::option::of((1u64..20, 1u64..20)),
        ) {
            let (x, y) = (worker::Axis { origin: ox, step: sx }, worker::Axis { origin: oy, step: sy });
            let cells = |a: &worker::Axis, n: u64| ((n as f64 - a.origin) / a.step).ceil().max(1.0) as u64;
            let grid = TargetGrid { width: cells(&x, w), height: cells(&y, h), geo_transform: [0.0; 6], x, y };
            let p = plan_cells(&grid, (w, h), (16, 16), (1, 4), target, tile);
            let mut seen = vec![0u8; (p.out_width * p.out_height) as usize];
            let mut next = p.chunks.len() as u32;
            let mut stack = p.chunks.clone();
            while let Some(c) = stack.pop() {
                prop_assert!(c.window.pixels() <= p.max_window_pixels);
                prop_assert!(c.out.pixels() <= p.max_out_pixels);
                // Every pixel with a positive weight in one of the chunk's cells is in its window.
                for cx in c.out.x..c.out.x + c.out.w {
                    for px in 0..w {
                        if x.weight(cx, px) > 0.0 {
                            prop_assert!(px >= c.window.x && px < c.window.x + c.window.w, "cell {cx} pixel {px} {c:?}");
                        }
                    }
                }
                match p.split(&c, TaskId(next)) {
                    Some(parts) => {
                        next += 2;
                        stack.extend(parts);
                    }
                    None => {
                        for cy in c.out.y..c.out.y + c.out.h {
                            for cx in c.out.x..c.out.x + c.out.w {
                                seen[(cy * p.out_width + cx) as usize] += 1;
                            }
                        }
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
            // A slot's output stays within the budget unless one cell (or tile) is more.
            let unit = tile.map_or(1, |(tw, th)| tw * th) * 8;
            prop_assert!(p.max_output_bytes() <= target.max(unit), "{} > {target}", p.max_output_bytes());
        }
    }

    #[test]
    fn bisects_a_strip_of_tiles_to_single_tiles() {
        // A 4096x1024 chunk of 256x256 tiles, F=8: 16 x 4 tiles.
        let p = plan((4096, 4096), (256, 256), 8, (1, 4), 16 << 20, None);
        let c = Chunk {
            id: TaskId(0),
            window: Window {
                x: 0,
                y: 0,
                w: 4096,
                h: 1024,
            },
            out: Window {
                x: 0,
                y: 0,
                w: 512,
                h: 128,
            },
        };
        let [a, b] = p.split(&c, TaskId(16)).expect("splittable");
        assert_eq!(
            a.window,
            Window {
                x: 0,
                y: 0,
                w: 2048,
                h: 1024
            }
        );
        assert_eq!(
            b.window,
            Window {
                x: 2048,
                y: 0,
                w: 2048,
                h: 1024
            }
        );
        assert_eq!(
            b.out,
            Window {
                x: 256,
                y: 0,
                w: 256,
                h: 128
            }
        );
        let tile = Chunk {
            window: Window {
                x: 256,
                y: 512,
                w: 256,
                h: 256,
            },
            ..c
        };
        assert!(p.split(&tile, TaskId(18)).is_none());
    }

    #[test]
    fn follows_the_block_grid_for_tiled_files() {
        // 16384^2 float32, 256 tiles, F=8, 16 MiB, striped output: one row of tiles per
        // full-width strip.
        let p = plan((16384, 16384), (256, 256), 8, (1, 4), 16 << 20, None);
        assert_eq!((p.chunk_w, p.chunk_h), (16384, 256));
        assert_eq!(p.chunks.len(), 64);
        // F=7 does not divide 256: steps become lcm(7,256)=1792.
        let q = plan((16384, 16384), (256, 256), 7, (1, 4), 16 << 20, None);
        assert_eq!(q.chunk_h % 1792, 0);
    }

    #[test]
    fn strips_stay_tall_when_the_block_grid_does_not_fit() {
        // 2048^2 float32, 256 tiles, F=10, 2 MiB: lcm(10,256) = 1280 rows is over budget, and
        // so is a 1280x1280 rectangle; full-width strips of 250 rows read each block row about
        // twice, where strips of F rows decoded it 26 times.
        for tile in [None, Some((256, 256))] {
            let p = plan((2048, 2048), (256, 256), 10, (1, 4), 2 << 20, tile);
            assert_eq!((p.chunk_w, p.chunk_h), (2048, 250), "output tiles {tile:?}");
            assert_eq!(p.chunks.len(), 9);
        }
    }

    #[test]
    fn chunks_are_whole_output_tiles() {
        let t = Some((256, 256));
        // F=8, 256 output tiles, Float32: a 2048x2048 input window, 16 MiB, one tile.
        let p = plan((16384, 16384), (256, 256), 8, (1, 4), 16 << 20, t);
        assert_eq!((p.chunk_w, p.chunk_h, p.whole_tiles), (2048, 2048, t));
        assert_eq!(p.chunks.len(), 64);
        assert_eq!(
            p.chunks[9].out,
            Window {
                x: 256,
                y: 256,
                w: 256,
                h: 256
            }
        );
        // Twice as wide: the same chunks, twice as many.
        let wide = plan((32768, 16384), (256, 256), 8, (1, 4), 16 << 20, t);
        assert_eq!((wide.chunk_w, wide.chunk_h), (2048, 2048));
        assert_eq!(wide.max_output_bytes(), p.max_output_bytes());
        // A bigger budget takes more tiles along the row first.
        let big = plan((16384, 16384), (256, 256), 8, (1, 4), 64 << 20, t);
        assert_eq!((big.chunk_w, big.chunk_h), (8192, 2048));
        // F=7 does not divide the 256 block: one tile spans 1792 input pixels, which is
        // block-aligned anyway (7 x 256).
        let q = plan((16384, 16384), (256, 256), 7, (1, 4), 16 << 20, t);
        assert_eq!((q.chunk_w % 1792, q.chunk_h % 1792), (0, 0));
        // Input blocks of 100 and F=3: lcm(768, 100) = 19200 is past the raster: tile-aligned
        // only.
        let r = plan((5000, 5000), (100, 100), 3, (1, 4), 4 << 20, t);
        assert_eq!((r.chunk_w, r.chunk_h), (768, 768));
        assert!(r.whole_tiles.is_some());
        // A budget below one tile's window: strips as before, not whole tiles.
        let s = plan((16384, 16384), (256, 256), 8, (1, 4), 4 << 20, t);
        assert_eq!(s.whole_tiles, None);
        assert!(s.max_input_bytes() <= 4 << 20);
        // Huge F and tiny rasters: one chunk, one partial tile.
        let h = plan((300, 200), (256, 256), 1000, (1, 4), 16 << 20, t);
        assert_eq!(h.chunks.len(), 1);
        assert_eq!(
            h.chunks[0].out,
            Window {
                x: 0,
                y: 0,
                w: 1,
                h: 1
            }
        );
    }
}
