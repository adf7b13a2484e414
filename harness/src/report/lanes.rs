//! A violation's interleaving as lanes: one column per thread, events in
//! order down the page, the violating event marked. Shared by the terminal
//! (`harness replay`) and the HTML report.

use super::{Event, Violation};

/// One row: an event in its thread's lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub lane: usize,
    /// `read(7) fdmutex #12 -> ok 64`, `after_incref #12`, ...
    pub text: String,
    /// The event the violation is about (the last event of its trace).
    pub marked: bool,
}

/// The lanes of one trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lanes {
    pub threads: Vec<String>,
    pub rows: Vec<Row>,
}

/// The text of one event as shown in a lane.
pub fn event_text(e: &Event) -> String {
    let mut t = e.what.clone();
    if let Some(fd) = e.fd {
        t = format!("{t}({fd})");
    }
    if e.owner != 0 {
        t = format!("{t} #{}", e.owner);
    }
    if let Some(r) = &e.result {
        t = format!("{t} -> {r}");
    }
    t
}

impl Lanes {
    /// Lanes for `trace`, the last event marked.
    pub fn from_trace(trace: &[Event]) -> Lanes {
        let mut threads: Vec<String> = Vec::new();
        let mut rows = Vec::with_capacity(trace.len());
        for (i, e) in trace.iter().enumerate() {
            let lane = match threads.iter().position(|t| *t == e.thread) {
                Some(l) => l,
                None => {
                    threads.push(e.thread.clone());
                    threads.len() - 1
                }
            };
            rows.push(Row {
                seq: e.seq,
                lane,
                text: event_text(e),
                marked: i + 1 == trace.len(),
            });
        }
        Lanes { threads, rows }
    }

    pub fn from_violation(v: &Violation) -> Lanes {
        Lanes::from_trace(&v.trace)
    }

    /// Fixed-width columns of `width` characters, `>>` before the marked event.
    pub fn render_text(&self, width: usize) -> String {
        let width = width.max(8);
        let cell = |s: &str| {
            let mut c: String = s.chars().take(width).collect();
            let n = c.chars().count();
            c.extend(std::iter::repeat_n(' ', width - n));
            c
        };
        let mut out = String::new();
        out.push_str("       ");
        for t in &self.threads {
            out.push_str(&cell(t));
            out.push_str(" | ");
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(if r.marked { ">>" } else { "  " });
            out.push_str(&format!("{:>4} ", r.seq % 10_000));
            for lane in 0..self.threads.len() {
                let text = if lane == r.lane { r.text.as_str() } else { "" };
                out.push_str(&cell(text));
                out.push_str(" | ");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, thread: &str, what: &str) -> Event {
        Event {
            seq,
            thread: thread.into(),
            owner: 3,
            fd: Some(7),
            what: what.into(),
            result: None,
        }
    }

    #[test]
    fn one_lane_per_thread_and_last_event_marked() {
        let l = Lanes::from_trace(&[
            ev(1, "reader", "read"),
            ev(2, "closer", "close"),
            ev(3, "reader", "read"),
        ]);
        assert_eq!(l.threads, vec!["reader", "closer"]);
        assert_eq!(
            l.rows.iter().map(|r| r.lane).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
        assert!(l.rows[2].marked && !l.rows[0].marked && !l.rows[1].marked);
        let text = l.render_text(16);
        assert!(
            text.lines()
                .nth(3)
                .is_some_and(|line| line.starts_with(">>")),
            "{text}"
        );
        assert!(text.contains("close(7) #3"));
    }
}
