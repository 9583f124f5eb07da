//! The native decoder end to end: `resample --decoder native` and `--decoder gdal` write the
//! same pixels through the real worker pool, the report counts which decoder read each
//! chunk, `auto` falls back to GDAL for a codec the native decoder does not handle (JPEG)
//! or decodes slower than GDAL (LZW), `native` refuses the first and reads the second, and
//! `coordinator plan` says which decoder will read and why.

use std::{path::Path, process::Command};

use crate::common::{
    coordinator, read_all, report, resample_cmd, run, same_pixels, stderr, write_f32, RasterSpec,
};

fn translate(src: &Path, dst: &Path, opts: &[&str]) {
    translate_with(src, dst, &[], opts)
}

/// `gdal_translate` with `args` (e.g. `-ot Byte`) and creation options `opts`.
fn translate_with(src: &Path, dst: &Path, args: &[&str], opts: &[&str]) {
    let mut c = Command::new("gdal_translate");
    c.arg("-q").args(args);
    for o in opts {
        c.args(["-co", o]);
    }
    let st = c
        .arg(src)
        .arg(dst)
        .status()
        .expect("running gdal_translate");
    assert!(st.success(), "gdal_translate {opts:?}");
}

/// Resamples `input` with `decoder`; the output's pixels and the report's native reads.
fn resample(input: &Path, decoder: &str, workers: &str) -> (Vec<Vec<f64>>, u64, u64) {
    let dir = input.parent().unwrap();
    let out = dir.join(format!("out-{decoder}-{workers}.tif"));
    let rep = dir.join(format!("rep-{decoder}-{workers}.json"));
    let o = run(resample_cmd(workers, input, &out)
        .args(["--factor", "5", "--chunk-mib", "0.05", "--overwrite"])
        .args(["--decoder", decoder, "--report"])
        .arg(&rep));
    assert!(o.status.success(), "{decoder}: {}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["options"]["decoder"], decoder);
    let totals = &r["totals"];
    let done = totals["done"].as_u64().unwrap() + totals["done_in_process"].as_u64().unwrap();
    (
        read_all(&out).1,
        totals["native_reads"].as_u64().unwrap(),
        done,
    )
}

#[test]
fn native_and_gdal_decoders_write_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.tif");
    let spec = RasterSpec {
        width: 333,
        height: 211,
        bands: 2,
        tile: Some(64),
        ..RasterSpec::default()
    };
    write_f32(&base, &spec);
    let pred3 = dir.path().join("pred3.tif");
    translate(
        &base,
        &pred3,
        &[
            "COMPRESS=DEFLATE",
            "PREDICTOR=3",
            "TILED=YES",
            "BLOCKXSIZE=32",
            "BLOCKYSIZE=48",
        ],
    );
    let striped = dir.path().join("striped.tif");
    translate(
        &base,
        &striped,
        &[
            "COMPRESS=ZSTD",
            "PREDICTOR=2",
            "INTERLEAVE=BAND",
            "BLOCKYSIZE=9",
        ],
    );
    for input in [&base, &pred3, &striped] {
        let (gdal, gdal_native, _) = resample(input, "gdal", "2");
        assert_eq!(gdal_native, 0, "{input:?}: --decoder gdal read natively");
        let (native, native_reads, done) = resample(input, "native", "2");
        assert!(
            done > 1 && native_reads == done,
            "{input:?}: {native_reads} of {done}"
        );
        assert!(
            gdal.iter().zip(&native).all(|(a, b)| same_pixels(a, b)),
            "{input:?}: the decoders disagree"
        );
        let (inproc, inproc_reads, _) = resample(input, "native", "0");
        assert!(inproc_reads > 0);
        assert!(gdal.iter().zip(&inproc).all(|(a, b)| same_pixels(a, b)));
    }
}

#[test]
fn auto_falls_back_to_gdal_and_native_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.tif");
    let spec = RasterSpec {
        width: 120,
        height: 90,
        tile: Some(32),
        ..RasterSpec::default()
    };
    write_f32(&base, &spec);
    let lzw = dir.path().join("lzw.tif");
    translate(&base, &lzw, &["COMPRESS=LZW", "PREDICTOR=2", "TILED=YES"]);
    let (want, _, _) = resample(&base, "gdal", "1");
    let (got, native_reads, _) = resample(&lzw, "auto", "1");
    assert_eq!(native_reads, 0, "auto leaves LZW to GDAL (measured faster)");
    assert!(want.iter().zip(&got).all(|(a, b)| same_pixels(a, b)));
    let (got, native_reads, done) = resample(&lzw, "native", "1");
    assert_eq!(native_reads, done, "--decoder native reads LZW itself");
    assert!(want.iter().zip(&got).all(|(a, b)| same_pixels(a, b)));
    let (_, auto_reads, done) = resample(&base, "auto", "1");
    assert_eq!(auto_reads, done, "auto reads DEFLATE natively");

    let jpeg = dir.path().join("jpeg.tif");
    translate_with(
        &base,
        &jpeg,
        &["-ot", "Byte", "-scale"],
        &["COMPRESS=JPEG", "TILED=YES"],
    );
    let o = run(
        resample_cmd("1", &jpeg, dir.path().join("never.tif")).args([
            "--factor",
            "5",
            "--decoder",
            "native",
        ]),
    );
    // Refused before any worker starts: bad input, one line, with the reason.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("--decoder native cannot read"), "{err}");
    assert!(err.contains("JPEG compression"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.path().join("never.tif").exists());
}

/// `coordinator plan` names the decoder and the reason, in text and JSON, as the workers
/// will decide it.
#[test]
fn plan_says_which_decoder_reads_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.tif");
    let spec = RasterSpec {
        width: 100,
        height: 80,
        tile: Some(32),
        ..RasterSpec::default()
    };
    write_f32(&base, &spec);
    let pred3 = dir.path().join("pred3.tif");
    translate(
        &base,
        &pred3,
        &["COMPRESS=DEFLATE", "PREDICTOR=3", "TILED=YES"],
    );
    let lzw = dir.path().join("lzw.tif");
    translate(&base, &lzw, &["COMPRESS=LZW", "PREDICTOR=2", "TILED=YES"]);
    let jpeg = dir.path().join("jpeg.tif");
    translate_with(
        &base,
        &jpeg,
        &["-ot", "Byte", "-scale"],
        &["COMPRESS=JPEG", "TILED=YES"],
    );
    let plan = |input: &Path, extra: &[&str]| {
        let o = run(coordinator()
            .arg("plan")
            .arg(input)
            .args(["--factor", "4"])
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("decoder").map(|r| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no decoder line in:\n{text}"))
    };
    assert_eq!(
        plan(&pred3, &[]),
        "native: tiled GTiff, DEFLATE, predictor 3, Float32, 1 band"
    );
    assert!(
        plan(&lzw, &[]).starts_with("gdal: LZW (predictor 2): libtiff decodes it faster"),
        "{}",
        plan(&lzw, &[])
    );
    assert_eq!(
        plan(&lzw, &["--decoder", "native"]),
        "native: tiled GTiff, LZW, predictor 2, Float32, 1 band (--decoder native)"
    );
    // Asked for GDAL: what the default would do is said too.
    assert_eq!(
        plan(&pred3, &["--decoder", "gdal"]),
        "gdal: --decoder gdal; the default (--decoder auto) would read with native: tiled GTiff, DEFLATE, predictor 3, Float32, 1 band"
    );
    let lzw_gdal = plan(&lzw, &["--decoder", "gdal"]);
    assert!(
        lzw_gdal.contains("the default (--decoder auto) would read with gdal: LZW (predictor 2)"),
        "{lzw_gdal}"
    );
    let j = plan(&jpeg, &[]);
    assert!(
        j.starts_with("gdal: ") && j.contains("JPEG compression (7) is not supported natively"),
        "{j}"
    );

    let o = run(coordinator()
        .arg("plan")
        .arg(&lzw)
        .args(["--factor", "4", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decoder"]["decoder"], "gdal");
    assert!(v["decoder"]["reason"].as_str().unwrap().contains("LZW"));
}
