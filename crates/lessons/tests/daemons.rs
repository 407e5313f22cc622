//! The daemons lesson: detached threads, PR_SET_PDEATHSIG, zombies.

use lessons::daemons::{
    DAEMON_TICKS_WANTED, ZOMBIE_EXIT_CODE, daemon_thread, death_signal, zombie,
};

#[test]
fn a_detached_thread_is_cut_off_when_main_returns() {
    let d = daemon_thread().unwrap();
    assert!(
        d.worker_finished,
        "the joined thread must finish: {:?}",
        d.lines
    );
    assert!(
        !d.daemon_finished,
        "the detached thread must not finish: {:?}",
        d.lines
    );
    assert!(d.daemon_ticks < DAEMON_TICKS_WANTED, "{:?}", d.lines);
    assert_eq!(
        d.lines.last().map(String::as_str),
        Some("[child main] worker joined; main returns now"),
        "nothing may be printed after main returns"
    );
}

#[test]
fn a_marked_grandchild_dies_with_its_parent_an_unmarked_one_does_not() {
    let s = death_signal().unwrap();
    assert!(
        s.marked_died,
        "PR_SET_PDEATHSIG child {} still runs",
        s.marked_pid
    );
    assert!(
        s.unmarked_survived,
        "the orphan {} should still run",
        s.unmarked_pid
    );
}

#[test]
fn an_unwaited_child_is_a_zombie_until_reaped() {
    let z = zombie().unwrap();
    assert_eq!(z.state_before_wait, Some('Z'));
    assert_eq!(z.exit_code, Some(ZOMBIE_EXIT_CODE));
    assert_eq!(
        z.state_after_wait, None,
        "the pid must be gone after waitpid"
    );
}
