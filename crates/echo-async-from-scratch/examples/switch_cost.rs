//! What a task switch costs on this crate's executor: seed 004's claim that
//! coroutines switch "a million times a second", measured on the runtime
//! built here, beside the tokio and thread figures of the coroutines lesson
//! (`cargo run --release -p lessons -- coroutines`).
//!
//! Three loops, each timed over SWITCHES switches, RUNS times:
//!
//! - **ping-pong**: two tasks hand a number back and forth, each hand-off
//!   (set the turn, wake the other task, wait for our turn again) one
//!   switch; every value is checked, as the lesson's ping-pong checks its
//!   replies. The executor polls a task woken during a pass in the next
//!   pass, after the reactor has looked for I/O without sleeping, so each
//!   hand-off here also pays one empty `epoll_wait`.
//! - **yield**: two tasks that each `yield_now()`; both are in every pass,
//!   so one `epoll_wait` serves two switches.
//! - **reactor turn**: `Reactor::turn(false)` alone, with nothing
//!   registered: the price of that `epoll_wait` (plus the timer check).
//!
//! Run with
//! `cargo run --release -p echo-async-from-scratch --example switch_cost [-- SWITCHES RUNS]`
//! (defaults: 1,000,000 switches, 3 runs); pin it (`taskset -c 0`) on a
//! shared machine.
//!
//! Syscalls: `epoll_create1(2)` once per run, then `epoll_wait(2)` with a
//! zero timeout once per executor pass (ping-pong: one per switch; yield:
//! one per two) and once per reactor turn; nothing else in the timed
//! loops. Trade-off of the measurement: wall-clock time, as the lesson
//! measures, so a run that loses the CPU to another process reads slower;
//! the spread over the runs shows it, and the smallest figure is the
//! least disturbed.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::process::ExitCode;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use echo_async_from_scratch::executor::{Executor, yield_now};
use echo_async_from_scratch::reactor::Reactor;

/// Whose turn it is, the number being passed, and the waker of each side
/// while it waits: a one-slot channel in each direction, cut down to what
/// two tasks taking turns need.
struct Baton {
    turn: Cell<usize>,
    value: Cell<u64>,
    waiting: [RefCell<Option<Waker>>; 2],
}

/// One side of the ping-pong: `hand_offs` times, wait for our turn, check
/// and bump the number, give the turn to the other side and wake it.
async fn player(me: usize, hand_offs: u64, baton: Rc<Baton>) {
    let other = 1 - me;
    for _ in 0..hand_offs {
        poll_fn(|cx| {
            if baton.turn.get() == me {
                return Poll::Ready(());
            }
            *baton.waiting[me].borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        let value = baton.value.get();
        // Side 0 sees the even values, side 1 the odd: a lost or doubled
        // hand-off breaks the alternation.
        assert_eq!(value % 2, me as u64, "side {me} got {value} out of turn");
        baton.value.set(value + 1);
        baton.turn.set(other);
        if let Some(waker) = baton.waiting[other].borrow_mut().take() {
            waker.wake();
        }
    }
}

/// `switches` hand-offs between two tasks; returns the time they took.
fn ping_pong(switches: u64) -> std::io::Result<Duration> {
    let executor = Executor::new(Rc::new(Reactor::new()?));
    let baton = Rc::new(Baton {
        turn: Cell::new(0),
        value: Cell::new(0),
        waiting: [RefCell::new(None), RefCell::new(None)],
    });
    executor.spawn(player(0, switches.div_ceil(2), Rc::clone(&baton)));
    executor.spawn(player(1, switches / 2, Rc::clone(&baton)));
    let start = Instant::now();
    executor.run()?;
    let took = start.elapsed();
    assert_eq!(baton.value.get(), switches, "every hand-off made");
    Ok(took)
}

/// Two tasks yielding `switches` times between them; returns the time.
fn yielding(switches: u64) -> std::io::Result<Duration> {
    let executor = Executor::new(Rc::new(Reactor::new()?));
    let polls = Rc::new(Cell::new(0u64));
    for share in [switches.div_ceil(2), switches / 2] {
        let polls = Rc::clone(&polls);
        executor.spawn(async move {
            for _ in 0..share {
                polls.set(polls.get() + 1);
                yield_now().await;
            }
        });
    }
    let start = Instant::now();
    executor.run()?;
    let took = start.elapsed();
    assert_eq!(polls.get(), switches, "every yield resumed");
    Ok(took)
}

/// `turns` non-blocking reactor turns with nothing registered.
fn reactor_turns(turns: u64) -> std::io::Result<Duration> {
    let reactor = Reactor::new()?;
    let start = Instant::now();
    for _ in 0..turns {
        reactor.turn(false)?;
    }
    Ok(start.elapsed())
}

fn ns_per(took: Duration, n: u64) -> f64 {
    took.as_nanos() as f64 / n as f64
}

/// The positional argument `i`, `default` when absent.
fn arg(args: &[String], i: usize, name: &str, min: u64, default: u64) -> Result<u64, String> {
    let Some(s) = args.get(i) else {
        return Ok(default);
    };
    match s.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "{name} must be a whole number of at least {min}, not {s:?}"
        )),
    }
}

fn parse(args: &[String]) -> Result<(u64, u64), String> {
    if let Some(extra) = args.get(2) {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok((
        arg(args, 0, "SWITCHES", 2, 1_000_000)?,
        arg(args, 1, "RUNS", 1, 3)?,
    ))
}

/// One run of the three loops: ping-pong, yield, reactor turns.
fn measure(switches: u64) -> std::io::Result<[Duration; 3]> {
    Ok([
        ping_pong(switches)?,
        yielding(switches)?,
        reactor_turns(switches)?,
    ])
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (switches, runs) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("switch_cost: {e}\nusage: switch_cost [SWITCHES] [RUNS]");
            return ExitCode::from(2);
        }
    };
    println!(
        "[switch] this crate's executor, one thread, {switches} switches per run, {runs} runs"
    );
    for run in 1..=runs {
        let [pp, y, t] = match measure(switches) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("switch_cost: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "[switch] run {run}: ping-pong {:>6.0} ns/switch   yield {:>6.0} ns/switch   \
             empty reactor turn {:>6.0} ns",
            ns_per(pp, switches),
            ns_per(y, switches),
            ns_per(t, switches),
        );
    }
    ExitCode::SUCCESS
}
