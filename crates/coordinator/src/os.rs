//! The coordinator's own OS and FFI specifics, behind a safe interface: the no-clobber
//! rename, SIGXFSZ, the parent's death as a SIGTERM, GDAL's thread-local error state, GDAL's
//! block cache, the names of data types the bindings do not know, and GDAL's CreateCopy with
//! a progress callback that stops it on an interrupt (the bindings' copy takes none), and
//! early writeback of a file being written (`sync_file_range`, which the bindings lack).
//! Every `unsafe` of the coordinator is here. The process specifics of supervision
//! (fork/exec setup, signals, limits) are the engine's (`engine::os`), re-exported here.

pub use engine::os::*;

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), atomically where the
/// filesystem can: `renameat2(RENAME_NOREPLACE)`, else `link` + `unlink` (a hard link also
/// fails on an existing name). Where neither is supported (some network and FAT
/// filesystems) it checks and renames, which leaves a small window, and says so.
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use nix::{
        errno::Errno,
        fcntl::{renameat2, RenameFlags, AT_FDCWD},
    };
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(Errno::EEXIST) => return Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            // The link is the commit: the file is complete under its final name.
            if let Err(e) = std::fs::remove_file(from) {
                tracing::warn!(
                    "the result is in place, but '{}' remains: {e}",
                    from.display()
                );
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(e) => {
            tracing::warn!(
                "this filesystem supports neither RENAME_NOREPLACE nor hard links ({e}): checking that '{}' does not exist, then renaming",
                to.display()
            );
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// Starts writing `file`'s dirty pages to disk and returns without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): the `fsync` at the commit then waits for
/// what is left, not for the whole file. Durability still comes from that `fsync` alone.
pub fn start_writeback(file: &std::fs::File) -> std::io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the call's length (borrowed from `file`), and the
    // call reads no memory of this process.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ignores SIGXFSZ, so that a write past `ulimit -f` fails with EFBIG (and is reported)
/// instead of killing the process without a word.
pub fn ignore_sigxfsz() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_IGN runs no code of ours in signal context.
    let _ = unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) };
}

/// Ties this process to `parent`, the process that started it, by its word (the Python package
/// passes its own PID in `BLOCKSUM_PARENT_PID`): the parent's death is a SIGTERM here
/// (`PR_SET_PDEATHSIG`), which `engine::interrupt` records like any other, so the command
/// unwinds and exits 130. A parent already gone is the same SIGTERM, raised here at once.
/// A `parent` that is alive but not the parent (a wrapper script between them, which does
/// not `exec`) is followed by a thread that checks it every 200 ms. Call it after
/// `engine::interrupt::install`, then check.
///
/// The kernel sends the signal when the thread that started this process ends, not the
/// whole process: the Python package waits for the run in the thread that started it.
pub fn term_with_parent(parent: i32) -> nix::Result<()> {
    use nix::{
        sys::signal::{raise, Signal},
        unistd::{getppid, Pid},
    };
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    // After the prctl: a parent that dies from now on sends the signal. One that died before
    // never will; it left this process to a reaper, whose PID is not `parent`.
    let named = Pid::from_raw(parent);
    if getppid() == named {
        return Ok(());
    }
    if !alive(named) {
        tracing::info!("the parent process {parent} is gone: stopping as on SIGTERM");
        // Handled before `raise` returns (a signal sent to the calling thread).
        raise(Signal::SIGTERM)?;
        return Ok(());
    }
    // Alive, yet not the parent: a wrapper (a shell script that does not `exec`) sits between.
    // The prctl follows the wrapper; a thread follows the named process, and its death is the
    // same SIGTERM, sent to the whole process.
    tracing::debug!("following process {parent}, an ancestor but not the parent");
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            while alive(named) {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            tracing::info!("the process {parent} is gone: stopping as on SIGTERM");
            let _ = nix::sys::signal::kill(Pid::this(), Signal::SIGTERM);
        })
        .map(|_| ())
        .map_err(|e| {
            nix::errno::Errno::from_raw(
                e.raw_os_error().unwrap_or(nix::errno::Errno::EAGAIN as i32),
            )
        })
}

/// Whether process `pid` exists (signal 0: no signal sent, only the check; EPERM means it
/// exists under another user).
fn alive(pid: nix::unistd::Pid) -> bool {
    !matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// GDAL's error state on this thread (it is thread-local in GDAL), for the write path, where
/// many failures (disk full, codec errors) come only through the error handler.
pub mod gdal_err {
    use std::cell::RefCell;

    thread_local! {
        /// The first failure GDAL reported on this thread since `reset`: the cause, where the
        /// last one is often a consequence ("write error" first, "error fetching directory
        /// count" last).
        static FIRST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Called from the process's GDAL error handler (which runs on the thread that raised
    /// the error) for every failure.
    pub fn record(msg: &str) {
        FIRST.with(|f| {
            let mut f = f.borrow_mut();
            if f.is_none() {
                *f = Some(one_line(msg));
            }
        });
    }

    /// GDAL's messages may span lines (PROJ's do): errors here are one line.
    fn one_line(msg: &str) -> String {
        msg.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Clears this thread's last GDAL error.
    pub fn reset() {
        FIRST.with(|f| f.borrow_mut().take());
        // SAFETY: CPLErrorReset only clears this thread's error context.
        unsafe { gdal_sys::CPLErrorReset() };
    }

    /// This thread's last GDAL error of severity Failure or Fatal since `reset`, with GDAL's
    /// own text.
    pub fn take() -> Option<String> {
        if let Some(first) = FIRST.with(|f| f.borrow_mut().take()) {
            // SAFETY: CPLErrorReset only clears this thread's error context.
            unsafe { gdal_sys::CPLErrorReset() };
            return Some(first);
        }
        // SAFETY: these read this thread's error context; the message pointer stays valid
        // until the next GDAL call on this thread, and is copied at once.
        unsafe {
            let t = gdal_sys::CPLGetLastErrorType();
            if t < gdal_sys::CPLErr::CE_Failure {
                return None;
            }
            let p = gdal_sys::CPLGetLastErrorMsg();
            let msg = if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            };
            gdal_sys::CPLErrorReset();
            Some(if msg.is_empty() {
                "GDAL reported a failure without a message".into()
            } else {
                one_line(&msg)
            })
        }
    }

    /// A GDAL call that failed: the bindings' error, with GDAL's own text where it adds to
    /// it, or only GDAL's text when the call returned but left a failure behind.
    #[derive(Debug, thiserror::Error)]
    pub enum GdalFailure {
        #[error("{source}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
        Call {
            #[source]
            source: gdal::errors::GdalError,
            /// GDAL's first reported failure, when the bindings' error does not say it.
            detail: Option<String>,
        },
        #[error("{0}")]
        Reported(String),
    }

    /// A call of the bindings that was not run under [`check`]: their error alone.
    impl From<gdal::errors::GdalError> for GdalFailure {
        fn from(source: gdal::errors::GdalError) -> GdalFailure {
            GdalFailure::Call {
                source,
                detail: None,
            }
        }
    }

    /// The end of a call of ours through GDAL's C API, begun after [`reset`]: `failed` (with
    /// our text `what`, and GDAL's after it), or left a failure behind, as [`check`] judges
    /// a call of the bindings.
    pub fn after_call(failed: bool, what: &str) -> Result<(), GdalFailure> {
        match (failed, take()) {
            (false, None) => Ok(()),
            (false, Some(msg)) => Err(GdalFailure::Reported(msg)),
            (true, Some(msg)) if !what.contains(msg.as_str()) => {
                Err(GdalFailure::Reported(format!("{what}: {msg}")))
            }
            (true, _) => Err(GdalFailure::Reported(what.into())),
        }
    }

    /// Where a failure goes on as text: a few steps (the COG copy's checks) compose
    /// several facts into one message.
    impl From<GdalFailure> for String {
        fn from(e: GdalFailure) -> String {
            e.to_string()
        }
    }

    /// Runs `f`, failing with GDAL's own text when it returned an error or left one behind.
    pub fn check<T>(
        f: impl FnOnce() -> Result<T, gdal::errors::GdalError>,
    ) -> Result<T, GdalFailure> {
        reset();
        let r = f();
        let pending = take();
        match (r, pending) {
            (Ok(v), None) => Ok(v),
            (Ok(_), Some(msg)) => Err(GdalFailure::Reported(msg)),
            (Err(source), detail) => {
                let detail = detail.filter(|msg| !source.to_string().contains(msg.as_str()));
                Err(GdalFailure::Call { source, detail })
            }
        }
    }
}

/// Sets GDAL's block cache of this process, in bytes.
pub fn set_gdal_cache(bytes: u64) {
    // SAFETY: GDALSetCacheMax64 only stores a number; it is safe to call at any time.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
}

/// Checks creation options against the driver's list (GDALValidateCreationOptions): an
/// unknown key or a value outside the driver's choices is GDAL's warning text; GDAL itself
/// would only warn and carry on without it.
pub fn validate_creation_options(driver: &str, options: &[String]) -> Result<(), String> {
    // Registers the drivers, and fails cleanly where GDAL lacks this one.
    gdal::DriverManager::get_driver_by_name(driver)
        .map_err(|_| format!("GDAL has no {driver} driver"))?;
    let name = std::ffi::CString::new(driver).map_err(|e| e.to_string())?;
    let opts = gdal::raster::RasterCreationOptions::from_iter(options.iter().map(String::as_str));
    gdal_err::reset();
    // SAFETY: `name` is a valid C string for the call; a registered driver's handle lives as
    // long as the process (checked non-NULL); the option list is a valid NULL-terminated
    // CSL owned by `opts` for the call, which GDAL only reads.
    let ok = unsafe {
        let h = gdal_sys::GDALGetDriverByName(name.as_ptr());
        if h.is_null() {
            return Err(format!("GDAL has no {driver} driver"));
        }
        gdal_sys::GDALValidateCreationOptions(h, opts.as_ptr())
    };
    if ok != 0 {
        return Ok(());
    }
    // SAFETY: reads this thread's error context; the message is copied at once.
    let msg = unsafe {
        let p = gdal_sys::CPLGetLastErrorMsg();
        let m = if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        gdal_sys::CPLErrorReset();
        m
    };
    Err(if msg.is_empty() {
        "GDAL refused the creation options".into()
    } else {
        msg.lines().map(str::trim).collect::<Vec<_>>().join("; ")
    })
}

/// Sets a band's unit type (the bindings read it but cannot set it), checked as
/// [`gdal_err::check`] checks a call of the bindings.
pub fn set_unit(
    band: &mut gdal::raster::RasterBand,
    unit: &std::ffi::CStr,
) -> Result<(), gdal_err::GdalFailure> {
    gdal_err::reset();
    // SAFETY: the band handle is valid while `band` lives, and `unit` is a NUL-terminated
    // string that GDAL copies.
    let rc = unsafe { gdal_sys::GDALSetRasterUnitType(band.c_rasterband(), unit.as_ptr()) };
    gdal_err::after_call(
        rc != gdal_sys::CPLErr::CE_None,
        "GDAL could not set the unit type",
    )
}

/// GDAL's progress callback for its long calls: FALSE (GDAL then stops the call and fails it)
/// once the process was interrupted (`engine::interrupt`). `data` points at the checkpoint's
/// name, where `BLOCKSUM_STOP_AT` may stop the process once the call is under way.
unsafe extern "C" fn stop_on_interrupt(
    complete: f64,
    _message: *const std::ffi::c_char,
    data: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    let go_on = if complete > 0.0 && !data.is_null() {
        // SAFETY: `create_copy` passes a pointer to a `&'static str` on its own stack, which
        // outlives the GDAL call that calls this.
        let point: &str = unsafe { *(data as *const &'static str) };
        engine::interrupt::checkpoint(point)
    } else {
        engine::interrupt::check()
    };
    std::ffi::c_int::from(go_on.is_ok())
}

/// `src` copied by `driver` into `dst` with creation `options` (GDALCreateCopy), stopping
/// between blocks when the process is interrupted (then GDAL's "User terminated" is the
/// error); `point` is the checkpoint's name. GDAL's error state carries any failure (see
/// [`gdal_err::check`]).
pub fn create_copy(
    driver: &gdal::Driver,
    src: &gdal::Dataset,
    dst: &std::path::Path,
    options: &gdal::raster::RasterCreationOptions,
    point: &'static str,
) -> Result<gdal::Dataset, gdal_err::GdalFailure> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(dst.as_os_str().as_bytes()).map_err(|_| {
        gdal_err::GdalFailure::Reported(format!("'{}' contains a NUL byte", dst.display()))
    })?;
    gdal_err::reset();
    let data: &'static str = point;
    // SAFETY: the driver and dataset handles are valid while `driver` and `src` live; `name`
    // and the option list (a NULL-terminated CSL owned by `options`) are valid for the call,
    // which only reads them; the callback is a plain function and its data a pointer to
    // `data`, which lives until the call returns. A non-NULL result is a new dataset handle
    // that nothing else owns: `Dataset` takes it (and closes it on drop).
    unsafe {
        let h = gdal_sys::GDALCreateCopy(
            driver.c_driver(),
            name.as_ptr(),
            src.c_dataset(),
            0,
            options.as_ptr(),
            Some(stop_on_interrupt),
            &data as *const &'static str as *mut std::ffi::c_void,
        );
        let made = (!h.is_null()).then(|| gdal::Dataset::from_c_dataset(h));
        gdal_err::after_call(made.is_none(), "GDAL could not create the copy")?;
        made.ok_or_else(|| gdal_err::GdalFailure::Reported("GDAL could not create the copy".into()))
    }
}
