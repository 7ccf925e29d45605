//! Work over a list on several threads, results in list order.
//!
//! `explain` and `eval` run one tract plan on many images at once: a plan is shared read-only
//! and every run has its own state, so images in parallel need nothing but threads that pull
//! the next index. Scoped std threads do it in a few lines; a thread-pool crate would add a
//! second pool beside tract's own intra-op executor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// The machine's cores (1 if unknown): the default of every `--threads`.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f(i, &items[i])` for every item on up to `threads` threads; the results in item order.
/// The first error in item order among the items run is returned; once one item fails no new
/// item is started.
pub fn map<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    f: impl Fn(usize, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(i, item);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    let results: Vec<Option<Result<R>>> = slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    // Indices are taken in order, so every item before a failed one was started and finished:
    // unstarted items (None) come after the first error, which this returns.
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(crate::runtime_err!(
                    "a worker thread stopped before its item"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order_on_any_thread_count() {
        let items: Vec<u64> = (0..100).collect();
        for threads in [1, 2, 3, 8, 200] {
            let got = map(threads, &items, |i, &x| Ok(x * x + i as u64)).expect("no error");
            let want: Vec<u64> = items.iter().map(|&x| x * x + x).collect();
            assert_eq!(got, want, "{threads} threads");
        }
    }

    #[test]
    fn the_first_failing_item_is_reported() {
        let items: Vec<usize> = (0..50).collect();
        let r = map(4, &items, |_, &x| {
            if x == 7 || x == 30 {
                Err(crate::bad_input!("item {x}"))
            } else {
                Ok(x)
            }
        });
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        // Item 7 always runs (4 threads take 0..3 first, and a failure stops only new items
        // after it), so the error in item order is item 7's.
        assert_eq!(msg, "item 7");
    }
}
