//! The memory-isolation lesson: fork copies, threads share.

use lessons::memory_isolation::{START, WRITTEN, observe};

#[test]
fn a_childs_write_stays_in_the_child() {
    let o = observe().unwrap();
    assert_eq!(o.child_value, WRITTEN);
    assert_eq!(o.parent_value_after_child, START);
    // Same virtual address in both processes, different memory behind it.
    assert_eq!(o.child_address, o.parent_address);
}

#[test]
fn a_threads_write_is_seen_by_the_main_thread() {
    let o = observe().unwrap();
    assert_eq!(o.main_value_after_thread, WRITTEN);
}
