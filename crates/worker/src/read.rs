//! Reading a window of selected bands straight into a slot's input region: with GDAL, or
//! with the native decoder ([`NativeReader`]) on local GeoTIFFs it supports.

use std::path::Path;

use crate::{
    choice::{self, BandView, GdalView},
    types::{SampleType, Window},
};
use gdal::{
    raster::{GdalType, RasterBand},
    Dataset, Metadata,
};

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

/// How GDAL shows a band of signed bytes (TIFF SampleFormat 2, 8 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedByteView {
    /// GDAL 3.6: a Byte band with `PIXELTYPE=SIGNEDBYTE` in its IMAGE_STRUCTURE metadata.
    /// GDAL's arithmetic on it (a read as another type) is unsigned: read as Byte, the bytes
    /// are the samples' two's complement.
    ByteSigned,
    /// GDAL >= 3.7: an Int8 band. The bindings (built against 3.6) have no Int8 buffer
    /// type: it is read as Int16, which GDAL converts exactly, then narrowed.
    Int8,
}

/// Whether band `rb` holds signed bytes, and as which of GDAL's two views; decided at run
/// time from the GDAL that runs, whichever it was built against.
pub fn signed_byte_view(rb: &gdal::raster::RasterBand<'_>) -> Option<SignedByteView> {
    use gdal::{raster::GdalDataType, Metadata};
    match rb.band_type() {
        GdalDataType::UInt8 => (rb.metadata_item("PIXELTYPE", "IMAGE_STRUCTURE").as_deref()
            == Some("SIGNEDBYTE"))
        .then_some(SignedByteView::ByteSigned),
        // A type newer than the bindings' GDAL reads as Unknown: ask the running GDAL.
        GdalDataType::Unknown => (crate::ffi::gdal::band_type_name(rb).as_deref() == Some("Int8"))
            .then_some(SignedByteView::Int8),
        _ => None,
    }
}

/// The sample type of band `rb` as this crate reads it (signed bytes are [`SampleType::I8`]
/// in both GDAL views), or `None` for a type it does not read (complex, 64-bit integers).
pub fn band_sample(rb: &gdal::raster::RasterBand<'_>) -> Option<SampleType> {
    use gdal::raster::GdalDataType;
    if signed_byte_view(rb).is_some() {
        return Some(SampleType::I8);
    }
    Some(match rb.band_type() {
        GdalDataType::UInt8 => SampleType::U8,
        GdalDataType::Int16 => SampleType::I16,
        GdalDataType::UInt16 => SampleType::U16,
        GdalDataType::Int32 => SampleType::I32,
        GdalDataType::UInt32 => SampleType::U32,
        GdalDataType::Float32 => SampleType::F32,
        GdalDataType::Float64 => SampleType::F64,
        _ => return None,
    })
}

/// Reads `win` of each band in `bands` (1-based) into `dst`, band after band, as `sample`.
/// A band of signed bytes is read as signed whatever `sample` is (GDAL 3.6 would convert its
/// bytes as unsigned).
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
        let res = ds
            .rasterband(band)
            .map_err(Some)
            .and_then(|rb| match signed_byte_view(&rb) {
                Some(view) => read_signed(&rb, view, win, sample, part),
                None => read_typed(&rb, win, sample, part),
            });
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

/// `Err(None)`: the slot region is misaligned for the type.
type BandRead = Result<(), Option<gdal::errors::GdalError>>;

/// A band that GDAL converts to `sample` as it reads.
fn read_typed(rb: &RasterBand<'_>, win: Window, sample: SampleType, part: &mut [u8]) -> BandRead {
    match sample {
        SampleType::U8 => read_as::<u8>(rb, win, part),
        // Not a signed band: GDAL's own conversion to Int8 (clamped), through Int16.
        SampleType::I8 => {
            let wide = read_vec::<i16>(rb, win)?;
            for (o, v) in part.iter_mut().zip(wide) {
                *o = v.clamp(i8::MIN.into(), i8::MAX.into()) as i8 as u8;
            }
            Ok(())
        }
        SampleType::I16 => read_as::<i16>(rb, win, part),
        SampleType::U16 => read_as::<u16>(rb, win, part),
        SampleType::I32 => read_as::<i32>(rb, win, part),
        SampleType::U32 => read_as::<u32>(rb, win, part),
        SampleType::F32 => read_as::<f32>(rb, win, part),
        SampleType::F64 => read_as::<f64>(rb, win, part),
    }
}

/// A band of signed bytes, read as signed and converted to `sample` as GDAL converts an Int8
/// band (exact, except negative values into unsigned types, which clamp to 0).
fn read_signed(
    rb: &RasterBand<'_>,
    view: SignedByteView,
    win: Window,
    sample: SampleType,
    part: &mut [u8],
) -> BandRead {
    if (view, sample) == (SignedByteView::ByteSigned, SampleType::I8) {
        // The stored bytes are the samples.
        return read_as::<u8>(rb, win, part);
    }
    let values: Vec<i8> = match view {
        SignedByteView::ByteSigned => read_vec::<u8>(rb, win)?
            .into_iter()
            .map(|b| b as i8)
            .collect(),
        // Int16 holds every Int8 value: the narrowing is exact.
        SignedByteView::Int8 => read_vec::<i16>(rb, win)?
            .into_iter()
            .map(|v| v.clamp(i8::MIN.into(), i8::MAX.into()) as i8)
            .collect(),
    };
    let unsigned = |v: i8| v.max(0) as u8;
    match sample {
        SampleType::I8 => widen(&values, part, |v| v as u8),
        SampleType::U8 => widen(&values, part, unsigned),
        SampleType::I16 => widen(&values, part, i16::from),
        SampleType::U16 => widen(&values, part, |v| u16::from(unsigned(v))),
        SampleType::I32 => widen(&values, part, i32::from),
        SampleType::U32 => widen(&values, part, |v| u32::from(unsigned(v))),
        SampleType::F32 => widen(&values, part, f32::from),
        SampleType::F64 => widen(&values, part, f64::from),
    }
}

fn widen<T: bytemuck::Pod>(values: &[i8], part: &mut [u8], f: impl Fn(i8) -> T) -> BandRead {
    let out: &mut [T] = bytemuck::try_cast_slice_mut(part).map_err(|_| None)?;
    for (o, &v) in out.iter_mut().zip(values) {
        *o = f(v);
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
    rb: &RasterBand<'_>,
    win: Window,
    part: &mut [u8],
) -> BandRead {
    let buf: &mut [T] = bytemuck::try_cast_slice_mut(part).map_err(|_| None)?;
    let size = (win.w as usize, win.h as usize);
    rb.read_into_slice((win.x as isize, win.y as isize), size, size, buf, None)
        .map_err(Some)
}

fn read_vec<T: GdalType + bytemuck::Pod>(
    rb: &RasterBand<'_>,
    win: Window,
) -> Result<Vec<T>, Option<gdal::errors::GdalError>> {
    let mut v = vec![T::zeroed(); win.pixels() as usize];
    read_as::<T>(rb, win, bytemuck::cast_slice_mut(&mut v))?;
    Ok(v)
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
                // Signed bytes as the type they are ("Int8"), whichever way GDAL shows them.
                data_type: band_sample(&rb)
                    .map_or_else(|| rb.band_type().name(), |t| t.gdal_name().to_string()),
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
            tiffdec::SampleKind::I8 => SampleType::I8,
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
                let v = nd.unwrap_or(0.0);
                l.kind
                    .encode(v)
                    .ok_or_else(|| format!("nodata {v} is not a {sample} value (sparse blocks)"))
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
        self.tiff
            .read_window(&self.samples, tiff_window(win), &self.fill, dst)
            .map_err(|source| native_error(win, source))
    }

    /// Hands `win` of the selected bands to `sink` block by block (band `i` of the sink is
    /// the `i`-th selected band), the samples as [`NativeReader::read_window`] reads them.
    pub fn visit_window(
        &self,
        win: Window,
        sink: &mut dyn tiffdec::BlockSink,
    ) -> Result<(), ReadError> {
        self.tiff
            .visit_window(&self.samples, tiff_window(win), &self.fill, sink)
            .map_err(|source| native_error(win, source))
    }
}

fn tiff_window(win: Window) -> tiffdec::Window {
    tiffdec::Window {
        x: win.x,
        y: win.y,
        w: win.w,
        h: win.h,
    }
}

fn native_error(win: Window, source: tiffdec::TiffError) -> ReadError {
    ReadError::Native {
        x: win.x,
        y: win.y,
        w: win.w,
        h: win.h,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::{
        raster::{Buffer, RasterCreationOptions},
        DriverManager,
    };

    /// A 7x5 signed-byte GeoTIFF as GDAL 3.6 writes one (Byte, PIXELTYPE=SIGNEDBYTE), and
    /// its values.
    fn signed_file(dir: &Path) -> (std::path::PathBuf, Vec<i8>) {
        let path = dir.join("s.tif");
        let values: Vec<i8> = (0..35).map(|i| (i * 37 - 128) as i8).collect();
        let opts = RasterCreationOptions::from_iter(["PIXELTYPE=SIGNEDBYTE"]);
        let ds = DriverManager::get_driver_by_name("GTiff")
            .unwrap()
            .create_with_band_type_with_options::<u8, _>(&path, 7, 5, 1, &opts)
            .unwrap();
        let raw = values.iter().map(|&v| v as u8).collect();
        ds.rasterband(1)
            .unwrap()
            .write((0, 0), (7, 5), &mut Buffer::new((7, 5), raw))
            .unwrap();
        (path, values)
    }

    #[test]
    fn signed_bytes_read_as_signed_in_every_type() {
        let dir = tempfile::tempdir().unwrap();
        let (path, values) = signed_file(dir.path());
        let ds = Dataset::open(&path).unwrap();
        let rb = ds.rasterband(1).unwrap();
        assert_eq!(band_sample(&rb), Some(SampleType::I8));
        assert!(signed_byte_view(&rb).is_some());
        let win = Window {
            x: 1,
            y: 2,
            w: 5,
            h: 3,
        };
        let want: Vec<i8> = (2..5)
            .flat_map(|y| (1..6).map(move |x| y * 7 + x))
            .map(|i| values[i])
            .collect();
        assert!(want.iter().any(|&v| v < 0));

        let mut raw = vec![0u8; 15];
        read_window(&ds, &[1], win, SampleType::I8, &mut raw).unwrap();
        let got: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
        assert_eq!(got, want);

        // As another type (a map kernel's f64, bands of mixed types): still signed.
        let mut wide = vec![0f64; 15];
        read_window(
            &ds,
            &[1],
            win,
            SampleType::F64,
            bytemuck::cast_slice_mut(&mut wide),
        )
        .unwrap();
        let want_f: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        assert_eq!(wide, want_f);
        let mut i16s = vec![0i16; 15];
        read_window(
            &ds,
            &[1],
            win,
            SampleType::I16,
            bytemuck::cast_slice_mut(&mut i16s),
        )
        .unwrap();
        assert!(i16s.iter().zip(&want).all(|(&a, &b)| a == b as i16));
    }

    #[test]
    fn an_unsigned_byte_band_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.tif");
        DriverManager::get_driver_by_name("GTiff")
            .unwrap()
            .create_with_band_type::<u8, _>(&path, 3, 3, 1)
            .unwrap();
        let ds = Dataset::open(&path).unwrap();
        let rb = ds.rasterband(1).unwrap();
        assert_eq!(signed_byte_view(&rb), None);
        assert_eq!(band_sample(&rb), Some(SampleType::U8));
    }
}
