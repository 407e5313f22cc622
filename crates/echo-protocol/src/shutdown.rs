//! SIGINT/SIGTERM: stop accepting, let open connections finish, exit 0.
//!
//! The signals are blocked in every thread and received by one thread with
//! `sigwait(2)`, so no code runs inside a signal handler. When one arrives
//! that thread sets a flag, signals an `eventfd(2)` (which readiness-based
//! models watch next to their sockets), and makes one connection to the
//! listener so that a model blocked in `accept(2)` wakes up and sees the
//! flag. After [`GRACE_PERIOD`] it ends the process whatever is still open.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// How long open connections may go on after a shutdown signal.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A cheap handle on the shutdown state; clone it into every thread.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requested: AtomicBool,
    event: EventFd,
}

impl Shutdown {
    /// Blocks SIGINT and SIGTERM in the calling thread (and so in every
    /// thread it spawns later). Call before spawning any thread.
    pub fn install() -> std::io::Result<Shutdown> {
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&Self::signals()), None)?;
        let event = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                requested: AtomicBool::new(false),
                event,
            }),
        })
    }

    /// A handle not tied to any signal, for tests and for embedding a model
    /// in another program; [`Shutdown::request`] triggers it.
    pub fn manual() -> std::io::Result<Shutdown> {
        let event = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                requested: AtomicBool::new(false),
                event,
            }),
        })
    }

    fn signals() -> SigSet {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set
    }

    /// Starts the thread that waits for the signals. `wake` is the
    /// listener's address, connected to once to unblock `accept(2)`.
    pub(crate) fn watch(&self, wake: SocketAddr) {
        let this = self.clone();
        std::thread::Builder::new()
            .name("shutdown".into())
            .spawn(move || {
                if Self::signals().wait().is_err() {
                    return;
                }
                this.request(wake);
                std::thread::sleep(GRACE_PERIOD);
                std::process::exit(0);
            })
            .expect("spawning the shutdown thread");
    }

    /// Asks the model to stop: sets the flag, signals the eventfd and pokes
    /// the listener at `wake`.
    pub fn request(&self, wake: SocketAddr) {
        self.inner.requested.store(true, Ordering::SeqCst);
        let _ = self.inner.event.write(1);
        let target = match wake {
            SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
            other => other,
        };
        // The connection itself is dropped at once; the model sees the flag
        // after accept returns and closes it like any other.
        let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
    }

    /// True once a shutdown was requested.
    pub fn requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// An eventfd that becomes readable when shutdown is requested; register
    /// it with `epoll`/`poll`/`select` next to the listener. It stays
    /// readable (nothing ever reads it), which is what a level-triggered
    /// loop wants.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.event.as_fd()
    }
}
