//! Output staging: everything between "the user named OUTPUT" and "OUTPUT holds a complete
//! file". It checks the output and report paths before any work, holds an advisory lock on
//! the output for the whole run, gives the writer a temporary name beside the target, and
//! commits it without clobbering what it must not replace.
//!
//! It does not write pixels (that is [`writer`]) and does not decide whether the run succeeded
//! (that is `run`): it only guarantees that OUTPUT is either untouched or complete. Its
//! submodules make what is staged: [`writer`] (the GeoTIFF, as the engine's sink), [`cog`]
//! (the exact pyramid and the COG copy, before the commit) and [`pyramid`] (a level derived
//! from the one below where that is exact).

pub mod cog;
pub mod pyramid;
pub mod writer;

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

use crate::error::CoordError;

/// What is at a path, as far as replacing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Nothing,
    Regular,
    Directory,
    Other(&'static str),
}

fn existing(path: &Path) -> Existing {
    // A symbolic link is refused, dangling or not: the lock, the temporary file and the
    // commit act on names, and a rename over a link replaces the link, not its target.
    match std::fs::symlink_metadata(path) {
        Err(_) => Existing::Nothing,
        Ok(m) => {
            let t = m.file_type();
            if t.is_symlink() {
                Existing::Other("a symbolic link (name its target instead)")
            } else if t.is_file() {
                Existing::Regular
            } else if t.is_dir() {
                Existing::Directory
            } else if t.is_char_device() {
                Existing::Other("a character device")
            } else if t.is_block_device() {
                Existing::Other("a block device")
            } else if t.is_fifo() {
                Existing::Other("a FIFO")
            } else if t.is_socket() {
                Existing::Other("a socket")
            } else {
                Existing::Other("not a regular file")
            }
        }
    }
}

/// A file's identity: (device, inode) where it exists, else its canonical parent and name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    Name(PathBuf),
}

fn identity(path: &Path) -> Option<Identity> {
    if let Ok(m) = std::fs::metadata(path) {
        return Some(Identity::Inode(m.dev(), m.ino()));
    }
    let name = path.file_name()?;
    let parent = parent_dir(path).canonicalize().ok()?;
    Some(Identity::Name(parent.join(name)))
}

/// The directory a path's file lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether two paths name the same file (by device and inode where it exists, else by
/// canonical directory and name).
pub fn same_file(a: &Path, b: &Path) -> bool {
    matches!((identity(a), identity(b)), (Some(x), Some(y)) if x == y)
}

/// A side file of a command (`--report`, `--report-html`, `--events`, `report --html`): its
/// path and the flag that named it, for the messages.
#[derive(Debug, Clone, Copy)]
pub struct SidePath<'a> {
    pub flag: &'static str,
    pub path: &'a Path,
    /// It may replace a file of its name even without `--overwrite`: a `--resume` run's
    /// side files are the interrupted run's (a requeued job runs the same command line).
    pub replaces: bool,
}

impl<'a> SidePath<'a> {
    pub fn new(flag: &'static str, path: &'a Path) -> Self {
        SidePath {
            flag,
            path,
            replaces: false,
        }
    }

    /// The same, replacing a file of its name when `replaces` (see [`SidePath::replaces`]).
    pub fn replacing(self, replaces: bool) -> Self {
        SidePath { replaces, ..self }
    }

    /// `--flag 'path' refused: why` (exit 2).
    pub fn refuse(&self, why: impl Into<String>) -> CoordError {
        CoordError::ReportPath {
            flag: self.flag,
            path: self.path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// Whether the file at `path` is a side file this tool wrote for a run on `target` (the
/// output, or a batch's directory, as the command line named it): its JSON report, its page
/// or its event stream, told by their first 64 KiB. A `--resume` run (a requeued job, same
/// command line) may replace such a file, as the interrupted run's, without `--overwrite`.
pub fn side_file_of(path: &Path, target: &Path) -> bool {
    let mut head = Vec::new();
    let read = File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&head);
    let name = target.display().to_string();
    let json = serde_json::to_string(&name).unwrap_or_default();
    let report = text.contains("\"tool\": \"blocksum coordinator\"")
        && (text.contains(&format!("\"output\": {json}"))
            || text.contains(&format!("\"out_dir\": {json}")));
    let events = text.lines().next().is_some_and(|first| {
        first.contains("\"event\":\"plan\"") && first.contains(&format!("\"output\":{json}"))
    });
    let page_title = format!("<title>blocksum run: {}</title>", crate::html::esc(&name));
    report || events || text.contains(&page_title)
}

/// Every path a command line names, against every other, before any work starts: a side file
/// that is the input, the output or another side file is refused (exit 2), naming both. `-`
/// (stdout, for `--events`) is no file. The input against the output is
/// [`check_paths`]'s (exit 3).
pub fn check_distinct(
    input: &Path,
    output: &Path,
    sides: &[SidePath<'_>],
) -> Result<(), CoordError> {
    let files: Vec<&SidePath<'_>> = sides.iter().filter(|s| s.path.as_os_str() != "-").collect();
    for (i, side) in files.iter().enumerate() {
        if same_file(side.path, input) {
            return Err(side.refuse("it is the input raster"));
        }
        if same_file(side.path, output) {
            return Err(side.refuse("it is the output raster"));
        }
        if let Some(other) = files[..i].iter().find(|o| same_file(o.path, side.path)) {
            return Err(side.refuse(format!("it is also the path of {}", other.flag)));
        }
    }
    Ok(())
}

/// Checks OUTPUT and a side file (`--report`, `--report-html`) before any work starts (exit
/// 4 for the output, 2 for a side path that names the input, the output or something that is
/// not a regular file).
pub fn check_paths(
    input: &Path,
    output: &Path,
    report: Option<SidePath<'_>>,
    overwrite: bool,
) -> Result<(), CoordError> {
    let out_text = output.as_os_str().to_string_lossy();
    if out_text.ends_with('/') || output.file_name().is_none() {
        return Err(CoordError::OutputNotFile {
            path: output.to_path_buf(),
            what: "a directory name",
        });
    }
    match existing(output) {
        Existing::Nothing => {}
        Existing::Regular if overwrite => {}
        Existing::Regular => return Err(CoordError::OutputExists(output.to_path_buf())),
        Existing::Directory => {
            return Err(CoordError::OutputNotFile {
                path: output.to_path_buf(),
                what: "a directory",
            })
        }
        Existing::Other(what) => {
            return Err(CoordError::OutputNotFile {
                path: output.to_path_buf(),
                what,
            })
        }
    }
    if same_file(output, input) {
        return Err(CoordError::BadInput(format!(
            "output '{}' is the input file",
            output.display()
        )));
    }
    let dir = parent_dir(output);
    if !dir.is_dir() {
        return Err(CoordError::OutputDirMissing(dir));
    }
    probe_writable(&dir, output)?;
    if let Some(side) = report {
        let report = side.path;
        let refuse = |why: String| side.refuse(why);
        if report.as_os_str().to_string_lossy().ends_with('/') || report.file_name().is_none() {
            return Err(refuse("it names a directory".into()));
        }
        if same_file(report, input) {
            return Err(refuse("it is the input raster".into()));
        }
        if same_file(report, output) {
            return Err(refuse("it is the output raster".into()));
        }
        match existing(report) {
            Existing::Nothing => {}
            Existing::Regular if overwrite || side.replaces => {}
            Existing::Regular => {
                return Err(refuse(
                    "it exists (pass --overwrite to replace it, as for the output)".into(),
                ))
            }
            Existing::Directory => return Err(refuse("it is a directory".into())),
            Existing::Other(what) => return Err(refuse(format!("it is {what}"))),
        }
        let rdir = parent_dir(report);
        if !rdir.is_dir() {
            return Err(refuse(format!(
                "its directory '{}' does not exist",
                rdir.display()
            )));
        }
        probe_writable(&rdir, report).map_err(|e| refuse(e.to_string()))?;
    }
    Ok(())
}

/// Root ignores permission bits, so try for real: create and remove a probe file.
fn probe_writable(dir: &Path, target: &Path) -> Result<(), CoordError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = dir.join(format!(".{name}.probe-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(CoordError::OutputDirNotWritable {
            path: dir.to_path_buf(),
            step: "",
            source,
        }),
    }
}

/// The temporary name the output is written under, beside the final one.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn lock_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.lock"))
}

/// The run's claim on OUTPUT: an advisory lock held from before the first chunk to after the
/// commit, and the temporary file, removed on drop unless committed.
pub struct Staging {
    target: PathBuf,
    temp: PathBuf,
    lock_path: PathBuf,
    lock: Option<Flock<File>>,
    committed: bool,
    /// Scratch files and directories handed out by [`Staging::scratch`], removed on drop.
    scratch: Vec<PathBuf>,
}

impl Staging {
    /// Takes the lock on `target`: a second run on the same OUTPUT fails at once (exit 4),
    /// naming the process that holds it.
    pub fn lock(target: &Path) -> Result<Staging, CoordError> {
        let lock_path = lock_path(target);
        let err = |step: String| move |e| CoordError::write_io(target, step, e);
        // A lock file that another run removes between our open and our flock would leave us
        // holding a lock on a dead inode: check after locking that the name still leads to
        // the file we locked, and start over if not.
        for _ in 0..100 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(err(format!(
                    "creating the lock file '{}'",
                    lock_path.display()
                )))?;
            let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim();
                    return Err(CoordError::OutputLocked {
                        path: target.to_path_buf(),
                        holder: if pid.is_empty() {
                            "another process".into()
                        } else {
                            format!("process {pid}")
                        },
                    });
                }
                // nix's text of the errno ("EIO: I/O error"), as the message has always had it.
                Err((_, e)) => {
                    return Err(CoordError::Write {
                        path: target.to_path_buf(),
                        reason: format!("locking '{}': {e}", lock_path.display()),
                    })
                }
            };
            let ours = locked.metadata().map(|m| (m.dev(), m.ino())).ok();
            let named = std::fs::metadata(&lock_path)
                .map(|m| (m.dev(), m.ino()))
                .ok();
            if ours.is_none() || ours != named {
                continue;
            }
            let written = locked
                .set_len(0)
                .and_then(|()| locked.rewind())
                .and_then(|()| writeln!(locked, "{}", std::process::id()))
                .and_then(|()| locked.flush());
            written.map_err(err("writing the lock file".into()))?;
            remove_stale_temps(target);
            return Ok(Staging {
                target: target.to_path_buf(),
                temp: temp_path(target),
                lock_path,
                lock: Some(locked),
                committed: false,
                scratch: vec![],
            });
        }
        Err(CoordError::Write {
            path: target.to_path_buf(),
            reason: "the lock file keeps being replaced by another run".into(),
        })
    }

    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// A second temporary name beside the output (`.NAME.partial-PID-TAG`), for a file or a
    /// directory the finishing steps need; removed on drop, and by a later run if this one
    /// dies first.
    pub fn scratch(&mut self, tag: &str) -> PathBuf {
        let mut name = self.temp.clone().into_os_string();
        name.push(format!("-{tag}"));
        let path = PathBuf::from(name);
        self.scratch.push(path.clone());
        path
    }

    /// Moves the finished temporary file into place. Without `overwrite` it never replaces
    /// anything, not even a file that appeared at OUTPUT during the run; with it, the rename
    /// is atomic, so a reader sees the old file or the new one, never a mixture.
    /// A signal that came before the commit discards the result (`engine::interrupt`).
    pub fn commit(&mut self, overwrite: bool) -> Result<(), CoordError> {
        engine::interrupt::check()?;
        let target = &self.target;
        let err = |step: &'static str| move |e| CoordError::write_io(target, step, e);
        // The data must be on disk before the name points at it: a crash after the rename
        // must not leave a complete-looking name over missing blocks.
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(err("syncing the finished file"))?;
        match existing(&self.target) {
            Existing::Nothing | Existing::Regular => {}
            Existing::Directory => {
                return Err(CoordError::OutputNotFile {
                    path: self.target.clone(),
                    what: "a directory",
                })
            }
            Existing::Other(what) => {
                return Err(CoordError::OutputNotFile {
                    path: self.target.clone(),
                    what,
                })
            }
        }
        if overwrite {
            std::fs::rename(&self.temp, &self.target)
                .map_err(err("renaming the finished file into place"))?;
        } else {
            crate::os::rename_noreplace(&self.temp, &self.target).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    CoordError::OutputAppeared(self.target.clone())
                } else {
                    err("moving the finished file into place")(e)
                }
            })?;
        }
        self.committed = true;
        if let Ok(d) = File::open(parent_dir(&self.target)) {
            // The rename itself is durable once the directory is synced.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
        for p in &self.scratch {
            let _ = match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
                _ => std::fs::remove_file(p),
            };
        }
        // And whatever else this process left under the temporary's name: GDAL's own
        // temporaries beside a file it writes (`.ovr.tmp` of a COG copy cut short).
        let me = std::process::id() as i32;
        if let Some(name) = file_name(&self.target) {
            remove_temps(&parent_dir(&self.target), |f| {
                temp_owner(f, &name).filter(|&pid| pid == me)
            });
        }
        // Remove the lock file while still holding the lock; a run that opened it meanwhile
        // sees the name gone after its own flock and starts over.
        if self.lock.is_some() {
            let _ = std::fs::remove_file(&self.lock_path);
        }
        self.lock = None;
    }
}

/// A file written under a temporary name beside its final one (`.NAME.partial-PID`, as
/// [`temp_path`]) and moved into place by [`StagedFile::commit`]; removed on drop unless
/// committed, so that an error or an interrupt between the two leaves nothing.
pub struct StagedFile {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl StagedFile {
    pub fn new(target: &Path) -> StagedFile {
        StagedFile {
            target: target.to_path_buf(),
            temp: temp_path(target),
            committed: false,
        }
    }

    /// `text` written and synced under the temporary name.
    pub fn with_text(target: &Path, text: &str) -> std::io::Result<StagedFile> {
        let staged = StagedFile::new(target);
        let mut f = File::create(&staged.temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(staged)
    }

    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Syncs the file and moves it into place: without `overwrite` never over an existing
    /// file, not even one that appeared meanwhile (`AlreadyExists`).
    pub fn commit(mut self, overwrite: bool) -> std::io::Result<()> {
        File::open(&self.temp)?.sync_all()?;
        if overwrite {
            std::fs::rename(&self.temp, &self.target)?;
        } else {
            crate::os::rename_noreplace(&self.temp, &self.target)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes the report: to a temporary name, then moved into place, so a reader never sees
/// half a report. Without `overwrite` it never replaces a file, not even one that appeared
/// during the run (`AlreadyExists`).
pub fn write_report(path: &Path, text: &str, overwrite: bool) -> std::io::Result<()> {
    StagedFile::with_text(path, text)?.commit(overwrite)
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The PID in `file` if it is a temporary of `target_name` in the same directory:
/// `.NAME.partial-PID` ([`temp_path`]), and what grows from it: `-TAG` (a scratch of
/// [`Staging::scratch`]) or `.EXT` (GDAL's own temporaries beside a file it writes).
pub fn temp_owner(file: &str, target_name: &str) -> Option<i32> {
    let rest = file
        .strip_prefix('.')?
        .strip_prefix(target_name)?
        .strip_prefix(".partial-")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (pid, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail.starts_with('-') || tail.starts_with('.')) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is gone (EPERM means it lives under another user).
fn is_dead(pid: i32) -> bool {
    pid != std::process::id() as i32
        && matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Removes the entries of `dir` (files, or directories with their contents) for which `owner`
/// names a process, saying so when that process is another one.
fn remove_temps(dir: &Path, owner: impl Fn(&str) -> Option<i32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id() as i32;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner(&file) else {
            continue;
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if pid != me {
            let slash = if is_dir { "/" } else { "" };
            tracing::info!("removing '{file}{slash}', left by a run (pid {pid}) that is gone");
        }
        let _ = if is_dir {
            std::fs::remove_dir_all(e.path())
        } else {
            std::fs::remove_file(e.path())
        };
    }
}

/// Removes temporary outputs of runs that died without cleaning up (SIGKILL, OOM kill):
/// `.NAME.partial-PID` (and its scratch `.NAME.partial-PID-TAG`, file or directory) beside
/// `target` whose PID is not alive. Called with the lock held,
/// so no live run on this OUTPUT can own one.
fn remove_stale_temps(target: &Path) {
    let Some(name) = file_name(target) else {
        return;
    };
    remove_temps(&parent_dir(target), |f| {
        temp_owner(f, &name).filter(|&pid| is_dead(pid))
    });
}

/// `remove_stale_temps` in `dir` for every target name `is_target` accepts (`merge`: the
/// shards' GeoTIFFs in OUTPUT.shards/, which a `--vrt` merge writes under temporary names).
/// Called with the lock on the output held.
pub fn remove_stale_temps_in(dir: &Path, is_target: impl Fn(&str) -> bool) {
    remove_temps(dir, |f| {
        let base = f.strip_prefix('.')?;
        let (name, _) = base.rsplit_once(".partial-")?;
        if !is_target(name) {
            return None;
        }
        temp_owner(f, name).filter(|&pid| is_dead(pid))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_output_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.tif");
        let first = Staging::lock(&out).unwrap();
        match Staging::lock(&out) {
            Err(CoordError::OutputLocked { holder, .. }) => {
                assert_eq!(holder, format!("process {}", std::process::id()))
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("locked twice"),
        }
        drop(first);
        assert!(!lock_path(&out).exists());
        Staging::lock(&out).unwrap();
    }

    #[test]
    fn commit_never_clobbers_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.tif");
        let mut st = Staging::lock(&out).unwrap();
        std::fs::write(st.temp(), b"new").unwrap();
        std::fs::write(&out, b"someone else's").unwrap();
        assert!(matches!(
            st.commit(false),
            Err(CoordError::OutputAppeared(_))
        ));
        assert_eq!(std::fs::read(&out).unwrap(), b"someone else's");
        let temp = st.temp().to_path_buf();
        drop(st);
        assert!(!temp.exists());

        let mut st = Staging::lock(&out).unwrap();
        std::fs::write(st.temp(), b"new").unwrap();
        st.commit(true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
    }

    #[test]
    fn temporaries_are_told_by_their_name() {
        assert_eq!(temp_owner(".o.tif.partial-123", "o.tif"), Some(123));
        assert_eq!(temp_owner(".o.tif.partial-123-cog", "o.tif"), Some(123));
        assert_eq!(
            temp_owner(".o.tif.partial-123-cog.ovr.tmp", "o.tif"),
            Some(123)
        );
        assert_eq!(temp_owner(".o.tif.partial-12x", "o.tif"), None);
        assert_eq!(temp_owner(".o.tif.x.partial-123", "o.tif"), None);
        assert_eq!(temp_owner("o.tif.partial-123", "o.tif"), None);
        assert_eq!(temp_owner(".o.tif.partial-", "o.tif"), None);
    }

    #[test]
    fn a_dropped_staging_removes_its_own_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.tif");
        let mut st = Staging::lock(&out).unwrap();
        let me = std::process::id();
        std::fs::write(st.temp(), b"x").unwrap();
        let scratch = st.scratch("levels");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::write(scratch.join("x2.tif"), b"x").unwrap();
        // What GDAL may leave beside a copy cut short, and a live process's (pid 1) temporary.
        let gdal = dir.path().join(format!(".o.tif.partial-{me}-cog.ovr.tmp"));
        std::fs::write(&gdal, b"x").unwrap();
        let other = dir.path().join(".o.tif.partial-1");
        std::fs::write(&other, b"x").unwrap();
        drop(st);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [".o.tif.partial-1"]);
    }

    #[test]
    fn side_paths_are_checked_against_every_other_path() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.tif");
        std::fs::write(&input, b"x").unwrap();
        let out = dir.path().join("out.tif");
        let r = dir.path().join("r.json");
        let alias = dir.path().join(".").join("r.json");
        let why = |sides: &[SidePath<'_>]| match check_distinct(&input, &out, sides) {
            Err(CoordError::ReportPath { flag, why, .. }) => format!("{flag}: {why}"),
            other => format!("{other:?}"),
        };
        assert_eq!(
            why(&[
                SidePath::new("--report", &r),
                SidePath::new("--events", &alias)
            ]),
            "--events: it is also the path of --report"
        );
        assert_eq!(
            why(&[SidePath::new("--report-html", &out)]),
            "--report-html: it is the output raster"
        );
        assert_eq!(
            why(&[SidePath::new("--events", &input)]),
            "--events: it is the input raster"
        );
        let stdout = Path::new("-");
        assert!(check_distinct(
            &input,
            &out,
            &[
                SidePath::new("--report", &r),
                SidePath::new("--events", stdout)
            ]
        )
        .is_ok());
    }

    #[test]
    fn paths_are_compared_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.tif");
        std::fs::write(&input, b"x").unwrap();
        let out = dir.path().join("out.tif");
        let via_dots = dir.path().join(".").join("in.tif");
        assert!(matches!(
            check_paths(
                &input,
                &out,
                Some(SidePath::new("--report", &via_dots)),
                false
            ),
            Err(CoordError::ReportPath { .. })
        ));
        let out_alias = dir.path().join("sub").join("..").join("out.tif");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(matches!(
            check_paths(
                &input,
                &out,
                Some(SidePath::new("--report", &out_alias)),
                false
            ),
            Err(CoordError::ReportPath { .. })
        ));
        assert!(check_paths(
            &input,
            &out,
            Some(SidePath::new("--report", &dir.path().join("r.json"))),
            false
        )
        .is_ok());
        assert!(matches!(
            check_paths(&input, Path::new("/dev/null"), None, true),
            Err(CoordError::OutputNotFile { .. })
        ));
    }
}
