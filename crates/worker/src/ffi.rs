//! Every `unsafe` of this crate, behind safe functions: `gdal` (the one GDAL call the bindings
//! do not expose: a band's type as the running GDAL names it), `plugin` (C ABI kernels loaded
//! with `dlopen` in worker processes only) and `simd` (the block kernel's row loop in an AVX2
//! build, chosen at run time).
//!
//! One file, so that the crate's `unsafe` is read in one place.

pub mod gdal {
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
}

pub mod plugin {
    //! The C ABI of plug-in kernels (`include/blocksum_kernel.h`, version 1): loading the
    //! library, finding `blocksum_kernel_v1`, and calling it on one chunk, its `unsafe`
    //! behind [`Plugin`]'s safe interface.
    //!
    //! Only worker processes load a plug-in (and a coordinator lane, when the user asks for
    //! in-process fallback): what the library does to its process (a segfault, an abort, a
    //! hang, an allocation past the limit) ends that process, which the engine handles.
    #![deny(clippy::undocumented_unsafe_blocks)]

    use std::{
        ffi::{c_char, c_int, CStr, CString},
        path::Path,
    };

    use runtime::KernelError;

    use crate::map::MapView;

    /// The exported symbol (NUL-terminated, as `libloading` wants it).
    pub const SYMBOL: &[u8] = b"blocksum_kernel_v1\0";
    pub const ABI: u32 = 1;
    const ERROR_LEN: usize = 1024;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct BsWindow {
        x: u64,
        y: u64,
        w: u64,
        h: u64,
    }

    #[repr(C)]
    struct BsInput {
        abi: u32,
        bands: u32,
        window: BsWindow,
        raster_width: u64,
        raster_height: u64,
        data: *const f64,
        valid: *const u8,
    }

    #[repr(C)]
    struct BsOutput {
        bands: u32,
        window: BsWindow,
        data: *mut f64,
        error: *mut c_char,
        error_len: usize,
    }

    #[repr(C)]
    struct BsParams {
        factor: u32,
        nargs: u32,
        keys: *const *const c_char,
        values: *const *const c_char,
    }

    type KernelFn = unsafe extern "C" fn(*const BsInput, *mut BsOutput, *const BsParams) -> c_int;

    /// A loaded plug-in and its arguments as C strings.
    pub struct Plugin {
        // Declared before `_lib`: the function pointer must not outlive the library (fields
        // drop in order; nothing calls it during drop anyway).
        func: KernelFn,
        _lib: libloading::Library,
        keys: Vec<CString>,
        values: Vec<CString>,
    }

    impl Plugin {
        /// Loads `path` and resolves the kernel function; the arguments become C strings once.
        pub fn load(path: &Path, args: &[(String, String)]) -> Result<Plugin, KernelError> {
            let cstr = |s: &str| {
                CString::new(s).map_err(|_| {
                    KernelError::new(format!("--kernel-arg '{s}' contains a NUL byte"))
                })
            };
            let mut keys = Vec::with_capacity(args.len());
            let mut values = Vec::with_capacity(args.len());
            for (k, v) in args {
                keys.push(cstr(k)?);
                values.push(cstr(v)?);
            }
            // SAFETY: loading a library runs its initialisers, which can do anything: that is
            // the user's code, and the reason it is loaded in a worker process that the
            // coordinator supervises (a crash here fails the setup, not the run's coordinator).
            let lib = unsafe { libloading::Library::new(path) }
                .map_err(|e| KernelError::new(format!("loading {}: {e}", path.display())))?;
            // SAFETY: the header declares the symbol with exactly `KernelFn`'s signature; a
            // library that exports it with another one breaks the documented ABI. The pointer is
            // copied out of the `Symbol` and kept beside the `Library` that keeps it valid.
            let func: KernelFn = unsafe {
                *lib.get::<KernelFn>(SYMBOL).map_err(|e| {
                    KernelError::new(format!(
                        "{} does not export blocksum_kernel_v1 (see include/blocksum_kernel.h): {e}",
                        path.display()
                    ))
                })?
            };
            Ok(Plugin {
                func,
                _lib: lib,
                keys,
                values,
            })
        }

        /// Runs the kernel on one chunk; a nonzero status is a chunk error with its message.
        pub fn call(
            &self,
            view: MapView<'_>,
            factor: u32,
            raster_size: (u64, u64),
        ) -> Result<(), KernelError> {
            let win = |w: crate::Window| BsWindow {
                x: w.x,
                y: w.y,
                w: w.w,
                h: w.h,
            };
            let n = view.window.pixels() as usize * view.bands;
            let on = view.out_window.pixels() as usize;
            if view.data.len() < n || view.valid.len() < n || on == 0 || view.out.len() < on {
                return Err(KernelError::new(
                    "the chunk's buffers do not match its windows",
                ));
            }
            let input = BsInput {
                abi: ABI,
                bands: view.bands as u32,
                window: win(view.window),
                raster_width: raster_size.0,
                raster_height: raster_size.1,
                data: view.data.as_ptr(),
                valid: view.valid.as_ptr(),
            };
            let mut error = vec![0u8; ERROR_LEN];
            let mut output = BsOutput {
                bands: (view.out.len() / on) as u32,
                window: win(view.out_window),
                data: view.out.as_mut_ptr(),
                error: error.as_mut_ptr().cast(),
                error_len: error.len(),
            };
            let keys: Vec<*const c_char> = self.keys.iter().map(|k| k.as_ptr()).collect();
            let values: Vec<*const c_char> = self.values.iter().map(|v| v.as_ptr()).collect();
            let params = BsParams {
                factor,
                nargs: keys.len() as u32,
                keys: keys.as_ptr(),
                values: values.as_ptr(),
            };
            // SAFETY: every pointer points into memory that lives until the call returns and has
            // the length the header promises: `data`/`valid` hold `bands * h * w` items (checked
            // above), `out` holds at least `bands * oh * ow` (`bands` is its length over the output
            // window, rounded down), `error` holds `error_len` bytes, and
            // `keys`/`values` hold `nargs` NUL-terminated strings owned by `self`. The output is
            // this computation's alone (an owned slot lease). What the kernel does beyond the
            // contract takes this worker process down, never the coordinator.
            let status = unsafe { (self.func)(&input, &mut output, &params) };
            if status == 0 {
                return Ok(());
            }
            // The kernel may have left the buffer without a terminator: force one.
            if let Some(last) = error.last_mut() {
                *last = 0;
            }
            let msg = CStr::from_bytes_until_nul(&error)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(KernelError::new(format!(
                "the kernel returned {status}{}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            )))
        }
    }
}

pub mod simd {
    //! The block kernel's row loop ([`crate::kernel`]'s `add_row`) compiled for AVX2, chosen at
    //! run time where the CPU has it (`is_x86_feature_detected!`, which caches its answer), so a
    //! release build needs no `target-cpu`. The same IEEE operations in the same order as the
    //! baseline (SSE2) build: the same bits (the kernel's proptests compare the two paths on a
    //! CPU with AVX2).

    /// Whether the block kernel runs its AVX2 build here.
    pub fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    use crate::kernel::{add_row, Op, Pixel, Sample};

    /// [`add_row`] compiled with AVX2 where the CPU has it, else as it is.
    pub(crate) fn add_row_best<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
        col: &mut [f64],
        cnt: &mut [u32],
        row: &[T],
        mrow: &[u8],
        px: Pixel,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
                col: &mut [f64],
                cnt: &mut [u32],
                row: &[T],
                mrow: &[u8],
                px: Pixel,
            ) {
                add_row::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px)
            }
            if has_avx2() {
                // SAFETY: the CPU has AVX2 (checked just above), the one requirement of calling
                // a function compiled with it; `avx2` is otherwise safe code.
                return unsafe { avx2::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px) };
            }
        }
        add_row::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::kernel::{MaxOp, MinOp, SumOp};
        use proptest::prelude::*;

        proptest! {
            /// The AVX2 build and the baseline one give the same bits, negative zeros, NaN,
            /// nodata, masks and scales included (where the CPU has no AVX2 both are the baseline).
            #[test]
            fn avx2_row_loop_is_the_baseline_bits(
                vals in proptest::collection::vec(prop_oneof![
                    Just(f32::NAN), Just(-0.0f32), Just(0.0f32), Just(-9999.0f32), any::<f32>(),
                ], 1..300),
                mask in proptest::collection::vec(0u8..3, 300),
                op in 0usize..3, masked in any::<bool>(), scaled in any::<bool>(),
            ) {
                let px = Pixel { nd: -9999.0, scale: if scaled { -0.3 } else { 1.0 }, offset: if scaled { 2.5 } else { 0.0 } };
                let n = vals.len();
                let mrow = &mask[..n];
                let init = [0.0, f64::INFINITY, f64::NEG_INFINITY][op];
                let start: Vec<f64> = vals.iter().map(|&v| if v.is_nan() { init } else { v as f64 * 0.5 }).collect();
                let (mut a, mut b) = (start.clone(), start);
                let (mut ca, mut cb) = (vec![1u32; n], vec![1u32; n]);
                macro_rules! both {
                    ($o:ty, $m:literal, $s:literal) => {{
                        add_row::<f32, $o, $m, $s>(&mut a, &mut ca, &vals, mrow, px);
                        add_row_best::<f32, $o, $m, $s>(&mut b, &mut cb, &vals, mrow, px);
                    }};
                }
                macro_rules! by_case {
                    ($o:ty) => {
                        match (masked, scaled) {
                            (false, false) => both!($o, false, false),
                            (true, false) => both!($o, true, false),
                            (false, true) => both!($o, false, true),
                            (true, true) => both!($o, true, true),
                        }
                    };
                }
                match op {
                    0 => by_case!(SumOp),
                    1 => by_case!(MinOp),
                    _ => by_case!(MaxOp),
                }
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&a), bits(&b));
                prop_assert_eq!(ca, cb);
            }
        }
    }
}
