//! Reading a window of selected bands straight into a slot's input region: with GDAL, or
//! with the native decoder ([`NativeReader`]) on local GeoTIFFs it supports.

use std::path::Path;

use crate::{
    choice::{self, BandView, GdalView},
    types::{SampleType, Window},
};
use gdal::{raster::GdalType, Dataset, Metadata};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("band {band}: reading window {x},{y} {w}x{h}: {source}")]
    Gdal {
        band: usize,
        x: u64,
        y: u64,
        w: u64,
        h: u64,
        #[source]
        source: gdal::errors::GdalError,
    },
    #[error("band {band}: reading its mask at window {x},{y} {w}x{h}: {source}")]
    Mask {
        band: usize,
        x: u64,
        y: u64,
        w: u64,
        h: u64,
        #[source]
        source: gdal::errors::GdalError,
    },
    #[error("native decoder: reading window {x},{y} {w}x{h}: {source}")]
    Native {
        x: u64,
        y: u64,
        w: u64,
        h: u64,
        #[source]
        source: tiffdec::TiffError,
    },
    #[error("slot region of {have} bytes cannot hold {need} bytes")]
    TooSmall { have: usize, need: usize },
    #[error("slot region is misaligned for {0}")]
    Misaligned(SampleType),
}

/// Reads `win` of each band in `bands` (1-based) into `dst`, band after band, as `sample`.
pub fn read_window(
    ds: &Dataset,
    bands: &[usize],
    win: Window,
    sample: SampleType,
    dst: &mut [u8],
) -> Result<(), ReadError> {
    let band_bytes = (win.pixels() * sample.size()) as usize;
    let need = band_bytes * bands.len();
    if dst.len() < need {
        return Err(ReadError::TooSmall {
            have: dst.len(),
            need,
        });
    }
    for (&band, part) in bands.iter().zip(dst.chunks_exact_mut(band_bytes.max(1))) {
        let res = match sample {
            SampleType::U8 => read_as::<u8>(ds, band, win, part),
            SampleType::I16 => read_as::<i16>(ds, band, win, part),
            SampleType::U16 => read_as::<u16>(ds, band, win, part),
            SampleType::I32 => read_as::<i32>(ds, band, win, part),
            SampleType::U32 => read_as::<u32>(ds, band, win, part),
            SampleType::F32 => read_as::<f32>(ds, band, win, part),
            SampleType::F64 => read_as::<f64>(ds, band, win, part),
        };
        match res {
            Ok(()) => {}
            Err(None) => return Err(ReadError::Misaligned(sample)),
            Err(Some(source)) => {
                return Err(ReadError::Gdal {
                    band,
                    x: win.x,
                    y: win.y,
                    w: win.w,
                    h: win.h,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Reads `win` of band `band`'s GDAL mask (0 invalid, anything else valid; an alpha band
/// serves as the mask when GDAL says so) into `dst`, `win.w x win.h` bytes.
pub fn read_mask(ds: &Dataset, band: usize, win: Window, dst: &mut [u8]) -> Result<(), ReadError> {
    let err = |source| ReadError::Mask {
        band,
        x: win.x,
        y: win.y,
        w: win.w,
        h: win.h,
        source,
    };
    let rb = ds.rasterband(band).map_err(err)?;
    let mb = rb.open_mask_band().map_err(err)?;
    let size = (win.w as usize, win.h as usize);
    mb.read_into_slice::<u8>((win.x as isize, win.y as isize), size, size, dst, None)
        .map_err(err)
}

fn read_as<T: GdalType + bytemuck::Pod>(
    ds: &Dataset,
    band: usize,
    win: Window,
    part: &mut [u8],
) -> Result<(), Option<gdal::errors::GdalError>> {
    let buf: &mut [T] = bytemuck::try_cast_slice_mut(part).map_err(|_| None)?;
    let rb = ds.rasterband(band).map_err(Some)?;
    let size = (win.w as usize, win.h as usize);
    rb.read_into_slice((win.x as isize, win.y as isize), size, size, buf, None)
        .map_err(Some)
}

/// What GDAL exposes of `ds`: driver, size, and per band its type, colour interpretation
/// and `IMAGE_STRUCTURE` items (see [`choice::native_refusal`]).
pub fn gdal_view(ds: &Dataset) -> Result<GdalView, String> {
    let structure = |key: &str| ds.metadata_item(key, "IMAGE_STRUCTURE");
    let (w, h) = ds.raster_size();
    let bands = (1..=ds.raster_count())
        .map(|b| {
            let rb = ds.rasterband(b).map_err(|e| format!("band {b}: {e}"))?;
            Ok(BandView {
                data_type: rb.band_type().name(),
                color: rb.color_interpretation().name(),
                pixel_type: rb.metadata_item("PIXELTYPE", "IMAGE_STRUCTURE"),
                nbits: rb.metadata_item("NBITS", "IMAGE_STRUCTURE"),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(GdalView {
        driver: ds.driver().short_name(),
        width: w as u64,
        height: h as u64,
        bands,
        compression: structure("COMPRESSION"),
        source_color_space: structure("SOURCE_COLOR_SPACE"),
    })
}

/// The native decoder (`tiffdec`) on a local GeoTIFF whose layout it supports and whose
/// directory agrees with GDAL's view of the raster; decided once, at open.
pub struct NativeReader {
    tiff: tiffdec::Tiff,
    sample: SampleType,
    /// 0-based samples of the selected bands.
    samples: Vec<usize>,
    /// Per selected band: what a sparse block reads as (GDAL fills nodata, else zeros).
    fill: Vec<Vec<u8>>,
}

impl NativeReader {
    /// The reader, or why the native decoder cannot read `path` as GDAL does (`ds`).
    pub fn open(
        path: &Path,
        ds: &Dataset,
        bands: &[usize],
        nodata: &[Option<f64>],
    ) -> Result<NativeReader, String> {
        if path.to_string_lossy().starts_with("/vsi") {
            return Err("a GDAL virtual file system path".into());
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("not a local file: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let view = gdal_view(ds)?;
        if let Some(why) = choice::driver_refusal(&view) {
            return Err(why);
        }
        let tiff = tiffdec::Tiff::open(path).map_err(|e| e.to_string())?;
        let l = tiff.layout();
        let sample = match l.kind {
            tiffdec::SampleKind::U8 => SampleType::U8,
            tiffdec::SampleKind::I16 => SampleType::I16,
            tiffdec::SampleKind::U16 => SampleType::U16,
            tiffdec::SampleKind::I32 => SampleType::I32,
            tiffdec::SampleKind::U32 => SampleType::U32,
            tiffdec::SampleKind::F32 => SampleType::F32,
            tiffdec::SampleKind::F64 => SampleType::F64,
        };
        if let Some(why) = choice::native_refusal(l, sample, &view) {
            return Err(why);
        }
        let fill = nodata
            .iter()
            .map(|nd| {
                l.kind
                    .encode(nd.unwrap_or(0.0))
                    .ok_or_else(|| format!("nodata {nd:?} is not a {sample} value (sparse blocks)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NativeReader {
            samples: bands.iter().map(|&b| b - 1).collect(),
            tiff,
            sample,
            fill,
        })
    }

    /// The file's layout as the native decoder parsed it.
    pub fn layout(&self) -> &tiffdec::Layout {
        self.tiff.layout()
    }

    /// The sample type the file stores (a chunk asking for another one goes to GDAL).
    pub fn sample(&self) -> SampleType {
        self.sample
    }

    /// Reads `win` of the selected bands into `dst`, band after band, as GDAL would.
    pub fn read_window(&self, win: Window, dst: &mut [u8]) -> Result<(), ReadError> {
        let w = tiffdec::Window {
            x: win.x,
            y: win.y,
            w: win.w,
            h: win.h,
        };
        self.tiff
            .read_window(&self.samples, w, &self.fill, dst)
            .map_err(|source| ReadError::Native {
                x: win.x,
                y: win.y,
                w: win.w,
                h: win.h,
                source,
            })
    }
}
