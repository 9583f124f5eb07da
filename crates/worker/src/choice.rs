//! Which decoder reads the input, and why: the table of what the native decoder may read
//! (GDAL's view of the file against its directory, [`native_refusal`]), `--decoder auto`'s
//! speed table ([`auto_prefers_gdal`]), and the one-line reason `coordinator plan` prints.
//! The decision is made once per process at open ([`crate::exec::ChunkRunner::open`]) from a
//! [`GdalView`] the reader collects; this module only says what it is, with no GDAL call.

use serde::Serialize;
use tiffdec::{Compression, Layout, Predictor};

use crate::types::SampleType;

/// The decoder that will read the input's pixels, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecoderChoice {
    /// `native` or `gdal`.
    pub decoder: &'static str,
    /// What the native decoder reads ("tiled GTiff, DEFLATE, predictor 3, Float32, 1
    /// band"), or why GDAL reads it.
    pub reason: String,
}

impl DecoderChoice {
    pub fn native(reason: String) -> DecoderChoice {
        DecoderChoice {
            decoder: "native",
            reason,
        }
    }

    pub fn gdal(reason: String) -> DecoderChoice {
        DecoderChoice {
            decoder: "gdal",
            reason,
        }
    }

    pub fn is_native(&self) -> bool {
        self.decoder == "native"
    }
}

impl std::fmt::Display for DecoderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.decoder, self.reason)
    }
}

/// The layout in a few words: "tiled GTiff, DEFLATE, predictor 3, Float32, 3 bands chunky".
pub fn describe(l: &Layout) -> String {
    let bands = match (l.samples, l.planar) {
        (1, _) => "1 band".to_string(),
        (n, true) => format!("{n} bands planar"),
        (n, false) => format!("{n} bands chunky"),
    };
    format!(
        "{} {}, {}, predictor {}, {}, {bands}",
        if l.tiled { "tiled" } else { "striped" },
        if l.bigtiff { "BigTIFF" } else { "GTiff" },
        l.compression.name(),
        l.predictor.number(),
        l.kind.gdal_name(),
    )
}

/// `auto`'s decision table for a layout the native decoder reads correctly: `Some(why)` where
/// GDAL decodes it faster, so that `auto` never picks the slower path. `--decoder native`
/// ignores it.
///
/// Measured (`cargo run --release -p blocksum-tiffdec --example vs_gdal -- --repeats 7
/// FILE...`: one thread, whole 4096² rasters made by `coordinator synth` and
/// `gdal_translate -co TILED=YES -co COMPRESS=LZW -co PREDICTOR=P [-ot T -scale]`, read a
/// block row at a time, native and GDAL 3.6.2 alternately, best of each; GDAL's time over
/// ours, so above 1 means native is faster; the range over 3 runs on a 2 vCPU VM that other
/// jobs loaded, hence the spread):
///
/// | codec | predictor | type | GDAL / native | auto |
/// |---|---|---|---:|---|
/// | DEFLATE | 3 | Float32 | 2.46 | native |
/// | LZW | 1 | Float32 | 0.38-0.55 | GDAL |
/// | LZW | 2 | Float32 | 0.37-0.59 | GDAL |
/// | LZW | 3 | Float32 | 0.67-1.00 | GDAL |
/// | LZW | 2 | Int16 | 0.63-1.64 | GDAL (one run of three above 1: not clearly faster) |
/// | LZW | 1 | Byte | 0.36-0.70 | GDAL |
/// | LZW | 2 | Byte | 0.54-0.81 | GDAL |
///
/// `weezl` decodes LZW at roughly half libtiff's speed here, so the predictor's share of
/// the time (which the native path wins) never makes up for it: every LZW layout stays with
/// GDAL. None, DEFLATE and ZSTD are native everywhere (`scripts/bench.sh` measures them
/// end to end per predictor).
pub fn auto_prefers_gdal(l: &Layout) -> Option<String> {
    match (l.compression, l.predictor) {
        (Compression::Lzw, p) => Some(format!(
            "LZW (predictor {}): libtiff decodes it faster than the native decoder (measured)",
            Predictor::number(p)
        )),
        (Compression::None | Compression::Deflate | Compression::Zstd, _) => None,
    }
}

/// Why a chunk read as `want` goes to GDAL when the file stores `have` (GDAL converts).
pub fn sample_mismatch(want: SampleType, have: SampleType) -> String {
    format!("the bands are read as {want}, the file stores {have} (GDAL converts)")
}

/// What GDAL exposes of a file, asked at open: the reference the native decoder must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GdalView {
    /// The driver's short name (`GTiff`).
    pub driver: String,
    pub width: u64,
    pub height: u64,
    /// Per band, in order.
    pub bands: Vec<BandView>,
    /// The dataset's `IMAGE_STRUCTURE` items that say GDAL converts: `COMPRESSION` (e.g.
    /// `YCbCr JPEG`) and `SOURCE_COLOR_SPACE` (`CMYK`, `YCbCr`, `CIELAB`).
    pub compression: Option<String>,
    pub source_color_space: Option<String>,
}

/// What GDAL exposes of one band.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BandView {
    /// GDAL's type name (`Byte`, `Int16`, ...).
    pub data_type: String,
    /// GDAL's colour interpretation name (`Gray`, `Red`, `Palette`, `Cyan`, ...).
    pub color: String,
    /// The band's `IMAGE_STRUCTURE` `PIXELTYPE` (`SIGNEDBYTE`) and `NBITS`.
    pub pixel_type: Option<String>,
    pub nbits: Option<String>,
}

/// Colour interpretations under which GDAL hands out the stored samples as they are.
const RAW_COLORS: [&str; 7] = [
    "Undefined",
    "Gray",
    "Palette",
    "Red",
    "Green",
    "Blue",
    "Alpha",
];

/// Why the native decoder cannot return what GDAL returns for this file (`None`: it can).
/// The one decision table both `auto` (which then reads with GDAL) and `--decoder native`
/// (which then refuses the file at open, exit 3) follow; the first row that matches gives
/// the reason `coordinator plan` prints.
///
/// | row | condition | why |
/// |---|---|---|
/// | driver | GDAL's driver is not GTiff | another driver's view |
/// | photometric | SEPARATED (CMYK) | GDAL exposes 8-bit CMYK as RGBA |
/// | photometric | YCbCr | GDAL converts YCbCr (subsampled, or under JPEG) to RGB |
/// | photometric | CIELab, ICCLab, ITULab | GDAL converts (or refuses) Lab |
/// | photometric | LogL, LogLuv | GDAL converts them to floating point |
/// | photometric | anything but MinIsWhite, MinIsBlack, RGB, palette | not stored samples for certain |
/// | structure | `IMAGE_STRUCTURE` `SOURCE_COLOR_SPACE` or `COMPRESSION=YCbCr JPEG` | GDAL converted the colour space |
/// | band | `PIXELTYPE` (`SIGNEDBYTE`) where the directory does not declare signed 8-bit samples (SampleFormat 2) | GDAL's signed bytes are not the stored type; declared ones pass, read as Int8 by both decoders |
/// | band | `NBITS` | GDAL unpacks samples of fewer bits |
/// | band | colour interpretation not Undefined, Gray, Palette, Red, Green, Blue, Alpha | GDAL's colour model is not the stored one |
/// | shape | size or band count differ from the directory's | GDAL shows other bands |
/// | type | a band's type differs from the directory's | GDAL converts the samples |
///
/// MinIsWhite passes: GDAL inverts only 1-bit MinIsWhite (the native decoder reads 8 bits
/// and more), and the differential test over GDAL-written files checks it. Palette passes:
/// GDAL hands out the indexes, the colour table beside them.
pub fn native_refusal(l: &Layout, sample: SampleType, g: &GdalView) -> Option<String> {
    if let Some(why) = driver_refusal(g) {
        return Some(why);
    }
    if let Some(why) = photometric_refusal(l) {
        return Some(why);
    }
    if let Some(cs) = &g.source_color_space {
        return Some(format!(
            "GDAL converts its colour space from {cs} (IMAGE_STRUCTURE SOURCE_COLOR_SPACE={cs})"
        ));
    }
    if let Some(c) = g.compression.as_deref().filter(|c| c.contains("YCbCr")) {
        return Some(format!(
            "GDAL converts YCbCr to RGB (IMAGE_STRUCTURE COMPRESSION={c})"
        ));
    }
    for (i, b) in g.bands.iter().enumerate() {
        let n = i + 1;
        // Signed bytes that the directory declares signed (SampleFormat 2): both decoders
        // read the stored bytes as they are, as signed.
        let signed_read_as_such =
            b.pixel_type.as_deref() == Some("SIGNEDBYTE") && sample == SampleType::I8;
        if let Some(p) = b.pixel_type.as_ref().filter(|_| !signed_read_as_such) {
            return Some(format!(
                "band {n} holds signed bytes (IMAGE_STRUCTURE PIXELTYPE={p}): read through GDAL"
            ));
        }
        if let Some(bits) = &b.nbits {
            return Some(format!(
                "band {n} has {bits}-bit samples (IMAGE_STRUCTURE NBITS={bits}) that GDAL unpacks"
            ));
        }
        if !RAW_COLORS.contains(&b.color.as_str()) {
            return Some(format!(
                "GDAL interprets band {n} as {}, not as the stored samples",
                b.color
            ));
        }
    }
    if (g.width, g.height) != (l.width, l.height) || g.bands.len() != l.samples {
        return Some(format!(
            "the directory says {}x{} with {} samples, GDAL {}x{} with {} bands",
            l.width,
            l.height,
            l.samples,
            g.width,
            g.height,
            g.bands.len()
        ));
    }
    for (i, b) in g.bands.iter().enumerate() {
        if SampleType::from_gdal_name(&b.data_type) != Some(sample) {
            return Some(format!(
                "band {} is {} for GDAL, {sample} in the directory",
                i + 1,
                b.data_type
            ));
        }
    }
    None
}

/// The first row of [`native_refusal`]'s table, which needs no directory: asked before the
/// file is parsed as a TIFF.
pub fn driver_refusal(g: &GdalView) -> Option<String> {
    (g.driver != "GTiff").then(|| format!("GDAL reads it with {}, not GTiff", g.driver))
}

/// The photometric rows of [`native_refusal`]'s table.
fn photometric_refusal(l: &Layout) -> Option<String> {
    let sub = match l.subsampling {
        Some([h, v]) if (h, v) != (1, 1) => format!(", subsampled {h}x{v}"),
        _ => String::new(),
    };
    let why = match l.photometric {
        // Absent: libtiff and GDAL read the samples as grey levels.
        None | Some(0..=3) => return None,
        Some(5) => "photometric SEPARATED (CMYK): GDAL exposes 8-bit CMYK as RGBA".to_string(),
        Some(6) => format!("photometric YCbCr{sub}: GDAL converts it to RGB"),
        Some(8) => "photometric CIELab: GDAL converts it".to_string(),
        Some(9) => "photometric ICCLab: GDAL converts it".to_string(),
        Some(10) => "photometric ITULab: GDAL converts it".to_string(),
        Some(32844) => "photometric LogL: GDAL converts it to floating point".to_string(),
        Some(32845) => "photometric LogLuv: GDAL converts it to floating point".to_string(),
        Some(p) => {
            format!("photometric {p}: not one whose samples GDAL exposes unchanged for certain")
        }
    };
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiffdec::{ByteOrder, SampleKind};

    fn layout(samples: usize, photometric: Option<u16>) -> Layout {
        Layout {
            order: ByteOrder::Little,
            bigtiff: false,
            width: 10,
            height: 8,
            samples,
            kind: SampleKind::U8,
            planar: false,
            compression: Compression::Deflate,
            predictor: Predictor::None,
            tiled: false,
            block_w: 10,
            block_h: 8,
            offsets: vec![8],
            byte_counts: vec![80],
            photometric,
            subsampling: None,
        }
    }

    fn view(colors: &[&str]) -> GdalView {
        GdalView {
            driver: "GTiff".into(),
            width: 10,
            height: 8,
            bands: colors
                .iter()
                .map(|c| BandView {
                    data_type: "Byte".into(),
                    color: c.to_string(),
                    ..BandView::default()
                })
                .collect(),
            ..GdalView::default()
        }
    }

    #[test]
    fn stored_samples_go_native() {
        let rgba = ["Red", "Green", "Blue", "Alpha"];
        assert_eq!(
            native_refusal(&layout(1, Some(1)), SampleType::U8, &view(&["Gray"])),
            None
        );
        assert_eq!(
            native_refusal(&layout(1, None), SampleType::U8, &view(&["Gray"])),
            None
        );
        assert_eq!(
            native_refusal(&layout(1, Some(0)), SampleType::U8, &view(&["Undefined"])),
            None
        );
        assert_eq!(
            native_refusal(&layout(1, Some(3)), SampleType::U8, &view(&["Palette"])),
            None
        );
        assert_eq!(
            native_refusal(&layout(4, Some(2)), SampleType::U8, &view(&rgba)),
            None
        );
        // Signed bytes the directory declares signed, as GDAL 3.6 shows them (the reader
        // names the band's type Int8 whichever way GDAL shows it).
        let mut s8 = layout(1, Some(1));
        s8.kind = SampleKind::I8;
        let mut signed = view(&["Gray"]);
        signed.bands[0].data_type = "Int8".into();
        signed.bands[0].pixel_type = Some("SIGNEDBYTE".into());
        assert_eq!(native_refusal(&s8, SampleType::I8, &signed), None);
    }

    #[test]
    fn every_row_says_why() {
        let rgba = ["Red", "Green", "Blue", "Alpha"];
        let refused = |l: &Layout, g: &GdalView| native_refusal(l, SampleType::U8, g).unwrap();
        let mut png = view(&["Gray"]);
        png.driver = "PNG".into();
        assert!(refused(&layout(1, Some(1)), &png).contains("PNG"));
        // GDAL shows 8-bit CMYK as RGBA: four bands of Byte, nothing else to tell.
        assert!(refused(&layout(4, Some(5)), &view(&rgba)).contains("SEPARATED (CMYK)"));
        let mut ycc = layout(3, Some(6));
        ycc.subsampling = Some([2, 2]);
        let why = refused(&ycc, &view(&rgba[..3]));
        assert!(why.contains("YCbCr, subsampled 2x2"), "{why}");
        assert!(refused(&layout(3, Some(8)), &view(&rgba)).contains("CIELab"));
        assert!(refused(&layout(1, Some(32845)), &view(&["Gray"])).contains("LogLuv"));
        assert!(refused(&layout(1, Some(4)), &view(&["Gray"])).contains("photometric 4"));
        let mut cs = view(&rgba);
        cs.source_color_space = Some("CMYK".into());
        assert!(refused(&layout(4, Some(2)), &cs).contains("SOURCE_COLOR_SPACE=CMYK"));
        let mut jpeg = view(&rgba[..3]);
        jpeg.compression = Some("YCbCr JPEG".into());
        assert!(refused(&layout(3, Some(2)), &jpeg).contains("COMPRESSION=YCbCr JPEG"));
        let mut signed = view(&["Gray"]);
        signed.bands[0].pixel_type = Some("SIGNEDBYTE".into());
        assert!(refused(&layout(1, Some(1)), &signed).contains("PIXELTYPE=SIGNEDBYTE"));
        let mut nbits = view(&["Gray"]);
        nbits.bands[0].nbits = Some("4".into());
        assert!(refused(&layout(1, Some(1)), &nbits).contains("NBITS=4"));
        assert!(refused(&layout(1, Some(1)), &view(&["Cyan"])).contains("Cyan"));
        assert!(refused(&layout(3, Some(1)), &view(&["Gray"])).contains("1 bands"));
        let mut int16 = view(&["Gray"]);
        int16.bands[0].data_type = "Int16".into();
        assert!(refused(&layout(1, Some(1)), &int16).contains("Int16 for GDAL"));
    }
}
