//! The one GDAL call the bindings do not expose that this crate needs: a band's data type as
//! the running GDAL names it. The `gdal` crate maps the raw type through the enum of the
//! GDAL it was built against (3.6 here), so a newer GDAL's types (3.7's Int8) read as
//! "Unknown"; the name comes from the library that runs.

/// GDAL's own name for `band`'s data type ("Int8" from GDAL >= 3.7 on a signed-byte band;
/// "CInt16" for a complex one, which the bindings call "Unknown"), or `None` when GDAL has
/// no name for it.
pub fn band_type_name(band: &gdal::raster::RasterBand<'_>) -> Option<String> {
    // SAFETY: the band handle is valid while `band` lives; GDALGetDataTypeName returns a
    // static string, or NULL for a type it does not know (checked).
    unsafe {
        let raw = gdal_sys::GDALGetRasterDataType(band.c_rasterband());
        let p = gdal_sys::GDALGetDataTypeName(raw);
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}
