//! Layout of the shared-memory slot ring, with checked offsets.
//!
//! The ring is one shared segment cut into `slots` equal slots. Each slot holds the input
//! window of one chunk (all selected bands, native sample type, band after band) followed
//! by the chunk's output (all bands, `f64`, band after band). Offsets are aligned to pages.
//!
//! A guard page ([`PAGE`] bytes that nobody maps accessibly) lies before the first region,
//! between every two regions and after the last: a worker sees only its task's two regions
//! (see the `shm` crate), so a write running off either end of them faults on a guard page
//! instead of landing in the other region or in another chunk's slot.
//!
//! ```text
//! | guard | input 0 | guard | output 0 | guard | input 1 | guard | output 1 | guard |
//! ```

use serde::{Deserialize, Serialize};

use crate::types::SlotId;

pub const PAGE: u64 = 4096;

/// A byte range of the shared segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("region {offset}+{len} lies outside the {total}-byte shared segment")]
    OutOfBounds { offset: u64, len: u64, total: u64 },
    #[error("region {offset}+{len} is not aligned to {align} bytes")]
    Misaligned { offset: u64, len: u64, align: u64 },
    #[error("a slot would need {0} bytes, which overflows")]
    Overflow(u128),
}

impl Region {
    /// The region as a `usize` range of a segment of `total` bytes, checked.
    pub fn checked_range(
        &self,
        total: u64,
        align: u64,
    ) -> Result<std::ops::Range<usize>, LayoutError> {
        let end = self.offset.checked_add(self.len);
        match end {
            Some(end) if end <= total => {
                if !self.offset.is_multiple_of(align) {
                    return Err(LayoutError::Misaligned {
                        offset: self.offset,
                        len: self.len,
                        align,
                    });
                }
                Ok(self.offset as usize..end as usize)
            }
            _ => Err(LayoutError::OutOfBounds {
                offset: self.offset,
                len: self.len,
                total,
            }),
        }
    }
}

impl Region {
    /// The whole pages the region covers: its length rounded up to [`PAGE`] (`None` if that
    /// overflows). What lies between the region's end and the span's end is padding.
    pub fn page_span(&self) -> Option<Region> {
        Some(Region {
            offset: self.offset,
            len: self.len.checked_next_multiple_of(PAGE)?,
        })
    }
}

/// Sizes of one slot and of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLayout {
    pub slots: u32,
    /// Bytes reserved for the input part of a slot (page aligned).
    pub input_bytes: u64,
    /// Bytes reserved for the output part of a slot (page aligned).
    pub output_bytes: u64,
}

fn align_up(v: u128, to: u128) -> u128 {
    v.div_ceil(to) * to
}

impl SlotLayout {
    /// Layout for `slots` slots whose largest input needs `input` bytes and largest output
    /// `output` bytes.
    pub fn new(slots: u32, input: u64, output: u64) -> Result<SlotLayout, LayoutError> {
        let inb = align_up(input as u128, PAGE as u128);
        let outb = align_up(output as u128, PAGE as u128);
        let total = (inb + outb + 2 * PAGE as u128) * slots as u128 + PAGE as u128;
        if total > u64::MAX as u128 / 2 || total > usize::MAX as u128 / 2 {
            return Err(LayoutError::Overflow(total));
        }
        Ok(SlotLayout {
            slots,
            input_bytes: inb as u64,
            output_bytes: outb as u64,
        })
    }

    /// Bytes of data a slot holds (input and output, without its guard pages).
    pub fn slot_bytes(&self) -> u64 {
        self.input_bytes + self.output_bytes
    }

    /// Distance from one slot's start to the next one's: its data and two guard pages.
    pub fn stride(&self) -> u64 {
        self.slot_bytes() + 2 * PAGE
    }

    /// Bytes of the whole segment, guard pages included (they are never touched, so they
    /// cost address space, not memory).
    pub fn total_bytes(&self) -> u64 {
        self.stride() * self.slots as u64 + PAGE
    }

    /// The guard pages: one before the first slot, one after every input and output region.
    pub fn guards(&self) -> impl Iterator<Item = Region> + '_ {
        let page = |offset| Region { offset, len: PAGE };
        std::iter::once(page(0)).chain((0..self.slots).flat_map(move |s| {
            let input = self.input(SlotId(s), 0).offset;
            let output = self.output(SlotId(s), 0).offset;
            [
                page(input + self.input_bytes),
                page(output + self.output_bytes),
            ]
        }))
    }

    /// The input region of `slot`, `len` bytes long (at most `input_bytes`).
    pub fn input(&self, slot: SlotId, len: u64) -> Region {
        debug_assert!(len <= self.input_bytes && slot.0 < self.slots);
        Region {
            offset: PAGE + slot.0 as u64 * self.stride(),
            len,
        }
    }

    /// The output region of `slot`, `len` bytes long (at most `output_bytes`).
    pub fn output(&self, slot: SlotId, len: u64) -> Region {
        debug_assert!(len <= self.output_bytes && slot.0 < self.slots);
        Region {
            offset: PAGE + slot.0 as u64 * self.stride() + self.input_bytes + PAGE,
            len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_stay_inside_and_apart() {
        let l = SlotLayout::new(3, 10_000, 100).unwrap();
        assert_eq!(l.input_bytes, 3 * PAGE);
        assert_eq!(l.output_bytes, PAGE);
        let total = l.total_bytes();
        let mut seen = vec![];
        for s in 0..3 {
            let i = l
                .input(SlotId(s), l.input_bytes)
                .checked_range(total, PAGE)
                .unwrap();
            let o = l
                .output(SlotId(s), l.output_bytes)
                .checked_range(total, PAGE)
                .unwrap();
            seen.push(i);
            seen.push(o);
        }
        // Apart by a guard page at least, with one before the first and after the last.
        for (a, r) in seen.iter().enumerate() {
            for q in &seen[a + 1..] {
                assert!(r.end + PAGE as usize <= q.start || q.end + PAGE as usize <= r.start);
            }
        }
        assert!(seen.iter().all(|r| r.start >= PAGE as usize));
        // The guard pages are what lies between: the segment is regions and guards, apart.
        let guards: Vec<_> = l
            .guards()
            .map(|g| g.checked_range(total, PAGE).unwrap())
            .collect();
        assert_eq!(guards.len(), 7);
        let covered: usize = guards.iter().chain(&seen).map(|r| r.len()).sum();
        assert_eq!(covered as u64, total);
        for g in &guards {
            assert!(seen.iter().all(|r| g.end <= r.start || r.end <= g.start));
        }
        assert!(seen.iter().all(|r| r.end + PAGE as usize <= total as usize));
        let r = l.output(SlotId(1), 100).page_span().unwrap();
        assert_eq!((r.offset, r.len), (l.output(SlotId(1), 0).offset, PAGE));
        assert_eq!(l.input(SlotId(0), 0).page_span().unwrap().len, 0);
        let huge = Region {
            offset: 0,
            len: u64::MAX - 1,
        };
        assert!(huge.page_span().is_none());
        let bad = Region {
            offset: total - 8,
            len: 16,
        };
        assert!(bad.checked_range(total, 8).is_err());
        let wrap = Region {
            offset: u64::MAX,
            len: 2,
        };
        assert!(wrap.checked_range(total, 1).is_err());
    }
}
