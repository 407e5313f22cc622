//! One runnable lesson per topic of processes, threads and synchronisation.
//!
//! Run `cargo run -p lessons -- list` for the list and
//! `cargo run -p lessons -- <name>` for one lesson. Each lesson prints short
//! labelled lines and finishes by itself within seconds; its test asserts the
//! point the lesson makes.

/// What a lesson returns: `Err` carries a one-line explanation.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One entry of the lesson list.
pub struct Lesson {
    /// The name used on the command line.
    pub name: &'static str,
    /// One line: what the lesson shows.
    pub summary: &'static str,
    /// Runs the lesson, printing to stdout.
    pub run: fn() -> Result,
}

pub mod condvar;
pub mod coroutines;
pub mod cpu_vs_io;
pub mod daemons;
pub mod deadlock;
pub mod event;
pub mod framing;
pub mod ipc;
pub mod memory_isolation;
pub mod pools;
pub mod queues;
pub mod semaphore;
pub mod spawn_join;
pub mod thread_local;
pub mod ticket_race;
pub mod udp;

/// Every lesson, in reading order.
pub const LESSONS: &[Lesson] = &[
    Lesson {
        name: "spawn-join",
        summary: "starting processes and threads: pids, join, terminate, is_alive",
        run: spawn_join::run,
    },
    Lesson {
        name: "memory-isolation",
        summary: "a forked child's writes stay in the child; a thread's are shared",
        run: memory_isolation::run,
    },
    Lesson {
        name: "ipc",
        summary: "a duplex socketpair, a queue between processes, a manager process owning shared state",
        run: ipc::run,
    },
    Lesson {
        name: "daemons",
        summary: "daemon threads, PR_SET_PDEATHSIG children, zombies and reaping",
        run: daemons::run,
    },
    Lesson {
        name: "ticket-race",
        summary: "overselling tickets without a lock; flock and Mutex fix it",
        run: ticket_race::run,
    },
    Lesson {
        name: "deadlock",
        summary: "two locks in opposite order, detected with a timed lock; reentrant and ordered fixes",
        run: deadlock::run,
    },
    Lesson {
        name: "semaphore",
        summary: "20 threads, 5 slots: never more than 5 inside",
        run: semaphore::run,
    },
    Lesson {
        name: "event",
        summary: "a traffic light: cars wait until it turns green",
        run: event::run,
    },
    Lesson {
        name: "condvar",
        summary: "two speakers take strict turns reciting a dialogue",
        run: condvar::run,
    },
    Lesson {
        name: "thread-local",
        summary: "per-thread values stay isolated",
        run: thread_local::run,
    },
    Lesson {
        name: "queues",
        summary: "FIFO, LIFO, priority, bounded queues; producer-consumer with task_done/join",
        run: queues::run,
    },
    Lesson {
        name: "pools",
        summary: "thread and process pools: submit, submit with callback, map; rayon",
        run: pools::run,
    },
    Lesson {
        name: "cpu-vs-io",
        summary: "CPU-bound and I/O-bound jobs on processes, threads and rayon, timed",
        run: cpu_vs_io::run,
    },
    Lesson {
        name: "coroutines",
        summary: "a generator state machine; task vs thread switch cost; starvation on one thread",
        run: coroutines::run,
    },
    Lesson {
        name: "framing",
        summary: "sticky packets: two writes, one read; one write, many reads; a length header fixes it",
        run: framing::run,
    },
    Lesson {
        name: "udp",
        summary: "a UDP echo server: datagram boundaries, no connection, loss and retry, the size limit",
        run: udp::run,
    },
];

/// Finds a lesson by name.
pub fn find(name: &str) -> Option<&'static Lesson> {
    LESSONS.iter().find(|l| l.name == name)
}
