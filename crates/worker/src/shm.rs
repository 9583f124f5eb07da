//! The shared slot ring: one memfd segment mapped `MAP_SHARED` by the coordinator and by
//! every worker. memfd has no name in /dev/shm, so nothing is ever left behind: the memory
//! goes when the last process holding the fd or a mapping exits, even after SIGKILL.
//!
//! All `unsafe` about shared memory lives here. The one invariant callers must uphold is the
//! scheduler's: a region belongs to one party at a time (the worker computing the chunk, or
//! the writer writing it), never to two.

use std::{
    fs::File,
    io,
    ops::Range,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use memmap2::{MmapOptions, MmapRaw};
use protocol::{LayoutError, Region};

/// A mapped shared segment.
pub struct SharedSegment {
    map: MmapRaw,
    file: File,
    len: u64,
}

impl SharedSegment {
    /// Creates a new anonymous segment of `len` bytes (the coordinator's side).
    pub fn create(len: u64) -> io::Result<SharedSegment> {
        let fd: OwnedFd = nix::sys::memfd::memfd_create(
            c"blocksum-slots",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        let file = File::from(fd);
        file.set_len(len)?;
        Self::map(file, len)
    }

    /// Maps a segment inherited as file descriptor `fd` (the worker's side).
    ///
    /// # Safety
    /// `fd` must be an open descriptor that nothing else in this process owns or closes.
    pub unsafe fn from_inherited_fd(fd: i32, len: u64) -> io::Result<SharedSegment> {
        // SAFETY: the caller guarantees `fd` is open and owned by no one else.
        let file = unsafe { File::from_raw_fd(fd) };
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared segment is {actual} bytes, expected {len}"),
            ));
        }
        Self::map(file, len)
    }

    fn map(file: File, len: u64) -> io::Result<SharedSegment> {
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        Ok(SharedSegment { map, file, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor to hand to a child process.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Checks that `region` lies inside the segment and is aligned for `align`-byte samples.
    pub fn check(&self, region: Region, align: u64) -> Result<Range<usize>, LayoutError> {
        region.checked_range(self.len, align)
    }

    /// A mutable view of `range` (from [`SharedSegment::check`]).
    ///
    /// # Safety
    /// No other live reference, in this process, may overlap `range`, and no other process
    /// may write it while the view is used (the scheduler hands a slot to one party at a time).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, range: Range<usize>) -> &mut [u8] {
        assert!(range.start <= range.end && range.end as u64 <= self.len);
        // SAFETY: the range lies inside the live mapping (checked above); exclusivity is the
        // caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(range.start), range.len())
        }
    }
}

impl SharedSegment {
    /// A shared view of `range`.
    ///
    /// # Safety
    /// No one may write `range` while the view is used.
    pub unsafe fn slice(&self, range: Range<usize>) -> &[u8] {
        assert!(range.start <= range.end && range.end as u64 <= self.len);
        // SAFETY: inside the live mapping (checked above); no writer is the caller's contract.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(range.start), range.len()) }
    }
}
