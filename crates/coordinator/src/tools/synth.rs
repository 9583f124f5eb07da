//! `coordinator synth`: a realistic, deterministic demo raster: Float32, tiled 256,
//! DEFLATE, EPSG:4326 geotransform, a smooth field plus noise, and a nodata region.

use std::path::Path;

use gdal::{
    raster::{Buffer, RasterCreationOptions},
    spatial_ref::SpatialRef,
    DriverManager, Metadata,
};

use crate::error::CoordError;

pub const SYNTH_NODATA: f64 = -9999.0;

pub struct SynthConfig {
    pub width: u64,
    pub height: u64,
    pub seed: u64,
    pub overwrite: bool,
}

pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The value at (x, y), or nodata inside the nodata region (an ellipse and a stripe).
pub(crate) fn pixel(x: u64, y: u64, w: u64, h: u64, phase: f64, noise: f64) -> f32 {
    let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
    let ex = (fx - 0.3) / 0.18;
    let ey = (fy - 0.35) / 0.12;
    if ex * ex + ey * ey < 1.0 || (fy > 0.82 && fy < 0.86 && fx > 0.5) {
        return SYNTH_NODATA as f32;
    }
    let field = 100.0
        + 40.0 * (fx * 7.0 + phase).sin() * (fy * 5.0 - phase).cos()
        + 25.0 * ((fx + fy) * 13.0 + phase * 2.0).sin();
    (field + noise) as f32
}

pub fn synth(out: &Path, cfg: &SynthConfig) -> Result<(), CoordError> {
    if cfg.width == 0 || cfg.height == 0 {
        return Err(CoordError::BadInput(
            "--width and --height must be at least 1".into(),
        ));
    }
    if out.exists() && !cfg.overwrite {
        return Err(CoordError::OutputExists(out.to_path_buf()));
    }
    let gdal = |step: &'static str| {
        move |e: gdal::errors::GdalError| CoordError::write_gdal(out, step, e.into())
    };
    let tmp = crate::output::temp_path(out);
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(gdal(""))?;
    let opts = RasterCreationOptions::from_iter([
        "TILED=YES",
        "BLOCKXSIZE=256",
        "BLOCKYSIZE=256",
        "COMPRESS=DEFLATE",
        "PREDICTOR=3",
        "BIGTIFF=IF_SAFER",
        "NUM_THREADS=ALL_CPUS",
    ]);
    let (w, h) = (cfg.width as usize, cfg.height as usize);
    let result = (|| -> Result<(), CoordError> {
        let mut ds = driver
            .create_with_band_type_with_options::<f32, _>(&tmp, w, h, 1, &opts)
            .map_err(gdal("creating the file"))?;
        // Lon/lat, 0.001 degree pixels, origin in central Europe.
        ds.set_geo_transform(&[10.0, 0.001, 0.0, 50.0, 0.0, -0.001])
            .map_err(gdal(""))?;
        let srs = SpatialRef::from_epsg(4326).map_err(gdal(""))?;
        ds.set_spatial_ref(&srs).map_err(gdal(""))?;
        let mut band = ds.rasterband(1).map_err(gdal(""))?;
        band.set_no_data_value(Some(SYNTH_NODATA))
            .map_err(gdal(""))?;
        band.set_description("synthetic field").map_err(gdal(""))?;
        let phase = (cfg.seed % 1000) as f64 * 0.37;
        let strip = 256usize;
        let mut y0 = 0;
        while y0 < h {
            engine::interrupt::checkpoint("synth")?;
            let rows = strip.min(h - y0);
            let mut data = Vec::with_capacity(rows * w);
            for y in y0..y0 + rows {
                // Noise depends on the seed and the row only: any strip order gives the same file.
                let mut st = cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ (y as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
                    | 1;
                for x in 0..w {
                    let n = (xorshift(&mut st) >> 11) as f64 / (1u64 << 53) as f64 * 10.0 - 5.0;
                    data.push(pixel(x as u64, y as u64, cfg.width, cfg.height, phase, n));
                }
            }
            let mut buf = Buffer::new((w, rows), data);
            band.write((0, y0 as isize), (w, rows), &mut buf)
                .map_err(gdal(""))?;
            y0 += rows;
        }
        ds.close().map_err(gdal(""))?;
        engine::interrupt::check()?;
        std::fs::rename(&tmp, out).map_err(|e| CoordError::write_io(out, "", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
