//! Signed 8-bit input end to end. GDAL 3.6 exposes a TIFF with 8-bit SampleFormat=2 as
//! Byte with `PIXELTYPE=SIGNEDBYTE` in the band's IMAGE_STRUCTURE metadata (GDAL >= 3.7 as
//! Int8); its values are -128..127. Each aggregate, through the GDAL and the native
//! decoders, through the worker pool and in process, is compared with a naive reference
//! computed from the values the test wrote (independent of any reader), with negative
//! values and a negative nodata (-128, and -1), and with a GDAL mask and no nodata. `plan`
//! and the report name the input type Int8; the output types are the documented defaults.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::{coordinator, report, run, stderr};
use gdal::{
    raster::{Buffer, RasterCreationOptions},
    Dataset, DriverManager,
};

const W: usize = 157;
const H: usize = 91;
const F: usize = 6;

/// A signed 8-bit GeoTIFF written by `gdal_translate -ot Byte -co PIXELTYPE=SIGNEDBYTE`
/// from a Byte file holding the values' two's-complement bits, and the values. Pixels equal
/// to `nodata` are scattered, plus one rectangle large enough to empty whole blocks.
fn signed_tiff(dir: &Path, name: &str, nodata: Option<i8>, extra: &[&str]) -> (PathBuf, Vec<i8>) {
    let mut st: u64 = 0x2545_f491_4f6c_dd1d ^ name.len() as u64;
    let mut next = || crate::common::xorshift(&mut st);
    let values: Vec<i8> = (0..W * H)
        .map(|i| {
            let (x, y) = (i % W, i / W);
            let hole = (20..45).contains(&x) && (10..30).contains(&y);
            match (nodata, next() % 10) {
                (Some(nd), r) if hole || r == 0 => nd,
                // Never the nodata value otherwise (a valid pixel equal to it is nodata).
                _ => loop {
                    let v = next() as u8 as i8;
                    if Some(v) != nodata {
                        break v;
                    }
                },
            }
        })
        .collect();
    let bits = dir.join(format!("{name}-bits.tif"));
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver
        .create_with_band_type_with_options::<u8, _>(
            &bits,
            W,
            H,
            1,
            &RasterCreationOptions::default(),
        )
        .unwrap();
    ds.set_geo_transform(&[500000.0, 30.0, 0.0, 5200000.0, 0.0, -30.0])
        .unwrap();
    let raw: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    let mut buf = Buffer::new((W, H), raw);
    ds.rasterband(1)
        .unwrap()
        .write((0, 0), (W, H), &mut buf)
        .unwrap();
    drop(ds);
    let path = dir.join(format!("{name}.tif"));
    let mut c = Command::new("gdal_translate");
    c.args(["-q", "-ot", "Byte", "-co", "PIXELTYPE=SIGNEDBYTE"]);
    for o in [
        "TILED=YES",
        "BLOCKXSIZE=32",
        "BLOCKYSIZE=32",
        "COMPRESS=DEFLATE",
    ] {
        c.args(["-co", o]);
    }
    if let Some(nd) = nodata {
        c.args(["-a_nodata", &nd.to_string()]);
    }
    let st = c
        .args(extra)
        .arg(&bits)
        .arg(&path)
        .status()
        .expect("running gdal_translate");
    assert!(st.success(), "gdal_translate failed");
    (path, values)
}

/// The naive definition over the written values; `None` for a block with no valid pixel.
fn reference(values: &[i8], valid: impl Fn(usize) -> bool, agg: &str) -> Vec<Option<f64>> {
    let (ow, oh) = (W.div_ceil(F), H.div_ceil(F));
    let mut out = Vec::with_capacity(ow * oh);
    for oy in 0..oh {
        for ox in 0..ow {
            let mut vals = Vec::new();
            for y in oy * F..((oy + 1) * F).min(H) {
                for x in ox * F..((ox + 1) * F).min(W) {
                    if valid(y * W + x) {
                        vals.push(values[y * W + x] as f64);
                    }
                }
            }
            let n = vals.len() as f64;
            out.push(match agg {
                "count" => Some(n),
                _ if vals.is_empty() => None,
                "sum" => Some(vals.iter().sum()),
                "mean" => Some(vals.iter().sum::<f64>() / n),
                "min" => vals.iter().copied().reduce(f64::min),
                "max" => vals.iter().copied().reduce(f64::max),
                a => panic!("unknown aggregate {a}"),
            });
        }
    }
    out
}

/// How a run reads the input.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Pool(&'static str),
    InProcess(&'static str),
}

/// Resamples `input` with `agg` in `mode`; the output's type name, nodata and pixels, and
/// the report.
fn resample(
    input: &Path,
    agg: &str,
    mode: Mode,
    extra: &[&str],
) -> (String, Option<f64>, Vec<f64>, serde_json::Value) {
    let dir = input.parent().unwrap();
    let tag = format!(
        "{}-{agg}-{mode:?}",
        input.file_stem().unwrap().to_string_lossy()
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let out = dir.join(format!("out-{tag}.tif"));
    let rep = dir.join(format!("rep-{tag}.json"));
    let mut c = coordinator();
    let decoder = match mode {
        Mode::Pool(d) => {
            c.args(["--workers", "2", "resample"]);
            d
        }
        Mode::InProcess(d) => {
            c.arg("resample").arg("--in-process");
            d
        }
    };
    let o = run(c
        .arg(input)
        .arg(&out)
        .args([
            "--factor",
            &F.to_string(),
            "--agg",
            agg,
            "--decoder",
            decoder,
        ])
        .args(["--chunk-mib", "0.004", "--overwrite", "--report"])
        .arg(&rep)
        .args(extra));
    assert!(o.status.success(), "{agg} {mode:?}: {}", stderr(&o));
    let ds = Dataset::open(&out).unwrap();
    let rb = ds.rasterband(1).unwrap();
    let (w, h) = ds.raster_size();
    let px = rb
        .read_as::<f64>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .data()
        .to_vec();
    (rb.band_type().name(), rb.no_data_value(), px, report(&rep))
}

/// Every output pixel is the reference, an empty block the output's nodata.
fn assert_matches(what: &str, got: &[f64], nodata: Option<f64>, want: &[Option<f64>]) {
    assert_eq!(got.len(), want.len(), "{what}: output size");
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        let ok = match (w, nodata) {
            (Some(w), _) => g == *w || (g - w).abs() <= 1e-12 * w.abs(),
            (None, Some(nd)) => g.to_bits() == nd.to_bits() || (g.is_nan() && nd.is_nan()),
            (None, None) => false,
        };
        assert!(
            ok,
            "{what}: pixel {i}: got {g}, want {w:?} (nodata {nodata:?})"
        );
    }
}

const AGGS: [(&str, &str); 5] = [
    ("sum", "Float64"),
    ("mean", "Float64"),
    ("min", "Int16"),
    ("max", "Int16"),
    ("count", "UInt32"),
];

const MODES: [Mode; 4] = [
    Mode::Pool("gdal"),
    Mode::Pool("native"),
    Mode::InProcess("gdal"),
    Mode::InProcess("native"),
];

fn check_all(input: &Path, values: &[i8], nodata: i8) {
    for (agg, out_type) in AGGS {
        let want = reference(values, |i| values[i] != nodata, agg);
        for mode in MODES {
            let what = format!("{agg} {mode:?}");
            let (t, nd, px, rep) = resample(input, agg, mode, &[]);
            assert_matches(&what, &px, nd, &want);
            assert_eq!(t, out_type, "{what}: output type");
            assert_eq!(rep["options"]["sample_type"], "Int8", "{what}: report");
            let native = rep["totals"]["native_reads"].as_u64().unwrap();
            match mode {
                Mode::Pool("native") | Mode::InProcess("native") => {
                    assert!(native > 0, "{what}: no native read")
                }
                _ => assert_eq!(native, 0, "{what}: native reads"),
            }
            match agg {
                // Min and max keep the input's nodata (Int16 holds it); count has none.
                "min" | "max" => assert_eq!(nd, Some(nodata as f64), "{what}: nodata"),
                "count" => assert_eq!(nd, None, "{what}: nodata"),
                _ => assert!(nd.is_some_and(f64::is_nan), "{what}: nodata {nd:?}"),
            }
        }
    }
}

#[test]
fn signed_bytes_with_nodata_minus_128_aggregate_as_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (input, values) = signed_tiff(dir.path(), "nd128", Some(-128), &[]);
    assert!(values.iter().any(|&v| v < -100) && values.iter().any(|&v| v > 100));
    check_all(&input, &values, -128);
}

#[test]
fn signed_bytes_with_nodata_minus_1_and_a_predictor_aggregate_as_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (input, values) = signed_tiff(dir.path(), "nd1", Some(-1), &["-co", "PREDICTOR=2"]);
    check_all(&input, &values, -1);
}

#[test]
fn a_masked_signed_band_without_nodata_keeps_its_negative_extremes() {
    let dir = tempfile::tempdir().unwrap();
    let (input, values) = signed_tiff(dir.path(), "masked", None, &[]);
    // A per-dataset mask (0 = invalid) over one rectangle and every 7th pixel.
    let invalid = |i: usize| {
        let (x, y) = (i % W, i / W);
        ((60..90).contains(&x) && (40..70).contains(&y)) || i.is_multiple_of(7)
    };
    {
        let ds = Dataset::open_ex(
            &input,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE
                    | gdal::GdalOpenFlags::GDAL_OF_RASTER,
                ..Default::default()
            },
        )
        .unwrap();
        let mut rb = ds.rasterband(1).unwrap();
        rb.create_mask_band(true).unwrap();
        let mut mb = rb.open_mask_band().unwrap();
        let m: Vec<u8> = (0..W * H)
            .map(|i| if invalid(i) { 0 } else { 255 })
            .collect();
        mb.write((0, 0), (W, H), &mut Buffer::new((W, H), m))
            .unwrap();
    }
    for agg in ["min", "max", "sum"] {
        let want = reference(&values, |i| !invalid(i), agg);
        assert!(want.iter().any(Option::is_none), "no empty block");
        for mode in [Mode::Pool("gdal"), Mode::Pool("native")] {
            let what = format!("masked {agg} {mode:?}");
            let (t, nd, px, _) = resample(&input, agg, mode, &[]);
            if agg == "sum" {
                assert_eq!(t, "Float64", "{what}");
            } else {
                // No nodata to keep: Int16's minimum, which no signed byte reaches.
                assert_eq!((t.as_str(), nd), ("Int16", Some(-32768.0)), "{what}");
            }
            assert_matches(&what, &px, nd, &want);
        }
    }
}

#[test]
fn plan_says_int8_and_ot_takes_signed_types() {
    let dir = tempfile::tempdir().unwrap();
    let (input, values) = signed_tiff(dir.path(), "plan", Some(-128), &[]);
    let o = run(coordinator()
        .arg("plan")
        .arg(&input)
        .args(["--factor", "4", "--agg", "min"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in:\n{text}"))
            .to_string()
    };
    assert!(line("input").contains("Int8"), "{}", line("input"));
    assert!(line("output").contains("Int16"), "{}", line("output"));
    // The native decoder reads signed bytes when asked (what `auto` picks is the decision
    // table's business).
    let o =
        run(coordinator()
            .arg("plan")
            .arg(&input)
            .args(["--factor", "4", "--decoder", "native"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("decoder      native: tiled GTiff, DEFLATE, predictor 1, Int8, 1 band"),
        "{text}"
    );
    let o = run(coordinator()
        .arg("plan")
        .arg(&input)
        .args(["--factor", "4", "--agg", "min", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["sample_type"], &v["output_type"]),
        (&"Int8".into(), &"Int16".into())
    );

    // An explicit signed --ot: exact values.
    let want = reference(&values, |i| values[i] != -128, "min");
    let (t, nd, px, _) = resample(&input, "min", Mode::Pool("gdal"), &["--ot", "Int32"]);
    assert_eq!((t.as_str(), nd), ("Int32", Some(-128.0)));
    assert_matches("--ot Int32", &px, nd, &want);
    let want = reference(&values, |i| values[i] != -128, "sum");
    let (t, _, px, _) = resample(&input, "sum", Mode::Pool("native"), &["--ot", "Float32"]);
    assert_eq!(t, "Float32");
    let nd = Some(f64::NAN);
    assert_matches("--ot Float32", &px, nd, &want);

    // Int8 output: refused with a one-line usage error naming the types that hold it.
    let o = run(coordinator()
        .arg("resample")
        .arg(&input)
        .arg(dir.path().join("i8.tif"))
        .args(["--factor", "4", "--agg", "min", "--ot", "Int8"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("Int8") && err.contains("Int16"), "{err}");
}
