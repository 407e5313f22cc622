//! A slab: values in a `Vec` addressed by index, freed slots reused. The
//! reactor keys its registrations by slab index, and the executor its
//! tasks, so an index is a small integer that fits in an epoll event's
//! `u64` or a waker, with no hashing on the hot path.
//!
//! No syscalls. Trade-off: an index outlives the value it named (a stale
//! wake-up, a stale event) and may name a newer value after reuse; both
//! users treat that as a spurious wake-up, which futures must tolerate
//! anyway. A generation counter per slot would rule it out at the cost of
//! a wider key; the slab crate was not taken to keep the runtime in one
//! place.

/// Values addressed by index.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value`, returns its index.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    /// The index the next [`Slab::insert`] will return.
    pub(crate) fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Takes the value at `i` out, freeing the slot.
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        let value = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn reuses_freed_slots() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.next_key(), a);
        assert_eq!(slab.insert("c"), a);
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        slab.remove(a);
        slab.remove(b);
        assert!(slab.is_empty());
    }
}
