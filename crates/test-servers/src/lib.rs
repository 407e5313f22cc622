//! Servers that test the tests.
//!
//! A check that cannot fail proves nothing, so every conformance case and
//! every fault has, here, a server it must catch: a small program with one
//! named bug, written the way that bug looks in real code (`src/bin/broken-*`).
//! Beside them stand a correct but deliberately slow control that must pass
//! everything (`control-slow`), and `fork-burn`, a forking server whose
//! children burn a known amount of CPU, against which the harness's
//! process-tree figures are checked.
//!
//! The tests in `tests/` run the suite against each and assert that the
//! case named for the bug fails. If a case is weakened later, its broken
//! server passes, and CI turns red.
//!
//! None of these is a model: nothing here is benchmarked or taught as a
//! design, and nothing depends on this crate.
