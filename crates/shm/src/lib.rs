//! The shared slot ring: one memfd segment mapped `MAP_SHARED` by the coordinator and by
//! every worker, and the leases through which its regions are handed out.
//!
//! Every `unsafe` of the workspace that concerns shared memory lives in this crate. Callers
//! get owned leases ([`SlotLease`], [`OutputLease`]) or, in a worker, the two checked
//! regions of one task ([`WorkerSegment::open_task`], module `task`: everything else of the
//! ring is inaccessible to the worker, and a canary guards each region's padding): never
//! `&self -> &mut [u8]`.
//!
//! The invariant that makes the views sound is the scheduler's: a slot belongs to one party
//! at a time (the worker computing its chunk, an in-process lane, or the writer), never to
//! two. Inside one process the [`SlotRing`] enforces it (a slot cannot be leased twice);
//! across processes the scheduler does (a slot is given to one worker until it answers or
//! has exited).
//!
//! It does not decide which slot goes where (the scheduler does), nor what the bytes mean
//! (the job does).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::{
    fs::File,
    io,
    ops::Range,
    os::fd::{AsRawFd, OwnedFd},
    ptr::NonNull,
    sync::{Arc, Mutex},
};

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::mman::ProtFlags;
use protocol::{LayoutError, Region, SlotId, SlotLayout, PAGE};

mod task;

use task::{check_canary, fill_canary, Part};
pub use task::{TaskMemory, TaskMemoryError, WildWrite, WorkerSegment};

/// A mapped shared segment. memfd has no name in /dev/shm, so nothing is ever left behind:
/// the memory goes when the last process holding the fd or a mapping exits, even after
/// SIGKILL.
pub struct SharedSegment {
    map: MmapRaw,
    file: File,
    len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("the input and output regions overlap")]
    Overlap,
    #[error("slot {0} is already leased")]
    Leased(u32),
    #[error("slot {0} is not in the ring")]
    NoSlot(u32),
    #[error("{0} bytes do not fit the slot's {1}-byte region")]
    TooLarge(u64, u64),
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

    /// Changes the protection of `r` (page aligned, inside the mapping) in this process.
    fn protect(&self, r: Range<usize>, prot: ProtFlags) -> io::Result<()> {
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

    fn range(&self, region: Region) -> Result<Range<usize>, LayoutError> {
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

/// The coordinator's ring: the segment cut into slots by a [`SlotLayout`], with a record of
/// which slots are leased inside this process.
pub struct SlotRing {
    seg: SharedSegment,
    layout: SlotLayout,
    leased: Mutex<Vec<bool>>,
}

impl SlotRing {
    /// Creates the segment for `layout`, its guard pages inaccessible in this process too:
    /// a kernel running in process (`--in-process-fallback`) that writes off its slot
    /// faults there instead of writing into the next region.
    pub fn create(layout: SlotLayout) -> io::Result<Arc<SlotRing>> {
        let seg = SharedSegment::create(layout.total_bytes())?;
        for g in layout.guards() {
            let r = seg
                .range(g)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            seg.protect(r, ProtFlags::PROT_NONE)?;
        }
        Ok(Arc::new(SlotRing {
            seg,
            layout,
            leased: Mutex::new(vec![false; layout.slots as usize]),
        }))
    }

    pub fn segment(&self) -> &SharedSegment {
        &self.seg
    }

    fn fits(&self, input_len: u64, output_len: u64) -> Result<(), ShmError> {
        if input_len > self.layout.input_bytes {
            return Err(ShmError::TooLarge(input_len, self.layout.input_bytes));
        }
        if output_len > self.layout.output_bytes {
            return Err(ShmError::TooLarge(output_len, self.layout.output_bytes));
        }
        Ok(())
    }

    fn claim(&self, slot: SlotId) -> Result<(), ShmError> {
        let mut l = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        match l.get_mut(slot.0 as usize) {
            None => Err(ShmError::NoSlot(slot.0)),
            Some(true) => Err(ShmError::Leased(slot.0)),
            Some(b) => {
                *b = true;
                Ok(())
            }
        }
    }

    fn release(&self, slot: SlotId) {
        let mut l = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = l.get_mut(slot.0 as usize) {
            *b = false;
        }
    }

    /// The whole slot, to compute a chunk in this process: its first `input_len` bytes of
    /// input and `output_len` bytes of output. No worker may be given the slot while the
    /// lease lives (the scheduler's contract).
    pub fn lease(
        self: &Arc<Self>,
        slot: SlotId,
        input_len: u64,
        output_len: u64,
    ) -> Result<SlotLease, ShmError> {
        if slot.0 >= self.layout.slots {
            return Err(ShmError::NoSlot(slot.0));
        }
        self.fits(input_len, output_len)?;
        let l = &self.layout;
        let input = Part::in_slot(&self.seg, l.input(slot, input_len), l.input_bytes)?;
        let output = Part::in_slot(&self.seg, l.output(slot, output_len), l.output_bytes)?;
        self.claim(slot)?;
        for p in [&input, &output] {
            // SAFETY: the padding lies inside the slot's region (it ends at the region's
            // reserved size at most, and `fits` checked the used length against it); the
            // slot is claimed by this lease alone, and the view ends here.
            fill_canary(unsafe { self.seg.view_mut(p.padding()) }, p.used.end);
        }
        Ok(SlotLease {
            ring: self.clone(),
            slot,
            input,
            output,
        })
    }

    /// The output part of a slot whose chunk is finished, to write it out.
    pub fn output_lease(
        self: &Arc<Self>,
        slot: SlotId,
        output_len: u64,
    ) -> Result<OutputLease, ShmError> {
        if slot.0 >= self.layout.slots {
            return Err(ShmError::NoSlot(slot.0));
        }
        self.fits(0, output_len)?;
        let output = self.layout.output(slot, output_len);
        let o = self.seg.range(output)?;
        self.claim(slot)?;
        Ok(OutputLease {
            ring: self.clone(),
            slot,
            output: o,
        })
    }
}

/// A slot leased to an in-process computation, with a canary in each region's padding.
/// Released on drop.
pub struct SlotLease {
    ring: Arc<SlotRing>,
    slot: SlotId,
    input: Part,
    output: Part,
}

impl SlotLease {
    /// The input and output parts, apart.
    pub fn parts(&mut self) -> (&mut [u8], &mut [u8]) {
        // SAFETY: the ranges were checked inside the mapping and are disjoint by the
        // layout (input before output within a slot); the ring gave this slot to this lease
        // alone, and `&mut self` makes the two views the only ones.
        unsafe {
            (
                self.ring.seg.view_mut(self.input.used.clone()),
                self.ring.seg.view_mut(self.output.used.clone()),
            )
        }
    }

    /// Whether the computation wrote past the end of either part (its canary changed).
    pub fn check(&self) -> Result<(), WildWrite> {
        for (p, which) in [(&self.input, "input"), (&self.output, "output")] {
            // SAFETY: the padding lies inside the slot's region; the lease holds the slot
            // alone and no view of `parts` outlives this borrow of `self`.
            let pad = unsafe { self.ring.seg.view(p.padding()) };
            check_canary(pad, p.used.end, which, p.used.len())?;
        }
        Ok(())
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.ring.release(self.slot);
    }
}

/// The output part of a finished slot, leased to the writer. Released on drop.
pub struct OutputLease {
    ring: Arc<SlotRing>,
    slot: SlotId,
    output: Range<usize>,
}

impl OutputLease {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: checked inside the mapping; the ring gave the slot to this lease alone
        // and the scheduler gives it to no worker until the lease is gone.
        unsafe { self.ring.seg.view(self.output.clone()) }
    }
}

impl Drop for OutputLease {
    fn drop(&mut self) {
        self.ring.release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_leased_once_at_a_time() {
        let ring = SlotRing::create(SlotLayout::new(2, 100, 50).unwrap()).unwrap();
        let mut a = ring.lease(SlotId(0), 100, 50).unwrap();
        assert!(matches!(
            ring.output_lease(SlotId(0), 50),
            Err(ShmError::Leased(0))
        ));
        let (i, o) = a.parts();
        i[0] = 7;
        o[49] = 9;
        drop(a);
        let out = ring.output_lease(SlotId(0), 50).unwrap();
        assert_eq!(out.bytes()[49], 9);
        assert!(matches!(
            ring.lease(SlotId(5), 1, 1),
            Err(ShmError::NoSlot(5))
        ));
    }

    #[test]
    fn a_lease_catches_a_write_past_its_parts_and_guard_pages_surround_them() {
        let ring = SlotRing::create(SlotLayout::new(2, 2 * PAGE, 2 * PAGE).unwrap()).unwrap();
        let mut a = ring.lease(SlotId(1), 100, PAGE).unwrap();
        let (_, o) = a.parts();
        o.fill(3);
        let end = o.as_mut_ptr();
        assert_eq!(a.check(), Ok(()));
        // SAFETY: the test plays a kernel writing 2 bytes past its output: inside the
        // slot's reserved region (one page of room left), hence mapped and writable.
        unsafe { std::ptr::write_bytes(end.add(PAGE as usize), 0, 2) };
        let e = a.check().unwrap_err();
        assert_eq!((e.which, e.first, e.last), ("output", 0, 1));
        drop(a);
        // Every guard page is inaccessible in this process: its page is PROT_NONE.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let seg = ring.segment().addresses();
        let none = maps
            .lines()
            .filter_map(|l| {
                let (range, rest) = l.split_once(' ')?;
                let (a, b) = range.split_once('-')?;
                let (a, b) = (
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                );
                (a >= seg.start && b <= seg.end && rest.starts_with("---")).then_some(a..b)
            })
            .collect::<Vec<_>>();
        for g in ring.layout.guards() {
            let at = seg.start + g.offset as usize;
            assert!(
                none.iter().any(|r| r.contains(&at)),
                "guard at {}",
                g.offset
            );
        }
    }
}
