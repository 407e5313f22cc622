//! The ipc lesson: framed duplex messages, a pipe queue, a manager process.

use std::collections::HashSet;
use std::io::Cursor;
use std::time::Duration;

use lessons::ipc::{
    CHILD_MESSAGES, PARENT_MESSAGE, duplex, manager, pipe_queue, read_frame, write_frame,
};

#[test]
fn frames_keep_message_boundaries_on_a_stream() {
    let mut wire = Vec::new();
    write_frame(&mut wire, b"one").unwrap();
    write_frame(&mut wire, b"").unwrap();
    write_frame(&mut wire, b"three").unwrap();
    // All three arrive glued together, as a stream delivers them.
    assert_eq!(wire.len(), 3 * 4 + 3 + 5);
    let mut r = Cursor::new(wire);
    let mut buf = [0u8; 16];
    assert_eq!(read_frame(&mut r, &mut buf).unwrap(), b"one");
    assert_eq!(read_frame(&mut r, &mut buf).unwrap(), b"");
    assert_eq!(read_frame(&mut r, &mut buf).unwrap(), b"three");
    assert!(
        read_frame(&mut r, &mut buf).is_err(),
        "nothing more was sent"
    );
}

#[test]
fn a_frame_larger_than_the_buffer_is_refused() {
    let mut wire = Vec::new();
    write_frame(&mut wire, &[7u8; 32]).unwrap();
    let mut buf = [0u8; 8];
    assert!(read_frame(&mut Cursor::new(wire), &mut buf).is_err());
}

#[test]
fn n_sends_meet_n_receives_and_an_extra_receive_waits() {
    let d = duplex(Duration::from_millis(200)).unwrap();
    assert_eq!(d.received, CHILD_MESSAGES.map(String::from).to_vec());
    assert!(
        d.child_got_reply,
        "the child did not get {PARENT_MESSAGE:?}"
    );
    assert!(
        d.extra_recv_timed_out,
        "a third receive must wait, not return"
    );
}

#[test]
fn records_from_several_producers_arrive_whole_and_in_order_per_producer() {
    let records = pipe_queue(3, 20).unwrap();
    assert_eq!(records.len(), 60);
    for r in &records {
        assert_eq!(
            r.text,
            format!("producer {} made item {}", r.producer, r.seq)
        );
    }
    for p in 0..3 {
        let seqs: Vec<u32> = records
            .iter()
            .filter(|r| r.producer == p)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (0..20).collect::<Vec<_>>(), "producer {p}");
    }
}

#[test]
fn the_manager_serialises_concurrent_increments() {
    let m = manager(4, 25).unwrap();
    assert_eq!(m.final_count, 100);
    // Every INCR got a distinct value: no two clients saw the same count.
    let values: HashSet<i64> = m.replies.iter().map(|&(_, v)| v).collect();
    assert_eq!(m.replies.len(), 100);
    assert_eq!(values, (1..=100).collect::<HashSet<_>>());
    for c in 0..4 {
        assert_eq!(
            m.replies.iter().filter(|&&(client, _)| client == c).count(),
            25
        );
    }
    assert_eq!(m.set_get, "7");
}
