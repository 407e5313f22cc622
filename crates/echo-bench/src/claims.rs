//! The seed claims (SEEDMAP claims 1–7) recomputed from one `all` run, so
//! that `notes/claims.md`'s verdicts can be rechecked on any machine. No
//! syscalls.
//!
//! Each claim names the cells it reads and a rule that turns their ratio
//! into a verdict. The rules are deliberately coarse (a factor, not a
//! significance test): the report's ratios come from one interleaved run on
//! a shared machine, and a verdict that flips on a few per cent would say
//! more about the machine than about the design. A claim whose cells this
//! run did not measure says which `--scenarios` would.

use std::fmt::Write as _;

use crate::results::ClaimData;

/// Verdict words, as `notes/claims.md` uses them.
const HOLDS: &str = "holds";
const PARTLY: &str = "holds partly";
const NOT: &str = "does not hold";

fn verdict(md: &mut String, n: u32, claim: &str, figure: Option<(String, &str)>, needs: &str) {
    let _ = writeln!(md, "{n}. *{claim}*");
    match figure {
        Some((fig, v)) => {
            let _ = writeln!(md, "   **{v}**: {fig}");
        }
        None => {
            let _ = writeln!(
                md,
                "   not measured in this run: it needs `--scenarios {needs}` (or `--full`)"
            );
        }
    }
}

/// The report's claims section.
pub fn section(d: &ClaimData) -> String {
    let mut md = String::from(
        "## The seed claims, as measured by this run\n\n\
         The verdicts of `notes/claims.md`, recomputed from the tables above \
         (claims 1–7 of SEEDMAP). Claims 8–10 are about coroutines, not servers: \
         `cargo run --release -p lessons -- coroutines` gives their figures.\n\n",
    );

    // 1. A process per request costs more than a thread per request.
    let c1 = (|| {
        let f = d.cpu_per_echo("churn-10", "fork-per-client")?;
        let t = d.cpu_per_echo("churn-10", "thread-per-client")?;
        let ft = d.throughput("churn-10", "fork-per-client")?;
        let tt = d.throughput("churn-10", "thread-per-client")?;
        let v = if f > 1.5 * t && ft < tt {
            HOLDS
        } else if f > t {
            PARTLY
        } else {
            NOT
        };
        Some((
            format!(
                "a new connection per message (churn-10): fork-per-client {f:.1} µs of server \
                 CPU per connection, thread-per-client {t:.1} ({:.1}×); {ft:.0} against {tt:.0} \
                 connections/s",
                f / t
            ),
            v,
        ))
    })();
    verdict(
        &mut md,
        1,
        "Creating a process per request is expensive; threads are cheaper.",
        c1,
        "churn-10",
    );

    // 2. Context switches cost: many threads can be slower than one.
    let c2 = (|| {
        let sc = "conns-100";
        let tt = d.throughput(sc, "thread-per-client")?;
        let et = d.throughput(sc, "epoll")?;
        let ts = d.switches_per_echo(sc, "thread-per-client")?;
        let es = d.switches_per_echo(sc, "epoll")?;
        let v = if tt < 0.9 * et && ts > 2.0 * es {
            HOLDS
        } else if ts > 2.0 * es {
            PARTLY
        } else {
            NOT
        };
        Some((
            format!(
                "100 connections: thread-per-client {ts:.2} context switches per echo and \
                 {tt:.0} msgs/s, one epoll thread {es:.2} and {et:.0} msgs/s ({:.2}×)",
                tt / et
            ),
            v,
        ))
    })();
    verdict(
        &mut md,
        2,
        "Context switches cost: many threads can be slower than one.",
        c2,
        "conns-100",
    );

    // 3. Busy polling burns CPU while nothing happens.
    let c3 = (|| {
        let b = d.cpu_share("idle-100", "busy-poll")?;
        let e = d.cpu_share("idle-100", "epoll")?;
        let v = if b > 0.05 && b > 10.0 * e {
            HOLDS
        } else if b > 2.0 * e {
            PARTLY
        } else {
            NOT
        };
        Some((
            format!(
                "100 connections, ten messages a second: busy-poll {:.1} % of a core, epoll \
                 {:.2} % (busy-poll as built sleeps 1 ms after an empty sweep; \
                 `-- --idle-sleep-us 0` is the seed's pure spin)",
                100.0 * b,
                100.0 * e
            ),
            v,
        ))
    })();
    verdict(
        &mut md,
        3,
        "The busy-poll server burns CPU while doing nothing.",
        c3,
        "idle-100",
    );

    // 4. select/poll slow down with the fds watched; epoll does not.
    let c4 = (|| {
        let ratio =
            |m: &str| Some(d.cpu_per_echo("busy-1-idle-1000", m)? / d.cpu_per_echo("conns-1", m)?);
        let (s, p, e) = (ratio("select")?, ratio("poll")?, ratio("epoll")?);
        let v = if s > 2.0 * e && p > 2.0 * e {
            HOLDS
        } else if s > 1.3 * e || p > 1.3 * e {
            PARTLY
        } else {
            NOT
        };
        Some((
            format!(
                "server CPU per echo with 1,000 idle connections beside the busy one, over \
                 that of the busy one alone: select {s:.1}×, poll {p:.1}×, epoll {e:.1}×"
            ),
            v,
        ))
    })();
    verdict(
        &mut md,
        4,
        "select/poll slow down as the number of watched fds grows; epoll does not.",
        c4,
        "conns-1,busy-1-idle-1000",
    );

    // 5. select's descriptor limit.
    let _ = writeln!(
        md,
        "5. *select has a 1024 descriptor limit.*\n   **{HOLDS}**: FD_SETSIZE is {} \
         in this libc; the matrix skips select wherever a scenario needs more \
         descriptors (see the skipped cells), and `echo-select` refuses a \
         descriptor past it (`notes/model-select.md`)",
        crate::matrix::FD_SETSIZE
    );

    // 6. Few connections: select/epoll not faster than blocking threads.
    let c6 = (|| {
        let e1 = d.latency("conns-1", "epoll", "p50")?;
        let t1 = d.latency("conns-1", "thread-per-client", "p50")?;
        let r1 =
            d.throughput("conns-1", "epoll")? / d.throughput("conns-1", "thread-per-client")?;
        let many = ["conns-10000", "conns-1000", "conns-100"]
            .into_iter()
            .find_map(|sc| {
                Some((
                    sc,
                    d.throughput(sc, "epoll")? / d.throughput(sc, "thread-per-client")?,
                ))
            });
        let few_holds = r1 < 1.1;
        let v = match many {
            Some((_, rm)) if few_holds && rm > 1.1 => HOLDS,
            _ if few_holds => PARTLY,
            _ => NOT,
        };
        let tail = match many {
            Some((sc, rm)) => format!("; at {sc}, epoll/thread-per-client throughput {rm:.2}×"),
            None => String::new(),
        };
        Some((
            format!(
                "one connection: epoll p50 {e1:.0} µs, thread-per-client {t1:.0} µs, \
                 throughput epoll/thread-per-client {r1:.2}×{tail}"
            ),
            v,
        ))
    })();
    verdict(
        &mut md,
        6,
        "With few connections select/epoll is not faster than threads with blocking I/O; \
         its advantage is more connections.",
        c6,
        "conns-1,conns-100",
    );

    // 7. Pools cap resource use and have a ceiling of their own.
    let c7 = (|| {
        let pool = d.threads("conns-1", "thread-pool")?;
        let per = d.threads("conns-100", "thread-per-client")?;
        let workers = crate::matrix::pool_workers("thread-pool")?;
        Some((
            format!(
                "thread-pool holds {pool:.0} threads whatever the load, thread-per-client \
                 {per:.0} at 100 connections; the pool serves {workers} persistent \
                 connections at once, the rest wait (its cells beyond that are skipped)"
            ),
            if pool < per { HOLDS } else { PARTLY },
        ))
    })();
    verdict(
        &mut md,
        7,
        "Thread and process pools cap resource use but have a ceiling of their own.",
        c7,
        "conns-1,conns-100",
    );
    md.push('\n');
    md
}
