//! Comparing two rasters as a reader sees them, for the journal, shard and Slurm tests.
#![allow(dead_code)]

use std::path::Path;

use gdal::{Dataset, Metadata};

use crate::common::same_pixels;

/// Everything a reader sees of a raster: shape, type, georeferencing, metadata (file and
/// band), nodata, descriptions, and every pixel bit for bit (NaN equal to NaN).
pub fn assert_same_raster(a: &Path, b: &Path) {
    let (da, db) = (Dataset::open(a).unwrap(), Dataset::open(b).unwrap());
    let what = format!("{} vs {}", a.display(), b.display());
    assert_eq!(da.raster_size(), db.raster_size(), "{what}: size");
    assert_eq!(da.raster_count(), db.raster_count(), "{what}: bands");
    assert_eq!(
        da.geo_transform().ok(),
        db.geo_transform().ok(),
        "{what}: geotransform"
    );
    assert_eq!(da.projection(), db.projection(), "{what}: projection");
    let md = |d: &Dataset| {
        let mut v: Vec<String> = d.metadata_domain("").unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(md(&da), md(&db), "{what}: metadata");
    let (w, h) = da.raster_size();
    for i in 1..=da.raster_count() {
        let (ba, bb) = (da.rasterband(i).unwrap(), db.rasterband(i).unwrap());
        assert_eq!(ba.band_type(), bb.band_type(), "{what}: band {i} type");
        assert_eq!(
            ba.no_data_value().map(f64::to_bits),
            bb.no_data_value().map(f64::to_bits),
            "{what}: band {i} nodata"
        );
        assert_eq!(
            ba.description().ok(),
            bb.description().ok(),
            "{what}: band {i} description"
        );
        let bmd = |b: &gdal::raster::RasterBand| {
            let mut v: Vec<String> = b.metadata_domain("").unwrap_or_default();
            v.sort();
            v
        };
        assert_eq!(bmd(&ba), bmd(&bb), "{what}: band {i} metadata");
        // Row by row: memory stays small on big outputs.
        for y in 0..h {
            let ra = ba
                .read_as::<f64>((0, y as isize), (w, 1), (w, 1), None)
                .unwrap();
            let rb = bb
                .read_as::<f64>((0, y as isize), (w, 1), (w, 1), None)
                .unwrap();
            assert!(
                same_pixels(ra.data(), rb.data()),
                "{what}: band {i} row {y} differs"
            );
        }
    }
}
