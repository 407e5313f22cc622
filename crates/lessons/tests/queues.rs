//! Queue orders, the bounded queue's timeouts, and JoinableQueue::join.

use lessons::queues::{JoinableQueue, bounded, fifo, fifo_channel, kitchen, lifo, priority};
use std::time::Duration;

#[test]
fn fifo_lifo_and_priority_orders() {
    assert_eq!(fifo([1, 2, 3, 4]), [1, 2, 3, 4]);
    assert_eq!(fifo_channel([1, 2, 3, 4]), [1, 2, 3, 4]);
    assert_eq!(lifo([1, 2, 3, 4]), [4, 3, 2, 1]);
    assert_eq!(
        priority([(3, "c"), (5, "e"), (-1, "a"), (3, "b")]),
        [(-1, "a"), (3, "b"), (3, "c"), (5, "e")]
    );
}

#[test]
fn a_full_queue_times_out_on_put_and_an_empty_one_on_get() {
    let b = bounded(3, Duration::from_millis(40));
    assert_eq!(b.accepted, 3);
    assert!(b.put_timed_out, "a put on a full queue must time out");
    assert!(
        b.put_waited >= Duration::from_millis(40),
        "the put must have waited"
    );
    assert_eq!(
        b.taken,
        [0, 1, 2],
        "the rejected item must not be in the queue"
    );
    assert!(b.get_timed_out, "a get on an empty queue must time out");
    assert!(
        b.get_waited >= Duration::from_millis(40),
        "the get must have waited"
    );
}

#[test]
fn join_returns_only_after_every_item_was_processed() {
    let k = kitchen(2, 3, 1, Duration::from_millis(10), |_| {}).unwrap();
    assert!(k.joined);
    assert_eq!(k.put, 6);
    assert_eq!(k.processed_at_join, 6);

    let k = kitchen(3, 4, 2, Duration::from_millis(5), |_| {}).unwrap();
    assert!(k.joined);
    assert_eq!(k.processed_at_join, 12);
}

#[test]
fn join_waits_for_task_done_not_for_get() {
    let q = JoinableQueue::new();
    q.put(1);
    q.put(2);
    assert_eq!(q.get(Duration::from_millis(10)), Some(1));
    assert_eq!(q.get(Duration::from_millis(10)), Some(2));
    assert!(
        !q.join_timeout(Duration::from_millis(20)),
        "taken but not done"
    );
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 1);
    assert!(
        !q.join_timeout(Duration::from_millis(20)),
        "one still not done"
    );
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO));
    assert!(
        q.task_done().is_err(),
        "more task_done than put is an error"
    );
}
