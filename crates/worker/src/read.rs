//! Reading a window of selected bands straight into a slot's input region with GDAL.

use crate::types::{SampleType, Window};
use gdal::{raster::GdalType, Dataset};

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
