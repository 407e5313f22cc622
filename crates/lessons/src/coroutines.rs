//! Coroutines: resumable functions, cheap switches, and starvation.
//!
//! Seed topics: the `yield`/`send()` producer–consumer (000 §3), "switching
//! slows CPU-bound work" (001 §7.4), greenlet/gevent switching on I/O, "a
//! coroutine switch is cheap, millions per second" and "one CPU-bound
//! coroutine stalls the others on a 1:N scheduler" (004).
//!
//! 1. A generator by hand: [`Consumer`] is a struct whose enum field says
//!    where it is suspended; `resume(input)` runs it to the next suspension
//!    point, like Python's `gen.send(x)`. This is what the Rust compiler
//!    generates for every `async fn` (stable Rust has no `yield` of its own).
//! 2. Switch cost: two tokio tasks on one thread ping-pong through channels
//!    (a switch is a function return plus a poll: no syscall), against two
//!    OS threads ping-ponging through a crossbeam channel, pinned to one CPU
//!    with `sched_setaffinity(2)` to force a real context switch. Its
//!    receiver spins, then calls `sched_yield(2)`, then parks on a
//!    `futex(2)`: pinned, the hand-off is made by the yield (one per round
//!    trip, no futex call, counted with `perf`); unpinned, by spinning or
//!    yielding, and only sometimes by a futex sleep and wake.
//! 3. Switching overhead on CPU work: the same sums done straight, and done
//!    one resumable step at a time; switching helps only when there is
//!    waiting to hide.
//! 4. Starvation: a current-thread tokio runtime is cooperative. A task that
//!    computes for 200 ms without an `.await` stops a 10 ms ticker dead;
//!    `yield_now().await` or `spawn_blocking` (a separate thread) fixes it.
//!
//! Trade-off: tasks switch orders of magnitude faster than threads, but
//! only at `.await` points the programmer wrote, and one thread uses one
//! core.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a [`Consumer`] is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suspended {
    /// Created, not started: like a generator before its first `next()`.
    Start,
    /// Waiting at `bun = yield`, having eaten `eaten` buns.
    AtYield { eaten: u32 },
    /// Returned: nothing more to resume.
    Finished,
}

/// What a resumed consumer hands back at its next suspension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Yielded {
    /// Started and now waiting for the first bun.
    Ready,
    /// Ate `bun`; `eaten` so far.
    Ate {
        /// The bun just eaten.
        bun: u32,
        /// Buns eaten so far.
        eaten: u32,
    },
    /// Told to stop; ate `eaten` in all.
    Done {
        /// Buns eaten in all.
        eaten: u32,
    },
}

/// Resuming a consumer the wrong way, as Python would raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// A value sent before the first resume (Python: `TypeError: can't send
    /// non-None value to a just-started generator`).
    NotStarted,
    /// Resumed after it finished (Python: `StopIteration`).
    Exhausted,
}

/// The seed's `consumer()` generator written out as a state machine.
#[derive(Debug)]
pub struct Consumer {
    /// Its name in the trace.
    pub name: &'static str,
    state: Suspended,
}

impl Consumer {
    /// A consumer that has not started yet.
    pub fn new(name: &'static str) -> Self {
        Consumer {
            name,
            state: Suspended::Start,
        }
    }

    /// Runs from the current suspension point to the next one. `None`
    /// starts it (Python `next(gen)`) or, once started, tells it to finish
    /// (`gen.close()`); `Some(bun)` is `gen.send(bun)`.
    pub fn resume(&mut self, input: Option<u32>) -> Result<Yielded, ResumeError> {
        let (next, out) = match (self.state, input) {
            (Suspended::Start, None) => (Suspended::AtYield { eaten: 0 }, Yielded::Ready),
            (Suspended::Start, Some(_)) => return Err(ResumeError::NotStarted),
            (Suspended::AtYield { eaten }, Some(bun)) => (
                Suspended::AtYield { eaten: eaten + 1 },
                Yielded::Ate {
                    bun,
                    eaten: eaten + 1,
                },
            ),
            (Suspended::AtYield { eaten }, None) => (Suspended::Finished, Yielded::Done { eaten }),
            (Suspended::Finished, _) => return Err(ResumeError::Exhausted),
        };
        self.state = next;
        Ok(out)
    }
}

/// One line of the bakery trace: who did what with which bun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// The producer baked this bun.
    Baked(u32),
    /// This consumer ate this bun.
    Ate(&'static str, u32),
    /// This consumer stopped after eating this many.
    Stopped(&'static str, u32),
}

/// The seed's producer: bakes `buns` buns and hands each to both consumers
/// by resuming them, all on one thread with no locks.
pub fn bakery(buns: u32) -> Result<Vec<Trace>, ResumeError> {
    let mut eaters = [Consumer::new("c1"), Consumer::new("c2")];
    let mut trace = Vec::new();
    for c in &mut eaters {
        c.resume(None)?; // prime: run to the first yield
    }
    for bun in 1..=buns {
        trace.push(Trace::Baked(bun));
        for c in &mut eaters {
            if let Yielded::Ate { bun, .. } = c.resume(Some(bun))? {
                trace.push(Trace::Ate(c.name, bun));
            }
        }
    }
    for c in &mut eaters {
        if let Yielded::Done { eaten } = c.resume(None)? {
            trace.push(Trace::Stopped(c.name, eaten));
        }
    }
    Ok(trace)
}

/// The outcome of a ping-pong benchmark.
#[derive(Debug, Clone, Copy)]
pub struct PingPong {
    /// Round trips completed and verified (each reply was request + 1).
    pub round_trips: u64,
    /// Wall time for all of them.
    pub elapsed: Duration,
}

impl PingPong {
    /// Nanoseconds per switch: each round trip is two switches.
    pub fn ns_per_switch(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / (2 * self.round_trips.max(1)) as f64
    }
}

/// Two tokio tasks on a current-thread runtime bounce a number back and
/// forth `n` times through capacity-1 channels.
pub fn task_ping_pong(n: u64) -> crate::Result<PingPong> {
    use tokio::sync::mpsc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let (to_b, mut at_b) = mpsc::channel::<u64>(1);
        let (to_a, mut at_a) = mpsc::channel::<u64>(1);
        let echo = tokio::spawn(async move {
            while let Some(x) = at_b.recv().await {
                if to_a.send(x + 1).await.is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let bounce = async {
            let mut done = 0;
            for i in 0..n {
                to_b.send(i).await.ok()?;
                if at_a.recv().await? != i + 1 {
                    return None;
                }
                done += 1;
            }
            Some(done)
        };
        let done = tokio::time::timeout(Duration::from_secs(20), bounce)
            .await
            .map_err(|_| "task ping-pong timed out")?
            .ok_or("task ping-pong lost a message")?;
        let elapsed = start.elapsed();
        drop(to_b);
        let _ = echo.await;
        Ok(PingPong {
            round_trips: done,
            elapsed,
        })
    })
}

/// Two OS threads bounce a number back and forth `n` times through
/// capacity-1 crossbeam channels. With `one_cpu`, both are pinned to the
/// same CPU so every hand-off is a full context switch; without it they
/// may sit on two cores and the cost is a cross-core wake-up.
pub fn thread_ping_pong(n: u64, one_cpu: bool) -> crate::Result<PingPong> {
    use crossbeam::channel::bounded;
    let (to_b, at_b) = bounded::<u64>(1);
    let (to_a, at_a) = bounded::<u64>(1);
    let wait = Duration::from_secs(5);
    let cpu = if one_cpu { first_allowed_cpu() } else { None };
    let echo = std::thread::spawn(move || {
        if let Some(c) = cpu {
            pin_to(c);
        }
        while let Ok(x) = at_b.recv_timeout(wait) {
            if to_a.send(x + 1).is_err() {
                break;
            }
        }
    });
    let bouncer = std::thread::spawn(move || -> crate::Result<PingPong> {
        if let Some(c) = cpu {
            pin_to(c);
        }
        let start = Instant::now();
        for i in 0..n {
            to_b.send(i)?;
            if at_a.recv_timeout(wait)? != i + 1 {
                return Err("thread ping-pong got a wrong reply".into());
            }
        }
        Ok(PingPong {
            round_trips: n,
            elapsed: start.elapsed(),
        })
    });
    let result = bouncer.join().map_err(|_| "bouncer panicked")?;
    // The bouncer dropped its sender, so the echo thread's recv fails now.
    echo.join().map_err(|_| "echo thread panicked")?;
    result
}

/// The lowest-numbered CPU this thread may run on.
fn first_allowed_cpu() -> Option<usize> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size matches `set`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET reads one bit of a valid set; the index is in range.
    (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: as in first_allowed_cpu.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from CPU_ISSET over the same range, so it is in range.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the size matches `set`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0 }
}

/// A counting generator: each `resume` does one step of work and suspends.
pub struct Stepper {
    i: u64,
    n: u64,
}

impl Stepper {
    /// Counts `0..n`.
    pub fn new(n: u64) -> Self {
        Stepper { i: 0, n }
    }

    /// One step: `Some(i + 1)` for the next `i`, `None` when done.
    pub fn resume(&mut self) -> Option<u64> {
        (self.i < self.n).then(|| {
            self.i += 1;
            self.i
        })
    }
}

/// The seed's two counting tasks run one after the other: sum of `i + 1`
/// over `0..n`, twice.
pub fn straight(n: u64) -> u64 {
    let mut acc = 0u64;
    for _task in 0..2 {
        for i in 0..n {
            acc = black_box(acc.wrapping_add(i + 1));
        }
    }
    acc
}

/// The same two tasks interleaved: the driver does a step of its own, then
/// resumes the other for one step, `n` times. `black_box` keeps the
/// generator's state in memory between steps, as a real switch would.
pub fn stepped(n: u64) -> u64 {
    let mut other = Stepper::new(n);
    let mut acc = 0u64;
    for i in 0..n {
        acc = black_box(acc.wrapping_add(i + 1));
        if let Some(v) = black_box(&mut other).resume() {
            acc = acc.wrapping_add(v);
        }
    }
    acc
}

/// Ticks a 10 ms ticker managed to make while a task computed for `busy`.
#[derive(Debug, Clone, Copy)]
pub struct Starvation {
    /// While computing without any `.await`.
    pub no_yield: u64,
    /// While computing with `yield_now().await` about every millisecond.
    pub with_yield: u64,
    /// While the computation ran under `spawn_blocking`.
    pub spawn_blocking: u64,
}

/// Keeps the CPU busy for `d` without ever giving it up.
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// On one current-thread runtime, counts a 10 ms ticker's ticks during
/// `busy` of computation done three ways.
pub fn starvation(busy: Duration) -> crate::Result<Starvation> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        // Each phase starts after a pause, so the ticker is idle and any
        // tick overdue from the previous phase has already been counted.
        let settle = || tokio::time::sleep(Duration::from_millis(25));
        let count = || ticks.load(Ordering::SeqCst);

        settle().await;
        let before = count();
        // No .await between the two reads: on one thread the ticker cannot
        // run, whatever the timer says.
        spin(busy);
        let no_yield = count() - before;

        settle().await;
        let before = count();
        let end = Instant::now() + busy;
        while Instant::now() < end {
            spin(Duration::from_millis(1));
            tokio::task::yield_now().await;
        }
        let with_yield = count() - before;

        settle().await;
        let before = count();
        tokio::task::spawn_blocking(move || spin(busy)).await?;
        let spawn_blocking = count() - before;

        ticker.abort();
        Ok(Starvation {
            no_yield,
            with_yield,
            spawn_blocking,
        })
    })
}

/// The gevent example: two tasks that wait `a` and `b` take `a + b` one
/// after the other, about `max(a, b)` when their waits overlap. Returns
/// (sequential, overlapped) wall times.
pub fn overlap_waits(a: Duration, b: Duration) -> crate::Result<(Duration, Duration)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    Ok(rt.block_on(async {
        let t = Instant::now();
        tokio::time::sleep(a).await;
        tokio::time::sleep(b).await;
        let sequential = t.elapsed();
        let t = Instant::now();
        tokio::join!(tokio::time::sleep(a), tokio::time::sleep(b));
        (sequential, t.elapsed())
    }))
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("[generator] the producer resumes two consumers by hand, one thread, no locks:");
    for step in bakery(3).map_err(|e| format!("{e:?}"))? {
        match step {
            Trace::Baked(b) => println!("[producer] baked bun {b}"),
            Trace::Ate(who, b) => println!("[{who}] ate bun {b}"),
            Trace::Stopped(who, n) => println!("[{who}] stopped after {n} buns"),
        }
    }
    let mut fresh = Consumer::new("c3");
    println!(
        "[generator] sending before the first resume: {:?}",
        fresh.resume(Some(1))
    );

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("[switch] CPUs available: {cpus}");
    let tasks = task_ping_pong(200_000)?;
    println!(
        "[switch] tokio tasks, one thread:    {:>8.0} ns/switch ({} round trips)",
        tasks.ns_per_switch(),
        tasks.round_trips
    );
    let pinned = thread_ping_pong(20_000, true)?;
    println!(
        "[switch] OS threads, same CPU:       {:>8.0} ns/switch ({} round trips)",
        pinned.ns_per_switch(),
        pinned.round_trips
    );
    let free = thread_ping_pong(20_000, false)?;
    println!(
        "[switch] OS threads, any CPU:        {:>8.0} ns/switch ({} round trips)",
        free.ns_per_switch(),
        free.round_trips
    );

    let n = 20_000_000;
    let t = Instant::now();
    let a = straight(n);
    let t_straight = t.elapsed();
    let t = Instant::now();
    let b = stepped(n);
    let t_stepped = t.elapsed();
    println!(
        "[cpu work] straight {:.3} s, one step per switch {:.3} s (same sum: {})",
        t_straight.as_secs_f64(),
        t_stepped.as_secs_f64(),
        a == b
    );

    let (seq, both) = overlap_waits(Duration::from_millis(200), Duration::from_millis(300))?;
    println!(
        "[i/o wait] 200 ms + 300 ms waits: one after the other {} ms, overlapped {} ms",
        seq.as_millis(),
        both.as_millis()
    );

    let s = starvation(Duration::from_millis(200))?;
    println!("[starve] 10 ms ticker during 200 ms of computation on one thread:");
    println!("[starve]   no .await at all:          {} ticks", s.no_yield);
    println!(
        "[starve]   yield_now() every ~1 ms:   {} ticks",
        s.with_yield
    );
    println!(
        "[starve]   moved to spawn_blocking:   {} ticks",
        s.spawn_blocking
    );
    if s.no_yield != 0 || a != b {
        return Err("unexpected result: see above".into());
    }
    Ok(())
}
