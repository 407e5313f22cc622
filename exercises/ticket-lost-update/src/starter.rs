//! TASK: the last ticket is sold twice; make checking and taking one step.
//!
//! `Booth` sells tickets to buyers on many threads. `buy` checks that a
//! ticket is left, has the buyer pay (the slow step: a card terminal, a
//! bank, a database, here the caller's `pay` closure), and takes the
//! ticket. The count is behind a `Mutex`, and each access locks it, so
//! this compiles, has no data race, and sells correctly to one buyer at a
//! time. Yet two buyers of the last ticket can both be told "bought", and
//! the count does not go below zero because the second buyer writes back
//! the same number the first one did: one update is lost.
//!
//! Change `buy` so that a ticket is sold at most once and every sale
//! counts, without holding up other buyers for longer than needed. Edit
//! this file only. Grade with `just exercise ticket-lost-update` (or
//! `bash scripts/exercise.sh ticket-lost-update`).
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

    /// Sells one ticket if one is left: checks, calls `pay`, takes the
    /// ticket. Returns whether this buyer got a ticket; a buyer who got
    /// none has not paid.
    pub fn buy(&self, pay: impl FnOnce()) -> bool {
        // The guard is a temporary: the lock is released at the end of
        // this statement, so the slow payment does not hold up the others.
        let left = *self.tickets.lock().expect("booth lock poisoned");
        if left == 0 {
            return false;
        }
        pay();
        *self.tickets.lock().expect("booth lock poisoned") = left - 1;
        true
    }
}
