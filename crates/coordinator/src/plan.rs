//! The chunk plan: windows that are multiples of F on both axes (no block straddles two
//! chunks), follow the file's block grid where that fits the byte budget, and tile the raster
//! exactly once. Chunk ids are the row-major order of windows: deterministic from the input
//! and the options, never from run order.

use protocol::TaskId;
use serde::Serialize;
use worker::Window;

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
    pub factor: u64,
    pub out_width: u64,
    pub out_height: u64,
    /// Nominal chunk size (edge chunks are smaller).
    pub chunk_w: u64,
    pub chunk_h: u64,
    /// Bytes of one pixel across all selected bands, as read.
    pub pixel_bytes: u64,
    /// The split grid: the smallest steps that are multiples of F and of the file's block
    /// (where not absurdly large). A failing chunk is bisected along its lines, down to one
    /// cell.
    pub grid_w: u64,
    pub grid_h: u64,
    pub bands: u64,
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

/// Plans chunks of about `target_bytes` of input each.
///
/// `block` is the file's block size; `pixel_bytes` the bytes of one pixel across the bands.
pub fn plan(
    width: u64,
    height: u64,
    block: (u64, u64),
    factor: u64,
    bands: u64,
    pixel_bytes: u64,
    target_bytes: u64,
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
    let (cw, ch) = if row_bytes * ystep <= target {
        // Full-width strips: every block of a strip is read once, sequentially.
        let rows = (target / row_bytes / ystep).max(1) * ystep;
        (width, rows)
    } else {
        let ch = if xstep * ystep * pixel_bytes <= target {
            ystep
        } else {
            factor
        };
        let cols = (target / (ch * pixel_bytes) / xstep).max(1) * xstep;
        (cols, ch)
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
        factor,
        out_width: width.div_ceil(factor),
        out_height: height.div_ceil(factor),
        chunk_w: cw,
        chunk_h: ch,
        pixel_bytes,
        grid_w: xstep,
        grid_h: ystep,
        bands,
        chunks,
    }
}

impl Plan {
    /// Splits `c` in two halves along the axis that crosses more lines of the split grid,
    /// at the middle line; `None` when it lies within one grid cell (a leaf). The parts get
    /// ids `first` and `first + 1`. Windows stay multiples of F, so the parts' output
    /// windows tile the parent's exactly.
    pub fn split(&self, c: &Chunk, first: TaskId) -> Option<[Chunk; 2]> {
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
        let w = c.window;
        let (fx, nx) = lines(w.x, w.w, self.grid_w);
        let (fy, ny) = lines(w.y, w.h, self.grid_h);
        if nx == 0 && ny == 0 {
            return None;
        }
        // n lines make n + 1 cells: cut after half of them.
        let along_x = nx > ny || (nx == ny && w.w >= w.h);
        let (a, b) = if along_x {
            let cut = fx + (nx.div_ceil(2) - 1) * self.grid_w;
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
            let cut = fy + (ny.div_ceil(2) - 1) * self.grid_h;
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
        let f = self.factor;
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

    /// Input bytes of the largest chunk (all bands).
    pub fn max_input_bytes(&self) -> u64 {
        self.chunk_w.min(self.width) * self.chunk_h.min(self.height) * self.pixel_bytes
    }

    /// Output bytes (f64, all bands) of the largest chunk.
    pub fn max_output_bytes(&self) -> u64 {
        self.chunk_w.min(self.width).div_ceil(self.factor)
            * self.chunk_h.min(self.height).div_ceil(self.factor)
            * 8
            * self.bands
    }
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
        ) {
            let p = plan(w, h, (bw, bh), f, 1, px, target);
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
        ) {
            let p = plan(w, h, (bw, bh), f, 1, 4, target);
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

    #[test]
    fn bisects_a_strip_of_tiles_to_single_tiles() {
        // A 4096x1024 chunk of 256x256 tiles, F=8: 16 x 4 tiles.
        let p = plan(4096, 4096, (256, 256), 8, 1, 4, 16 << 20);
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
        // 16384^2 float32, 256 tiles, F=8, 16 MiB: one row of tiles per full-width strip.
        let p = plan(16384, 16384, (256, 256), 8, 1, 4, 16 << 20);
        assert_eq!((p.chunk_w, p.chunk_h), (16384, 256));
        assert_eq!(p.chunks.len(), 64);
        // F=7 does not divide 256: steps become lcm(7,256)=1792.
        let q = plan(16384, 16384, (256, 256), 7, 1, 4, 16 << 20);
        assert_eq!(q.chunk_h % 1792, 0);
    }
}
