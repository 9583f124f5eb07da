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
//! most a page of canary per region.

use std::{io, ops::Range, os::fd::OwnedFd};

use nix::sys::mman::ProtFlags;
use protocol::{Region, PAGE};

use crate::{SharedSegment, ShmError};

/// The byte a canary holds at offset `i` of the segment: varied, so that a kernel filling
/// memory with one value does not write it by chance.
fn canary(i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ 0xA5
}

/// Fills `pad` (the bytes from segment offset `start` on) with the canary.
pub(crate) fn fill_canary(pad: &mut [u8], start: usize) {
    pad.iter_mut()
        .enumerate()
        .for_each(|(k, b)| *b = canary(start + k));
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

/// Checks the canary of `which` region (`len` used bytes), whose padding `pad` starts at
/// segment offset `start`.
pub(crate) fn check_canary(
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
    /// Changing the protection failed: the worker cannot keep its regions apart and must stop.
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
        let used = r.checked_range(seg.len, PAGE)?;
        let span = r
            .page_span()
            .ok_or(protocol::LayoutError::Overflow(r.len as u128))?;
        let pages = span.checked_range(seg.len, PAGE)?;
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
        w.seg.protect(0..w.seg.len as usize, ProtFlags::PROT_NONE)?;
        Ok(w)
    }

    pub fn len(&self) -> u64 {
        self.seg.len
    }

    pub fn is_empty(&self) -> bool {
        self.seg.len == 0
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
            // SAFETY: the padding lies inside the part's pages (in the mapping, checked, now
            // writable); `mem` borrows the segment mutably, so no other view exists here.
            let pad = unsafe { mem.seg.seg.view_mut(p.padding()) };
            fill_canary(pad, p.used.end);
        }
        Ok(mem)
    }
}

/// The two regions of the task being run, accessible while this lives.
pub struct TaskMemory<'a> {
    seg: &'a mut WorkerSegment,
    /// Input, then output.
    parts: [Part; 2],
    closed: bool,
}

impl TaskMemory<'_> {
    /// The input and output regions: their used bytes only.
    pub fn regions(&mut self) -> (&mut [u8], &mut [u8]) {
        let [i, o] = &self.parts;
        // SAFETY: both ranges lie inside the mapping (checked at open), their pages are
        // readable and writable until `close` or drop, which need `self` back (the views
        // borrow it mutably); the pages are disjoint (checked), and the coordinator gives
        // this task's slot to this worker alone until it answers.
        unsafe {
            (
                self.seg.seg.view_mut(i.used.clone()),
                self.seg.seg.view_mut(o.used.clone()),
            )
        }
    }

    /// Where the used bytes of the input and of the output region lie in this process's
    /// address space.
    pub fn addresses(&self) -> [Range<usize>; 2] {
        let base = self.seg.seg.map.as_ptr() as usize;
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
            // SAFETY: the padding lies inside the part's pages, still readable; the kernel
            // is done with the slot (its views are gone: `self` is borrowed here).
            let pad = unsafe { self.seg.seg.view(p.padding()) };
            check_canary(pad, p.used.end, which, p.used.len())?;
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
    use std::os::fd::AsFd;

    use protocol::{SlotId, SlotLayout};

    use super::*;

    fn worker_view(len: u64) -> (SharedSegment, WorkerSegment) {
        let seg = SharedSegment::create(len).unwrap();
        let fd = seg.file.as_fd().try_clone_to_owned().unwrap();
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
        // The coordinator's mapping sees the bytes.
        let r = output.checked_range(coord.len, 1).unwrap();
        // SAFETY: in bounds; nobody writes the segment any more.
        assert!(unsafe { coord.view(r) }.iter().all(|&b| b == 2));

        let mut t = w.open_task(input, output).unwrap();
        let (_, o) = t.regions();
        let o_ptr = o.as_mut_ptr();
        // SAFETY: the test plays a kernel that writes 4 bytes past its output, inside the
        // page (its padding), which is mapped and writable.
        unsafe { std::ptr::write_bytes(o_ptr.add(800), 0, 4) };
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
            let (plain, mut w) = worker_view(l.total_bytes());
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
