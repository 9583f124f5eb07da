//! The TIFF header and the first image file directory, parsed into a [`Layout`]: classic and
//! BigTIFF, little and big endian. Every offset and count is checked against the source's
//! length before anything is read or allocated; this module never panics on bad input.

use crate::{ReadAt, TiffError};

/// Byte order of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    pub fn is_native(self) -> bool {
        (self == ByteOrder::Little) == cfg!(target_endian = "little")
    }
}

/// Compression schemes this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Adobe (8) and old-style (32946) DEFLATE: both are zlib streams.
    Deflate,
    /// ZSTD (50000).
    Zstd,
    /// LZW (5), with `weezl`.
    Lzw,
}

impl Compression {
    /// GDAL's name of the scheme (its `COMPRESS=` creation option).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "NONE",
            Compression::Deflate => "DEFLATE",
            Compression::Zstd => "ZSTD",
            Compression::Lzw => "LZW",
        }
    }
}

/// TIFF predictors this crate undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    None,
    /// 2: horizontal differencing of whole samples.
    Horizontal,
    /// 3: floating point (byte planes, most significant first, byte-wise differencing).
    Float,
}

impl Predictor {
    /// The TIFF tag's value.
    pub fn number(self) -> u32 {
        match self {
            Predictor::None => 1,
            Predictor::Horizontal => 2,
            Predictor::Float => 3,
        }
    }
}

/// Sample types this crate decodes (GDAL's Byte, Int8, Int16, UInt16, Int32, UInt32, Float32,
/// Float64). `I8` is SampleFormat 2 with 8 bits: GDAL >= 3.7 calls it Int8; GDAL 3.6 shows
/// it as Byte with `PIXELTYPE=SIGNEDBYTE` (same bytes, two's complement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleKind {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl SampleKind {
    /// GDAL's name of the type.
    pub fn gdal_name(self) -> &'static str {
        match self {
            SampleKind::U8 => "Byte",
            SampleKind::I8 => "Int8",
            SampleKind::I16 => "Int16",
            SampleKind::U16 => "UInt16",
            SampleKind::I32 => "Int32",
            SampleKind::U32 => "UInt32",
            SampleKind::F32 => "Float32",
            SampleKind::F64 => "Float64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            SampleKind::U8 | SampleKind::I8 => 1,
            SampleKind::I16 | SampleKind::U16 => 2,
            SampleKind::I32 | SampleKind::U32 | SampleKind::F32 => 4,
            SampleKind::F64 => 8,
        }
    }

    /// `v` as a native-endian sample of this type, or `None` when the type cannot hold it
    /// exactly (NaN only in float types).
    pub fn encode(self, v: f64) -> Option<Vec<u8>> {
        let int_ok = |lo: f64, hi: f64| v.fract() == 0.0 && v >= lo && v <= hi;
        Some(match self {
            SampleKind::U8 if int_ok(0.0, u8::MAX as f64) => vec![v as u8],
            SampleKind::I8 if int_ok(i8::MIN as f64, i8::MAX as f64) => {
                (v as i8).to_ne_bytes().to_vec()
            }
            SampleKind::I16 if int_ok(i16::MIN as f64, i16::MAX as f64) => {
                (v as i16).to_ne_bytes().to_vec()
            }
            SampleKind::U16 if int_ok(0.0, u16::MAX as f64) => (v as u16).to_ne_bytes().to_vec(),
            SampleKind::I32 if int_ok(i32::MIN as f64, i32::MAX as f64) => {
                (v as i32).to_ne_bytes().to_vec()
            }
            SampleKind::U32 if int_ok(0.0, u32::MAX as f64) => (v as u32).to_ne_bytes().to_vec(),
            SampleKind::F32 if v.is_nan() || v.is_infinite() || (v as f32) as f64 == v => {
                (v as f32).to_ne_bytes().to_vec()
            }
            SampleKind::F64 => v.to_ne_bytes().to_vec(),
            _ => return None,
        })
    }
}

/// Everything about the first image that decoding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub order: ByteOrder,
    pub bigtiff: bool,
    pub width: u64,
    pub height: u64,
    /// Samples per pixel (GDAL's band count).
    pub samples: usize,
    pub kind: SampleKind,
    /// Planar configuration 2: one block set per sample.
    pub planar: bool,
    pub compression: Compression,
    pub predictor: Predictor,
    pub tiled: bool,
    /// Block width and height: the tile size, or the image width and rows per strip.
    pub block_w: u64,
    pub block_h: u64,
    pub offsets: Vec<u64>,
    pub byte_counts: Vec<u64>,
    /// The PhotometricInterpretation tag (262) as stored, `None` when absent. The decoder
    /// returns stored samples whatever it says; whether GDAL converts them (CMYK to RGBA,
    /// YCbCr to RGB, ...) is the caller's question.
    pub photometric: Option<u16>,
    /// The YCbCrSubsampling tag (530), when present: horizontal and vertical factors.
    pub subsampling: Option<[u64; 2]>,
}

/// Largest decoded block accepted (bigger ones go to GDAL).
const MAX_BLOCK_BYTES: u64 = 1 << 30;

impl Layout {
    pub fn blocks_across(&self) -> u64 {
        self.width.div_ceil(self.block_w)
    }

    pub fn blocks_down(&self) -> u64 {
        self.height.div_ceil(self.block_h)
    }

    /// Samples per pixel inside one block: all of them (chunky) or one (planar).
    pub fn block_samples(&self) -> usize {
        if self.planar {
            1
        } else {
            self.samples
        }
    }

    /// Rows stored in block row `by`: tiles are always full; the last strip may be short.
    pub fn block_rows(&self, by: u64) -> u64 {
        if self.tiled {
            self.block_h
        } else {
            self.block_h.min(self.height - by * self.block_h)
        }
    }

    /// Bytes in one decoded row of a block.
    pub fn row_bytes(&self) -> usize {
        self.block_w as usize * self.block_samples() * self.kind.size()
    }
}

#[derive(Clone, Copy)]
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    /// The raw value field (4 or 8 bytes), in file order.
    field: [u8; 8],
}

struct Parser<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    order: ByteOrder,
    bigtiff: bool,
}

fn corrupt(msg: impl Into<String>) -> TiffError {
    TiffError::Corrupt(msg.into())
}

fn unsupported(msg: impl Into<String>) -> TiffError {
    TiffError::Unsupported(msg.into())
}

impl<R: ReadAt + ?Sized> Parser<'_, R> {
    fn read(&self, off: u64, n: u64) -> Result<Vec<u8>, TiffError> {
        let end = off
            .checked_add(n)
            .filter(|&e| e <= self.src.len())
            .ok_or_else(|| corrupt(format!("{n} bytes at {off} run past the end of the file")))?;
        let mut buf = vec![0u8; (end - off) as usize];
        self.src
            .read_exact_at(off, &mut buf)
            .map_err(|source| TiffError::Io {
                what: "directory",
                source,
            })?;
        Ok(buf)
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self.order {
            ByteOrder::Little => u16::from_le_bytes(a),
            ByteOrder::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self.order {
            ByteOrder::Little => u32::from_le_bytes(a),
            ByteOrder::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self.order {
            ByteOrder::Little => u64::from_le_bytes(a),
            ByteOrder::Big => u64::from_be_bytes(a),
        }
    }

    fn entries(&self, ifd: u64) -> Result<Vec<Entry>, TiffError> {
        let (count, entry_len, head) = if self.bigtiff {
            (self.u64(&self.read(ifd, 8)?), 20u64, 8u64)
        } else {
            (u64::from(self.u16(&self.read(ifd, 2)?)), 12, 2)
        };
        let bytes = count
            .checked_mul(entry_len)
            .ok_or_else(|| corrupt("directory entry count overflows"))?;
        let start = ifd
            .checked_add(head)
            .ok_or_else(|| corrupt("directory offset overflows"))?;
        let raw = self.read(start, bytes)?;
        Ok(raw
            .chunks_exact(entry_len as usize)
            .map(|e| {
                let mut field = [0u8; 8];
                if self.bigtiff {
                    field.copy_from_slice(&e[12..20]);
                    Entry {
                        tag: self.u16(&e[0..2]),
                        typ: self.u16(&e[2..4]),
                        count: self.u64(&e[4..12]),
                        field,
                    }
                } else {
                    field[..4].copy_from_slice(&e[8..12]);
                    Entry {
                        tag: self.u16(&e[0..2]),
                        typ: self.u16(&e[2..4]),
                        count: u64::from(self.u32(&e[4..8])),
                        field,
                    }
                }
            })
            .collect())
    }

    /// The unsigned integer values of an entry (BYTE, SHORT, LONG, LONG8, IFD, IFD8).
    fn values(&self, e: &Entry) -> Result<Vec<u64>, TiffError> {
        let size: u64 = match e.typ {
            1 | 7 => 1,
            3 => 2,
            4 | 13 => 4,
            16 | 18 => 8,
            t => return Err(corrupt(format!("tag {} has non-integer type {t}", e.tag))),
        };
        let bytes = e
            .count
            .checked_mul(size)
            .ok_or_else(|| corrupt(format!("tag {} count overflows", e.tag)))?;
        let inline = if self.bigtiff { 8 } else { 4 };
        let data = if bytes <= inline {
            e.field[..bytes as usize].to_vec()
        } else {
            let off = if self.bigtiff {
                self.u64(&e.field)
            } else {
                u64::from(self.u32(&e.field))
            };
            self.read(off, bytes)?
        };
        Ok(data
            .chunks_exact(size as usize)
            .map(|c| match size {
                1 => u64::from(c[0]),
                2 => u64::from(self.u16(c)),
                4 => u64::from(self.u32(c)),
                _ => self.u64(c),
            })
            .collect())
    }
}

/// Parses the header and the first directory of `src`.
pub fn parse<R: ReadAt + ?Sized>(src: &R) -> Result<Layout, TiffError> {
    let mut p = Parser {
        src,
        order: ByteOrder::Little,
        bigtiff: false,
    };
    let ifd0 = header(&mut p)?;
    let t = Tags {
        entries: p.entries(ifd0)?,
        p: &p,
    };
    let width = t.one(256)?.ok_or_else(|| corrupt("no image width"))?;
    let height = t.one(257)?.ok_or_else(|| corrupt("no image height"))?;
    if width == 0 || height == 0 || width > u64::from(u32::MAX) || height > u64::from(u32::MAX) {
        return Err(corrupt(format!("image size {width}x{height}")));
    }
    let samples = t.one(277)?.unwrap_or(1);
    if samples == 0 || samples > 4096 {
        return Err(corrupt(format!("{samples} samples per pixel")));
    }
    let kind = sample_kind(t.uniform(339, 1)?, t.uniform(258, 1)?)?;
    let planar = match t.one(284)?.unwrap_or(1) {
        1 => false,
        2 => true,
        v => return Err(corrupt(format!("planar configuration {v}"))),
    };
    let compression = compression(t.one(259)?.unwrap_or(1))?;
    let predictor = match t.one(317)?.unwrap_or(1) {
        1 => Predictor::None,
        2 => Predictor::Horizontal,
        3 if matches!(kind, SampleKind::F32 | SampleKind::F64) => Predictor::Float,
        v => {
            return Err(unsupported(format!(
                "predictor {v} for {}",
                kind.gdal_name()
            )))
        }
    };
    if t.one(266)?.unwrap_or(1) != 1 {
        return Err(unsupported("fill order 2"));
    }
    let blocks = t.blocks((width, height))?;
    let layout = Layout {
        order: p.order,
        bigtiff: p.bigtiff,
        width,
        height,
        samples: samples as usize,
        kind,
        planar,
        compression,
        predictor,
        tiled: blocks.tiled,
        block_w: blocks.size.0,
        block_h: blocks.size.1,
        offsets: blocks.offsets,
        byte_counts: blocks.byte_counts,
        photometric: t.one(262)?.map(|v| v as u16),
        subsampling: match t.all(530)? {
            Some(v) if v.len() >= 2 => Some([v[0], v[1]]),
            Some(_) => return Err(corrupt("YCbCr subsampling with fewer than 2 values")),
            None => None,
        },
    };
    check_blocks(&layout)?;
    Ok(layout)
}

/// Reads the byte order and the version from the header; returns the first directory's
/// offset.
fn header<R: ReadAt + ?Sized>(p: &mut Parser<'_, R>) -> Result<u64, TiffError> {
    let head = p.read(0, 8)?;
    p.order = match &head[0..2] {
        b"II" => ByteOrder::Little,
        b"MM" => ByteOrder::Big,
        _ => return Err(corrupt("not a TIFF: bad byte-order mark")),
    };
    let ifd0 = match p.u16(&head[2..4]) {
        42 => u64::from(p.u32(&head[4..8])),
        43 => {
            p.bigtiff = true;
            if p.u16(&head[4..6]) != 8 || p.u16(&head[6..8]) != 0 {
                return Err(corrupt("BigTIFF header with an offset size other than 8"));
            }
            p.u64(&p.read(8, 8)?)
        }
        v => return Err(corrupt(format!("not a TIFF: version {v}"))),
    };
    if ifd0 == 0 {
        return Err(corrupt("no image directory"));
    }
    Ok(ifd0)
}

/// One directory's entries, read by tag.
struct Tags<'a, R: ReadAt + ?Sized> {
    entries: Vec<Entry>,
    p: &'a Parser<'a, R>,
}

/// Where the blocks are and how big.
struct Blocks {
    tiled: bool,
    size: (u64, u64),
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
}

impl<R: ReadAt + ?Sized> Tags<'_, R> {
    fn find(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    fn all(&self, tag: u16) -> Result<Option<Vec<u64>>, TiffError> {
        self.find(tag).map(|e| self.p.values(e)).transpose()
    }

    fn one(&self, tag: u16) -> Result<Option<u64>, TiffError> {
        match self.all(tag)? {
            None => Ok(None),
            Some(v) => v
                .first()
                .copied()
                .map(Some)
                .ok_or_else(|| corrupt(format!("tag {tag} has no value"))),
        }
    }

    /// A per-sample tag whose values must all be the same (`default` when absent).
    fn uniform(&self, tag: u16, default: u64) -> Result<u64, TiffError> {
        match self.all(tag)? {
            None => Ok(default),
            Some(v) => {
                let first = *v
                    .first()
                    .ok_or_else(|| corrupt(format!("tag {tag} has no value")))?;
                if v.iter().any(|&x| x != first) {
                    return Err(unsupported(format!("tag {tag} differs between samples")));
                }
                Ok(first)
            }
        }
    }

    /// As libtiff does: an image is tiled when it has a tile width, and the strip and tile
    /// offset (and byte count) tags are one field, whichever of the two the writer used.
    fn blocks(&self, (width, height): (u64, u64)) -> Result<Blocks, TiffError> {
        let tiled = self.find(322).is_some();
        let either = |tile: u16, strip: u16| -> Result<Option<Vec<u64>>, TiffError> {
            match self.all(tile)? {
                Some(v) => Ok(Some(v)),
                None => self.all(strip),
            }
        };
        let what = if tiled { "tile" } else { "strip" };
        let offsets = either(324, 273)?.ok_or_else(|| corrupt(format!("no {what} offsets")))?;
        let byte_counts =
            either(325, 279)?.ok_or_else(|| corrupt(format!("no {what} byte counts")))?;
        let size = if tiled {
            let tw = self
                .one(322)?
                .ok_or_else(|| corrupt("tiled without a tile width"))?;
            let th = self
                .one(323)?
                .ok_or_else(|| corrupt("tiled without a tile length"))?;
            (tw, th)
        } else {
            let rps = self.one(278)?.unwrap_or(u64::from(u32::MAX)).min(height);
            (width, rps)
        };
        if size.0 == 0 || size.1 == 0 {
            return Err(corrupt(format!("block size {}x{}", size.0, size.1)));
        }
        Ok(Blocks {
            tiled,
            size,
            offsets,
            byte_counts,
        })
    }
}

fn sample_kind(format: u64, bits: u64) -> Result<SampleKind, TiffError> {
    Ok(match (format, bits) {
        (1, 8) => SampleKind::U8,
        (2, 8) => SampleKind::I8,
        (2, 16) => SampleKind::I16,
        (1, 16) => SampleKind::U16,
        (2, 32) => SampleKind::I32,
        (1, 32) => SampleKind::U32,
        (3, 32) => SampleKind::F32,
        (3, 64) => SampleKind::F64,
        (f, b) => {
            return Err(unsupported(format!(
                "sample format {f} with {b} bits per sample"
            )))
        }
    })
}

/// The codec of compression code `v`, or why it is not read natively: a codec is named, not
/// numbered.
fn compression(v: u64) -> Result<Compression, TiffError> {
    match v {
        1 => return Ok(Compression::None),
        8 | 32946 => return Ok(Compression::Deflate),
        50000 => return Ok(Compression::Zstd),
        5 => return Ok(Compression::Lzw),
        _ => {}
    }
    // libtiff's names (tiff.h), and DNG's lossy JPEG.
    let name = match v {
        2 => "CCITT RLE",
        3 => "CCITT Group 3 fax",
        4 => "CCITT Group 4 fax",
        6 => "old-style JPEG",
        7 => "JPEG",
        9 => "JBIG (T.85)",
        10 => "JBIG2 (T.43)",
        32766 => "NeXT",
        32771 => "CCITT RLE (word-aligned)",
        32773 => "PackBits",
        32809 => "ThunderScan",
        32895..=32898 => "IT8",
        32908 => "Pixar film",
        32909 => "Pixar log",
        32947 => "Kodak DCS",
        34661 => "JBIG",
        34676 => "SGI LogLuv",
        34677 => "SGI LogLuv (24-bit)",
        34712 | 33003 | 33005 => "JPEG 2000",
        34887 => "LERC",
        34892 => "lossy JPEG (DNG)",
        34925 => "LZMA",
        50001 => "WEBP",
        50002 => "JPEG XL",
        _ => {
            return Err(unsupported(format!(
                "compression code {v} is not one this decoder knows"
            )))
        }
    };
    Err(unsupported(format!(
        "{name} compression ({v}) is not supported natively"
    )))
}

/// The blocks' size and count against the offsets and byte counts the directory gives.
fn check_blocks(layout: &Layout) -> Result<(), TiffError> {
    let block_bytes = layout
        .block_w
        .checked_mul(layout.block_h)
        .and_then(|v| v.checked_mul(layout.block_samples() as u64))
        .and_then(|v| v.checked_mul(layout.kind.size() as u64))
        .ok_or_else(|| corrupt("block size overflows"))?;
    if block_bytes > MAX_BLOCK_BYTES {
        return Err(unsupported(format!("blocks of {block_bytes} bytes")));
    }
    let planes = if layout.planar {
        layout.samples as u64
    } else {
        1
    };
    let blocks = layout
        .blocks_across()
        .checked_mul(layout.blocks_down())
        .and_then(|v| v.checked_mul(planes))
        .ok_or_else(|| corrupt("block count overflows"))?;
    if layout.offsets.len() as u64 != blocks || layout.byte_counts.len() as u64 != blocks {
        return Err(corrupt(format!(
            "{} offsets and {} byte counts for {blocks} blocks",
            layout.offsets.len(),
            layout.byte_counts.len()
        )));
    }
    Ok(())
}
