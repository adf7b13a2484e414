//! `--shard I/N`: one machine's share of a suite split over N machines.
//!
//! Protocol: every shard loads the same scenario set (the same checkout,
//! the same generation flags and seed), orders it by scenario name (then
//! file, then load position, so the order never depends on the file
//! system), and keeps the scenarios whose rank modulo N is I-1. Generated
//! cases are split by case index instead (shard I runs the indices that are
//! I-1 modulo N, see `cli::gen`), so every shard's report has a `generated`
//! entry and `harness merge` sums them. So:
//! - the N shards partition the work: each scenario file and each generated
//!   case runs in exactly one shard, and none is lost;
//! - the split is deterministic: the same set gives the same split on any
//!   machine, so a failing shard can be re-run alone;
//! - the shares differ by at most one scenario (and one generated case).
//!
//! Shards are numbered from 1, as in `cargo nextest --partition count:I/N`.
//! A shard may get no scenario file (N larger than the set); it still runs
//! its generated cases and writes a report, so `harness merge` sees every
//! shard.
//!
//! All shards of one run must use the same `--seed`: case seeds derive from
//! the run seed, the scenario name and the case index, so the merged report
//! is the report the unsharded run would have written for the same cases.

use std::fmt;
use std::str::FromStr;

use crate::run::Source;

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = |why: &str| {
            format!("invalid shard '{s}': {why} (expected I/N with 1 <= I <= N, e.g. 2/4)")
        };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(bad("I must be between 1 and N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether the item of rank `rank` (0-based, in name order) is ours.
    pub fn owns_rank(&self, rank: usize) -> bool {
        rank % self.count as usize == (self.index - 1) as usize
    }

    /// This shard's share of `items`, named by `name` and `file`, in their
    /// original order.
    pub fn select<T>(&self, items: Vec<T>, key: impl Fn(&T) -> (&str, &str)) -> Vec<T> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| key(&items[a]).cmp(&key(&items[b])).then(a.cmp(&b)));
        let mut mine = vec![false; items.len()];
        for (rank, &i) in order.iter().enumerate() {
            mine[i] = self.owns_rank(rank);
        }
        items
            .into_iter()
            .zip(mine)
            .filter_map(|(item, keep)| keep.then_some(item))
            .collect()
    }
}

/// The sources shard `shard` runs (all of them without a shard).
pub fn select_sources(shard: Option<Shard>, sources: Vec<Source>) -> Vec<Source> {
    match shard {
        None => sources,
        Some(s) => s.select(sources, |src| {
            (src.scenario.name.as_str(), src.file.as_str())
        }),
    }
}

/// [`select_sources`], saying on stderr what the shard got (a shard with
/// no scenario is not an error: it writes an empty report).
pub fn apply(shard: Option<Shard>, sources: Vec<Source>) -> Vec<Source> {
    let total = sources.len();
    let mine = select_sources(shard, sources);
    if let Some(s) = shard {
        eprintln!("shard {s}: {} of {total} scenarios", mine.len());
    }
    mine
}

/// The `--shard` value parser for clap.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>(), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "2", "", "1/2/3", "-1/2"] {
            let e = bad.parse::<Shard>().expect_err(bad);
            assert!(e.contains("expected I/N"), "{e}");
        }
        assert_eq!(Shard { index: 3, count: 7 }.to_string(), "3/7");
    }

    #[test]
    fn shards_partition_by_name_whatever_the_input_order() {
        let names = ["e", "a", "d", "b", "g", "c", "f"];
        let mut reversed = names;
        reversed.reverse();
        for n in 1..=9u32 {
            let mut seen: Vec<&str> = Vec::new();
            for i in 1..=n {
                let s = Shard { index: i, count: n };
                let mine = s.select(names.to_vec(), |x| (x, ""));
                let mut again = s.select(reversed.to_vec(), |x| (x, ""));
                let mut sorted = mine.clone();
                sorted.sort();
                again.sort();
                assert_eq!(sorted, again, "shard {s} depends on input order");
                // Balanced: shares differ by at most one.
                let share = mine.len();
                let lo = names.len() / n as usize;
                assert!(share == lo || share == lo + 1, "shard {s}: {share}");
                // Original order kept.
                let pos: Vec<usize> = mine
                    .iter()
                    .map(|m| names.iter().position(|x| x == m).unwrap_or(usize::MAX))
                    .collect();
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
                seen.extend(mine);
            }
            seen.sort();
            let mut all = names.to_vec();
            all.sort();
            assert_eq!(seen, all, "{n} shards must cover every item exactly once");
        }
    }
}
