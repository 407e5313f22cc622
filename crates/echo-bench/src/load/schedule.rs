//! The open loop's schedule as pure integer functions of time since the
//! start of the window: when a connection's message `k` is due, and how many
//! of its messages are due by a given instant. No syscalls. The trade-off:
//! the per-connection interval is rounded to a whole nanosecond, so the
//! offered rate is off by at most one part in `interval_ns` (parts per
//! billion at realistic rates) in exchange for one integer computation that
//! both the counting and the timer heap share. Floating point was the
//! alternative not taken: a count computed in `f64` and a schedule computed
//! another way disagreed at the edges, and a message whose time was already
//! past but not yet counted was re-queued and popped for ever.

/// One run's open-loop schedule: connection `id` sends message `k` at
/// `offset_ns(id) + k * interval_ns` nanoseconds after the window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    conns: u64,
    interval_ns: u64,
}

impl Schedule {
    /// The schedule of `conns` connections sharing `rate` messages per
    /// second: each connection sends every `conns / rate` seconds.
    pub fn new(conns: u64, rate: f64) -> Result<Schedule, String> {
        if conns == 0 {
            return Err("an open loop needs at least one connection".into());
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("rate must be a positive number, got {rate}"));
        }
        // The one floating-point step, done once: everything after it is
        // integer arithmetic. `as` saturates, so an absurdly low rate gives
        // the longest representable interval rather than wrapping.
        let interval = (conns as f64 * 1e9 / rate).round();
        Ok(Schedule::from_interval(conns, interval as u64))
    }

    /// A schedule with an explicit interval (at least 1 ns).
    pub fn from_interval(conns: u64, interval_ns: u64) -> Schedule {
        Schedule {
            conns: conns.max(1),
            interval_ns: interval_ns.max(1),
        }
    }

    /// Time between two messages of one connection.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Connection `id`'s first send: the connections are spread evenly over
    /// one interval so that they do not fire in lockstep. Always less than
    /// `interval_ns` for `id < conns`.
    pub fn offset_ns(&self, id: u64) -> u64 {
        let id = id % self.conns;
        (u128::from(id) * u128::from(self.interval_ns) / u128::from(self.conns)) as u64
    }

    /// When message `k` of connection `id` is due, saturating at `u64::MAX`
    /// (585 years: never reached by a run).
    pub fn scheduled_ns(&self, id: u64, k: u64) -> u64 {
        let t = u128::from(self.offset_ns(id)) + u128::from(k) * u128::from(self.interval_ns);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// How many messages of `id` are due at `elapsed_ns`: the number of `k`
    /// with `scheduled_ns(id, k) <= elapsed_ns`. The invariant the timer
    /// heap rests on: `scheduled_ns(id, due_count(id, e)) > e`, so the next
    /// message to schedule is always strictly in the future of the instant
    /// that counted it.
    pub fn due_count(&self, id: u64, elapsed_ns: u64) -> u64 {
        match elapsed_ns.checked_sub(self.offset_ns(id)) {
            None => 0,
            Some(since) => since / self.interval_ns + 1,
        }
    }

    /// How many messages of `id` are scheduled strictly before
    /// `deadline_ns`: the number of `k` with `scheduled_ns(id, k) < deadline_ns`.
    pub fn schedulable(&self, id: u64, deadline_ns: u64) -> u64 {
        match deadline_ns.checked_sub(self.offset_ns(id)) {
            None | Some(0) => 0,
            Some(span) => (span - 1) / self.interval_ns + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the randomized cases.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Every property at one point: the invariant, and that the counts agree
    /// with the definition on both sides of the boundary.
    fn check(s: &Schedule, id: u64, e: u64) {
        let due = s.due_count(id, e);
        assert!(
            s.scheduled_ns(id, due) > e,
            "{s:?} id {id} e {e}: message {due} due at {} is not after {e}",
            s.scheduled_ns(id, due)
        );
        if due > 0 {
            assert!(s.scheduled_ns(id, due - 1) <= e, "{s:?} id {id} e {e}");
        }
        let n = s.schedulable(id, e);
        if n > 0 {
            assert!(s.scheduled_ns(id, n - 1) < e, "{s:?} id {id} e {e}");
        }
        assert!(s.scheduled_ns(id, n) >= e, "{s:?} id {id} e {e}");
        assert!(n <= due && due <= n + 1, "{s:?} id {id} e {e}");
    }

    #[test]
    fn interval_is_rounded_and_at_least_one() {
        assert_eq!(
            Schedule::new(19_000, 50_000.0).unwrap().interval_ns(),
            380_000_000
        );
        // 1e9 / 3 does not divide: rounded to the nearest nanosecond
        assert_eq!(Schedule::new(1, 3.0).unwrap().interval_ns(), 333_333_333);
        assert_eq!(Schedule::new(2, 3.0).unwrap().interval_ns(), 666_666_667);
        assert_eq!(Schedule::new(1, 1e12).unwrap().interval_ns(), 1);
        assert_eq!(Schedule::new(1, 1e-30).unwrap().interval_ns(), u64::MAX);
        assert!(Schedule::new(1, 0.0).is_err());
        assert!(Schedule::new(1, f64::NAN).is_err());
        assert!(Schedule::new(0, 1.0).is_err());
    }

    #[test]
    fn offsets_spread_over_one_interval() {
        let s = Schedule::new(4, 4.0).unwrap(); // 1 s per connection
        let offs: Vec<u64> = (0..4).map(|id| s.offset_ns(id)).collect();
        assert_eq!(offs, [0, 250_000_000, 500_000_000, 750_000_000]);
        assert_eq!(s.scheduled_ns(1, 2), 2_250_000_000);
    }

    #[test]
    fn counts_at_exact_multiples_and_zero() {
        let s = Schedule::from_interval(1, 100);
        assert_eq!(s.due_count(0, 0), 1); // message 0 is due at 0
        assert_eq!(s.due_count(0, 99), 1);
        assert_eq!(s.due_count(0, 100), 2); // exactly on time counts
        assert_eq!(s.schedulable(0, 0), 0);
        assert_eq!(s.schedulable(0, 1), 1);
        assert_eq!(s.schedulable(0, 100), 1); // strictly before the deadline
        assert_eq!(s.schedulable(0, 101), 2);
        let s = Schedule::from_interval(2, 100); // connection 1 starts at 50
        assert_eq!(s.due_count(1, 49), 0);
        assert_eq!(s.due_count(1, 50), 1);
        assert_eq!(s.schedulable(1, 50), 0);
        for e in [0, 1, 49, 50, 51, 99, 100, 101, 150, 1_000_000] {
            check(&s, 0, e);
            check(&s, 1, e);
        }
    }

    #[test]
    fn invariant_holds_at_the_edges() {
        let schedules = [
            Schedule::new(19_000, 50_000.0).unwrap(),
            Schedule::new(1, 3.0).unwrap(),
            Schedule::new(7, 3.0).unwrap(),
            Schedule::new(1_000, 7_777.7).unwrap(),
            Schedule::from_interval(1, 1),
            Schedule::from_interval(3, 1),
            Schedule::from_interval(1, u64::MAX),
            Schedule::from_interval(u64::MAX, 2),
        ];
        let huge = u64::MAX / 4;
        for s in &schedules {
            let i = s.interval_ns();
            for id in [0, 1, 2, 18_999, 10_000] {
                let o = s.offset_ns(id);
                for e in [
                    0,
                    1,
                    o.saturating_sub(1),
                    o,
                    o + 1,
                    o.saturating_add(i.saturating_sub(1)),
                    o.saturating_add(i),
                    o.saturating_add(i.saturating_mul(1_000_000)),
                    huge,
                    huge + 1,
                ] {
                    if e <= huge + 1 {
                        check(s, id, e);
                    }
                }
            }
        }
    }

    #[test]
    fn invariant_holds_for_random_inputs() {
        let mut st = 42;
        for _ in 0..200_000 {
            let conns = next(&mut st) % 50_000 + 1;
            let rate = (next(&mut st) % 1_000_000 + 1) as f64 / (next(&mut st) % 1000 + 1) as f64;
            let s = Schedule::new(conns, rate).unwrap();
            let id = next(&mut st) % conns;
            // times up to about a year, in ns, and small ones near 0
            let e = match next(&mut st) % 3 {
                0 => next(&mut st) % 1_000_000,
                1 => next(&mut st) % (365 * 86_400 * 1_000_000_000),
                // right at or next to a scheduled instant
                _ => s
                    .scheduled_ns(id, next(&mut st) % 1_000_000)
                    .wrapping_add(next(&mut st) % 3)
                    .saturating_sub(1),
            };
            check(&s, id, e);
        }
    }

    #[test]
    fn the_reported_hang_settings() {
        // 19,000 connections at 50,000/s: every instant of an 8 s run,
        // sampled, leaves the next message strictly in the future.
        let s = Schedule::new(19_000, 50_000.0).unwrap();
        let mut st = 7;
        for _ in 0..100_000 {
            let id = next(&mut st) % 19_000;
            let e = next(&mut st) % 8_000_000_001;
            check(&s, id, e);
        }
        assert_eq!(s.schedulable(0, 8_000_000_000), 22); // 0, 0.38, …, 7.98 s
    }
}
