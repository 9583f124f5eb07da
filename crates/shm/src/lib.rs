//! The shared slot ring: one memfd segment mapped `MAP_SHARED` by the coordinator and by
//! every worker, and the leases through which its regions are handed out.
//!
//! Every `unsafe` of the workspace that concerns shared memory lives in this crate, in one
//! module of it (`os`: the mapping, its protection and the views it hands out). Callers
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
    io,
    ops::Range,
    sync::{Arc, Mutex},
};

use nix::sys::mman::ProtFlags;
use protocol::{LayoutError, SlotId, SlotLayout};

mod os;
mod task;

pub use os::SharedSegment;
use task::{check_canary, fill_canary, Part};
pub use task::{TaskMemory, TaskMemoryError, WildWrite, WorkerSegment};

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
    #[error(transparent)]
    WildWrite(#[from] WildWrite),
    /// Writing or reading a canary (through the segment's file) failed.
    #[error("the canary of a slot: {0}")]
    Canary(#[source] io::Error),
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
        let lease = SlotLease {
            ring: self.clone(),
            slot,
            input,
            output,
        };
        for p in [&lease.input, &lease.output] {
            // The padding lies inside the slot's region (it ends at the region's reserved
            // size at most, and `fits` checked the used length against it), and the slot
            // is this lease's (dropping it on an error releases the slot).
            fill_canary(&self.seg, p).map_err(ShmError::Canary)?;
        }
        Ok(lease)
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
    /// Whether the computation wrote past the end of either part (its canary changed:
    /// [`ShmError::WildWrite`]).
    pub fn check(&self) -> Result<(), ShmError> {
        for (p, which) in [(&self.input, "input"), (&self.output, "output")] {
            check_canary(&self.ring.seg, p, which).map_err(ShmError::Canary)??;
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

impl Drop for OutputLease {
    fn drop(&mut self) {
        self.ring.release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use protocol::PAGE;

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
        assert!(a.check().is_ok());
        // A kernel writing 2 bytes past its output: inside the slot's reserved region (one
        // page of room left). The test writes them through the segment's file, which the
        // mapping shares.
        let past = a.output.used.end as u64;
        ring.segment().file().write_all_at(&[0, 0], past).unwrap();
        let e = a.check().unwrap_err();
        assert!(
            matches!(&e, ShmError::WildWrite(w) if (w.which, w.first, w.last) == ("output", 0, 1)),
            "{e}"
        );
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
