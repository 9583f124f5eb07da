//! Test rasters written with GDAL (not with this crate) and windows read back with GDAL,
//! to compare the native decoder against.
#![allow(dead_code)]

use std::path::Path;

use gdal::{
    raster::{Buffer, GdalType, RasterCreationOptions},
    Dataset, DriverManager,
};
use tiffdec::{SampleKind, Tiff, Window};

pub const KINDS: [SampleKind; 8] = [
    SampleKind::U8,
    SampleKind::I16,
    SampleKind::U16,
    SampleKind::I32,
    SampleKind::U32,
    SampleKind::F32,
    SampleKind::F64,
    // Last: tests pick kinds by index.
    SampleKind::I8,
];

/// What to write.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: SampleKind,
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    /// GTiff creation options.
    pub opts: Vec<String>,
    pub nodata: Option<f64>,
    pub seed: u64,
}

pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Random samples, half of them smooth (so that predictors see runs) and half noise.
fn data(len: usize, size: usize, seed: u64) -> Vec<u8> {
    let mut st = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len * size);
    for i in 0..len {
        let r = next(&mut st);
        let v = if r & 1 == 0 {
            (i as u64 / 3).wrapping_mul(0x0101_0101_0101_0101)
        } else {
            r
        };
        out.extend_from_slice(&v.to_le_bytes()[..size]);
    }
    out
}

pub fn write(path: &Path, spec: &Spec) {
    match spec.kind {
        SampleKind::U8 => write_as::<u8>(path, spec),
        // GDAL 3.6 writes signed bytes as Byte with PIXELTYPE=SIGNEDBYTE (SampleFormat 2);
        // the bytes written are the samples' two's complement.
        SampleKind::I8 => {
            let mut signed = spec.clone();
            signed.opts.push("PIXELTYPE=SIGNEDBYTE".into());
            write_as::<u8>(path, &signed)
        }
        SampleKind::I16 => write_as::<i16>(path, spec),
        SampleKind::U16 => write_as::<u16>(path, spec),
        SampleKind::I32 => write_as::<i32>(path, spec),
        SampleKind::U32 => write_as::<u32>(path, spec),
        SampleKind::F32 => write_as::<f32>(path, spec),
        SampleKind::F64 => write_as::<f64>(path, spec),
    }
}

fn write_as<T: GdalType + bytemuck::Pod + Copy>(path: &Path, spec: &Spec) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = RasterCreationOptions::from_iter(spec.opts.iter().map(String::as_str));
    let ds = driver
        .create_with_band_type_with_options::<T, _>(
            path,
            spec.width,
            spec.height,
            spec.bands,
            &opts,
        )
        .unwrap_or_else(|e| panic!("creating {spec:?}: {e}"));
    let size = std::mem::size_of::<T>();
    for b in 1..=spec.bands {
        let bytes = data(
            spec.width * spec.height,
            size,
            spec.seed.wrapping_mul(31).wrapping_add(b as u64),
        );
        let vals: Vec<T> = bytes
            .chunks_exact(size)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        let mut band = ds.rasterband(b).unwrap();
        if let Some(nd) = spec.nodata {
            band.set_no_data_value(Some(nd)).unwrap();
        }
        let mut buf = Buffer::new((spec.width, spec.height), vals);
        band.write((0, 0), (spec.width, spec.height), &mut buf)
            .unwrap();
    }
}

/// GDAL's bytes for `win` of `bands` (1-based), band after band.
pub fn gdal_read(path: &Path, kind: SampleKind, bands: &[usize], win: Window) -> Vec<u8> {
    let ds = Dataset::open(path).unwrap();
    let mut out = Vec::new();
    for &b in bands {
        out.extend(match kind {
            // GDAL 3.6 shows signed bytes as Byte: reading them as Byte gives the stored bytes.
            SampleKind::U8 | SampleKind::I8 => read_as::<u8>(&ds, b, win),
            SampleKind::I16 => read_as::<i16>(&ds, b, win),
            SampleKind::U16 => read_as::<u16>(&ds, b, win),
            SampleKind::I32 => read_as::<i32>(&ds, b, win),
            SampleKind::U32 => read_as::<u32>(&ds, b, win),
            SampleKind::F32 => read_as::<f32>(&ds, b, win),
            SampleKind::F64 => read_as::<f64>(&ds, b, win),
        });
    }
    out
}

fn read_as<T: GdalType + bytemuck::Pod + Copy + Default>(
    ds: &Dataset,
    band: usize,
    win: Window,
) -> Vec<u8> {
    let size = (win.w as usize, win.h as usize);
    let mut buf = vec![T::default(); size.0 * size.1];
    ds.rasterband(band)
        .unwrap()
        .read_into_slice((win.x as isize, win.y as isize), size, size, &mut buf, None)
        .unwrap();
    bytemuck::cast_slice(&buf).to_vec()
}

/// The native decoder's bytes for the same read (zeros for sparse blocks unless `fill`).
pub fn native_read(path: &Path, bands: &[usize], win: Window, fill: Option<f64>) -> Vec<u8> {
    let t = Tiff::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let kind = t.layout().kind;
    let samples: Vec<usize> = bands.iter().map(|b| b - 1).collect();
    let fills = vec![kind.encode(fill.unwrap_or(0.0)).unwrap(); bands.len()];
    let mut out = vec![0u8; (win.w * win.h) as usize * kind.size() * bands.len()];
    t.read_window(&samples, win, &fills, &mut out)
        .unwrap_or_else(|e| panic!("reading {win:?} of {}: {e}", path.display()));
    out
}

/// A random window inside a `w x h` raster.
pub fn window(st: &mut u64, w: usize, h: usize) -> Window {
    let x = next(st) % w as u64;
    let y = next(st) % h as u64;
    let ww = 1 + next(st) % (w as u64 - x);
    let hh = 1 + next(st) % (h as u64 - y);
    Window { x, y, w: ww, h: hh }
}
