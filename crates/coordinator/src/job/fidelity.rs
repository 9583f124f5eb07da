//! Fidelity to GDAL's data model around the pixels: which nodata value the output declares
//! (none when no block can be empty), and which band metadata carries over (unit, colour
//! interpretation, colour table, scale and offset) or is applied before aggregating. Pure
//! decisions from what `raster::inspect` read, plus the few GDAL calls that set them on the
//! output; the masks themselves are read by the workers (`worker::exec`).

use gdal::raster::{ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation, RgbaEntry};
use worker::{Agg, SampleType};

use crate::{
    os::gdal_err::{check, GdalFailure},
    raster::BandInfo,
};

/// What an input band says about its values besides nodata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputBandMeta {
    pub unit: String,
    /// GDAL's name of the colour interpretation ("Undefined" when none).
    pub color: String,
    /// The colour table of a paletted band, as RGBA entries.
    pub color_table: Option<Vec<RgbaEntry>>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

impl InputBandMeta {
    pub fn read(rb: &gdal::raster::RasterBand<'_>) -> InputBandMeta {
        let color_table = rb.color_table().map(|t| {
            (0..t.entry_count())
                .map(|i| {
                    t.entry_as_rgb(i).unwrap_or(RgbaEntry {
                        r: 0,
                        g: 0,
                        b: 0,
                        a: 0,
                    })
                })
                .collect()
        });
        InputBandMeta {
            unit: rb.unit(),
            color: rb.color_interpretation().name(),
            color_table,
            scale: rb.scale(),
            offset: rb.offset(),
        }
    }

    /// Scale and offset, when they change a value.
    pub fn affine(&self) -> Option<(f64, f64)> {
        let so = (self.scale.unwrap_or(1.0), self.offset.unwrap_or(0.0));
        (so != (1.0, 0.0)).then_some(so)
    }
}

/// Whether `agg` of the stored values, then scaled, equals `agg` of the scaled values:
/// min and max for a positive scale, mean always, sum when the offset is 0. Count ignores
/// values.
pub fn commutes(agg: Agg, affine: Option<(f64, f64)>) -> bool {
    match (agg, affine) {
        (_, None) | (Agg::Count | Agg::Mean, _) => true,
        (Agg::Min | Agg::Max, Some((s, _))) => s > 0.0,
        (Agg::Sum, Some((_, o))) => o == 0.0,
    }
}

/// Whether the workers apply scale and offset before aggregating: when any selected band's
/// do not commute with the aggregate (then every band's are applied, and the output carries
/// none).
pub fn needs_unscale(agg: Agg, bands: &[BandInfo]) -> bool {
    bands.iter().any(|b| !commutes(agg, b.meta.affine()))
}

/// Whether some output block can have no valid pixel: only when a pixel can be invalid
/// (a nodata value, a GDAL mask, or NaN in a float band). Count writes 0 for such a block.
pub fn empty_block_possible(agg: Agg, bands: &[BandInfo], ignore_mask: bool) -> bool {
    agg != Agg::Count
        && bands
            .iter()
            .any(|b| b.nodata.is_some() || (b.masked && !ignore_mask) || b.sample.is_float())
}

/// The output type and nodata, and a warning for each band whose nodata value changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NodataChoice {
    pub out_type: SampleType,
    pub nodata: Option<f64>,
    /// Bands whose own nodata value the output's replaces because the bands differ.
    pub warnings: Vec<String>,
    /// Bands whose shared nodata value the output's replaces (sum, mean: NaN).
    pub notes: Vec<String>,
}

/// The output's nodata: none when no block can be empty; else a value no valid output can
/// take. Min and max output input values, so the bands' common nodata serves; a sum or a
/// mean can equal any value, so float outputs get NaN. Without such a value, an integer
/// min/max of the default type takes the type's extreme when no input value reaches it
/// (Int16 for Int8 input: -32768), else is widened to the next type whose extreme no input
/// value reaches (Int32 and UInt32 to Float64, nodata NaN); an explicit integer `--ot` keeps
/// today's rule (the type's extreme, valid pixels moved off it and counted). A GeoTIFF
/// holds one nodata value for all bands.
pub fn choose_nodata(
    agg: Agg,
    out_type: SampleType,
    explicit_type: bool,
    bands: &[BandInfo],
    empty_possible: bool,
) -> NodataChoice {
    let shared = bands[0].nodata;
    let agree = bands
        .iter()
        .all(|b| b.nodata.map(f64::to_bits) == shared.map(f64::to_bits));
    let common = shared.filter(|&v| agree && out_type.represents(v));
    let extreme = |t: SampleType| {
        let (lo, hi) = t.range();
        if lo < 0.0 {
            lo
        } else {
            hi
        }
    };
    let (out_type, nodata) = if !empty_possible {
        (out_type, None)
    } else if matches!(agg, Agg::Min | Agg::Max) && common.is_some() {
        (out_type, common)
    } else if out_type.is_float() {
        (out_type, Some(f64::NAN))
    } else if explicit_type {
        (out_type, Some(common.unwrap_or_else(|| extreme(out_type))))
    } else if out_type == SampleType::I16 && bands.iter().all(|b| b.sample == SampleType::I8) {
        // The default for signed bytes is already wider than the input: -32768 is free.
        (out_type, Some(extreme(out_type)))
    } else {
        let wider = match out_type {
            SampleType::U8 => SampleType::U16,
            SampleType::I16 => SampleType::I32,
            SampleType::U16 => SampleType::U32,
            _ => SampleType::F64,
        };
        let nd = if wider.is_float() {
            f64::NAN
        } else {
            extreme(wider)
        };
        (wider, Some(nd))
    };
    let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let changed: Vec<String> = bands
        .iter()
        .filter_map(|b| {
            let (v, n) = (b.nodata?, nodata?);
            (!same(n, v)).then(|| {
                format!(
                    "band {}: its nodata value {v} is {n} in the output",
                    b.index
                )
            })
        })
        .collect();
    // Bands that disagree lose their own value to the GeoTIFF's one: a warning. A sum or a
    // mean trading a shared value for NaN is the documented rule: said at info level.
    let (warnings, notes) = if agree {
        let notes = changed
            .into_iter()
            .map(|c| format!("{c} (a sum or a mean could equal it)"))
            .collect();
        (Vec::new(), notes)
    } else {
        let warnings = changed
            .into_iter()
            .map(|c| {
                format!(
                    "{c} (a GeoTIFF holds one nodata value for all bands, and the bands' differ)"
                )
            })
            .collect();
        (warnings, Vec::new())
    };
    NodataChoice {
        out_type,
        nodata,
        warnings,
        notes,
    }
}

/// What an output band carries over from its input band (serialisable: a shard's journal
/// carries it to `merge`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutBandMeta {
    pub unit: Option<String>,
    pub color: Option<String>,
    /// RGBA entries.
    pub color_table: Option<Vec<[i16; 4]>>,
    /// Scale and offset the output's values still need (they commute with the aggregate).
    pub affine: Option<(f64, f64)>,
    /// Scale and offset the workers applied before aggregating (said in the metadata).
    pub applied: Option<(f64, f64)>,
}

/// The output band's metadata: the unit (not for count, a number of pixels); the colour
/// interpretation where the band's meaning is unchanged (min, max, and mean, except for a
/// palette index, whose mean means nothing); the colour table for min and max of a paletted
/// band written as Byte or UInt16; scale and offset as [`commutes`] and `unscale` say.
pub fn out_meta(agg: Agg, out_type: SampleType, band: &BandInfo, unscale: bool) -> OutBandMeta {
    let m = &band.meta;
    let keeps_values = matches!(agg, Agg::Min | Agg::Max) && !unscale;
    let palette = m.color == "Palette";
    let color_table = m
        .color_table
        .as_ref()
        .filter(|_| keeps_values && matches!(out_type, SampleType::U8 | SampleType::U16))
        .map(|t| t.iter().map(|e| [e.r, e.g, e.b, e.a]).collect());
    let color = match agg {
        _ if m.color.is_empty() || m.color == "Undefined" => None,
        _ if palette && color_table.is_none() => None,
        Agg::Min | Agg::Max | Agg::Mean => Some(m.color.clone()),
        Agg::Sum | Agg::Count => None,
    };
    let (affine, applied) = match (agg, m.affine()) {
        (Agg::Count, _) | (_, None) => (None, None),
        (_, Some(so)) if unscale => (None, Some(so)),
        (_, Some(so)) => (Some(so), None),
    };
    OutBandMeta {
        unit: (agg != Agg::Count && !m.unit.is_empty()).then(|| m.unit.clone()),
        color,
        color_table,
        affine,
        applied,
    }
}

/// Sets `meta` on an output band; each call checked.
pub fn apply(rb: &mut gdal::raster::RasterBand<'_>, meta: &OutBandMeta) -> Result<(), GdalFailure> {
    use gdal::Metadata;
    if let Some(u) = &meta.unit {
        let c =
            std::ffi::CString::new(u.as_str()).map_err(|e| GdalFailure::Reported(e.to_string()))?;
        crate::os::set_unit(rb, &c)?;
    }
    if let Some(t) = &meta.color_table {
        let mut ct = ColorTable::new(PaletteInterpretation::Rgba);
        for (i, e) in t.iter().enumerate() {
            let [r, g, b, a] = *e;
            ct.set_color_entry(i as u16, &ColorEntry::Rgba(RgbaEntry { r, g, b, a }));
        }
        check(|| {
            rb.set_color_table(&ct);
            Ok::<_, gdal::errors::GdalError>(())
        })?;
    }
    if let Some(name) = &meta.color {
        if let Ok(ci) = ColorInterpretation::from_name(name) {
            check(|| rb.set_color_interpretation(ci))?;
        }
    }
    if let Some((s, o)) = meta.affine {
        check(|| rb.set_scale(s))?;
        check(|| rb.set_offset(o))?;
    }
    if let Some((s, o)) = meta.applied {
        check(|| {
            rb.set_metadata_item(
                "BLOCKSUM_SCALE_OFFSET_APPLIED",
                &format!("scale={s} offset={o}: the input's scale and offset were applied to each pixel before aggregating"),
                "",
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(sample: SampleType, nodata: Option<f64>, masked: bool) -> BandInfo {
        BandInfo {
            index: 1,
            sample,
            nodata,
            description: String::new(),
            masked,
            meta: InputBandMeta::default(),
        }
    }

    #[test]
    fn no_nodata_when_no_block_can_be_empty() {
        let b = [band(SampleType::U8, None, false)];
        assert!(!empty_block_possible(Agg::Max, &b, false));
        let c = choose_nodata(Agg::Max, SampleType::U8, false, &b, false);
        assert_eq!((c.out_type, c.nodata), (SampleType::U8, None));
        // A mask makes an empty block possible, unless ignored.
        let m = [band(SampleType::U8, None, true)];
        assert!(empty_block_possible(Agg::Max, &m, false));
        assert!(!empty_block_possible(Agg::Max, &m, true));
        // Count never has an empty block: it writes 0.
        assert!(!empty_block_possible(
            Agg::Count,
            &[band(SampleType::F32, Some(-1.0), true)],
            false
        ));
    }

    #[test]
    fn nodata_never_collides() {
        // Byte max with a mask and no nodata: widened to UInt16, whose 65535 no byte reaches.
        let m = [band(SampleType::U8, None, true)];
        let c = choose_nodata(Agg::Max, SampleType::U8, false, &m, true);
        assert_eq!((c.out_type, c.nodata), (SampleType::U16, Some(65535.0)));
        let c = choose_nodata(Agg::Min, SampleType::I32, false, &m, true);
        assert_eq!(c.out_type, SampleType::F64);
        assert!(c.nodata.unwrap().is_nan());
        // Min/max keep the common nodata: no output equals it.
        let n = [band(SampleType::I16, Some(-9999.0), false)];
        let c = choose_nodata(Agg::Min, SampleType::I16, false, &n, true);
        assert_eq!((c.out_type, c.nodata), (SampleType::I16, Some(-9999.0)));
        assert!(c.warnings.is_empty());
        // A sum could equal -9999: NaN, with a warning.
        let c = choose_nodata(Agg::Sum, SampleType::F64, false, &n, true);
        assert!(c.nodata.unwrap().is_nan());
        assert_eq!((c.warnings.len(), c.notes.len()), (0, 1));
        // An explicit integer type keeps the old rule.
        let c = choose_nodata(Agg::Sum, SampleType::U8, true, &n, true);
        assert_eq!(c.nodata, Some(255.0));
        // Signed bytes: the default Int16 keeps their nodata, or takes its minimum, which
        // no signed byte reaches.
        let s = [band(SampleType::I8, Some(-128.0), false)];
        let c = choose_nodata(Agg::Min, SampleType::I16, false, &s, true);
        assert_eq!((c.out_type, c.nodata), (SampleType::I16, Some(-128.0)));
        let s = [band(SampleType::I8, None, true)];
        let c = choose_nodata(Agg::Max, SampleType::I16, false, &s, true);
        assert_eq!((c.out_type, c.nodata), (SampleType::I16, Some(-32768.0)));
    }

    #[test]
    fn scale_offset_commute_where_they_should() {
        assert!(commutes(Agg::Mean, Some((-2.0, 5.0))));
        assert!(commutes(Agg::Min, Some((0.5, 5.0))));
        assert!(!commutes(Agg::Max, Some((-0.5, 0.0))));
        assert!(commutes(Agg::Sum, Some((0.1, 0.0))));
        assert!(!commutes(Agg::Sum, Some((0.1, -3.0))));
    }
}
