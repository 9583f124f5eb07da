//! The worker's side of the ring: the whole segment mapped with no access at all, save the
//! two regions of the task the worker is running, opened for that task alone.
//!
//! A kernel (a user's C plug-in, say) that writes past its output or before its input
//! faults on a page it cannot touch (SIGSEGV kills the worker; the other slots are never
//! written). A write that stays inside the region's last page but past the bytes the task
//! uses (padding up to the page's end) overwrites a canary written there before the task;
//! [`TaskMemory::close`] finds it and the attempt fails. Either way no other chunk's bytes
//! change: the layout puts a guard page between every two regions (see
//! [`protocol::layout`]).
//!
//! Costs per task: two `mprotect` calls to open the regions and two to close them (the
//! pages stay mapped and populated, so nothing faults in again), and writing and checking at
//! most a page of canary per region (`pwrite` and `pread` of the segment's file, which the
//! mapping shares: no view of the mapping is needed for them).

use std::{
    io,
    ops::Range,
    os::{fd::OwnedFd, unix::fs::FileExt},
};

use nix::sys::mman::ProtFlags;
use protocol::{Region, PAGE};

use crate::{SharedSegment, ShmError};

/// The byte a canary holds at offset `i` of the segment: varied, so that a kernel filling
/// memory with one value does not write it by chance.
fn canary(i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ 0xA5
}

/// Writes the canary into the padding of `part`.
pub(crate) fn fill_canary(seg: &SharedSegment, part: &Part) -> io::Result<()> {
    let pad = part.padding();
    let bytes: Vec<u8> = pad.clone().map(canary).collect();
    seg.file().write_all_at(&bytes, pad.start as u64)
}

/// Checks the canary in the padding of `which` region (`part`): `Ok(Err(_))` when it
/// changed.
pub(crate) fn check_canary(
    seg: &SharedSegment,
    part: &Part,
    which: &'static str,
) -> io::Result<Result<(), WildWrite>> {
    let pad = part.padding();
    let mut bytes = vec![0; pad.len()];
    seg.file().read_exact_at(&mut bytes, pad.start as u64)?;
    Ok(compare_canary(&bytes, pad.start, which, part.used.len()))
}

/// A region's padding whose canary changed: the task wrote past the region's end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "wild write: the task wrote past the end of its {which} region ({len} bytes): \
     the canary after it was overwritten at bytes +{first}..+{last} of its {pad}-byte padding"
)]
pub struct WildWrite {
    pub which: &'static str,
    pub len: usize,
    pub first: usize,
    pub last: usize,
    pub pad: usize,
}

/// Compares the canary of `which` region (`len` used bytes), whose padding `pad` starts at
/// segment offset `start`, with what it should hold.
fn compare_canary(
    pad: &[u8],
    start: usize,
    which: &'static str,
    len: usize,
) -> Result<(), WildWrite> {
    let mut bad = pad
        .iter()
        .enumerate()
        .filter(|&(k, &b)| b != canary(start + k))
        .map(|(k, _)| k);
    match bad.next() {
        None => Ok(()),
        Some(first) => Err(WildWrite {
            which,
            len,
            first,
            last: bad.next_back().unwrap_or(first),
            pad: pad.len(),
        }),
    }
}

/// The worker's mapping of the ring: no access outside an open [`TaskMemory`].
pub struct WorkerSegment {
    seg: SharedSegment,
}

/// Why a task's memory could not be opened or closed cleanly.
#[derive(Debug, thiserror::Error)]
pub enum TaskMemoryError {
    #[error(transparent)]
    Region(#[from] ShmError),
    /// The task wrote into its region's padding: this attempt's result cannot be trusted.
    #[error(transparent)]
    Canary(#[from] WildWrite),
    /// Changing the protection (or writing and reading the canaries) failed: the worker
    /// cannot keep its regions apart and must stop.
    #[error("changing the protection of the shared segment: {0}")]
    Protect(#[source] io::Error),
}

/// One region of a task: the bytes it uses, the pages that cover them, and where its
/// canary ends.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) used: Range<usize>,
    pub(crate) pages: Range<usize>,
    canary_end: usize,
}

impl Part {
    /// The region `r`, its canary up to the end of its last page.
    pub(crate) fn new(seg: &SharedSegment, r: Region) -> Result<Part, ShmError> {
        let used = r.checked_range(seg.len(), PAGE)?;
        let span = r
            .page_span()
            .ok_or(protocol::LayoutError::Overflow(r.len as u128))?;
        let pages = span.checked_range(seg.len(), PAGE)?;
        let canary_end = pages.end;
        Ok(Part {
            used,
            pages,
            canary_end,
        })
    }

    /// The region `r` of a slot whose region is `reserved` bytes: the canary runs a page
    /// past the used bytes where the slot has room for it (in the coordinator, the slot's
    /// unused bytes are accessible: only the guard pages are not).
    pub(crate) fn in_slot(seg: &SharedSegment, r: Region, reserved: u64) -> Result<Part, ShmError> {
        let mut p = Part::new(seg, r)?;
        let slot_end = p.used.start.saturating_add(reserved as usize);
        p.canary_end = p
            .pages
            .end
            .max(p.used.end.saturating_add(PAGE as usize).min(slot_end));
        Ok(p)
    }

    /// The bytes after the used ones that hold the canary.
    pub(crate) fn padding(&self) -> Range<usize> {
        self.used.end..self.canary_end
    }
}

impl WorkerSegment {
    /// Maps a segment inherited as descriptor `fd`, every byte inaccessible.
    pub fn from_fd(fd: OwnedFd, len: u64) -> io::Result<WorkerSegment> {
        let seg = SharedSegment::from_fd(fd, len)?;
        let w = WorkerSegment { seg };
        w.seg
            .protect(0..w.seg.len() as usize, ProtFlags::PROT_NONE)?;
        Ok(w)
    }

    pub fn len(&self) -> u64 {
        self.seg.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seg.is_empty()
    }

    /// Where the segment lies in this process's address space (for a fault handler to tell
    /// a fault on it from any other).
    pub fn addresses(&self) -> Range<usize> {
        self.seg.addresses()
    }

    /// Opens the input and output regions of the task this worker is about to run (checked
    /// inside the segment, page aligned and apart), readable and writable until the returned
    /// memory is closed or dropped, with a canary in each region's padding.
    pub fn open_task(
        &mut self,
        input: Region,
        output: Region,
    ) -> Result<TaskMemory<'_>, TaskMemoryError> {
        let (i, o) = (Part::new(&self.seg, input)?, Part::new(&self.seg, output)?);
        if !(i.pages.end <= o.pages.start || o.pages.end <= i.pages.start) {
            return Err(ShmError::Overlap.into());
        }
        let mem = TaskMemory {
            seg: self,
            parts: [i, o],
            closed: false,
        };
        for p in mem.parts.clone() {
            mem.seg
                .seg
                .protect(
                    p.pages.clone(),
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                )
                .map_err(TaskMemoryError::Protect)?;
            fill_canary(&mem.seg.seg, &p).map_err(TaskMemoryError::Protect)?;
        }
        Ok(mem)
    }
}

/// The two regions of the task being run, accessible while this lives (their views:
/// `TaskMemory::regions`, in module `os`).
pub struct TaskMemory<'a> {
    seg: &'a mut WorkerSegment,
    /// Input, then output.
    pub(crate) parts: [Part; 2],
    closed: bool,
}

impl TaskMemory<'_> {
    /// The mapping the regions lie in.
    pub(crate) fn segment(&self) -> &SharedSegment {
        &self.seg.seg
    }

    /// Where the used bytes of the input and of the output region lie in this process's
    /// address space.
    pub fn addresses(&self) -> [Range<usize>; 2] {
        let base = self.seg.seg.addresses().start;
        let [i, o] = &self.parts;
        [
            base + i.used.start..base + i.used.end,
            base + o.used.start..base + o.used.end,
        ]
    }

    /// Checks both canaries, then makes the regions inaccessible again. A canary that
    /// changed fails the attempt ([`TaskMemoryError::Canary`]); a protection that cannot be
    /// restored ([`TaskMemoryError::Protect`]) means the worker must stop.
    pub fn close(mut self) -> Result<(), TaskMemoryError> {
        let checked = self.check();
        self.closed = true;
        self.lock().map_err(TaskMemoryError::Protect)?;
        checked
    }

    fn check(&self) -> Result<(), TaskMemoryError> {
        for (p, which) in self.parts.iter().zip(["input", "output"]) {
            check_canary(&self.seg.seg, p, which).map_err(TaskMemoryError::Protect)??;
        }
        Ok(())
    }

    fn lock(&self) -> io::Result<()> {
        for p in &self.parts {
            self.seg
                .seg
                .protect(p.pages.clone(), ProtFlags::PROT_NONE)?;
        }
        Ok(())
    }
}

impl Drop for TaskMemory<'_> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Err(e) = self.lock() {
            // A worker whose other slots could be written must not run another task.
            eprintln!("worker: changing the protection of the shared segment: {e}");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{SlotId, SlotLayout};

    use super::*;

    fn worker_view(len: u64) -> (SharedSegment, WorkerSegment) {
        let seg = SharedSegment::create(len).unwrap();
        let fd = seg.fd().try_clone_to_owned().unwrap();
        let w = WorkerSegment::from_fd(fd, len).unwrap();
        (seg, w)
    }

    #[test]
    fn a_task_sees_its_regions_and_a_padding_write_fails_it() {
        let l = SlotLayout::new(2, 3 * PAGE, 1000).unwrap();
        let (coord, mut w) = worker_view(l.total_bytes());
        let (input, output) = (l.input(SlotId(1), 3 * PAGE), l.output(SlotId(1), 800));
        let mut t = w.open_task(input, output).unwrap();
        let (i, o) = t.regions();
        assert_eq!((i.len(), o.len()), (3 * PAGE as usize, 800));
        i.fill(1);
        o.fill(2);
        t.close().unwrap();
        // The coordinator's side of the segment sees the bytes.
        let mut seen = vec![0; 800];
        coord
            .file()
            .read_exact_at(&mut seen, output.offset)
            .unwrap();
        assert!(seen.iter().all(|&b| b == 2));

        // A kernel that writes 4 bytes past its output, inside the page (its padding); the
        // test writes them through the coordinator's file, which the worker's mapping shares.
        let t = w.open_task(input, output).unwrap();
        coord
            .file()
            .write_all_at(&[0; 4], output.offset + 800)
            .unwrap();
        let e = t.close().unwrap_err();
        assert!(
            matches!(&e, TaskMemoryError::Canary(w) if w.which == "output" && w.first == 0),
            "{e}"
        );
        assert!(e.to_string().contains("wild write"), "{e}");
        // A clean task after it.
        let t = w.open_task(input, output).unwrap();
        t.close().unwrap();
    }

    #[test]
    fn regions_are_checked() {
        let (_c, mut w) = worker_view(4 * PAGE);
        let r = |offset, len| Region { offset, len };
        assert!(w.open_task(r(0, 10), r(PAGE, 10)).is_ok());
        // The same page twice, out of bounds, misaligned.
        assert!(w.open_task(r(0, 10), r(0, 10)).is_err());
        assert!(w.open_task(r(0, 10), r(3 * PAGE, PAGE + 1)).is_err());
        assert!(w.open_task(r(1, 10), r(PAGE, 10)).is_err());
        assert!(w.open_task(r(0, PAGE + 1), r(PAGE, 10)).is_err());
    }
}
