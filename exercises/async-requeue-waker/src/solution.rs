//! Reference solution of `async-requeue-waker`: the waker queues its task
//! unless it is already on the queue. Woken while it is being polled, the
//! task is queued too: the poll in progress started before the wake-up
//! and will not see it (a task that yields wakes itself and then returns
//! `Pending`, counting on exactly this). After the poll the executor sets
//! the task idle only if no wake-up came meanwhile.
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
        if self.state.swap(QUEUED, Ordering::AcqRel) != QUEUED {
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
        // Woken during the poll: it is QUEUED, on the queue, and stays so.
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
