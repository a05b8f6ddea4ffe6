//! Crash injection for the store's crash tests, compiled only in tests: every write
//! passes [`point`] between two of its statements (and just before and after the
//! commit). A test arms the calling thread to abort the process at the n-th point
//! (`std::process::abort`: no unwinding, no rollback, the database file left as a
//! crash leaves it), or counts the points a write passes. In the shipped program
//! `point` is an empty function.

#[cfg(not(test))]
#[inline(always)]
pub(super) fn point() {}

#[cfg(test)]
pub(super) use armed::{abort_at, passed, point, reset};

#[cfg(test)]
mod armed {
    use std::cell::Cell;

    thread_local! {
        /// Points still to pass before aborting; `None`: not armed.
        static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
        /// Points passed since the last [`reset`].
        static PASSED: Cell<usize> = const { Cell::new(0) };
    }

    pub fn point() {
        PASSED.with(|p| p.set(p.get() + 1));
        LEFT.with(|left| match left.get() {
            Some(0) => std::process::abort(),
            Some(n) => left.set(Some(n - 1)),
            None => {}
        });
    }

    /// Aborts the process at the `n`-th point from now (0: the next one).
    pub fn abort_at(n: usize) {
        LEFT.with(|left| left.set(Some(n)));
    }

    /// Starts counting points again, disarmed.
    pub fn reset() {
        LEFT.with(|left| left.set(None));
        PASSED.with(|p| p.set(0));
    }

    pub fn passed() -> usize {
        PASSED.with(Cell::get)
    }
}
