//! Every `unsafe` of this crate, behind safe functions: `gdal` (the one GDAL call the bindings
//! do not expose: a band's type as the running GDAL names it), `plugin` (C ABI kernels loaded
//! with `dlopen` in worker processes only) and `simd` (the block kernel's row loop in an AVX2
//! build, chosen at run time).

pub mod gdal;
pub mod plugin;
pub mod simd;
