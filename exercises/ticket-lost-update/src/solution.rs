//! Reference solution of `ticket-lost-update`: the check and the update are
//! one critical section; the payment runs outside it.
//!
//! The starter's two lock acquisitions were each correct, and the sale was
//! not: between them another buyer could read the same count, so both saw
//! "1 left" and both wrote back 0. A check-then-act is correct only if
//! nothing can change what was checked before the act, so the check and
//! the decrement happen under one guard. The payment stays outside: the
//! ticket is reserved first, then paid for. Holding the lock across `pay`
//! would be correct too, but would make every buyer wait for every other
//! buyer's payment (the ticket-race lesson measures that cost); with a
//! payment that can fail, the reservation would be given back on failure.
//!
//! Syscalls: none directly. An uncontended `std::sync::Mutex` is one
//! atomic instruction; a contended one sleeps in `futex(2)`.

use std::sync::Mutex;

/// A fixed number of tickets, sold to buyers on any thread.
pub struct Booth {
    tickets: Mutex<u32>,
}

impl Booth {
    /// A booth with `tickets` tickets for sale.
    pub fn new(tickets: u32) -> Self {
        Self {
            tickets: Mutex::new(tickets),
        }
    }

    /// Tickets not sold yet.
    pub fn remaining(&self) -> u32 {
        *self.tickets.lock().expect("booth lock poisoned")
    }

    /// Sells one ticket if one is left: takes it, then calls `pay`.
    /// Returns whether this buyer got a ticket; a buyer who got none has
    /// not paid.
    pub fn buy(&self, pay: impl FnOnce()) -> bool {
        {
            let mut left = self.tickets.lock().expect("booth lock poisoned");
            if *left == 0 {
                return false;
            }
            *left -= 1;
        } // the guard ends here: the payment does not hold up other buyers
        pay();
        true
    }
}
