//! Step 2, wakers and the executor: tasks, a run queue, and a loop that
//! polls the tasks on the queue and asks the reactor for more when it is
//! empty. In seed 003's Python, `Task.step` sends the result of a finished
//! `Future` into the coroutine and hangs itself on the next one with
//! `add_done_callback(self.step)`. Here a task is a
//! `Pin<Box<dyn Future>>`, "step" is one call to `poll`, and
//! `add_done_callback` is handing the reactor a [`Waker`] whose `wake`
//! puts the task's id back on the run queue.
//!
//! # Syscalls
//!
//! None of its own: when the run queue is empty it calls
//! [`Reactor::turn`], which sleeps in `epoll_wait(2)`.
//!
//! # Trade-offs
//!
//! Single-threaded: a task is polled only on the thread that runs the
//! executor, so tasks need not be `Send`, and the tables are in `RefCell`s.
//! One slow task delays every other (no preemption): the server yields by
//! itself after a bounded amount of work ([`yield_now`]).
//!
//! The waker is an `Arc<TaskWaker>` through `std::task::Wake`, not a
//! hand-written `RawWaker`. A `Waker` is `Send + Sync` by its type, so any
//! code holding one may move it to another thread and wake it there; a
//! `RawWaker` over an `Rc` (no atomic counts, no lock) would be sound only
//! as long as no one ever does, a promise the type system cannot keep, and
//! writing it takes four `unsafe` functions. `Wake` needs `Send + Sync` and
//! gets it honestly: the id is a `usize`, the "already queued" flag an
//! `AtomicBool`, the run queue behind a `Mutex`. The cost on this one thread
//! is an uncontended lock per wake-up and an atomic increment per waker
//! clone, small next to the syscalls of an echo. What is not done: a wake
//! from another thread puts the task on the queue but does not interrupt
//! `epoll_wait`; that would take an eventfd written by `wake`, which
//! nothing here needs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::reactor::Reactor;
use crate::slab::Slab;

/// Ids of the tasks to poll, in the order they were woken.
#[derive(Debug, Default)]
struct RunQueue {
    ids: Mutex<VecDeque<usize>>,
}

// ANCHOR: waker
/// What a task's [`Waker`] points at: which task, and where to put it.
#[derive(Debug)]
struct TaskWaker {
    id: usize,
    /// Set while the id is on the run queue, so that a task woken twice
    /// (readable and writable in one turn, say) is polled once.
    queued: AtomicBool,
    queue: Arc<RunQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Re-queues the task: the whole of "waking" in this runtime.
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(self.id);
        }
    }
}
// ANCHOR_END: waker

/// A spawned future and its waker, made once for the task's life.
struct Task {
    /// `None` while the task is being polled: taken out so that the poll
    /// may spawn tasks (which borrows the table) without a conflict.
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    handle: Arc<TaskWaker>,
    waker: Waker,
}

/// The tasks, the run queue and the reactor they wait on.
pub struct Executor {
    reactor: Rc<Reactor>,
    tasks: RefCell<Slab<Task>>,
    queue: Arc<RunQueue>,
}

impl Executor {
    /// An executor with no task yet, waiting on `reactor`.
    pub fn new(reactor: Rc<Reactor>) -> Executor {
        Executor {
            reactor,
            tasks: RefCell::new(Slab::new()),
            queue: Arc::new(RunQueue::default()),
        }
    }

    /// Adds a task and queues it for its first poll (the seed's
    /// `Task(coro)`, whose constructor takes the first step; here the first
    /// step waits for the loop, so spawning never runs code).
    pub fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        self.spawn_boxed(Box::pin(future));
    }

    fn spawn_boxed(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let mut tasks = self.tasks.borrow_mut();
        let handle = Arc::new(TaskWaker {
            id: tasks.next_key(),
            // Queued below, before anything could wake it.
            queued: AtomicBool::new(true),
            queue: Arc::clone(&self.queue),
        });
        let waker = Waker::from(Arc::clone(&handle));
        let id = tasks.insert(Task {
            future: Some(future),
            handle,
            waker,
        });
        self.queue
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(id);
    }

    // ANCHOR: run
    /// Runs until every task has finished.
    ///
    /// Each pass polls the tasks queued at its start; tasks woken during
    /// the pass (a task that yields, one woken by another) wait for the
    /// next, after the reactor has looked for events without sleeping. So
    /// a task that always has work cannot keep the loop from learning
    /// about the other sockets.
    pub fn run(&self) -> io::Result<()> {
        let mut batch = VecDeque::new();
        loop {
            std::mem::swap(
                &mut batch,
                &mut *self
                    .queue
                    .ids
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for id in batch.drain(..) {
                self.poll_task(id);
            }
            if self.tasks.borrow().is_empty() {
                return Ok(());
            }
            let idle = self
                .queue
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            self.reactor.turn(idle)?;
        }
    }
    // ANCHOR_END: run

    /// One step of one task: poll it with its own waker; drop it when done.
    fn poll_task(&self, id: usize) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            // A stale id: the task finished after it was queued.
            let Some(task) = tasks.get_mut(id) else {
                return;
            };
            // Cleared before the poll: a wake during the poll must queue
            // the task again, or that wake-up would be lost.
            task.handle.queued.store(false, Ordering::Release);
            let Some(future) = task.future.take() else {
                return;
            };
            (future, task.waker.clone())
        };
        let done = future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks.remove(id);
        } else if let Some(task) = tasks.get_mut(id) {
            task.future = Some(future);
        }
    }
}

/// What a server needs of an executor: a place to put a new task. A trait
/// so that the server can run on another executor (the exercise's); a
/// boxed future because the server's tasks are of two types.
pub trait Spawn {
    /// Adds `task` and queues it for its first poll.
    fn spawn_task(&self, task: Pin<Box<dyn Future<Output = ()>>>);
}

impl Spawn for Executor {
    fn spawn_task(&self, task: Pin<Box<dyn Future<Output = ()>>>) {
        self.spawn_boxed(task);
    }
}

/// A future that returns `Pending` once, having woken its own task: the
/// task goes to the back of the run queue and the others get a turn.
pub fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn executor() -> Rc<Executor> {
        Rc::new(Executor::new(Rc::new(Reactor::new().unwrap())))
    }

    /// Two tasks that yield take turns, in the order they were spawned.
    #[test]
    fn yielding_tasks_take_turns() {
        let ex = executor();
        let log = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b"] {
            let log = Rc::clone(&log);
            ex.spawn(async move {
                for i in 0..3 {
                    log.borrow_mut().push(format!("{name}{i}"));
                    yield_now().await;
                }
            });
        }
        ex.run().unwrap();
        assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
    }

    /// A task parked on a waker another task holds runs again when that
    /// task wakes it, and a task spawned from inside a task runs too. If
    /// `wake` did not re-queue, `run` would block in `epoll_wait` with
    /// nothing registered; the watchdog thread turns that into a failure.
    #[test]
    fn a_wake_requeues_the_task() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ex = executor();
            let parked: Rc<RefCell<Option<Waker>>> = Rc::default();
            let flag = Rc::new(Cell::new(false));
            let polls = Rc::new(Cell::new(0));
            let (p, f, n) = (Rc::clone(&parked), Rc::clone(&flag), Rc::clone(&polls));
            ex.spawn(std::future::poll_fn(move |cx| {
                n.set(n.get() + 1);
                if f.get() {
                    return Poll::Ready(());
                }
                *p.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }));
            let inner = Rc::clone(&ex);
            ex.spawn(async move {
                yield_now().await;
                let (parked, flag) = (Rc::clone(&parked), Rc::clone(&flag));
                inner.spawn(async move {
                    flag.set(true);
                    let waker = parked.borrow_mut().take().expect("a parked waker");
                    // Twice: the second must not queue the task again.
                    waker.wake_by_ref();
                    waker.wake();
                });
            });
            ex.run().unwrap();
            let _ = done_tx.send(polls.get());
        });
        let polls = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the executor never finished: a wake-up was lost");
        assert_eq!(polls, 2, "polled once parked, once woken");
    }
}
