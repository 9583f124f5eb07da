//! Every `unsafe` of this crate, so that one file holds the whole argument: the mapping,
//! its protection, and the three views of it that the crate hands out (an in-process
//! lease's two parts, a finished slot's output for the writer, a worker task's two
//! regions). Each view's soundness rests on one invariant stated where it is made: a slot
//! belongs to one party at a time ([`crate::SlotRing`] within a process, the scheduler
//! across processes), and a worker's regions are accessible exactly while its
//! [`TaskMemory`] is open. Everything else of the crate (the layout's ranges, the leases'
//! bookkeeping, the canaries, read and written through the segment's file) is safe code.

use std::{
    fs::File,
    io,
    ops::Range,
    os::fd::{AsRawFd, OwnedFd},
    ptr::NonNull,
};

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::mman::ProtFlags;
use protocol::{LayoutError, Region, PAGE};

use crate::{OutputLease, SlotLease, TaskMemory};

/// A mapped shared segment. memfd has no name in /dev/shm, so nothing is ever left behind:
/// the memory goes when the last process holding the fd or a mapping exits, even after
/// SIGKILL.
pub struct SharedSegment {
    map: MmapRaw,
    file: File,
    len: u64,
}

impl SharedSegment {
    /// Creates a new anonymous segment of `len` bytes (the coordinator's side). Under a
    /// file-size limit (`ulimit -f`) below `len`, this fails with EFBIG (SIGXFSZ must be
    /// ignored by the caller, or the process dies instead).
    pub fn create(len: u64) -> io::Result<SharedSegment> {
        let fd: OwnedFd = nix::sys::memfd::memfd_create(
            c"blocksum-slots",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let file = File::from(fd);
        file.set_len(len)?;
        // Sealed at its size: no process holding the descriptor (a worker, or a user's
        // plug-in inside one) can shrink it under the coordinator's mapping (SIGBUS).
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_ADD_SEALS(
                nix::fcntl::SealFlag::F_SEAL_SHRINK
                    | nix::fcntl::SealFlag::F_SEAL_GROW
                    | nix::fcntl::SealFlag::F_SEAL_SEAL,
            ),
        )?;
        Self::map(file, len)
    }

    /// Maps a segment inherited as descriptor `fd` (the worker's side, which protects it:
    /// see [`WorkerSegment`]).
    pub(crate) fn from_fd(fd: OwnedFd, len: u64) -> io::Result<SharedSegment> {
        let file = File::from(fd);
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

    /// Where the segment lies in this process's address space (for a fault handler).
    pub fn addresses(&self) -> Range<usize> {
        let base = self.map.as_ptr() as usize;
        base..base + self.len as usize
    }

    /// The descriptor to hand to a child process.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// The segment's descriptor, borrowed (to send it to a fork server).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// The segment as a file: its bytes read and written with `pread`/`pwrite`, which need
    /// no view of the mapping (the canaries).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Changes the protection of `r` (page aligned, inside the mapping) in this process.
    pub(crate) fn protect(&self, r: Range<usize>, prot: ProtFlags) -> io::Result<()> {
        let len = r.len();
        if len == 0 {
            return Ok(());
        }
        if r.end > self.len as usize || !r.start.is_multiple_of(PAGE as usize) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside the segment or misaligned",
            ));
        }
        // SAFETY: the mapping's start plus an offset inside it (checked above): not null.
        let addr = unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(r.start)) };
        // SAFETY: `addr..addr+len` lies inside this process's own mapping of the segment
        // (checked), page aligned (the mapping is, and so is `r.start`). Safe code touches
        // these bytes only through views, and none is alive over a range whose access drops
        // (a worker's `TaskMemory` closes before its views can be taken again; the
        // coordinator protects guard pages no view ever covers).
        unsafe { nix::sys::mman::mprotect(addr.cast(), len, prot) }.map_err(io::Error::from)
    }

    pub(crate) fn range(&self, region: Region) -> Result<Range<usize>, LayoutError> {
        region.checked_range(self.len, 1)
    }

    /// # Safety
    /// `r` lies inside the mapping and no other view of it is alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn view_mut(&self, r: Range<usize>) -> &mut [u8] {
        // SAFETY: in bounds per the caller; the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(r.start), r.len()) }
    }

    /// # Safety
    /// `r` lies inside the mapping and nobody writes it while the view lives.
    unsafe fn view(&self, r: Range<usize>) -> &[u8] {
        // SAFETY: in bounds per the caller; the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(r.start), r.len()) }
    }
}

impl SlotLease {
    /// The input and output parts, apart.
    pub fn parts(&mut self) -> (&mut [u8], &mut [u8]) {
        let seg = &self.ring.seg;
        // SAFETY: the ranges were checked inside the mapping and are disjoint by the
        // layout (input before output within a slot); the ring gave this slot to this lease
        // alone, and `&mut self` makes the two views the only ones.
        unsafe {
            (
                seg.view_mut(self.input.used.clone()),
                seg.view_mut(self.output.used.clone()),
            )
        }
    }
}

impl OutputLease {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: checked inside the mapping; the ring gave the slot to this lease alone
        // and the scheduler gives it to no worker until the lease is gone.
        unsafe { self.ring.seg.view(self.output.clone()) }
    }
}

impl TaskMemory<'_> {
    /// The input and output regions: their used bytes only.
    pub fn regions(&mut self) -> (&mut [u8], &mut [u8]) {
        let [i, o] = &self.parts;
        let seg = self.segment();
        // SAFETY: both ranges lie inside the mapping (checked at open), their pages are
        // readable and writable until `close` or drop, which need `self` back (the views
        // borrow it mutably); the pages are disjoint (checked), and the coordinator gives
        // this task's slot to this worker alone until it answers.
        unsafe { (seg.view_mut(i.used.clone()), seg.view_mut(o.used.clone())) }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{SlotId, SlotLayout};

    use super::*;
    use crate::WorkerSegment;

    fn thread_cpu_us() -> f64 {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
        let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
        us(u.user_time()) + us(u.system_time())
    }

    /// What isolation costs a task: opening and closing its regions, against the same
    /// writes through the plain mapping. Prints CPU microseconds a task (this thread's).
    #[test]
    #[ignore = "timing: cargo test --release -p blocksum-shm --lib -- --ignored --nocapture"]
    fn what_opening_and_closing_a_task_costs() {
        for (input, every_page, n) in [
            (PAGE, false, 20_000),
            (16 << 20, false, 2_000),
            (16 << 20, true, 200),
        ] {
            let l = SlotLayout::new(4, input, 0).unwrap();
            let plain = SharedSegment::create(l.total_bytes()).unwrap();
            let fd = plain.fd().try_clone_to_owned().unwrap();
            let mut w = WorkerSegment::from_fd(fd, l.total_bytes()).unwrap();
            let r = l.input(SlotId(1), input);
            let range = r.checked_range(plain.len, 1).unwrap();
            let step = if every_page {
                PAGE as usize
            } else {
                input as usize - 1
            };
            let touch = |b: &mut [u8]| (0..b.len()).step_by(step).for_each(|k| b[k] += 1);
            let t0 = thread_cpu_us();
            for _ in 0..n {
                // SAFETY: in bounds; this thread is the only one using the segment.
                touch(unsafe { plain.view_mut(range.clone()) });
            }
            let t1 = thread_cpu_us();
            for _ in 0..n {
                let mut t = w.open_task(r, l.output(SlotId(1), 0)).unwrap();
                touch(t.regions().0);
                t.close().unwrap();
            }
            let t2 = thread_cpu_us();
            // SAFETY: as above.
            let first = unsafe { plain.view_mut(range.clone()) }[0];
            assert_eq!(first, (2 * n % 256) as u8);
            let (a, b) = ((t1 - t0) / n as f64, (t2 - t1) / n as f64);
            println!("{input}-byte input, every page touched: {every_page}: {a:.1} us a task plain, {b:.1} us guarded");
        }
    }
}
