//! Every strategy computes the same answers; timings are not asserted.

use lessons::cpu_vs_io::{Strategy, Work, cpu_piece, run_with};
use std::time::Duration;

const STRATEGIES: [Strategy; 6] = [
    Strategy::Sequential,
    Strategy::Processes(2),
    Strategy::Processes(3),
    Strategy::Threads(2),
    Strategy::Threads(4),
    Strategy::Rayon,
];

#[test]
fn cpu_results_are_equal_across_strategies() {
    let work = Work::Cpu { iters: 20_000 };
    let expected: Vec<u64> = (0..5).map(|p| cpu_piece(p, 20_000)).collect();
    // Different pieces give different answers, so a mix-up would show.
    assert_eq!(
        expected
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        5
    );
    for s in STRATEGIES {
        let t = run_with(s, work, 5).unwrap();
        assert_eq!(t.results, expected, "{s}");
    }
}

#[test]
fn io_results_are_equal_across_strategies() {
    let work = Work::Io {
        wait: Duration::from_millis(2),
    };
    let expected: Vec<u64> = (0..4).map(|p| p * 1_000 + 7).collect();
    for s in STRATEGIES {
        let t = run_with(s, work, 4).unwrap();
        assert_eq!(t.results, expected, "{s}");
    }
}
