//! The C ABI of plug-in kernels (`include/blocksum_kernel.h`, version 1): loading the
//! library, finding `blocksum_kernel_v1`, and calling it on one chunk. Every `unsafe` of the
//! worker crate is here, behind [`Plugin`]'s safe interface.
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
            CString::new(s)
                .map_err(|_| KernelError::new(format!("--kernel-arg '{s}' contains a NUL byte")))
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
