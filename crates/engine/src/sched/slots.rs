//! The slot pool: which shared-memory result slots are free to hand out.
//!
//! Owns only the free list. Does not map memory or know who holds a taken slot: the facade
//! gives a slot back only once nothing can write it any more (the attempt failed with its
//! process alive, the process exited, or the writer is done with it).

use protocol::SlotId;

#[derive(Debug)]
pub struct SlotPool {
    /// A stack: the slot given back last is handed out first, still warm in cache.
    free: Vec<SlotId>,
}

impl SlotPool {
    /// Slots `0..n`, all free; slot 0 is handed out first.
    pub fn new(n: u32) -> SlotPool {
        SlotPool {
            free: (0..n).rev().map(SlotId).collect(),
        }
    }

    pub fn take(&mut self) -> Option<SlotId> {
        self.free.pop()
    }

    /// Slots free to hand out.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    pub fn give_back(&mut self, slot: SlotId) {
        debug_assert!(!self.free.contains(&slot), "{slot:?} given back twice");
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_in_order_then_last_given_back_first() {
        let mut p = SlotPool::new(3);
        assert_eq!(p.take(), Some(SlotId(0)));
        assert_eq!(p.take(), Some(SlotId(1)));
        p.give_back(SlotId(0));
        assert_eq!(p.take(), Some(SlotId(0)));
        assert_eq!(p.take(), Some(SlotId(2)));
        assert_eq!(p.take(), None);
    }
}
