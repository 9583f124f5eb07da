//! A native decoder of the tiles and strips of a local (Big)TIFF, bit-exact with what GDAL's
//! GTiff driver (libtiff) returns for the same window: no compression, DEFLATE and ZSTD;
//! predictors 1, 2 and 3; u8, i8, i16, u16, i32, u32, f32 and f64 samples; chunky or planar;
//! little or big endian. LZW too (with `weezl`), though libtiff is faster at it for some
//! predictors: the caller decides whether to use it.
//!
//! It owns the directory parse (`ifd`), inflating one block (`codec`), undoing predictors
//! (`predict`, with the SIMD paths in `simd`, the crate's only `unsafe`), and assembling a
//! window of selected samples, band after band, row-major, native-endian. It does not open
//! GDAL, compare its view with GDAL's (the caller does, at open), or read anything but the
//! first image directory. Bad input is an error, never a panic or a wrong window. What
//! libtiff tolerates it tolerates too (a block stored or compressed with more bytes or rows
//! than needed: it reads what it needs; tile offsets in the strip tags); old-style LZW,
//! which libtiff reads, is refused at open. The layout carries the photometric tags, which
//! it does not interpret: whether GDAL converts the samples is the caller's question.

mod codec;
mod ifd;
pub mod predict;
pub mod simd;

use std::{fs::File, io, os::unix::fs::FileExt, path::Path};

pub use ifd::{ByteOrder, Compression, Layout, Predictor, SampleKind};

#[derive(Debug, thiserror::Error)]
pub enum TiffError {
    #[error("reading {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("corrupt TIFF: {0}")]
    Corrupt(String),
    #[error("unsupported TIFF layout: {0}")]
    Unsupported(String),
    #[error("block {block}: {reason}")]
    Block { block: usize, reason: String },
    #[error("window {x},{y} {w}x{h} is not inside the {width}x{height} raster")]
    Window {
        x: u64,
        y: u64,
        w: u64,
        h: u64,
        width: u64,
        height: u64,
    },
    #[error("sample {0} does not exist")]
    NoSample(usize),
    #[error("a fill value has {have} bytes, samples have {need}")]
    Fill { have: usize, need: usize },
    #[error("destination of {have} bytes cannot hold {need} bytes")]
    TooSmall { have: usize, need: usize },
}

/// Positioned reads from a file or a buffer.
pub trait ReadAt {
    fn len(&self) -> u64;
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(off)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(off, buf)
    }
}

/// A file and its length at open.
pub struct LocalFile {
    file: File,
    len: u64,
}

impl ReadAt for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, off)
    }
}

/// A pixel window: column/row offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u64,
    pub y: u64,
    pub w: u64,
    pub h: u64,
}

/// An open TIFF: its source and the layout of its first image.
pub struct Tiff<R: ReadAt = LocalFile> {
    src: R,
    layout: Layout,
}

impl Tiff<LocalFile> {
    pub fn open(path: &Path) -> Result<Self, TiffError> {
        let io = |source| TiffError::Io {
            what: "the file",
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Tiff::new(LocalFile { file, len })
    }
}

/// Buffers reused across the blocks of one window.
struct Scratch {
    raw: Vec<u8>,
    /// `u64`-backed so that typed views of whole-sample rows are aligned.
    block: Vec<u64>,
    row: Vec<u8>,
    inflater: codec::Inflater,
    /// Built on the first LZW block (it allocates its tables).
    unlzw: Option<codec::Unlzw>,
}

impl<R: ReadAt> Tiff<R> {
    pub fn new(src: R) -> Result<Self, TiffError> {
        let layout = ifd::parse(&src)?;
        let tiff = Tiff { src, layout };
        tiff.refuse_old_lzw()?;
        Ok(tiff)
    }

    /// Old-style (pre-TIFF 5.0) LZW is refused at open, not block by block: libtiff reads
    /// it (and tells it apart by the first block's first two bytes, as here), the native
    /// decoder does not.
    fn refuse_old_lzw(&self) -> Result<(), TiffError> {
        let l = &self.layout;
        if l.compression != Compression::Lzw {
            return Ok(());
        }
        let first = l.offsets.iter().zip(&l.byte_counts).find(|&(&o, &c)| {
            o != 0 && c >= 2 && o.checked_add(2).is_some_and(|e| e <= self.src.len())
        });
        if let Some((&off, _)) = first {
            let mut head = [0u8; 2];
            self.src
                .read_exact_at(off, &mut head)
                .map_err(|source| TiffError::Io {
                    what: "a block",
                    source,
                })?;
            if codec::is_old_lzw(&head) {
                return Err(TiffError::Unsupported(
                    "old-style (pre-TIFF 5.0) LZW is not supported natively".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Reads `win` of each sample in `samples` (0-based) into `dst`, band after band,
    /// row-major, native-endian. A sparse block (byte count 0) reads as that band's entry of
    /// `fill` (one sample's native bytes), as GDAL fills it with the nodata value, or zeros.
    pub fn read_window(
        &self,
        samples: &[usize],
        win: Window,
        fill: &[Vec<u8>],
        dst: &mut [u8],
    ) -> Result<(), TiffError> {
        self.check_window(samples, win, fill)?;
        let size = self.layout.kind.size();
        let band_bytes = win.w as usize * win.h as usize * size;
        let need = band_bytes * samples.len();
        if dst.len() < need {
            return Err(TiffError::TooSmall {
                have: dst.len(),
                need,
            });
        }
        let mut sink = CopySink {
            dst,
            band_bytes,
            row_w: win.w as usize,
            size,
        };
        self.visit_window(samples, win, fill, &mut sink)
    }

    /// Decodes `win` of each sample in `samples` (0-based) block by block and hands each
    /// block's part inside the window to `sink` as soon as it is decoded, without assembling
    /// the window: block rows top to bottom, blocks left to right within one, and for each
    /// block the samples in the order of `samples`; after the last block of a block row,
    /// [`BlockSink::rows_done`]. So every column's rows arrive in ascending order. Sparse
    /// blocks arrive as `fill`, as in [`Tiff::read_window`]. An error ends the visit: the
    /// sink has then seen part of the window.
    pub fn visit_window(
        &self,
        samples: &[usize],
        win: Window,
        fill: &[Vec<u8>],
        sink: &mut dyn BlockSink,
    ) -> Result<(), TiffError> {
        self.check_window(samples, win, fill)?;
        let l = &self.layout;
        let size = l.kind.size();
        let mut scratch = Scratch {
            raw: Vec::new(),
            block: Vec::new(),
            row: Vec::new(),
            inflater: codec::Inflater::new(),
            unlzw: None,
        };
        let per_plane = l.blocks_across() * l.blocks_down();
        let (bw, bh) = (l.block_w, l.block_h);
        for by in win.y / bh..=(win.y + win.h - 1) / bh {
            let y1 = (win.y + win.h).min((by + 1) * bh);
            for bx in win.x / bw..=(win.x + win.w - 1) / bw {
                let x0 = win.x.max(bx * bw);
                let x1 = (win.x + win.w).min((bx + 1) * bw);
                let y0 = win.y.max(by * bh);
                let geom = Geom {
                    size,
                    cols: ((x0 - bx * bw) as usize, (x1 - x0) as usize),
                    rows: ((y0 - by * bh) as usize, (y1 - y0) as usize),
                    x: (x0 - win.x) as usize,
                    y: (y0 - win.y) as usize,
                };
                let index = by * l.blocks_across() + bx;
                if l.planar {
                    for (i, &s) in samples.iter().enumerate() {
                        let block = (s as u64 * per_plane + index) as usize;
                        let data = match self.decode_block(block, by, &mut scratch)? {
                            Some(bytes) => PartData::Block {
                                bytes,
                                row_bytes: l.row_bytes(),
                                spp: 1,
                                sample: 0,
                            },
                            None => PartData::Fill(&fill[i]),
                        };
                        sink.part(i, &BlockPart { data, geom });
                    }
                } else {
                    let decoded = self.decode_block(index as usize, by, &mut scratch)?;
                    for (i, &s) in samples.iter().enumerate() {
                        let data = match decoded {
                            Some(bytes) => PartData::Block {
                                bytes,
                                row_bytes: l.row_bytes(),
                                spp: l.samples,
                                sample: s,
                            },
                            None => PartData::Fill(&fill[i]),
                        };
                        sink.part(i, &BlockPart { data, geom });
                    }
                }
            }
            sink.rows_done((y1 - win.y) as usize);
        }
        Ok(())
    }

    /// The window lies inside the raster, the samples exist, and each has a fill value of
    /// one sample's size.
    fn check_window(
        &self,
        samples: &[usize],
        win: Window,
        fill: &[Vec<u8>],
    ) -> Result<(), TiffError> {
        let l = &self.layout;
        let size = l.kind.size();
        let inside = win.w > 0
            && win.h > 0
            && win.x.checked_add(win.w).is_some_and(|e| e <= l.width)
            && win.y.checked_add(win.h).is_some_and(|e| e <= l.height);
        if !inside {
            return Err(TiffError::Window {
                x: win.x,
                y: win.y,
                w: win.w,
                h: win.h,
                width: l.width,
                height: l.height,
            });
        }
        if let Some(&s) = samples.iter().find(|&&s| s >= l.samples) {
            return Err(TiffError::NoSample(s));
        }
        if fill.len() != samples.len() {
            return Err(TiffError::Fill {
                have: fill.len(),
                need: samples.len(),
            });
        }
        if let Some(f) = fill.iter().find(|f| f.len() != size) {
            return Err(TiffError::Fill {
                have: f.len(),
                need: size,
            });
        }
        Ok(())
    }

    /// Decodes block `block` (in block row `by`) into `scratch.block`: `None` for a sparse
    /// block, else the decoded bytes, native-endian, predictor undone.
    fn decode_block<'s>(
        &self,
        block: usize,
        by: u64,
        scratch: &'s mut Scratch,
    ) -> Result<Option<&'s [u8]>, TiffError> {
        let l = &self.layout;
        let bad = |reason: String| TiffError::Block { block, reason };
        let (off, count) = match (l.offsets.get(block), l.byte_counts.get(block)) {
            (Some(&o), Some(&c)) => (o, c),
            _ => return Err(bad("no such block".into())),
        };
        if count == 0 {
            return Ok(None);
        }
        if off == 0 {
            return Err(bad("offset 0 with a non-zero byte count".into()));
        }
        let row_bytes = l.row_bytes();
        let rows = l.block_rows(by) as usize;
        let expect = row_bytes * rows;
        // Uncompressed, only what the block needs is read: libtiff too ignores a byte count
        // larger than that, even one past the end of the file (it calls it bogus and
        // computes the count from the image's size).
        let stored = match l.compression {
            Compression::None => count.min(expect as u64),
            _ => count,
        };
        if off.checked_add(stored).is_none_or(|e| e > self.src.len()) {
            return Err(bad(format!(
                "{count} bytes at {off} run past the end of the file ({} bytes)",
                self.src.len()
            )));
        }
        // Room for a whole block: a short last strip may be stored (or compressed) padded
        // to the full strip height, and libtiff reads what it needs of it.
        let room = row_bytes * l.block_h as usize;
        // Not cleared: the codec writes (or the read fills) every byte the block uses, and
        // a block that decodes short is an error below.
        if scratch.block.len() < room.div_ceil(8) {
            scratch.block.resize(room.div_ceil(8), 0);
        }
        let whole = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut scratch.block)[..room];
        let read = |buf: &mut [u8]| {
            self.src
                .read_exact_at(off, buf)
                .map_err(|source| TiffError::Io {
                    what: "a block",
                    source,
                })
        };
        if l.compression == Compression::None {
            // More bytes than needed (a padded strip) are fine, as for libtiff; fewer are not.
            if (count as usize) < expect {
                return Err(bad(format!("{count} bytes stored, {expect} expected")));
            }
            read(&mut whole[..expect])?;
        } else {
            scratch.raw.resize(count as usize, 0);
            read(&mut scratch.raw)?;
            let got = match l.compression {
                Compression::Zstd => codec::unzstd(&scratch.raw, whole),
                Compression::Lzw => scratch
                    .unlzw
                    .get_or_insert_with(codec::Unlzw::new)
                    .decode(&scratch.raw, whole),
                _ => scratch.inflater.inflate(&scratch.raw, whole),
            }
            .map_err(bad)?;
            if got < expect {
                return Err(bad(format!("decodes to {got} bytes, {expect} expected")));
            }
        }
        let out = &mut whole[..expect];
        undo_predictor(l, out, &mut scratch.row).map_err(bad)?;
        Ok(Some(out))
    }
}

/// Undoes `l`'s predictor on the decoded block `out` (whole rows) and leaves its samples in
/// native byte order; `row` is scratch space for the floating-point predictor.
fn undo_predictor(l: &Layout, out: &mut [u8], row: &mut Vec<u8>) -> Result<(), String> {
    let (row_bytes, size, stride) = (l.row_bytes(), l.kind.size(), l.block_samples());
    match l.predictor {
        // libtiff's floating-point predictor yields native order whatever the file's.
        Predictor::Float => {
            row.resize(row_bytes, 0);
            for r in out.chunks_exact_mut(row_bytes) {
                predict::float(r, size, stride, row);
            }
        }
        Predictor::Horizontal => {
            if !l.order.is_native() {
                predict::swap_bytes(out, size);
            }
            for r in out.chunks_exact_mut(row_bytes) {
                if !predict::horizontal(r, size, stride) {
                    return Err("misaligned row".into());
                }
            }
        }
        Predictor::None => {
            if !l.order.is_native() {
                predict::swap_bytes(out, size);
            }
        }
    }
    Ok(())
}

/// Receives a window block by block from [`Tiff::visit_window`].
pub trait BlockSink {
    /// The part of one block inside the window, for the `band`-th of the selected samples.
    fn part(&mut self, band: usize, part: &BlockPart<'_>);
    /// Every block of the window's rows above `y_end` (window-relative) has been delivered.
    fn rows_done(&mut self, y_end: usize);
}

/// Where a part's samples come from.
#[derive(Clone, Copy)]
enum PartData<'a> {
    /// A decoded block (native-endian, predictor undone): rows of `row_bytes`, `spp` samples
    /// a pixel, of which the part is sample `sample`.
    Block {
        bytes: &'a [u8],
        row_bytes: usize,
        spp: usize,
        sample: usize,
    },
    /// A sparse block: every sample is this value (one sample's native bytes).
    Fill(&'a [u8]),
}

/// The part of one block inside a window, for one sample, and where it lies in the window.
pub struct BlockPart<'a> {
    data: PartData<'a>,
    geom: Geom,
}

/// Where a block's part lies, in the block and in the window.
#[derive(Clone, Copy)]
struct Geom {
    /// Bytes a sample.
    size: usize,
    /// First column and count, relative to the block.
    cols: (usize, usize),
    /// First row and count, relative to the block.
    rows: (usize, usize),
    x: usize,
    y: usize,
}

impl BlockPart<'_> {
    /// The part's first column in the window.
    pub fn x(&self) -> usize {
        self.geom.x
    }

    /// The part's first row in the window.
    pub fn y(&self) -> usize {
        self.geom.y
    }

    /// Columns in the part.
    pub fn width(&self) -> usize {
        self.geom.cols.1
    }

    /// Rows in the part.
    pub fn height(&self) -> usize {
        self.geom.rows.1
    }

    /// Row `r` of the part (`r < height`), `width` native-endian samples: borrowed from the
    /// block when it holds one sample a pixel, else gathered into `buf` (whose `u64`s keep
    /// the row aligned for any sample type, as the block's rows are).
    pub fn row<'b>(&'b self, r: usize, buf: &'b mut Vec<u64>) -> &'b [u8] {
        let n = self.geom.cols.1 * self.geom.size;
        match self.data {
            PartData::Block {
                bytes,
                row_bytes,
                spp: 1,
                ..
            } => {
                &bytes[(self.geom.rows.0 + r) * row_bytes..][self.geom.cols.0 * self.geom.size..]
                    [..n]
            }
            _ => {
                buf.resize(n.div_ceil(8), 0);
                let out = &mut bytemuck::cast_slice_mut::<u64, u8>(buf)[..n];
                self.copy_row(r, out);
                out
            }
        }
    }

    /// Copies row `r` of the part into `dst` (`width` samples).
    fn copy_row(&self, r: usize, dst: &mut [u8]) {
        let size = self.geom.size;
        match self.data {
            PartData::Block {
                bytes,
                row_bytes,
                spp,
                sample,
            } => {
                let pix = spp * size;
                let src_row = &bytes[(self.geom.rows.0 + r) * row_bytes..][..row_bytes];
                let src = &src_row[self.geom.cols.0 * pix..][..self.geom.cols.1 * pix];
                if spp == 1 {
                    dst.copy_from_slice(src);
                } else {
                    for (o, p) in dst.chunks_exact_mut(size).zip(src.chunks_exact(pix)) {
                        o.copy_from_slice(&p[sample * size..(sample + 1) * size]);
                    }
                }
            }
            PartData::Fill(value) => {
                for o in dst.chunks_exact_mut(size) {
                    o.copy_from_slice(value);
                }
            }
        }
    }
}

/// [`Tiff::read_window`]'s sink: assembles the window in `dst`, band after band.
struct CopySink<'d> {
    dst: &'d mut [u8],
    band_bytes: usize,
    /// The window's width in samples.
    row_w: usize,
    size: usize,
}

impl BlockSink for CopySink<'_> {
    fn part(&mut self, band: usize, part: &BlockPart<'_>) {
        let dst = &mut self.dst[band * self.band_bytes..(band + 1) * self.band_bytes];
        let n = part.width() * self.size;
        for r in 0..part.height() {
            let d0 = ((part.y() + r) * self.row_w + part.x()) * self.size;
            part.copy_row(r, &mut dst[d0..d0 + n]);
        }
    }

    fn rows_done(&mut self, _y_end: usize) {}
}
