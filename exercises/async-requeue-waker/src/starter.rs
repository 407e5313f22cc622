//! TASK: write the waker that puts its task back on the run queue.
//!
//! A single-threaded executor: tasks by id, a run queue of ids, and a
//! reactor (`runtime.rs`: epoll, edge-triggered) that wakes tasks when
//! their sockets are ready. Each task's state says where it is: `IDLE`
//! (waiting for a wake-up), `QUEUED` (its id is on the run queue) or
//! `RUNNING` (being polled). The executor polls what is queued, and sleeps
//! in the reactor when nothing is.
//!
//! The bug is in `TaskWaker::wake_by_ref`. It queues only an `IDLE` task,
//! on the reasoning that a queued one will be polled anyway and a running
//! one is being polled right now. Most of the time that holds: the
//! reactor wakes tasks between polls. But a task can be woken while it is
//! being polled, and then the poll in progress, which began before the
//! wake-up, ends with `Pending` and the wake-up is gone: the task is set
//! `IDLE` and nothing will ever wake it again. The echo server yields
//! (`yield_now`: wake itself, return `Pending`) after 16 reads from one
//! client and after 64 accepts; watch what happens to a 1 MiB upload, or
//! to the 65th client.
//!
//! Fix `wake_by_ref` (and the end of `Executor::poll` if you need to) so
//! that every wake-up of a task not already queued puts it on the queue,
//! and a task is never queued twice.
//!
//! Edit this file only. Grade with `just exercise async-requeue-waker` (or
//! `bash scripts/exercise.sh async-requeue-waker`).
//!
//! Syscalls: none here; the reactor's `epoll_wait(2)` when the run queue
//! is empty.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

use crate::runtime::{Reactor, Spawn};

/// Neither on the run queue nor being polled: only a wake-up brings the
/// task back.
const IDLE: u8 = 0;
/// On the run queue, to be polled once.
const QUEUED: u8 = 1;
/// Being polled now.
const RUNNING: u8 = 2;

/// Ids of the tasks to poll, in the order they were woken. Behind a mutex
/// because a `Waker` must be `Send + Sync`.
type RunQueue = Arc<Mutex<VecDeque<usize>>>;

fn push(queue: &RunQueue, id: usize) {
    queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(id);
}

/// What a task's waker points at.
struct TaskWaker {
    id: usize,
    state: AtomicU8,
    queue: RunQueue,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only an idle task needs queuing: a queued one will be polled
        // anyway, and a running one is being polled right now.
        if self
            .state
            .compare_exchange(IDLE, QUEUED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            push(&self.queue, self.id);
        }
    }
}

/// A spawned future and its waker's state.
struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Arc<TaskWaker>,
}

/// A single-threaded executor: tasks by id, a run queue, a reactor to
/// wait on when the queue is empty.
pub struct Executor {
    reactor: Rc<Reactor>,
    tasks: RefCell<HashMap<usize, Task>>,
    next_id: Cell<usize>,
    queue: RunQueue,
}

impl Executor {
    /// No task yet.
    pub fn new(reactor: Rc<Reactor>) -> Executor {
        Executor {
            reactor,
            tasks: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            queue: RunQueue::default(),
        }
    }

    /// Adds a task, queued for its first poll.
    pub fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        self.spawn_task(Box::pin(future));
    }

    /// Polls queued tasks, waits for events when none is queued, until
    /// every task has finished.
    pub fn run(&self) -> io::Result<()> {
        loop {
            let batch: Vec<usize> = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..)
                .collect();
            for id in batch {
                self.poll(id);
            }
            if self.tasks.borrow().is_empty() {
                return Ok(());
            }
            let idle = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            self.reactor.turn(idle)?;
        }
    }

    fn poll(&self, id: usize) {
        // Out of the table while polled, so the poll may spawn.
        let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
            return;
        };
        task.waker.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(Arc::clone(&task.waker));
        if task
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            return;
        }
        // Done with this poll: back to waiting for a wake-up.
        let _ =
            task.waker
                .state
                .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire);
        self.tasks.borrow_mut().insert(id, task);
    }
}

impl Spawn for Executor {
    fn spawn_task(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let waker = Arc::new(TaskWaker {
            id,
            state: AtomicU8::new(QUEUED),
            queue: Arc::clone(&self.queue),
        });
        self.tasks.borrow_mut().insert(id, Task { future, waker });
        push(&self.queue, id);
    }
}
