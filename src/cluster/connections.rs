//! How many hosts one replica observes at once for the work queue, across the batches its
//! worker runs together: at most the fleet's `observe.parallel`, as `serve` alone would.
//! Without it a replica would hold `batches × min(batch, parallel)` connections at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The connections a replica's batches share (the limit comes with each request: it is
/// the setting of the desired state the batch belongs to).
#[derive(Debug, Default)]
pub struct ConnectionBudget {
    in_use: Mutex<usize>,
    freed: Condvar,
}

/// Connections taken from a [`ConnectionBudget`]; given back when dropped (also when the
/// batch's handler panics).
#[derive(Debug)]
pub struct Connections {
    budget: Arc<ConnectionBudget>,
    count: usize,
}

impl Connections {
    /// How many were taken (at least 1).
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let mut in_use = self.budget.lock();
        *in_use = in_use.saturating_sub(self.count);
        self.budget.freed.notify_all();
    }
}

impl ConnectionBudget {
    /// A budget with nothing taken.
    pub fn new() -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget::default())
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // A panic while holding it cannot leave the count half-written: plain integer.
        self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `want` connections (at least 1) of the `limit` a replica may hold, as
    /// many as are free now; `None` while none is.
    pub fn try_take(self: &Arc<Self>, want: usize, limit: usize) -> Option<Connections> {
        let mut in_use = self.lock();
        let count = Self::free(*in_use, want, limit)?;
        *in_use += count;
        Some(Connections {
            budget: self.clone(),
            count,
        })
    }

    /// Like [`ConnectionBudget::try_take`], waiting until one is free.
    pub fn take(self: &Arc<Self>, want: usize, limit: usize) -> Connections {
        let mut in_use = self.lock();
        loop {
            if let Some(count) = Self::free(*in_use, want, limit) {
                *in_use += count;
                return Connections {
                    budget: self.clone(),
                    count,
                };
            }
            in_use = self.freed.wait(in_use).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn free(in_use: usize, want: usize, limit: usize) -> Option<usize> {
        let free = limit.max(1).saturating_sub(in_use);
        (free > 0).then(|| free.min(want.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_share_the_limit_and_get_it_back_when_done() {
        let budget = ConnectionBudget::new();
        let first = budget.try_take(64, 50).expect("all free");
        assert_eq!(first.count(), 50, "no more than the limit");
        assert!(budget.try_take(64, 50).is_none(), "none left");
        drop(first);
        let small = budget.try_take(10, 50).expect("given back");
        assert_eq!(small.count(), 10, "no more than wanted");
        let rest = budget.try_take(64, 50).expect("40 free");
        assert_eq!(rest.count(), 40);
        // A lower limit (a new desired state) counts what is already taken: 10 of 8.
        drop(rest);
        assert!(budget.try_take(1, 8).is_none(), "10 taken, the limit is 8");
        drop(small);
        let five = budget.try_take(5, 8).expect("all free again");
        assert_eq!(five.count(), 5);
        assert!(budget.try_take(1, 5).is_none(), "5 taken of 5");
    }

    #[test]
    fn a_waiting_batch_runs_once_another_gives_back() {
        let budget = ConnectionBudget::new();
        let held = budget.try_take(4, 4).expect("all free");
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(3, 4).count())
        };
        drop(held);
        assert_eq!(waiter.join().expect("no panic"), 3);
    }
}
