//! Random rasters against GDAL (proptest), and corrupted files: every corruption is an error
//! or a window, never a panic; the ones that make a block decode to the wrong size, or point
//! past the end of the file, are errors.

use crate::common::{gdal_read, native_read, next, write, Spec, KINDS};
use proptest::prelude::*;
use tiffdec::{Tiff, TiffError, Window};

fn spec_strategy() -> impl Strategy<Value = (Spec, (u64, u64, u64, u64))> {
    (
        0..KINDS.len(),
        1usize..40,
        1usize..40,
        prop_oneof![Just(0usize), Just(16), Just(32)],
        1usize..9,
        0usize..4,
        0u32..3,
        1usize..4,
        any::<bool>(),
        any::<u64>(),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(k, width, height, tile, rows, codec, pred, bands, planar, seed, win)| {
                let kind = KINDS[k];
                let float = matches!(k, 5 | 6);
                let pred = if pred == 2 && !float { 1 } else { pred + 1 };
                let codec = ["NONE", "DEFLATE", "ZSTD", "LZW"][codec];
                let mut opts = vec![
                    format!("COMPRESS={codec}"),
                    format!("INTERLEAVE={}", if planar { "BAND" } else { "PIXEL" }),
                ];
                if codec != "NONE" {
                    opts.push(format!("PREDICTOR={pred}"));
                }
                if tile > 0 {
                    opts.extend([
                        "TILED=YES".into(),
                        format!("BLOCKXSIZE={tile}"),
                        format!("BLOCKYSIZE={tile}"),
                    ]);
                } else {
                    opts.push(format!("BLOCKYSIZE={rows}"));
                }
                let spec = Spec {
                    kind,
                    width,
                    height,
                    bands,
                    opts,
                    nodata: None,
                    seed,
                };
                (spec, win)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_rasters_match_gdal((spec, (a, b, c, d)) in spec_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tif");
        write(&path, &spec);
        let (w, h) = (spec.width as u64, spec.height as u64);
        let x = a % w;
        let y = b % h;
        let win = Window { x, y, w: 1 + c % (w - x), h: 1 + d % (h - y) };
        let bands: Vec<usize> = (1..=spec.bands).collect();
        prop_assert!(gdal_read(&path, spec.kind, &bands, win) == native_read(&path, &bands, win, None));
    }
}

/// Decodes every pixel of every band of `bytes`, whatever the outcome.
fn decode_all(bytes: Vec<u8>) -> Result<Vec<u8>, TiffError> {
    let t = Tiff::new(bytes)?;
    let l = t.layout().clone();
    let samples: Vec<usize> = (0..l.samples).collect();
    let fill = vec![vec![0u8; l.kind.size()]; l.samples];
    let win = Window {
        x: 0,
        y: 0,
        w: l.width.min(4096),
        h: l.height.min(4096),
    };
    let mut out = vec![0u8; (win.w * win.h) as usize * l.kind.size() * l.samples];
    t.read_window(&samples, win, &fill, &mut out)?;
    Ok(out)
}

fn file(spec: &Spec) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.tif");
    write(&path, spec);
    std::fs::read(path).unwrap()
}

fn spec(kind: usize, opts: &[&str], width: usize, height: usize) -> Spec {
    Spec {
        kind: KINDS[kind],
        width,
        height,
        bands: 2,
        opts: opts.iter().map(|s| s.to_string()).collect(),
        nodata: None,
        seed: 5,
    }
}

#[test]
fn random_corruption_never_panics() {
    let files = [
        file(&spec(
            5,
            &["COMPRESS=DEFLATE", "PREDICTOR=3", "TILED=YES"],
            40,
            33,
        )),
        file(&spec(
            2,
            &[
                "COMPRESS=ZSTD",
                "PREDICTOR=2",
                "ENDIANNESS=BIG",
                "BLOCKYSIZE=4",
            ],
            23,
            17,
        )),
        file(&spec(
            6,
            &["BIGTIFF=YES", "INTERLEAVE=BAND", "TILED=YES"],
            20,
            20,
        )),
        file(&spec(0, &["COMPRESS=DEFLATE", "BLOCKYSIZE=3"], 31, 9)),
        file(&spec(
            6,
            &["COMPRESS=LZW", "PREDICTOR=3", "TILED=YES", "BLOCKXSIZE=16"],
            37,
            20,
        )),
    ];
    let mut st = 99u64;
    let mut errors = 0;
    for good in &files {
        assert!(decode_all(good.clone()).is_ok());
        for i in 0..400 {
            let mut bad = good.clone();
            if i % 10 == 0 {
                bad.truncate((next(&mut st) % good.len() as u64) as usize);
            } else {
                // Mostly the header and directory (GDAL writes it first), sometimes the data.
                let span = if i % 3 == 0 {
                    bad.len()
                } else {
                    bad.len().min(512)
                };
                for _ in 0..1 + next(&mut st) % 4 {
                    let at = (next(&mut st) % span as u64) as usize;
                    bad[at] = next(&mut st) as u8;
                }
            }
            errors += usize::from(decode_all(bad).is_err());
        }
    }
    // Not every flipped byte matters (a tag GDAL writes and we ignore, raw pixels).
    assert!(errors > 200, "only {errors} corruptions were errors");
}

/// Offset and position of the value field of `tag` in the first directory of a classic
/// little-endian TIFF.
fn entry(bytes: &[u8], tag: u16) -> usize {
    let ifd = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes(bytes[ifd..ifd + 2].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes(bytes[e..e + 2].try_into().unwrap()) == tag)
        .map(|e| e + 8)
        .unwrap_or_else(|| panic!("no tag {tag}"))
}

fn set_long(bytes: &mut [u8], tag: u16, v: u32) {
    let at = entry(bytes, tag);
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_long(bytes: &[u8], tag: u16) -> u32 {
    let at = entry(bytes, tag);
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn expect_err(bytes: Vec<u8>, what: &str) {
    match decode_all(bytes) {
        Err(e) => eprintln!("{what}: {e}"),
        Ok(_) => panic!("{what}: decoded without an error"),
    }
}

#[test]
fn wrong_sizes_and_offsets_are_errors() {
    // One 16x16 tile of one band: the offset and byte count sit inline in their entries.
    let one = |opts: &[&str]| {
        let mut s = spec(5, opts, 16, 16);
        s.bands = 1;
        file(&s)
    };
    let deflate = one(&[
        "COMPRESS=DEFLATE",
        "PREDICTOR=3",
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
    ]);
    assert!(decode_all(deflate.clone()).is_ok());
    let (off, count) = (get_long(&deflate, 324), get_long(&deflate, 325));

    let mut b = deflate.clone();
    set_long(&mut b, 325, count - 5);
    expect_err(b, "a truncated stream");

    let mut b = deflate.clone();
    set_long(&mut b, 324, deflate.len() as u32 - 2);
    expect_err(b, "a block past the end of the file");

    let mut b = deflate.clone();
    set_long(&mut b, 325, u32::MAX);
    expect_err(b, "a byte count past the end of the file");

    let mut b = deflate.clone();
    set_long(&mut b, 324, 0);
    expect_err(b, "offset 0");

    let mut b = deflate.clone();
    b[off as usize + count as usize / 2] ^= 0x55;
    expect_err(b, "a damaged stream");

    // Well-formed streams of the wrong length.
    let expect = 16 * 16 * 4;
    for len in [expect - 4, expect + 4, 0] {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let raw = vec![7u8; len];
        let mut z = vec![0u8; c.zlib_compress_bound(len)];
        let n = c.zlib_compress(&raw, &mut z).unwrap();
        let mut b = deflate.clone();
        let at = b.len() as u32;
        b.extend_from_slice(&z[..n]);
        set_long(&mut b, 324, at);
        set_long(&mut b, 325, n as u32);
        expect_err(b, &format!("a stream of {len} bytes"));
    }

    let zstd = one(&[
        "COMPRESS=ZSTD",
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
    ]);
    let mut b = zstd.clone();
    set_long(&mut b, 325, get_long(&zstd, 325) - 3);
    expect_err(b, "a truncated ZSTD frame");

    let lzw = one(&[
        "COMPRESS=LZW",
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
    ]);
    assert!(decode_all(lzw.clone()).is_ok());
    let mut b = lzw.clone();
    set_long(&mut b, 325, get_long(&lzw, 325) / 2);
    expect_err(b, "a truncated LZW stream");
    let mut b = lzw.clone();
    let at = get_long(&lzw, 324) as usize;
    b[at..at + 2].copy_from_slice(&[0, 1]);
    expect_err(b, "old-style LZW");

    let raw = one(&["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]);
    let mut b = raw.clone();
    set_long(&mut b, 325, expect as u32 - 4);
    expect_err(b, "an uncompressed block of the wrong size");

    let mut b = raw.clone();
    set_long(&mut b, 256, 0);
    expect_err(b, "width 0");

    let mut b = raw.clone();
    set_long(&mut b, 256, 17);
    expect_err(b, "more tiles than offsets");

    let mut b = raw.clone();
    b[4..8].copy_from_slice(&(raw.len() as u32 + 10).to_le_bytes());
    expect_err(b, "a directory past the end");

    expect_err(raw[..7].to_vec(), "a short header");
    expect_err(
        b"II\x2b\x00\x04\x00\x00\x00".to_vec(),
        "a bad BigTIFF header",
    );
}

/// What libtiff tolerates, the decoder does too, with the same pixels: a byte count larger
/// than the block needs, and tile offsets and byte counts in the strip tags.
#[test]
fn libtiff_tolerances_decode_the_same_pixels() {
    let one = |opts: &[&str]| {
        let mut s = spec(0, opts, 16, 16);
        s.bands = 1;
        file(&s)
    };
    let raw = one(&["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]);
    let want = decode_all(raw.clone()).unwrap();

    // 40 bytes more than the tile needs (there: GDAL stores the tile last, 40 zeros follow).
    let mut b = raw.clone();
    let count = get_long(&raw, 325);
    b.extend_from_slice(&[0; 40]);
    assert!(get_long(&raw, 324) as usize + count as usize + 40 <= b.len());
    set_long(&mut b, 325, count + 40);
    assert_eq!(decode_all(b).unwrap(), want, "an oversized byte count");

    // The tile offset and byte count entries renamed StripOffsets and StripByteCounts.
    let mut b = raw.clone();
    for (from, to) in [(324u16, 273u16), (325, 279)] {
        let at = entry(&b, from) - 8;
        b[at..at + 2].copy_from_slice(&to.to_le_bytes());
    }
    let t = Tiff::new(b.clone()).unwrap();
    assert!(t.layout().tiled);
    assert_eq!(
        decode_all(b).unwrap(),
        want,
        "tile offsets in the strip tags"
    );

    // Old-style LZW is refused when the file is opened, not when a block is read.
    let mut b = one(&[
        "COMPRESS=LZW",
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
    ]);
    let at = get_long(&b, 324) as usize;
    b[at..at + 2].copy_from_slice(&[0, 0x81]);
    match Tiff::new(b) {
        Err(TiffError::Unsupported(why)) => assert!(why.contains("old-style"), "{why}"),
        Err(e) => panic!("old-style LZW: {e}"),
        Ok(_) => panic!("old-style LZW opened"),
    }
}
