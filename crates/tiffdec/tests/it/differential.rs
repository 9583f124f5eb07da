//! The native decoder against GDAL: identical bytes for random windows of a matrix of
//! rasters GDAL writes (codec x predictor x type x tiled/striped x 1/3 bands x chunky/planar,
//! sizes that are not multiples of the block), big-endian and BigTIFF files, and sparse
//! blocks with and without nodata.

use crate::common::{gdal_read, native_read, window, write, Spec, KINDS};
use tiffdec::{ByteOrder, Predictor, SampleKind, Tiff, Window};

fn predictors(kind: SampleKind) -> &'static [u32] {
    match kind {
        SampleKind::F32 | SampleKind::F64 => &[1, 2, 3],
        _ => &[1, 2],
    }
}

/// Writes `spec`, then compares a full read and `windows` random windows of every band order.
fn check(dir: &std::path::Path, name: &str, spec: &Spec, windows: usize) {
    let path = dir.join(name);
    write(&path, spec);
    // The file has the layout asked for (GDAL did not quietly drop an option).
    let layout = Tiff::open(&path).unwrap().layout().clone();
    let opt = |k: &str| spec.opts.iter().find_map(|o| o.strip_prefix(k));
    let codec = layout.compression.name();
    assert_eq!(codec, opt("COMPRESS=").unwrap_or("NONE"), "{spec:?}");
    let pred = match layout.predictor {
        Predictor::None => "1",
        Predictor::Horizontal => "2",
        Predictor::Float => "3",
    };
    assert_eq!(pred, opt("PREDICTOR=").unwrap_or("1"), "{spec:?}");
    assert_eq!(
        layout.planar,
        spec.bands > 1 && opt("INTERLEAVE=") == Some("BAND")
    );
    assert_eq!(layout.tiled, opt("TILED=") == Some("YES"));
    assert_eq!(layout.kind, spec.kind);
    let mut st = spec.seed | 1;
    let all = Window {
        x: 0,
        y: 0,
        w: spec.width as u64,
        h: spec.height as u64,
    };
    let bands: Vec<usize> = (1..=spec.bands).rev().collect();
    for i in 0..=windows {
        let win = if i == 0 {
            all
        } else {
            window(&mut st, spec.width, spec.height)
        };
        let want = gdal_read(&path, spec.kind, &bands, win);
        let got = native_read(&path, &bands, win, spec.nodata);
        assert!(
            want == got,
            "{name} {spec:?}: window {win:?} differs from GDAL"
        );
    }
}

#[test]
fn matrix_matches_gdal() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for codec in ["NONE", "DEFLATE", "ZSTD", "LZW"] {
        for kind in KINDS {
            for &pred in predictors(kind) {
                if codec == "NONE" && pred != 1 {
                    continue;
                }
                for tiled in [true, false] {
                    for (bands, interleave) in [(1, "PIXEL"), (3, "PIXEL"), (3, "BAND")] {
                        n += 1;
                        let mut opts = vec![
                            format!("COMPRESS={codec}"),
                            format!("INTERLEAVE={interleave}"),
                        ];
                        if codec != "NONE" {
                            opts.push(format!("PREDICTOR={pred}"));
                        }
                        if tiled {
                            opts.extend([
                                "TILED=YES".into(),
                                "BLOCKXSIZE=16".into(),
                                "BLOCKYSIZE=32".into(),
                            ]);
                        } else {
                            opts.push("BLOCKYSIZE=7".into());
                        }
                        let spec = Spec {
                            kind,
                            width: 37 + n % 5,
                            height: 45 + n % 3,
                            bands,
                            opts,
                            nodata: None,
                            seed: n as u64,
                        };
                        check(dir.path(), &format!("m{n}.tif"), &spec, 4);
                    }
                }
            }
        }
    }
    assert!(n > 300, "the matrix ran {n} cases");
}

/// The floating-point predictor's vector paths: every number of chunky samples per pixel
/// from 1 to 10 (strides 2..=8 have their own vector instances, above 8 is scalar), Float32
/// and Float64, rows long enough for whole vectors and a remainder.
#[test]
fn float_predictor_every_stride_matches_gdal() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for kind in [SampleKind::F32, SampleKind::F64] {
        for bands in 1..=10 {
            for codec in ["DEFLATE", "ZSTD", "LZW"] {
                n += 1;
                let spec = Spec {
                    kind,
                    width: 75,
                    height: 19,
                    bands,
                    opts: vec![
                        format!("COMPRESS={codec}"),
                        "PREDICTOR=3".into(),
                        "INTERLEAVE=PIXEL".into(),
                        "TILED=YES".into(),
                        "BLOCKXSIZE=48".into(),
                        "BLOCKYSIZE=16".into(),
                    ],
                    nodata: None,
                    seed: 3000 + n,
                };
                check(dir.path(), &format!("f{n}.tif"), &spec, 2);
            }
        }
    }
}

#[test]
fn big_endian_and_bigtiff_match_gdal() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for kind in KINDS {
        for &pred in predictors(kind) {
            for (extra, tiled) in [
                ("ENDIANNESS=BIG", true),
                ("ENDIANNESS=BIG", false),
                ("BIGTIFF=YES", true),
            ] {
                for interleave in ["PIXEL", "BAND"] {
                    n += 1;
                    let mut opts = vec![
                        "COMPRESS=DEFLATE".to_string(),
                        format!("PREDICTOR={pred}"),
                        format!("INTERLEAVE={interleave}"),
                        extra.to_string(),
                    ];
                    if tiled {
                        opts.extend([
                            "TILED=YES".into(),
                            "BLOCKXSIZE=32".into(),
                            "BLOCKYSIZE=16".into(),
                        ]);
                    } else {
                        opts.push("BLOCKYSIZE=5".into());
                    }
                    let spec = Spec {
                        kind,
                        width: 50,
                        height: 21,
                        bands: 2,
                        opts,
                        nodata: None,
                        seed: 1000 + n,
                    };
                    let name = format!("e{n}.tif");
                    check(dir.path(), &name, &spec, 3);
                    let layout = Tiff::open(&dir.path().join(&name))
                        .unwrap()
                        .layout()
                        .clone();
                    assert_eq!(layout.bigtiff, extra == "BIGTIFF=YES");
                    assert_eq!(layout.order == ByteOrder::Big, extra == "ENDIANNESS=BIG");
                }
            }
        }
    }
    // Uncompressed big-endian too: the byte swap without a predictor.
    for kind in KINDS {
        n += 1;
        let spec = Spec {
            kind,
            width: 19,
            height: 13,
            bands: 3,
            opts: vec!["ENDIANNESS=BIG".into()],
            nodata: None,
            seed: 2000 + n,
        };
        check(dir.path(), &format!("u{n}.tif"), &spec, 3);
    }
}

/// GDAL 3.6 reads a block with byte count 0 as the nodata value when the band has one, else
/// as zeros (signed bytes too: -7 is 0xF9); the native decoder, given the same fill, returns the same bytes.
#[test]
fn sparse_blocks_read_as_gdal_fills_them() {
    let dir = tempfile::tempdir().unwrap();
    for (i, nodata) in [None, Some(-7.0), Some(200.0)].into_iter().enumerate() {
        for kind in [
            SampleKind::U8,
            SampleKind::I8,
            SampleKind::I16,
            SampleKind::F32,
        ] {
            let Some(_) = kind.encode(nodata.unwrap_or(0.0)) else {
                continue;
            };
            for interleave in ["PIXEL", "BAND"] {
                let path = dir.path().join(format!("s{i}{kind:?}{interleave}.tif"));
                let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
                let opts = gdal::raster::RasterCreationOptions::from_iter([
                    "SPARSE_OK=TRUE",
                    "TILED=YES",
                    "BLOCKXSIZE=16",
                    "BLOCKYSIZE=16",
                    "COMPRESS=DEFLATE",
                    if interleave == "BAND" {
                        "INTERLEAVE=BAND"
                    } else {
                        "INTERLEAVE=PIXEL"
                    },
                    // GDAL 3.6's signed bytes: Byte with SampleFormat 2.
                    if kind == SampleKind::I8 {
                        "PIXELTYPE=SIGNEDBYTE"
                    } else {
                        "PIXELTYPE=DEFAULT"
                    },
                ]);
                let ds =
                    match kind {
                        SampleKind::U8 | SampleKind::I8 => driver
                            .create_with_band_type_with_options::<u8, _>(&path, 50, 40, 2, &opts),
                        SampleKind::I16 => driver
                            .create_with_band_type_with_options::<i16, _>(&path, 50, 40, 2, &opts),
                        _ => driver
                            .create_with_band_type_with_options::<f32, _>(&path, 50, 40, 2, &opts),
                    };
                let ds = ds.unwrap();
                for b in 1..=2 {
                    let mut band = ds.rasterband(b).unwrap();
                    if let Some(nd) = nodata {
                        band.set_no_data_value(Some(nd)).unwrap();
                    }
                    // One written block (band 1 only when planar); the rest stays sparse.
                    if b == 1 {
                        let mut buf = gdal::raster::Buffer::new((5, 5), vec![3.0f64; 25]);
                        band.write((18, 20), (5, 5), &mut buf).unwrap();
                    }
                }
                drop(ds);
                let layout = Tiff::open(&path).unwrap().layout().clone();
                assert!(
                    layout.byte_counts.contains(&0),
                    "{path:?} has no sparse block"
                );
                let mut st = 77u64 + i as u64;
                for k in 0..6 {
                    let win = if k == 0 {
                        Window {
                            x: 0,
                            y: 0,
                            w: 50,
                            h: 40,
                        }
                    } else {
                        window(&mut st, 50, 40)
                    };
                    let want = gdal_read(&path, kind, &[1, 2], win);
                    let got = native_read(&path, &[1, 2], win, nodata);
                    assert!(want == got, "{path:?} {win:?}: differs from GDAL");
                }
            }
        }
    }
}
