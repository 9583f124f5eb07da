//! GDAL fidelity, end to end with the real binaries on rasters GDAL writes here: mask bands
//! (internal per-dataset mask, alpha band, `.msk` sidecar) make pixels invalid unless
//! `--ignore-mask`; nodata is declared only where a block can be empty and never collides;
//! band metadata (unit, colour interpretation, colour table, scale/offset, AREA_OR_POINT)
//! carries over or is applied; inputs through `/vsizip/` and VRT.

use std::path::Path;

use crate::common::*;
use gdal::{
    raster::{Buffer, ColorEntry, ColorInterpretation, ColorTable, RasterCreationOptions},
    Dataset, DriverManager, Metadata,
};

const W: usize = 61;
const H: usize = 45;

fn pattern(b: usize, x: usize, y: usize) -> u8 {
    ((x * 7 + y * 13 + b * 31) % 256) as u8
}

/// A mask that cuts out a rectangle (some blocks empty) and every 5th pixel.
fn mask_at(x: usize, y: usize) -> u8 {
    let hole = (8..24).contains(&x) && (4..20).contains(&y);
    if hole || (x + 3 * y).is_multiple_of(5) {
        0
    } else {
        255
    }
}

/// A tiled Byte GeoTIFF of `bands` bands (values cover 0..=255) with no nodata.
fn write_u8(path: &Path, bands: usize) -> Dataset {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = RasterCreationOptions::from_iter([
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
        "COMPRESS=DEFLATE",
    ]);
    let mut ds = driver
        .create_with_band_type_with_options::<u8, _>(path, W, H, bands, &opts)
        .unwrap();
    ds.set_geo_transform(&[500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0])
        .unwrap();
    for b in 1..=bands {
        let data: Vec<u8> = (0..W * H).map(|i| pattern(b, i % W, i / W)).collect();
        let mut buf = Buffer::new((W, H), data);
        ds.rasterband(b)
            .unwrap()
            .write((0, 0), (W, H), &mut buf)
            .unwrap();
    }
    ds
}

fn mask_buffer() -> Buffer<u8> {
    Buffer::new((W, H), (0..W * H).map(|i| mask_at(i % W, i / W)).collect())
}

/// The expected block aggregate of band `b`'s pattern, with the mask applied (or not).
fn expected(b: usize, f: usize, agg: &str, masked: bool) -> Vec<Option<f64>> {
    let (ow, oh) = (W.div_ceil(f), H.div_ceil(f));
    let mut out = Vec::new();
    for oy in 0..oh {
        for ox in 0..ow {
            let mut v = Vec::new();
            for y in oy * f..((oy + 1) * f).min(H) {
                for x in ox * f..((ox + 1) * f).min(W) {
                    if !masked || mask_at(x, y) != 0 {
                        v.push(pattern(b, x, y) as f64);
                    }
                }
            }
            out.push(if v.is_empty() {
                None
            } else {
                Some(match agg {
                    "sum" => v.iter().sum(),
                    "mean" => v.iter().sum::<f64>() / v.len() as f64,
                    "max" => v.iter().cloned().fold(f64::MIN, f64::max),
                    "min" => v.iter().cloned().fold(f64::MAX, f64::min),
                    _ => unreachable!(),
                })
            });
        }
    }
    out
}

fn resample(input: &str, out: &Path, args: &[&str]) -> std::process::Output {
    let o = run(coordinator()
        .args(["-q", "resample", input])
        .arg(out)
        .args(args)
        .arg("--overwrite"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    o
}

/// Compares band `band` of `out` with `want` (None: the output's nodata).
fn check_band(out: &Path, band: usize, want: &[Option<f64>]) {
    let (ds, px) = read_all(out);
    let nd = ds.rasterband(band).unwrap().no_data_value();
    let got = &px[band - 1];
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let is_nd = nd.is_some_and(|n| (n.is_nan() && g.is_nan()) || *g == n);
        match w {
            None => assert!(is_nd, "pixel {i}: want nodata, got {g} (nodata {nd:?})"),
            Some(w) => assert!(
                !is_nd && close(*g, *w),
                "pixel {i}: want {w}, got {g} (nodata {nd:?})"
            ),
        }
    }
}

#[test]
fn internal_mask_marks_pixels_invalid_in_every_decoder_and_lane() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("masked.tif");
    {
        // GDAL before 3.9 writes a .msk sidecar by default; ask for the internal mask.
        gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "YES").unwrap();
        let ds = write_u8(&input, 2);
        let mut rb = ds.rasterband(1).unwrap();
        rb.create_mask_band(true).unwrap();
        let mut mask = rb.open_mask_band().unwrap();
        mask.write((0, 0), (W, H), &mut mask_buffer()).unwrap();
        gdal::config::clear_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK").unwrap();
    }
    assert!(
        !dir.path().join("masked.tif.msk").exists(),
        "GDAL wrote an internal mask"
    );
    let inp = input.to_str().unwrap();
    let out = dir.path().join("out.tif");
    for extra in [
        &["--workers", "2", "--decoder", "native"][..],
        &["--workers", "2", "--decoder", "gdal"][..],
        &["--in-process"][..],
    ] {
        let mut args = vec!["-f", "4", "--agg", "mean", "--chunk-mib", "0.001"];
        args.extend_from_slice(extra);
        resample(inp, &out, &args);
        for b in 1..=2 {
            check_band(&out, b, &expected(b, 4, "mean", true));
        }
    }
    // --ignore-mask: every pixel counts, and no block can be empty: no nodata at all.
    resample(inp, &out, &["-f", "4", "--agg", "mean", "--ignore-mask"]);
    check_band(&out, 1, &expected(1, 4, "mean", false));
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.rasterband(1).unwrap().no_data_value(), None);
}

#[test]
fn alpha_band_is_the_mask_and_max_never_collides_with_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rgba.tif");
    {
        let ds = write_u8(&input, 4);
        let colors = [
            ColorInterpretation::RedBand,
            ColorInterpretation::GreenBand,
            ColorInterpretation::BlueBand,
            ColorInterpretation::AlphaBand,
        ];
        for (i, c) in colors.into_iter().enumerate() {
            ds.rasterband(i + 1)
                .unwrap()
                .set_color_interpretation(c)
                .unwrap();
        }
        ds.rasterband(4)
            .unwrap()
            .write((0, 0), (W, H), &mut mask_buffer())
            .unwrap();
    }
    let inp = input.to_str().unwrap();
    let out = dir.path().join("max.tif");
    let args = ["-f", "4", "--agg", "max", "-b", "1", "-b", "2", "-b", "3"];
    resample(inp, &out, &[&args[..], &["--workers", "2"]].concat());
    for b in 1..=3 {
        check_band(&out, b, &expected(b, 4, "max", true));
    }
    let ds = Dataset::open(&out).unwrap();
    let rb = ds.rasterband(1).unwrap();
    // Byte max with a mask and no nodata: every byte value is possible, so the output is
    // UInt16 with a nodata no byte reaches (and the 255s stay 255).
    assert_eq!(rb.band_type().name(), "UInt16");
    assert_eq!(rb.no_data_value(), Some(65535.0));
    assert_eq!(rb.color_interpretation(), ColorInterpretation::RedBand);
    assert_eq!(
        ds.rasterband(3).unwrap().color_interpretation(),
        ColorInterpretation::BlueBand
    );
    let (_, px) = read_all(&out);
    assert!(px[0].contains(&255.0) || px[1].contains(&255.0) || px[2].contains(&255.0));
}

#[test]
fn msk_sidecar_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("side.tif");
    {
        // Thread-local: the other tests of this binary run on other threads.
        gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "NO").unwrap();
        let ds = write_u8(&input, 1);
        let mut rb = ds.rasterband(1).unwrap();
        rb.create_mask_band(true).unwrap();
        let mut mask = rb.open_mask_band().unwrap();
        mask.write((0, 0), (W, H), &mut mask_buffer()).unwrap();
        gdal::config::clear_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK").unwrap();
    }
    assert!(dir.path().join("side.tif.msk").exists(), "a .msk sidecar");
    let out = dir.path().join("sum.tif");
    resample(
        input.to_str().unwrap(),
        &out,
        &["-f", "3", "--agg", "sum", "--workers", "2"],
    );
    check_band(&out, 1, &expected(1, 3, "sum", true));
}

#[test]
fn no_nodata_where_no_block_can_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plain.tif");
    drop(write_u8(&input, 1));
    let inp = input.to_str().unwrap();
    for agg in ["max", "min", "sum", "count"] {
        let out = dir.path().join(format!("{agg}.tif"));
        resample(inp, &out, &["-f", "4", "--agg", agg, "--workers", "2"]);
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(
            ds.rasterband(1).unwrap().no_data_value(),
            None,
            "{agg}: no block can be empty"
        );
        if agg != "count" {
            let want: Vec<Option<f64>> = expected(1, 4, agg, false);
            check_band(&out, 1, &want);
        }
    }
    // Max keeps its 255s as values (they used to read as nodata).
    let (_, px) = read_all(&dir.path().join("max.tif"));
    assert!(px[0].contains(&255.0));
}

#[test]
fn band_metadata_carries_over_or_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let tif = dir.path().join("raw.tif");
    drop(write_u8(&tif, 1));
    // A VRT over it says what the bindings cannot set: unit, scale, offset, AREA_OR_POINT.
    let input = dir.path().join("scaled.vrt");
    let vrt = format!(
        r#"<VRTDataset rasterXSize="{W}" rasterYSize="{H}">
  <GeoTransform>500000, 10, 0, 4000000, 0, -10</GeoTransform>
  <Metadata><MDI key="AREA_OR_POINT">Point</MDI></Metadata>
  <VRTRasterBand dataType="Byte" band="1">
    <UnitType>metre</UnitType>
    <Offset>-10</Offset>
    <Scale>0.5</Scale>
    <SimpleSource>
      <SourceFilename relativeToVRT="1">raw.tif</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>"#
    );
    std::fs::write(&input, vrt).unwrap();
    let inp = input.to_str().unwrap();
    // Mean commutes with scale and offset: they carry over, values stay raw.
    let out = dir.path().join("mean.tif");
    resample(inp, &out, &["-f", "4", "--agg", "mean"]);
    check_band(&out, 1, &expected(1, 4, "mean", false));
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(
        ds.metadata_item("AREA_OR_POINT", "").as_deref(),
        Some("Point")
    );
    let rb = ds.rasterband(1).unwrap();
    assert_eq!((rb.scale(), rb.offset()), (Some(0.5), Some(-10.0)));
    assert_eq!(rb.unit(), "metre");
    // A sum does not commute with an offset: applied to each pixel, said in the metadata.
    let out = dir.path().join("sum.tif");
    resample(inp, &out, &["-f", "4", "--agg", "sum"]);
    let (ds, px) = read_all(&out);
    let rb = ds.rasterband(1).unwrap();
    assert!(rb.offset().is_none_or(|o| o == 0.0));
    assert!(rb.scale().is_none_or(|s| s == 1.0));
    assert!(rb
        .metadata_item("BLOCKSUM_SCALE_OFFSET_APPLIED", "")
        .is_some());
    let (ow, oh) = (W.div_ceil(4), H.div_ceil(4));
    for oy in 0..oh {
        for ox in 0..ow {
            let mut s = 0.0;
            for y in oy * 4..((oy + 1) * 4).min(H) {
                for x in ox * 4..((ox + 1) * 4).min(W) {
                    s += pattern(1, x, y) as f64 * 0.5 - 10.0;
                }
            }
            assert!(close(px[0][oy * ow + ox], s), "{ox},{oy}");
        }
    }
}

#[test]
fn colour_table_carries_over_for_min_and_max_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pal.tif");
    {
        let ds = write_u8(&input, 1);
        let mut rb = ds.rasterband(1).unwrap();
        let mut ct = ColorTable::default();
        for i in 0..256u16 {
            let v = i as i16;
            ct.set_color_entry(i, &ColorEntry::rgba(v, 255 - v, v / 2, 255));
        }
        rb.set_color_table(&ct);
    }
    let inp = input.to_str().unwrap();
    let out = dir.path().join("min.tif");
    resample(inp, &out, &["-f", "4", "--agg", "min"]);
    let ds = Dataset::open(&out).unwrap();
    let rb = ds.rasterband(1).unwrap();
    assert_eq!(rb.color_interpretation(), ColorInterpretation::PaletteIndex);
    let ct = rb.color_table().expect("the colour table");
    assert_eq!(ct.entry_count(), 256);
    assert_eq!(ct.entry_as_rgb(10).unwrap().g, 245);
    let out = dir.path().join("mean.tif");
    resample(inp, &out, &["-f", "4", "--agg", "mean"]);
    let ds = Dataset::open(&out).unwrap();
    assert!(ds.rasterband(1).unwrap().color_table().is_none());
}

#[test]
fn vsizip_and_vrt_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    drop(write_u8(&input, 1));
    let zip = dir.path().join("in.zip");
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w').write(sys.argv[2], 'in.tif')",
        ])
        .arg(&zip)
        .arg(&input)
        .output()
        .expect("python3 for the zip");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = expected(1, 5, "sum", false);
    let out = dir.path().join("zip.tif");
    let vsi = format!("/vsizip/{}/in.tif", zip.display());
    resample(&vsi, &out, &["-f", "5", "--workers", "2"]);
    check_band(&out, 1, &want);
    // A VRT (GDAL's own create_copy) over the same file.
    let vrt = dir.path().join("in.vrt");
    {
        let src = Dataset::open(&input).unwrap();
        let drv = DriverManager::get_driver_by_name("VRT").unwrap();
        src.create_copy(&drv, &vrt, &Default::default()).unwrap();
    }
    let out = dir.path().join("vrt.tif");
    resample(vrt.to_str().unwrap(), &out, &["-f", "5", "--workers", "2"]);
    check_band(&out, 1, &want);
}

/// A static file server that answers range requests (Python's `http.server` does not, and
/// GDAL's `/vsicurl/` needs them), on a free port it prints.
const RANGE_SERVER: &str = r#"
import functools, http.server, os, re, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def send_head(self):
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not m or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, b = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
        f = open(path, "rb"); f.seek(a)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(b - a + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.left = b - a + 1
        return f
    def copyfile(self, src, dst):
        n = getattr(self, "left", None)
        if n is None:
            return super().copyfile(src, dst)
        dst.write(src.read(n))
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn vsicurl_input_from_a_local_server() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    drop(write_u8(&input, 1));
    let mut server = std::process::Command::new("python3")
        .args(["-c", RANGE_SERVER])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 for the HTTP server");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the server's port");
    let out = dir.path().join("curl.tif");
    let url = format!("/vsicurl/http://127.0.0.1:{port}/in.tif");
    let o = run(coordinator()
        .args(["-q", "--workers", "2", "resample", &url])
        .arg(&out)
        .args(["-f", "5"]));
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    check_band(&out, 1, &expected(1, 5, "sum", false));
}

#[test]
fn without_nodata_a_quarantined_window_is_marked_in_a_mask() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plain.tif");
    drop(write_u8(&input, 1));
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("run.json");
    let o = run(coordinator()
        .args(["-q", "--workers", "2", "resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "4", "--agg", "max", "--chunk-mib", "0.001"])
        .args(["--inject-fault", "segv:1", "--report"])
        .arg(&rep));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let r = report(&rep);
    let ds = Dataset::open(&out).unwrap();
    let rb = ds.rasterband(1).unwrap();
    assert_eq!(
        rb.no_data_value(),
        None,
        "no block of this input can be empty"
    );
    assert!(rb.mask_flags().unwrap().is_per_dataset());
    let (ow, oh) = (W.div_ceil(4), H.div_ceil(4));
    let mask = rb
        .open_mask_band()
        .unwrap()
        .read_as::<u8>((0, 0), (ow, oh), (ow, oh), None)
        .unwrap()
        .data()
        .to_vec();
    let mut inside = vec![false; ow * oh];
    for c in r["chunks"].as_array().unwrap() {
        if c["outcome"] == "quarantined" {
            let w: Vec<usize> = c["out_window"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            for y in w[1]..w[1] + w[3] {
                for x in w[0]..w[0] + w[2] {
                    inside[y * ow + x] = true;
                }
            }
        }
    }
    assert!(inside.iter().any(|&q| q), "something was quarantined");
    // The mask is inside the file: nothing but input, output and report in the directory.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.tif", "plain.tif", "run.json"]);
    let want = expected(1, 4, "max", false);
    let (_, px) = read_all(&out);
    for i in 0..ow * oh {
        if inside[i] {
            assert_eq!(mask[i], 0, "pixel {i}: quarantined, masked out");
        } else {
            assert_eq!(mask[i], 255, "pixel {i}");
            assert_eq!(Some(px[0][i]), want[i], "pixel {i}");
        }
    }
}
