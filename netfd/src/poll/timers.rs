//! The poll server's deadline timers: a binary min-heap by expiry holding at
//! most one timer per (registration slot, direction), moved in place when a
//! deadline changes (Go's netpoller keeps one timer per pollDesc and
//! modifies it, for the same reason).
//!
//! Invariants:
//! - `pos[slot][dir]` is the heap index of that pair's timer, or `NONE`.
//! - A waiter arms at most one timer per direction at a time (the fdmutex
//!   lets one reader and one writer wait per socket), so a new timer for the
//!   pair supersedes the old one: same sequence means the same deadline,
//!   a newer sequence means the old one is stale. Replacing it keeps the
//!   heap at ≤ 2 entries per registration however often deadlines move,
//!   and a moved deadline costs O(log n) and no wake-up of the server.
//! - Releasing a slot removes its timers, so a reused slot starts with none.
//!
//! Cost: O(log n) to set, move, fire or remove a timer.

use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timer {
    pub at: Instant,
    pub slot: u32,
    pub generation: u32,
    pub dir: u8,
    pub seq: u64,
}

const NONE: usize = usize::MAX;

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: Vec<Timer>,
    pos: Vec<[usize; 2]>,
}

impl TimerHeap {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn peek(&self) -> Option<&Timer> {
        self.heap.first()
    }

    /// Set the pair's timer to `t`, replacing the one it had. Returns true
    /// if `t` is now due before every other timer was (the server's sleep
    /// must be cut short).
    pub(crate) fn set(&mut self, t: Timer) -> bool {
        let earlier_than_all = self.heap.first().is_none_or(|top| t.at < top.at);
        let (slot, dir) = (t.slot as usize, t.dir as usize);
        if self.pos.len() <= slot {
            self.pos.resize(slot + 1, [NONE; 2]);
        }
        let i = match self.pos[slot][dir] {
            NONE => {
                self.heap.push(t);
                self.heap.len() - 1
            }
            i => {
                self.heap[i] = t;
                i
            }
        };
        self.pos[slot][dir] = i;
        let i = self.sift_up(i);
        self.sift_down(i);
        earlier_than_all
    }

    /// Take the earliest timer.
    pub(crate) fn pop(&mut self) -> Option<Timer> {
        if self.heap.is_empty() {
            return None;
        }
        Some(self.remove_at(0))
    }

    /// Drop the slot's timers (it is being released).
    pub(crate) fn remove_slot(&mut self, slot: u32) {
        for dir in 0..2 {
            let i = self.pos.get(slot as usize).map_or(NONE, |p| p[dir]);
            if i != NONE {
                self.remove_at(i);
            }
        }
    }

    fn remove_at(&mut self, i: usize) -> Timer {
        let last = self.heap.len() - 1;
        self.swap(i, last);
        let t = self.heap.pop().expect("non-empty");
        self.pos[t.slot as usize][t.dir as usize] = NONE;
        if i < self.heap.len() {
            let i = self.sift_up(i);
            self.sift_down(i);
        }
        t
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        for i in [a, b] {
            let t = &self.heap[i];
            self.pos[t.slot as usize][t.dir as usize] = i;
        }
    }

    fn sift_up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].at >= self.heap[parent].at {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l].at < self.heap[least].at {
                least = l;
            }
            if r < self.heap.len() && self.heap[r].at < self.heap[least].at {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn timer(base: Instant, ms: u64, slot: u32, dir: u8) -> Timer {
        Timer {
            at: base + Duration::from_millis(ms),
            slot,
            generation: 0,
            dir,
            seq: ms,
        }
    }

    /// Random sets, moves, removals and pops against a map of the live
    /// timers: every pop is the earliest live one, and positions stay right.
    #[test]
    fn agrees_with_a_model_under_random_operations() {
        let base = Instant::now();
        let mut heap = TimerHeap::default();
        let mut model: BTreeMap<(u32, u8), u64> = BTreeMap::new();
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let r = next();
            let (slot, dir) = ((r % 64) as u32, ((r >> 8) % 2) as u8);
            match (r >> 16) % 4 {
                0 | 1 => {
                    let ms = (r >> 24) % 1000;
                    heap.set(timer(base, ms, slot, dir));
                    model.insert((slot, dir), ms);
                }
                2 => {
                    heap.remove_slot(slot);
                    model.remove(&(slot, 0));
                    model.remove(&(slot, 1));
                }
                _ => {
                    let earliest = model.values().min().copied();
                    let popped = heap.pop();
                    assert_eq!(popped.map(|t| t.seq), earliest);
                    if let Some(t) = popped {
                        assert_eq!(model.remove(&(t.slot, t.dir)), Some(t.seq));
                    }
                }
            }
            assert_eq!(heap.len(), model.len());
            for (i, t) in heap.heap.iter().enumerate() {
                assert_eq!(heap.pos[t.slot as usize][t.dir as usize], i);
            }
        }
    }

    #[test]
    fn moving_a_deadline_keeps_one_timer_per_direction() {
        let base = Instant::now();
        let mut heap = TimerHeap::default();
        assert!(heap.set(timer(base, 500, 3, 0)));
        assert!(!heap.set(timer(base, 900, 4, 0)));
        for ms in (150..=450).rev().step_by(50) {
            assert!(heap.set(timer(base, ms, 4, 0)), "moved earliest: signal");
        }
        heap.set(timer(base, 700, 4, 1));
        assert_eq!(heap.len(), 3);
        assert_eq!(heap.pop().map(|t| (t.slot, t.seq)), Some((4, 150)));
        assert_eq!(heap.pop().map(|t| (t.slot, t.seq)), Some((3, 500)));
        assert_eq!(heap.pop().map(|t| (t.slot, t.dir)), Some((4, 1)));
        assert!(heap.pop().is_none());
    }
}
