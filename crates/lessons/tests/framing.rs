//! TCP keeps no write boundaries; a length header restores them, however the
//! bytes are cut on the way.

use std::io;

use lessons::framing::{
    MAX_FRAME, OneByteAtATime, framed_round, one_write_many_reads, python_native_header,
    read_frame, two_writes_one_read, write_frame,
};

#[test]
fn two_writes_come_out_of_one_read() {
    let got = two_writes_one_read(b"hello", b"world").unwrap();
    assert_eq!(
        got, b"helloworld",
        "the naive reader should see both writes merged"
    );
}

#[test]
fn one_write_takes_several_reads() {
    // What the buffer size guarantees, whatever the timing: no read over 4
    // bytes, so at least 3 reads for 10. (On Linux loopback the one write
    // arrives as one segment and the reads are exactly [4, 4, 2].)
    let small = one_write_many_reads(b"abcdefghij", 4).unwrap();
    assert!(
        small.len() >= 3 && small.iter().all(|&n| (1..=4).contains(&n)),
        "{small:?}"
    );
    assert_eq!(small.iter().sum::<usize>(), 10);
    let big = vec![1u8; 256 * 1024];
    let sizes = one_write_many_reads(&big, 16 * 1024).unwrap();
    assert!(
        sizes.len() >= 16,
        "256 KiB through a 16 KiB buffer in {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), big.len());
}

#[test]
fn framed_reader_recovers_each_message_from_single_bytes() {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let messages: [&[u8]; 5] = [b"hello", b"world", b"", &big, b"!"];
    let got = framed_round(&messages, OneByteAtATime).unwrap();
    assert_eq!(got.len(), messages.len(), "one frame per message");
    for (i, (g, m)) in got.iter().zip(messages).enumerate() {
        assert_eq!(g.as_slice(), m, "frame {i} differs from message {i}");
    }
}

#[test]
fn framed_reader_recovers_messages_read_whole() {
    let messages: [&[u8]; 3] = [b"one", b"two", b"three"];
    let got = framed_round(&messages, |s| s).unwrap();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
}

#[test]
fn oversized_and_truncated_frames_are_errors() {
    let mut sink = Vec::new();
    let e = write_frame(&mut sink, &vec![0; MAX_FRAME + 1]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

    // A header announcing more than the limit is refused before allocating.
    let hostile = u32::MAX.to_be_bytes();
    let e = read_frame(&mut &hostile[..]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // A frame cut short by EOF is an error, not a short message.
    let mut cut = 10u32.to_be_bytes().to_vec();
    cut.extend_from_slice(b"only5");
    let e = read_frame(&mut &cut[..]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

    // Nothing at all is a clean end.
    assert!(read_frame(&mut io::empty()).unwrap().is_none());
}

#[test]
fn native_header_is_not_network_order_on_little_endian() {
    let native = python_native_header(5);
    if cfg!(target_endian = "little") {
        assert_eq!(native, [5, 0, 0, 0]);
        assert_eq!(u32::from_be_bytes(native), 83_886_080);
    } else {
        assert_eq!(native, 5u32.to_be_bytes());
    }
}
