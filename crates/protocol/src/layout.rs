//! Layout of the shared-memory slot ring, with checked offsets.
//!
//! The ring is one shared segment cut into `slots` equal slots. Each slot holds the input
//! window of one chunk (all selected bands, native sample type, band after band) followed
//! by the chunk's output (all bands, `f64`, band after band). Offsets are aligned to pages.

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
        let total = (inb + outb) * slots as u128;
        if total > u64::MAX as u128 / 2 || total > usize::MAX as u128 / 2 {
            return Err(LayoutError::Overflow(total));
        }
        Ok(SlotLayout {
            slots,
            input_bytes: inb as u64,
            output_bytes: outb as u64,
        })
    }

    pub fn slot_bytes(&self) -> u64 {
        self.input_bytes + self.output_bytes
    }

    pub fn total_bytes(&self) -> u64 {
        self.slot_bytes() * self.slots as u64
    }

    /// The input region of `slot`, `len` bytes long (at most `input_bytes`).
    pub fn input(&self, slot: SlotId, len: u64) -> Region {
        debug_assert!(len <= self.input_bytes && slot.0 < self.slots);
        Region {
            offset: slot.0 as u64 * self.slot_bytes(),
            len,
        }
    }

    /// The output region of `slot`, `len` bytes long (at most `output_bytes`).
    pub fn output(&self, slot: SlotId, len: u64) -> Region {
        debug_assert!(len <= self.output_bytes && slot.0 < self.slots);
        Region {
            offset: slot.0 as u64 * self.slot_bytes() + self.input_bytes,
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
        for (a, r) in seen.iter().enumerate() {
            for q in &seen[a + 1..] {
                assert!(r.end <= q.start || q.end <= r.start);
            }
        }
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
