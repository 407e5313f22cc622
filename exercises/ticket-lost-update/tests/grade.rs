#![cfg(feature = "grade")]
//! Grading of `ticket-lost-update`: two buyers meet in the payment step for
//! the last ticket (only one may get it), and eight buyers empty a booth of
//! 2,000 tickets (every sale counted, none beyond the stock).
//!
//! The first test makes the race certain instead of likely: each buyer's
//! payment waits (at most `MEET_WITHIN`) until the other buyer is paying
//! too. A booth that lets both reach the payment sells the last ticket
//! twice; a correct booth never lets the second buyer pay, so the first
//! one's wait ends by its deadline and the sale goes through.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ex_ticket_lost_update::Booth;

/// How long a paying buyer waits for the other buyer to be paying too.
const MEET_WITHIN: Duration = Duration::from_millis(500);

/// Counts buyers in the payment step; `meet` waits for `n` of them or for
/// the deadline.
struct Meeting {
    paying: Mutex<usize>,
    arrived: Condvar,
}

impl Meeting {
    fn meet(&self, n: usize) {
        let deadline = Instant::now() + MEET_WITHIN;
        let mut paying = self.paying.lock().unwrap();
        *paying += 1;
        self.arrived.notify_all();
        while *paying < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            paying = self.arrived.wait_timeout(paying, left).unwrap().0;
        }
    }
}

#[test]
fn the_last_ticket_is_sold_once() {
    for round in 0..2 {
        let booth = Arc::new(Booth::new(1));
        let meeting = Arc::new(Meeting {
            paying: Mutex::new(0),
            arrived: Condvar::new(),
        });
        let buyers: Vec<_> = (0..2)
            .map(|_| {
                let (booth, meeting) = (Arc::clone(&booth), Arc::clone(&meeting));
                thread::spawn(move || booth.buy(|| meeting.meet(2)))
            })
            .collect();
        let sold = buyers
            .into_iter()
            .map(|b| b.join().expect("a buyer panicked"))
            .filter(|&bought| bought)
            .count();
        let paid = *meeting.paying.lock().unwrap();
        assert_eq!(
            sold, 1,
            "round {round}: two buyers, one ticket, and {sold} were told they bought it"
        );
        assert_eq!(
            paid, 1,
            "round {round}: {paid} buyers paid for the one ticket"
        );
        assert_eq!(booth.remaining(), 0, "round {round}: the ticket was sold");
    }
}

#[test]
fn every_sale_is_counted() {
    const TICKETS: u32 = 2_000;
    let booth = Arc::new(Booth::new(TICKETS));
    let buyers: Vec<_> = (0..8)
        .map(|_| {
            let booth = Arc::clone(&booth);
            thread::spawn(move || {
                let mut bought = 0u32;
                // A payment that lets another thread run, as a real one
                // (waiting on the network) would.
                while booth.buy(thread::yield_now) {
                    bought += 1;
                }
                bought
            })
        })
        .collect();
    let sold: u32 = buyers
        .into_iter()
        .map(|b| b.join().expect("a buyer panicked"))
        .sum();
    assert_eq!(booth.remaining(), 0, "the booth kept tickets back");
    assert_eq!(
        sold, TICKETS,
        "{sold} tickets sold out of {TICKETS}: sales wrote back counts others had already changed"
    );
}

#[test]
fn a_buyer_after_the_last_ticket_does_not_pay() {
    let booth = Booth::new(2);
    assert!(booth.buy(|| {}));
    assert!(booth.buy(|| {}));
    let mut paid = false;
    assert!(
        !booth.buy(|| paid = true),
        "a third ticket was sold out of 2"
    );
    assert!(!paid, "a buyer who got no ticket was made to pay");
    assert_eq!(booth.remaining(), 0);
}
