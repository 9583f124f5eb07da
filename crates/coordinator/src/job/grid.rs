//! The output grid: F x F blocks of the input (`--factor`), or any north-up target grid in
//! the input's CRS (`--tr`, `--te`, `--tap`, `--like`), onto which each input pixel
//! contributes the fraction of its area inside each cell (`worker::weighted`). Resolving a
//! request against the input gives a [`Mapping`]; a target grid that is an integer multiple
//! of the input's, aligned on its origin and of the same size, becomes the factor it is, so
//! its output is `--factor`'s, bit for bit.

use std::path::{Path, PathBuf};

use gdal::{spatial_ref::SpatialRef, Dataset};
use serde::{Deserialize, Serialize};
use worker::{Axis, Window};

use crate::{error::CoordError, raster::RasterInfo};

/// The grid as asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum GridRequest {
    /// `--factor F`.
    Factor(u32),
    /// `--tr`, `--te`, `--tap`, `--like`.
    Target(TargetRequest),
}

/// A target grid as asked for, in the input's CRS units. Either `like`, or `tr` with an
/// optional `te` and `tap` (the command line's resolution checks that).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetRequest {
    /// `--tr XRES YRES`: positive and finite.
    pub tr: Option<(f64, f64)>,
    /// `--te XMIN YMIN XMAX YMAX`.
    pub te: Option<[f64; 4]>,
    /// `--tap`: the extent's edges on multiples of the resolution.
    pub tap: bool,
    /// `--like REF`: REF's size, transform and CRS.
    pub like: Option<PathBuf>,
}

/// The grid resolved against the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Mapping {
    /// Each output pixel aggregates an F x F block (partial at the right and bottom edges).
    Factor { factor: u64 },
    /// Each cell aggregates the input pixels it overlaps, weighted by the overlap.
    Cells { target: TargetGrid },
}

/// A north-up target grid in the input's CRS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetGrid {
    /// Cells across and down.
    pub width: u64,
    pub height: u64,
    /// GDAL's geotransform of the output.
    pub geo_transform: [f64; 6],
    /// The cells' edges in input pixels.
    pub x: Axis,
    pub y: Axis,
}

impl TargetGrid {
    /// The input window the cells `out` need: every pixel with a positive weight in one of
    /// them (empty where they lie outside the input).
    pub fn window(&self, out: Window, (width, height): (u64, u64)) -> Window {
        let (x0, x1) = self.x.span((out.x, out.x + out.w), width);
        let (y0, y1) = self.y.span((out.y, out.y + out.h), height);
        Window {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    /// Whether the grid holds every pixel of the input (`width x height` pixels): nothing
    /// of the input lies outside its cells (edges within 1e-9 of a pixel edge count as on
    /// it, the weights' rounding rule).
    pub fn covers(&self, (width, height): (u64, u64)) -> bool {
        let holds = |a: &Axis, cells: u64, pixels: u64| {
            a.edge(0) <= 1e-9 && a.edge(cells) >= pixels as f64 - 1e-9
        };
        holds(&self.x, self.width, width) && holds(&self.y, self.height, height)
    }

    /// Whether every cell overlaps the input (`width x height` pixels): no cell can be
    /// empty for want of input.
    pub fn covered_by(&self, (width, height): (u64, u64)) -> bool {
        let inside = |a: &Axis, cells: u64, pixels: u64| {
            a.edge(1) > 0.0 && a.edge(cells - 1) < pixels as f64
        };
        inside(&self.x, self.width, width) && inside(&self.y, self.height, height)
    }
}

impl Mapping {
    pub fn factor(&self) -> Option<u64> {
        match self {
            Mapping::Factor { factor } => Some(*factor),
            Mapping::Cells { .. } => None,
        }
    }

    /// The output's size for an input of `width x height`.
    pub fn out_size(&self, (width, height): (u64, u64)) -> (u64, u64) {
        match self {
            Mapping::Factor { factor } => (width.div_ceil(*factor), height.div_ceil(*factor)),
            Mapping::Cells { target } => (target.width, target.height),
        }
    }

    /// The output's geotransform, from the input's.
    pub fn geo_transform(&self, input: Option<[f64; 6]>) -> Option<[f64; 6]> {
        match self {
            Mapping::Factor { factor } => input.map(|g| {
                let f = *factor as f64;
                [g[0], g[1] * f, g[2] * f, g[3], g[4] * f, g[5] * f]
            }),
            Mapping::Cells { target } => Some(target.geo_transform),
        }
    }

    /// How `plan` and the report name it.
    pub fn describe(&self) -> String {
        match self {
            Mapping::Factor { factor } => format!("{factor}x{factor} blocks"),
            Mapping::Cells { target: t } => {
                let g = t.geo_transform;
                format!(
                    "cells of {} x {} (CRS units) from ({}, {}); {:.6} x {:.6} input pixels per cell, weighted by overlap",
                    g[1], -g[5], g[0], g[3], t.x.step, t.y.step
                )
            }
        }
    }
}

impl GridRequest {
    /// The grid of an overview level `f` times coarser than the output `(gt, size)` this
    /// request made: blocks of F x f, or cells f times larger from the same corner, as many
    /// as cover the output (GDAL's overview of `size` is `ceil(size / f)`).
    pub fn coarsened(
        &self,
        f: u32,
        (gt, (w, h)): (Option<[f64; 6]>, (u64, u64)),
    ) -> Result<GridRequest, CoordError> {
        let too_big =
            || CoordError::BadInput(format!("--pyramid: a level {f} times coarser does not fit"));
        match self {
            GridRequest::Factor(factor) => factor
                .checked_mul(f)
                .map(GridRequest::Factor)
                .ok_or_else(too_big),
            GridRequest::Target(_) => {
                let g = gt.ok_or_else(|| {
                    CoordError::Internal("a target grid's output has no geotransform".into())
                })?;
                let (rx, ry) = (g[1] * f as f64, -g[5] * f as f64);
                let (nx, ny) = (w.div_ceil(f as u64) as f64, h.div_ceil(f as u64) as f64);
                Ok(GridRequest::Target(TargetRequest {
                    tr: Some((rx, ry)),
                    te: Some([g[0], g[3] - ny * ry, g[0] + nx * rx, g[3]]),
                    tap: false,
                    like: None,
                }))
            }
        }
    }
}

fn usage(msg: String) -> CoordError {
    CoordError::Usage(msg)
}

/// A north-up geotransform (no rotation, pixels growing right and down), or why not.
fn north_up(g: &[f64; 6], whose: &str) -> Result<(), CoordError> {
    if g[2] != 0.0 || g[4] != 0.0 {
        return Err(CoordError::BadInput(format!(
            "{whose} rotated (geotransform terms {} and {}): only north-up grids are aggregated; warp it first (reprojection and rotation are gdalwarp's job)",
            g[2], g[4]
        )));
    }
    if !(g[1] > 0.0 && g[5] < 0.0 && g.iter().all(|v| v.is_finite())) {
        return Err(CoordError::BadInput(format!(
            "{whose} not north-up (pixel size {} x {}): only north-up grids are aggregated; warp it first with gdalwarp",
            g[1], g[5]
        )));
    }
    Ok(())
}

/// Cells of `step` needed from `lo` to `hi`: whole cells, so nothing past `hi` is dropped.
fn cells(lo: f64, hi: f64, step: f64) -> f64 {
    // 0.3 / 0.1 is 2.9999999999999996 in floating point: 3 cells, not 2.
    Axis::snap((hi - lo) / step).ceil().max(1.0)
}

/// `--like REF` takes REF's CRS too: an input without a CRS gets REF's for its output (the
/// grid is REF's, in REF's units; the input is taken to be in them). An input with a CRS
/// keeps it ([`resolve`] refuses a REF in another one).
pub fn adopt_like_crs(req: &GridRequest, info: &mut RasterInfo) -> Result<(), CoordError> {
    let GridRequest::Target(TargetRequest {
        like: Some(path), ..
    }) = req
    else {
        return Ok(());
    };
    if !info.projection.is_empty() {
        return Ok(());
    }
    let theirs = open_like(path)?.projection();
    if !theirs.is_empty() {
        tracing::info!(
            "--like '{}': the input has no CRS; the output takes the reference's",
            path.display()
        );
        info.projection = theirs;
    }
    Ok(())
}

fn open_like(path: &Path) -> Result<Dataset, CoordError> {
    if let Some(what) = crate::raster::special_file(path) {
        return Err(CoordError::BadInput(format!(
            "--like '{}': it is {what}, not a raster file",
            path.display()
        )));
    }
    crate::os::gdal_err::reset();
    Dataset::open(path).map_err(|e| {
        // The bindings' open error does not carry GDAL's message; its error state does.
        let why = match crate::os::gdal_err::take() {
            _ if !path.to_string_lossy().starts_with("/vsi") && !path.exists() => {
                "it does not exist".to_string()
            }
            Some(m) if !m.is_empty() => format!("GDAL cannot read it: {m}"),
            _ if e.to_string().contains("NULL pointer") => {
                "GDAL recognises no raster format in it".to_string()
            }
            _ => format!("GDAL cannot read it: {e}"),
        };
        CoordError::BadInput(format!("--like '{}': {why}", path.display()))
    })
}

/// Resolves `req` against the input `info`.
pub fn resolve(req: &GridRequest, info: &RasterInfo) -> Result<Mapping, CoordError> {
    let t = match req {
        GridRequest::Factor(f) => return Ok(Mapping::Factor { factor: *f as u64 }),
        GridRequest::Target(t) => t,
    };
    let g = info.geo_transform.ok_or_else(|| {
        CoordError::BadInput(format!(
            "input '{}' has no geotransform: a target grid (--tr, --te, --like) needs a georeferenced input (use --factor)",
            info.path.display()
        ))
    })?;
    north_up(&g, "the input's grid is")?;
    let (gt, size) = match &t.like {
        Some(r) => like(r, info)?,
        None => from_resolution(t, &g, (info.width, info.height))?,
    };
    let target = TargetGrid {
        width: size.0,
        height: size.1,
        geo_transform: gt,
        x: Axis {
            origin: (gt[0] - g[0]) / g[1],
            step: gt[1] / g[1],
        },
        y: Axis {
            origin: (g[3] - gt[3]) / -g[5],
            step: gt[5] / g[5],
        },
    };
    let (wx, wy) = (
        target.x.span((0, size.0), info.width),
        target.y.span((0, size.1), info.height),
    );
    if wx.0 == wx.1 || wy.0 == wy.1 {
        let msg = format!(
            "the target grid ({} x {} cells from ({}, {})) does not intersect the input's extent: nothing to aggregate",
            size.0, size.1, gt[0], gt[3]
        );
        return Err(match t.like {
            Some(_) => CoordError::BadInput(msg),
            None => usage(msg),
        });
    }
    Ok(as_factor(&target, (info.width, info.height)).unwrap_or(Mapping::Cells { target }))
}

/// The factor a target grid is, when it is one: the same integer step on both axes, its
/// origin on the input's, and `--factor`'s size.
fn as_factor(t: &TargetGrid, (width, height): (u64, u64)) -> Option<Mapping> {
    let int = |v: f64| {
        let r = Axis::snap(v);
        (r.fract() == 0.0).then_some(r)
    };
    let (fx, fy) = (int(t.x.step)?, int(t.y.step)?);
    let aligned = int(t.x.origin)? == 0.0 && int(t.y.origin)? == 0.0;
    let f = fx as u64;
    (aligned
        && fx == fy
        && f >= 1
        && f <= u32::MAX as u64
        && (t.width, t.height) == (width.div_ceil(f), height.div_ceil(f)))
        .then_some(Mapping::Factor { factor: f })
}

/// The grid of `--tr` (with `--te`, `--tap`): its geotransform and size.
fn from_resolution(
    t: &TargetRequest,
    g: &[f64; 6],
    (width, height): (u64, u64),
) -> Result<([f64; 6], (u64, u64)), CoordError> {
    let (rx, ry) =
        t.tr.ok_or_else(|| usage("a target grid needs --tr XRES YRES or --like REF".into()))?;
    let bounds = [
        g[0],
        g[3] + height as f64 * g[5],
        g[0] + width as f64 * g[1],
        g[3],
    ];
    let [mut x0, mut y0, mut x1, mut y1] = t.te.unwrap_or(bounds);
    if !(x0 < x1 && y0 < y1) {
        return Err(usage(format!(
            "--te {x0} {y0} {x1} {y1}: XMIN must be below XMAX and YMIN below YMAX"
        )));
    }
    if t.tap {
        x0 = Axis::snap(x0 / rx).floor() * rx;
        x1 = Axis::snap(x1 / rx).ceil() * rx;
        y0 = Axis::snap(y0 / ry).floor() * ry;
        y1 = Axis::snap(y1 / ry).ceil() * ry;
    }
    if x1 <= bounds[0] || x0 >= bounds[2] || y1 <= bounds[1] || y0 >= bounds[3] {
        return Err(usage(format!(
            "--te {x0} {y0} {x1} {y1} does not intersect the input's extent ({} {} {} {}): nothing to aggregate",
            bounds[0], bounds[1], bounds[2], bounds[3]
        )));
    }
    let (nx, ny) = (cells(x0, x1, rx), cells(y0, y1, ry));
    const MAX: f64 = i32::MAX as f64;
    if nx > MAX || ny > MAX {
        return Err(usage(format!(
            "--tr {rx:?} {ry:?} makes a grid of {nx:.3e} x {ny:.3e} cells: GeoTIFF allows at most {} a side",
            i32::MAX
        )));
    }
    // Anchored on the extent's top-left corner: whole cells to the right and down.
    Ok(([x0, rx, 0.0, y1, 0.0, -ry], (nx as u64, ny as u64)))
}

/// `--like REF`: REF's geotransform and size, when its grid is north-up and its CRS the
/// input's.
fn like(path: &Path, info: &RasterInfo) -> Result<([f64; 6], (u64, u64)), CoordError> {
    let ds = open_like(path)?;
    let gt = ds.geo_transform().map_err(|_| {
        CoordError::BadInput(format!(
            "--like '{}' has no geotransform: it names no grid",
            path.display()
        ))
    })?;
    north_up(&gt, &format!("the grid of --like '{}' is", path.display()))?;
    let theirs = ds.projection();
    if theirs.is_empty() != info.projection.is_empty() {
        tracing::warn!(
            "--like '{}' has no CRS: its grid is taken in the input's units",
            path.display()
        );
    } else if !same_crs(&theirs, &info.projection) {
        return Err(CoordError::BadInput(format!(
            "--like '{}' is in another CRS than the input: this tool never reprojects (reprojection is gdalwarp's job: warp the input onto that CRS first)",
            path.display()
        )));
    }
    let (w, h) = ds.raster_size();
    Ok((gt, (w as u64, h as u64)))
}

/// Whether two CRS definitions are the same CRS (GDAL's `OSRIsSame`). An empty one (no CRS)
/// matches only another empty one.
fn same_crs(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return a.is_empty() && b.is_empty();
    }
    match (SpatialRef::from_wkt(a), SpatialRef::from_wkt(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(gt: [f64; 6], w: u64, h: u64) -> RasterInfo {
        RasterInfo {
            path: PathBuf::from("in.tif"),
            width: w,
            height: h,
            bands: vec![],
            block: (256, 256),
            geo_transform: Some(gt),
            projection: String::new(),
            driver: "GTiff".into(),
            area_or_point: None,
        }
    }

    fn tr(rx: f64, ry: f64) -> GridRequest {
        GridRequest::Target(TargetRequest {
            tr: Some((rx, ry)),
            ..Default::default()
        })
    }

    #[test]
    fn an_integer_multiple_on_the_origin_is_the_factor() {
        let i = info([10.0, 0.1, 0.0, 50.0, 0.0, -0.1], 1000, 999);
        // 0.1 * 8 is 0.8000000000000002 in floating point: still 8 pixels.
        assert_eq!(
            resolve(&tr(0.8, 0.8), &i).unwrap(),
            Mapping::Factor { factor: 8 }
        );
        let Mapping::Cells { target } = resolve(&tr(0.75, 0.75), &i).unwrap() else {
            panic!("7.5 pixels is not a factor");
        };
        // 1000 / 7.5 = 133.3: 134 cells, the last one partial; 999 / 7.5 = 133.2.
        assert_eq!((target.width, target.height), (134, 134));
        assert_eq!(target.x.step, 0.75 / 0.1);
        assert_eq!(target.geo_transform, [10.0, 0.75, 0.0, 50.0, 0.0, -0.75]);
    }

    #[test]
    fn tap_aligns_outward_and_te_must_meet_the_input() {
        let i = info([0.3, 1.0, 0.0, 10.0, 0.0, -1.0], 10, 10);
        let req = GridRequest::Target(TargetRequest {
            tr: Some((2.0, 2.0)),
            tap: true,
            ..Default::default()
        });
        let Mapping::Cells { target } = resolve(&req, &i).unwrap() else {
            panic!("offset grid");
        };
        // x 0.3..10.3 aligned to 0..12; y 0..10 stays.
        assert_eq!(target.geo_transform[0], 0.0);
        assert_eq!((target.width, target.height), (6, 5));
        assert_eq!(target.x.origin, -0.3);
        let far = GridRequest::Target(TargetRequest {
            tr: Some((1.0, 1.0)),
            te: Some([100.0, 100.0, 110.0, 110.0]),
            ..Default::default()
        });
        let e = resolve(&far, &i).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("does not intersect"), "{e}");
    }

    #[test]
    fn tap_on_an_aligned_input_adds_no_cell() {
        // 0.3 / 0.1 is 2.9999999999999996: still the input's own edge.
        let i = info([0.3, 0.1, 0.0, 1.0, 0.0, -0.1], 10, 10);
        let req = GridRequest::Target(TargetRequest {
            tr: Some((0.1, 0.1)),
            tap: true,
            ..Default::default()
        });
        assert_eq!(resolve(&req, &i).unwrap(), Mapping::Factor { factor: 1 });
    }

    #[test]
    fn rotated_and_ungeoreferenced_inputs_are_refused() {
        let rotated = info([0.0, 1.0, 0.1, 10.0, 0.0, -1.0], 10, 10);
        let e = resolve(&tr(2.0, 2.0), &rotated).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("rotated"), "{e}");
        let mut none = info([0.0; 6], 10, 10);
        none.geo_transform = None;
        assert!(resolve(&tr(2.0, 2.0), &none)
            .unwrap_err()
            .to_string()
            .contains("no geotransform"));
    }

    #[test]
    fn crs_comparison_is_by_meaning() {
        let a = SpatialRef::from_epsg(4326).unwrap().to_wkt().unwrap();
        let b = SpatialRef::from_epsg(3857).unwrap().to_wkt().unwrap();
        assert!(same_crs(&a, &a.clone()));
        assert!(!same_crs(&a, &b));
        assert!(!same_crs(&a, ""));
        assert!(same_crs("", ""));
    }
}
