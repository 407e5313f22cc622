//! The spawn-join lesson: pids, is_alive, join, terminate.

use lessons::spawn_join::{CHILD_EXIT_CODE, observe_process, observe_thread};
use nix::sys::signal::Signal;

#[test]
fn a_forked_child_has_its_own_pid_and_knows_its_parent() {
    let p = observe_process().unwrap();
    assert_ne!(p.child_pid, p.parent_pid);
    assert_eq!(p.child_saw_pid, p.child_pid);
    assert_eq!(p.child_saw_ppid, p.parent_pid);
}

#[test]
fn is_alive_join_and_terminate_report_the_childs_fate() {
    let p = observe_process().unwrap();
    assert!(p.alive_before_join, "the waiting child must look alive");
    assert_eq!(p.exit_code, Some(CHILD_EXIT_CODE));
    assert_eq!(p.terminated_by, Some(Signal::SIGTERM));
}

#[test]
fn a_thread_shares_the_pid_but_has_its_own_tid() {
    let t = observe_thread().unwrap();
    assert_eq!(t.thread_pid, t.main_pid);
    assert_ne!(t.thread_tid, t.main_tid);
    assert_eq!(t.thread_name, "worker-1");
    assert!(!t.finished_before_go, "the thread was still waiting");
    assert_eq!(t.joined_value, 42);
}
