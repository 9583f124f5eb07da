//! The decoder's one integration test binary: against GDAL on a matrix of rasters GDAL
//! writes (`differential`), and on random and corrupted files (`robust`); the rasters and
//! both readers in `common`.

mod common;
mod differential;
mod robust;
