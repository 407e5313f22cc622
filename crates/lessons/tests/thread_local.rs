//! The thread-local lesson: per-thread values versus one shared value.

use lessons::thread_local::{fresh_per_thread, observe};

#[test]
fn each_thread_reads_back_its_own_value() {
    let reads = observe(4);
    assert_eq!(reads.len(), 4);
    for (i, r) in reads.iter().enumerate() {
        assert_eq!(r.wrote, format!("worker-{i}"));
        assert_eq!(r.local_name, r.wrote);
        assert_eq!(r.local_calls, i as u32 + 1);
    }
}

#[test]
fn a_shared_value_holds_only_the_last_write() {
    let reads = observe(4);
    let last = &reads[0].shared_name;
    assert!(reads.iter().all(|r| &r.shared_name == last));
    assert!(reads.iter().any(|r| &r.wrote == last));
}

#[test]
fn a_new_thread_starts_from_the_initial_value() {
    let (main_count, counts) = fresh_per_thread(7, 3);
    assert_eq!(main_count, 7);
    assert_eq!(counts, vec![1, 1, 1]);
}
