//! PCT schedules (probabilistic concurrency testing, Burckhardt, Kothari,
//! Musuvathi, Nagarakatte, ASPLOS 2010; shuttle's `PctScheduler` is the
//! same scheme): a bug of depth `d` (one that needs `d` ordering
//! constraints, e.g. reader paused before its syscall, Close, then a new
//! socket) is found with probability at least 1/(n·k^(d−1)) per case for
//! `n` threads and `k` switch points, instead of the vanishing odds of a
//! uniformly random choice at every point.
//!
//! Protocol (the controlled scheduler asks [`Pct::choose`] at each
//! decision, with the threads that may run, and counts the decisions made
//! at a `before_syscall` sync point: the number is loaded, the syscall
//! comes next, the window every close race needs a preemption in):
//! - Each thread gets a distinct random initial priority in `d..d+n`; the
//!   eligible thread with the highest priority runs.
//! - `d−1` change points are drawn uniformly over the first `horizon`
//!   such `before_syscall` decisions (an estimate of how many the case
//!   makes, from its ops: [`horizon`]); at the `i`-th one, the thread that was running gets priority
//!   `d−1−i`, below every initial priority, so it is preempted there and
//!   stays behind everyone else who can run.
//! - Everything is drawn from the case's seed, so the same case makes the
//!   same choices. A saved case does not store the priorities: it stores
//!   the decisions taken (as every controlled case does), and replays them
//!   through the ordinary schedule, so saved cases from before PCT and
//!   after load and replay alike.

use super::Rng;

/// `before_syscall` decisions over which change points are spread, for a
/// case of `ops` ops: about one per op.
pub fn horizon(ops: usize) -> usize {
    ops.max(2)
}

/// The priorities and change points of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pct {
    priority: Vec<u64>,
    /// Decision indices, ascending.
    change_points: Vec<usize>,
    changed: usize,
}

impl Pct {
    /// A PCT schedule of bug depth `depth` (≥ 1) for `threads` threads.
    pub fn new(seed: u64, threads: usize, depth: usize, horizon: usize) -> Pct {
        let mut rng = Rng::new(seed ^ 0x5043_5400);
        let d = depth.max(1) as u64;
        // Fisher-Yates over d..d+n.
        let mut priority: Vec<u64> = (0..threads as u64).map(|i| d + i).collect();
        for i in (1..priority.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            priority.swap(i, j);
        }
        let mut change_points: Vec<usize> = (1..d)
            .map(|_| 1 + rng.below(horizon.max(1) as u64) as usize)
            .collect();
        change_points.sort_unstable();
        Pct {
            priority,
            change_points,
            changed: 0,
        }
    }

    /// Decision number `decision`: `running` held the turn until now (if
    /// any); `eligible(t)` says whether thread `t` may run. Returns the
    /// thread to run.
    pub fn choose(
        &mut self,
        decision: usize,
        running: Option<usize>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        while self
            .change_points
            .get(self.changed)
            .is_some_and(|&c| c <= decision)
        {
            let low = (self.change_points.len() - self.changed) as u64 - 1;
            if let Some(r) = running {
                if let Some(p) = self.priority.get_mut(r) {
                    *p = low;
                }
            }
            self.changed += 1;
        }
        (0..self.priority.len())
            .filter(|&t| eligible(t))
            .max_by_key(|&t| self.priority[t])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_eligible_thread_runs() {
        let mut p = Pct::new(1, 3, 1, 30);
        let first = p.choose(0, None, |_| true).expect("someone runs");
        // Depth 1: no change points, the same thread keeps winning.
        for k in 1..10 {
            assert_eq!(p.choose(k, Some(first), |_| true), Some(first));
        }
        let second = p.choose(10, Some(first), |t| t != first).expect("another");
        assert_ne!(second, first);
    }

    #[test]
    fn a_change_point_sends_the_running_thread_behind_everyone() {
        // Find a seed whose single change point falls early.
        let (seed, mut p) = (0..1000u64)
            .map(|s| (s, Pct::new(s, 3, 2, 30)))
            .find(|(_, p)| p.change_points[0] == 5)
            .expect("some seed puts the change point at decision 5");
        let top = p.choose(0, None, |_| true).expect("runs");
        assert_eq!(p.choose(4, Some(top), |_| true), Some(top), "seed {seed}");
        let after = p.choose(5, Some(top), |_| true).expect("runs");
        assert_ne!(after, top, "preempted at the change point");
        // Behind everyone: it runs only when nobody else can.
        assert_eq!(
            p.choose(6, Some(after), |t| t == top || t == after),
            Some(after)
        );
        assert_eq!(p.choose(7, None, |t| t == top), Some(top));
    }

    #[test]
    fn same_seed_same_choices() {
        let run = |seed| {
            let mut p = Pct::new(seed, 4, 3, 30);
            let mut cur = None;
            (0..60)
                .map(|k| {
                    cur = p.choose(k, cur, |t| (t + k) % 3 != 0);
                    cur
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
    }
}
