//! The decoders against GDAL's view of the file (issue 16): over TIFFs that GDAL writes in
//! every photometric it writes (MINISBLACK, MINISWHITE, RGB, YCbCr under JPEG with its 2x2
//! subsampling, CMYK, PALETTE, with alpha), 1 to 5 samples, contiguous and planar, striped
//! and tiled, 8 to 64 bits (signed 8-bit included), both byte orders, and over hand-patched
//! files (byte counts larger than needed, tile offsets in the strip tags, short and padded
//! last strips, old-style LZW, uncompressed subsampled YCbCr): `--decoder auto` writes the
//! same pixels, nodata and exit code as `--decoder gdal`; `--decoder native` the same, or a
//! one-line refusal at open with exit 3. Where the native decoder cannot read a chunk that
//! GDAL reads, `auto` re-reads it through GDAL and says so in the report and the events.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::{coordinator, read_all, report, resample_cmd, run, same_pixels, stderr};

/// What `--decoder native` must do with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Native {
    /// Read it, every chunk natively, with GDAL's pixels; `auto` reads it natively too.
    Reads,
    /// Read it as `Reads`, but `auto` reads it with GDAL (measured faster: LZW).
    ReadsAutoGdal,
    /// Refuse it at open: exit 3, one line; `auto` reads it with GDAL.
    Refused,
    /// Either of the two (a file that GDAL itself fails on in places).
    Either,
}

/// One run's result, as compared between decoders.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    err: String,
    /// Per output band: pixels, nodata, type name (empty when no output was written).
    bands: Vec<(Vec<f64>, Option<f64>, String)>,
    native_reads: u64,
    fallback_reads: u64,
    done: u64,
    events: String,
}

/// Resamples `input` with `decoder` on `workers` worker processes (0: in the coordinator's
/// own lanes, the same kernel: cheaper, and a check that both paths agree).
fn resample(input: &Path, decoder: &str, workers: &str) -> Outcome {
    let dir = input.parent().unwrap();
    let stem = input.file_stem().unwrap().to_string_lossy();
    let out = dir.join(format!("{stem}-{decoder}.out.tif"));
    let rep = dir.join(format!("{stem}-{decoder}.json"));
    let ev = dir.join(format!("{stem}-{decoder}.events"));
    let o = run(resample_cmd(workers, input, &out)
        .args(["--spare-workers", "0"])
        .args(["--factor", "3", "--chunk-mib", "0.004", "--overwrite"])
        .args(["--max-attempts", "1", "--decoder", decoder])
        .arg("--report")
        .arg(&rep)
        .arg("--events")
        .arg(&ev));
    let mut outcome = Outcome {
        code: o.status.code(),
        err: stderr(&o),
        bands: Vec::new(),
        native_reads: 0,
        fallback_reads: 0,
        done: 0,
        events: std::fs::read_to_string(&ev).unwrap_or_default(),
    };
    if out.exists() {
        let (ds, pixels) = read_all(&out);
        outcome.bands = pixels
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let rb = ds.rasterband(i + 1).unwrap();
                (p, rb.no_data_value(), rb.band_type().name())
            })
            .collect();
    }
    if rep.exists() {
        let t = &report(&rep)["totals"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        outcome.native_reads = n("native_reads");
        outcome.fallback_reads = n("fallback_reads");
        outcome.done = n("done") + n("done_in_process");
    }
    outcome
}

/// `b` wrote what `a` wrote: exit code, and per band the pixels (bit for bit), nodata and type.
fn same(a: &Outcome, b: &Outcome) -> bool {
    a.code == b.code
        && a.bands.len() == b.bands.len()
        && a.bands.iter().zip(&b.bands).all(|(x, y)| {
            same_pixels(&x.0, &y.0) && x.1.map(f64::to_bits) == y.1.map(f64::to_bits) && x.2 == y.2
        })
}

/// Runs the three decoders on `input` and checks them against each other; the failures, as
/// lines (empty: all good).
fn check(input: &Path, native: Native) -> Vec<String> {
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    // `auto`, the default, through a worker process; the references in process.
    let gdal = resample(input, "gdal", "0");
    let auto = resample(input, "auto", "1");
    let nat = resample(input, "native", "0");
    let mut bad = Vec::new();
    if gdal.code == Some(3) || gdal.code.is_none() {
        bad.push(format!("{name}: gdal exit {:?}: {}", gdal.code, gdal.err));
    }
    if !same(&gdal, &auto) {
        bad.push(format!(
            "{name}: auto (exit {:?}) differs from gdal (exit {:?}): {}",
            auto.code, gdal.code, auto.err
        ));
    }
    let refused = nat.code == Some(3)
        && nat.err.contains("--decoder native cannot read")
        && nat.err.lines().count() == 1
        && nat.bands.is_empty();
    let identical = same(&gdal, &nat);
    let ok = match native {
        Native::Reads | Native::ReadsAutoGdal => {
            identical && nat.native_reads == nat.done && nat.done > 0
        }
        Native::Refused => refused,
        Native::Either => identical || refused,
    };
    if !ok {
        bad.push(format!(
            "{name}: native (exit {:?}, {} of {} chunks native) is not {native:?}: {}",
            nat.code, nat.native_reads, nat.done, nat.err
        ));
    }
    match native {
        Native::Reads if auto.native_reads == 0 => {
            bad.push(format!("{name}: auto read nothing natively"))
        }
        Native::Refused | Native::ReadsAutoGdal if auto.native_reads > 0 => bad.push(format!(
            "{name}: auto read {} chunks natively",
            auto.native_reads
        )),
        _ => {}
    }
    bad
}

// ---- sources: random rasters of every type, written as ENVI (raw) files ----

use crate::common::xorshift as next;

const W: usize = 61;
const H: usize = 47;

/// GDAL's type name and its ENVI data type code.
const TYPES: [(&str, u8); 7] = [
    ("Byte", 1),
    ("Int16", 2),
    ("UInt16", 12),
    ("Int32", 3),
    ("UInt32", 13),
    ("Float32", 4),
    ("Float64", 5),
];

/// A W x H raw raster of `bands` bands of type `ty` (band sequential, little-endian), with
/// values spread over the type's range; its path.
fn source(dir: &Path, ty: &str, bands: usize, seed: u64) -> PathBuf {
    let code = TYPES.iter().find(|t| t.0 == ty).unwrap().1;
    let mut st = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = Vec::new();
    for _ in 0..W * H * bands {
        let r = next(&mut st);
        match ty {
            "Byte" => data.push(r as u8),
            "Int16" => data.extend_from_slice(&(r as i16).to_le_bytes()),
            "UInt16" => data.extend_from_slice(&(r as u16).to_le_bytes()),
            "Int32" => data.extend_from_slice(&(r as i32 >> 4).to_le_bytes()),
            "UInt32" => data.extend_from_slice(&(r as u32 >> 4).to_le_bytes()),
            "Float32" => {
                data.extend_from_slice(&((r % 200_000) as f32 / 7.0 - 9000.0).to_le_bytes())
            }
            _ => data.extend_from_slice(&((r % 2_000_000) as f64 / 3.0 - 1e5).to_le_bytes()),
        }
    }
    let path = dir.join(format!("src-{ty}-{bands}-{seed}.bin"));
    std::fs::write(&path, data).unwrap();
    let hdr = format!(
        "ENVI\nsamples = {W}\nlines = {H}\nbands = {bands}\nheader offset = 0\n\
         file type = ENVI Standard\ndata type = {code}\ninterleave = bsq\nbyte order = 0\n"
    );
    std::fs::write(path.with_extension("hdr"), hdr).unwrap();
    path
}

/// A VRT over band 1 of `src` (Byte) with a 256-entry colour table: GDAL writes it as a
/// palette TIFF.
fn paletted(src: &Path) -> PathBuf {
    let entries: String = (0..256)
        .map(|i| {
            format!(
                "<Entry c1=\"{i}\" c2=\"{}\" c3=\"{}\" c4=\"255\"/>",
                255 - i,
                i / 2
            )
        })
        .collect();
    let vrt = format!(
        "<VRTDataset rasterXSize=\"{W}\" rasterYSize=\"{H}\"><VRTRasterBand dataType=\"Byte\" band=\"1\">\
         <ColorInterp>Palette</ColorInterp><ColorTable>{entries}</ColorTable>\
         <SimpleSource><SourceFilename relativeToVRT=\"0\">{}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>\
         </VRTRasterBand></VRTDataset>",
        src.display()
    );
    let path = src.with_extension("vrt");
    std::fs::write(&path, vrt).unwrap();
    path
}

fn translate(src: &Path, dst: &Path, args: &[&str]) {
    let mut c = Command::new("gdal_translate");
    c.arg("-q");
    for a in args {
        // Creation options are given bare ("COMPRESS=LZW"); other arguments with their dash.
        if a.starts_with('-') || !a.contains('=') {
            c.arg(a);
        } else {
            c.args(["-co", a]);
        }
    }
    let o = c
        .arg(src)
        .arg(dst)
        .output()
        .expect("running gdal_translate");
    assert!(
        o.status.success() && dst.exists(),
        "gdal_translate {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One GDAL-written case: source type and bands, gdal_translate arguments, what native does.
struct Case {
    ty: &'static str,
    bands: usize,
    args: Vec<&'static str>,
    native: Native,
}

fn case(ty: &'static str, bands: usize, args: &[&'static str], native: Native) -> Case {
    Case {
        ty,
        bands,
        args: args.to_vec(),
        native,
    }
}

const TILED: [&str; 3] = ["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=16"];

/// The layouts each type is written in: striped or tiled, chunky or planar, both byte
/// orders, with and without compression.
fn layouts(bands: usize) -> Vec<Vec<&'static str>> {
    let mut v = vec![
        vec!["BLOCKYSIZE=7"],
        [&TILED[..], &["ENDIANNESS=BIG", "COMPRESS=DEFLATE"][..]].concat(),
    ];
    if bands > 1 {
        v.push(vec!["INTERLEAVE=BAND", "BLOCKYSIZE=10", "ENDIANNESS=BIG"]);
        v.push([&TILED[..], &["INTERLEAVE=BAND", "COMPRESS=ZSTD"][..]].concat());
    }
    v
}

fn gdal_cases() -> Vec<Case> {
    use Native::*;
    let mut cases = Vec::new();
    // MINISBLACK, every type, 1, 3, 4 and 5 samples, each layout; nodata on some.
    for (i, &(ty, _)) in TYPES.iter().enumerate() {
        for bands in [1, 3 + i % 3] {
            for l in layouts(bands) {
                let mut args = l.clone();
                if i % 2 == 0 && bands == 1 {
                    args.extend(["-a_nodata", "7"]);
                }
                cases.push(case(ty, bands, &args, Reads));
            }
        }
    }
    // LZW: auto prefers GDAL (measured), native reads it.
    cases.push(case(
        "Int16",
        3,
        &["COMPRESS=LZW", "PREDICTOR=2"],
        ReadsAutoGdal,
    ));
    // MINISWHITE: GDAL hands out 8-bit and wider samples unchanged.
    for ty in ["Byte", "UInt16", "Float32"] {
        cases.push(case(
            ty,
            1,
            &["PHOTOMETRIC=MINISWHITE", "BLOCKYSIZE=9"],
            Reads,
        ));
    }
    // RGB, with and without alpha (GDAL's mask), chunky and planar, 8 and 16 bits.
    for l in layouts(3) {
        cases.push(case(
            "Byte",
            3,
            &[&["PHOTOMETRIC=RGB"][..], &l[..]].concat(),
            Reads,
        ));
        cases.push(case(
            "Byte",
            4,
            &[&["PHOTOMETRIC=RGB", "ALPHA=YES"][..], &l[..]].concat(),
            Reads,
        ));
    }
    cases.push(case(
        "UInt16",
        3,
        &["PHOTOMETRIC=RGB", "ENDIANNESS=BIG"],
        Reads,
    ));
    cases.push(case("Byte", 2, &["ALPHA=YES", "INTERLEAVE=BAND"], Reads));
    // YCbCr: under JPEG only (GDAL's rule), subsampled 2x2; striped and tiled.
    cases.push(case(
        "Byte",
        3,
        &["COMPRESS=JPEG", "PHOTOMETRIC=YCBCR", "BLOCKYSIZE=16"],
        Refused,
    ));
    cases.push(case(
        "Byte",
        3,
        &[&["COMPRESS=JPEG", "PHOTOMETRIC=YCBCR"][..], &TILED[..]].concat(),
        Refused,
    ));
    cases.push(case(
        "Byte",
        3,
        &["COMPRESS=JPEG", "BLOCKYSIZE=16"],
        Refused,
    ));
    // CMYK (SEPARATED): GDAL exposes 8-bit CMYK as RGBA, 16-bit as the samples.
    for l in layouts(4) {
        cases.push(case(
            "Byte",
            4,
            &[&["PHOTOMETRIC=CMYK"][..], &l[..]].concat(),
            Refused,
        ));
    }
    cases.push(case("UInt16", 4, &["PHOTOMETRIC=CMYK"], Refused));
    // Signed bytes: GDAL 3.6 shows Byte with PIXELTYPE=SIGNEDBYTE; the directory declares
    // them signed (SampleFormat 2), so both decoders read them, as Int8.
    cases.push(case("Byte", 1, &["PIXELTYPE=SIGNEDBYTE"], Reads));
    cases.push(case(
        "Byte",
        3,
        &[&["PIXELTYPE=SIGNEDBYTE", "INTERLEAVE=BAND"][..], &TILED[..]].concat(),
        Reads,
    ));
    cases
}

#[test]
fn auto_matches_gdal_on_every_photometric_gdal_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    let cases = gdal_cases();
    for (n, c) in cases.iter().enumerate() {
        let src = source(dir.path(), c.ty, c.bands, n as u64 + 1);
        let dst = dir.path().join(format!("c{n}.tif"));
        translate(&src, &dst, &c.args);
        let found = check(&dst, c.native);
        if !found.is_empty() {
            bad.push(format!("case {n} ({} x{} {:?}):", c.ty, c.bands, c.args));
            bad.extend(found);
        }
    }
    // Palette indexes: GDAL hands them out as they are (the colour table beside them).
    for (i, args) in [vec!["BLOCKYSIZE=5"], TILED.to_vec()]
        .into_iter()
        .enumerate()
    {
        let src = source(dir.path(), "Byte", 1, 900 + i as u64);
        let dst = dir.path().join(format!("palette{i}.tif"));
        translate(&paletted(&src), &dst, &args);
        bad.extend(check(&dst, Native::Reads));
    }
    assert_eq!(cases.len(), 66, "the matrix changed: update the README");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ---- hand-made files: what other writers do ----

/// A classic little-endian TIFF: `tags` (tag, values; SHORT when every value fits and the
/// tag allows it, else LONG) plus the blocks' `offsets_tag` and `counts_tag`, with `blocks`
/// stored in order (each followed by `pad` zero bytes) and `counts` declared for them.
struct Hand {
    tags: Vec<(u16, Vec<u32>)>,
    blocks: Vec<Vec<u8>>,
    counts: Vec<u32>,
    pad: usize,
    offsets_tag: u16,
    counts_tag: u16,
}

impl Hand {
    /// `blocks` stored as they are, each declaring its own length, in the strip tags (also
    /// for tiles: libtiff and GDAL accept their offsets there).
    fn exact(tags: Vec<(u16, Vec<u32>)>, blocks: Vec<Vec<u8>>) -> Hand {
        Hand {
            tags,
            counts: blocks.iter().map(|b| b.len() as u32).collect(),
            blocks,
            pad: 0,
            offsets_tag: 273,
            counts_tag: 279,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"II\x2a\x00\0\0\0\0".to_vec();
        let mut offsets = Vec::new();
        for b in &self.blocks {
            offsets.push(out.len() as u32);
            out.extend_from_slice(b);
            out.resize(out.len() + self.pad, 0);
        }
        let mut tags = self.tags.clone();
        tags.push((self.offsets_tag, offsets));
        tags.push((self.counts_tag, self.counts.clone()));
        tags.sort_by_key(|t| t.0);
        // Out-of-line values first, then the directory.
        let mut entries = Vec::new();
        for (tag, vals) in &tags {
            let short = vals.iter().all(|&v| v <= 0xffff) && ![273, 279, 324, 325].contains(tag);
            let mut raw = Vec::new();
            for &v in vals {
                if short {
                    raw.extend_from_slice(&(v as u16).to_le_bytes());
                } else {
                    raw.extend_from_slice(&v.to_le_bytes());
                }
            }
            let field = if raw.len() <= 4 {
                raw.resize(4, 0);
                raw
            } else {
                if out.len() % 2 == 1 {
                    out.push(0);
                }
                let at = out.len() as u32;
                out.extend_from_slice(&raw);
                at.to_le_bytes().to_vec()
            };
            entries.push((*tag, if short { 3u16 } else { 4 }, vals.len() as u32, field));
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let ifd = out.len() as u32;
        out[4..8].copy_from_slice(&ifd.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, typ, count, field) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&typ.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&field);
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }
}

/// Byte samples, `spp` per pixel, chunky: the common tags.
fn byte_tags(
    w: usize,
    h: usize,
    spp: usize,
    photometric: u32,
    compression: u32,
) -> Vec<(u16, Vec<u32>)> {
    vec![
        (256, vec![w as u32]),
        (257, vec![h as u32]),
        (258, vec![8; spp]),
        (259, vec![compression]),
        (262, vec![photometric]),
        (277, vec![spp as u32]),
        (284, vec![1]),
    ]
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut st = seed | 1;
    (0..n).map(|_| next(&mut st) as u8).collect()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut out = vec![0u8; enc.zlib_compress_bound(data.len())];
    let n = enc.zlib_compress(data, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Strips of `rps` rows of `pixels` (chunky rows of `row` bytes): each strip's bytes.
fn strips(pixels: &[u8], row: usize, rps: usize) -> Vec<Vec<u8>> {
    pixels.chunks(row * rps).map(<[u8]>::to_vec).collect()
}

/// Tiles `tw` x `th` of chunky `pixels` (`w` x `h`, `spp` bytes a pixel), edge tiles padded.
fn tiles(pixels: &[u8], w: usize, h: usize, spp: usize, tw: usize, th: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ty in 0..h.div_ceil(th) {
        for tx in 0..w.div_ceil(tw) {
            let mut t = vec![0u8; tw * th * spp];
            for r in 0..th {
                let y = ty * th + r;
                if y >= h {
                    break;
                }
                let x0 = tx * tw;
                let n = tw.min(w - x0) * spp;
                let src = &pixels[(y * w + x0) * spp..][..n];
                t[r * tw * spp..][..n].copy_from_slice(src);
            }
            out.push(t);
        }
    }
    out
}

fn hand_files(dir: &Path) -> Vec<(PathBuf, Native)> {
    let (w, h, spp) = (53usize, 41usize, 3usize);
    let pixels = random_bytes(w * h * spp, 5);
    let row = w * spp;
    let rps = 6;
    let plain = strips(&pixels, row, rps);
    let strip_tags = |photometric, compression| {
        let mut t = byte_tags(w, h, spp, photometric, compression);
        t.push((278, vec![rps as u32]));
        t
    };
    let mut files = Vec::new();
    let mut save = |name: &str, hand: Hand, native: Native| {
        let p = dir.join(name);
        std::fs::write(&p, hand.bytes()).unwrap();
        files.push((p, native));
    };
    // Every strip declares 37 bytes more than it needs (they are there, zeros).
    save(
        "oversized.tif",
        Hand {
            tags: strip_tags(2, 1),
            counts: plain.iter().map(|s| s.len() as u32 + 37).collect(),
            blocks: plain.clone(),
            pad: 37,
            offsets_tag: 273,
            counts_tag: 279,
        },
        Native::Reads,
    );
    // The last strip stored whole (rps rows, the ones past the image zero), uncompressed
    // and DEFLATE-compressed.
    let mut padded = plain.clone();
    padded.last_mut().unwrap().resize(row * rps, 0);
    save(
        "padded-last.tif",
        Hand::exact(strip_tags(2, 1), padded.clone()),
        Native::Reads,
    );
    let z: Vec<Vec<u8>> = padded.iter().map(|s| zlib(s)).collect();
    save(
        "padded-last-deflate.tif",
        Hand::exact(strip_tags(2, 8), z),
        Native::Reads,
    );
    // A short last strip (fewer rows than RowsPerStrip), as most writers store it.
    let short: Vec<Vec<u8>> = plain.iter().map(|s| zlib(s)).collect();
    save(
        "short-last-deflate.tif",
        Hand::exact(strip_tags(1, 8), short),
        Native::Reads,
    );
    // A last strip cut short of what it needs: GDAL fails those rows, so must auto.
    let mut cut = plain.clone();
    let last = cut.last_mut().unwrap();
    last.truncate(last.len() / 2);
    save(
        "truncated-last.tif",
        Hand::exact(strip_tags(1, 1), cut),
        Native::Either,
    );
    // Tiles whose offsets and byte counts sit in the strip tags.
    for (name, compression) in [
        ("tiles-in-strip-tags.tif", 1),
        ("tiles-in-strip-tags-deflate.tif", 8),
    ] {
        let mut t = tiles(&pixels, w, h, spp, 16, 16);
        if compression == 8 {
            t = t.iter().map(|b| zlib(b)).collect();
        }
        let mut tags = byte_tags(w, h, spp, 2, compression);
        tags.extend([(322, vec![16]), (323, vec![16])]);
        save(name, Hand::exact(tags, t), Native::Reads);
    }
    // Old-style (pre-TIFF 5.0) LZW: LSB-first codes, as libtiff still reads them.
    let one_band = random_bytes(w * h, 9);
    let old: Vec<Vec<u8>> = strips(&one_band, w, rps)
        .iter()
        .map(|s| {
            weezl::encode::Encoder::new(weezl::BitOrder::Lsb, 8)
                .encode(s)
                .unwrap()
        })
        .collect();
    assert!(
        old.iter().all(|s| s[0] == 0 && s[1] & 1 == 1),
        "not old-style LZW"
    );
    let mut tags = byte_tags(w, h, 1, 1, 5);
    tags.push((278, vec![rps as u32]));
    save("old-lzw.tif", Hand::exact(tags, old), Native::Refused);
    // Uncompressed YCbCr subsampled 2x1: units of Y0 Y1 Cb Cr per two pixels.
    let (yw, yh, yrps) = (40usize, 30usize, 4usize);
    let units = random_bytes(yw / 2 * 4 * yh, 13);
    let ycc = strips(&units, yw / 2 * 4, yrps);
    let mut tags = byte_tags(yw, yh, 3, 6, 1);
    tags.extend([(278, vec![yrps as u32]), (530, vec![2, 1])]);
    save("ycbcr-2x1.tif", Hand::exact(tags, ycc), Native::Refused);
    files
}

#[test]
fn auto_matches_gdal_on_hand_made_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for (path, native) in hand_files(dir.path()) {
        bad.extend(check(&path, native));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A DEFLATE strip whose stream holds more rows than the strip: libtiff reads what it
/// needs, the native decoder refuses the block. `auto` re-reads that chunk through GDAL in
/// the same worker: GDAL's pixels, exit 0, counted in the report and named in the events.
#[test]
fn auto_rereads_a_chunk_the_native_decoder_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h, rps) = (200usize, 160usize, 8usize);
    let pixels = random_bytes(w * h, 21);
    let mut s = strips(&pixels, w, rps);
    // Strip 2's stream carries 3 extra rows (of zeros: GDAL 3.6 reads what it needs of
    // those; past a strip of random bytes it reads the strip as zeros, without an error).
    s[2].extend_from_slice(&vec![0; 3 * w]);
    let z: Vec<Vec<u8>> = s.iter().map(|b| zlib(b)).collect();
    let mut tags = byte_tags(w, h, 1, 1, 8);
    tags.push((278, vec![rps as u32]));
    let path = dir.path().join("long-stream.tif");
    let hand = Hand {
        tags,
        counts: z.iter().map(|b| b.len() as u32).collect(),
        blocks: z,
        pad: 0,
        offsets_tag: 273,
        counts_tag: 279,
    };
    std::fs::write(&path, hand.bytes()).unwrap();
    let gdal = resample(&path, "gdal", "1");
    let auto = resample(&path, "auto", "1");
    assert_eq!(gdal.code, Some(0), "{}", gdal.err);
    assert!(same(&gdal, &auto), "auto: {:?} {}", auto.code, auto.err);
    assert!(auto.fallback_reads >= 1, "{auto:?}");
    assert!(
        auto.native_reads >= 1 && auto.native_reads + auto.fallback_reads == auto.done,
        "{auto:?}"
    );
    let fallbacks = auto
        .events
        .lines()
        .filter(|l| l.contains(r#""event":"chunk_read_fallback""#))
        .count() as u64;
    assert_eq!(fallbacks, auto.fallback_reads, "{}", auto.events);
    // `native` has no fallback: the chunk fails (quarantined, exit 5), never wrong pixels.
    let nat = resample(&path, "native", "1");
    assert_eq!(nat.code, Some(5), "{}", nat.err);
}

/// `coordinator plan` prints the decision table's row.
#[test]
fn plan_prints_the_row_that_decides() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |input: &Path| {
        let o = run(coordinator().arg("plan").arg(input).args(["--factor", "3"]));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("decoder").map(|r| r.trim().to_string()))
            .unwrap()
    };
    let cmyk = dir.path().join("cmyk.tif");
    translate(
        &source(dir.path(), "Byte", 4, 1),
        &cmyk,
        &["PHOTOMETRIC=CMYK"],
    );
    let p = plan(&cmyk);
    assert!(p.starts_with("gdal: photometric SEPARATED (CMYK)"), "{p}");
    let ycc = dir.path().join("ycc.tif");
    translate(
        &source(dir.path(), "Byte", 3, 2),
        &ycc,
        &["PHOTOMETRIC=YCBCR", "COMPRESS=JPEG"],
    );
    let p = plan(&ycc);
    assert!(p.starts_with("gdal: ") && p.contains("JPEG"), "{p}");
    let s8 = dir.path().join("s8.tif");
    translate(
        &source(dir.path(), "Byte", 1, 3),
        &s8,
        &["PIXELTYPE=SIGNEDBYTE"],
    );
    // Signed bytes that the directory declares signed: both decoders read them as signed.
    let p = plan(&s8);
    assert!(p.starts_with("native: ") && p.contains("Int8"), "{p}");
    let mw = dir.path().join("mw.tif");
    translate(
        &source(dir.path(), "UInt16", 1, 4),
        &mw,
        &["PHOTOMETRIC=MINISWHITE", "COMPRESS=DEFLATE"],
    );
    let p = plan(&mw);
    assert!(p.starts_with("native: "), "{p}");
}
