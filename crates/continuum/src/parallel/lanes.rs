//! Lanes: how the items of one pass are split between threads and claimed
//! in chunks.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The indices `0..len`, split into one lane of consecutive indices per thread.
///
/// A task works through its own lane from the front, in chunks of `min`; once
/// that is empty it takes the back half of the fullest lane left, which becomes
/// its own, until every lane is empty. So the threads finish a pass together
/// (a worker that starts late only takes less of it), and each thread mostly
/// keeps the same part of the list from one pass to the next: the passes of a
/// step go over the same due agents, and an agent whose components one core
/// just wrote is read again from that core's cache rather than taken from the
/// other's.
#[derive(Debug)]
pub struct Chunks {
    lanes: Box<[Lane]>,
    min: usize,
}

/// One thread's lane: the indices `start..end` still to do, packed in one word
/// so that the owner taking from the front and a thief taking from the back
/// agree on it with one compare-and-swap; and whether a task has it.
/// Aligned so that two lanes never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Lane {
    span: AtomicU64,
    taken: AtomicBool,
}

fn pack(range: Range<usize>) -> u64 {
    ((range.start as u64) << 32) | range.end as u64
}

fn unpack(span: u64) -> Range<usize> {
    (span >> 32) as usize..(span & u64::from(u32::MAX)) as usize
}

impl Chunks {
    /// Lanes over `0..len` for `threads` threads, taken in chunks of `min`
    /// (the last of a lane may be shorter).
    ///
    /// # Panics
    /// If `len` does not fit in 32 bits.
    pub fn new(len: usize, threads: usize, min: usize) -> Self {
        assert!(u32::try_from(len).is_ok(), "at most 2^32 - 1 items a pass");
        let threads = threads.max(1);
        Self {
            lanes: (0..threads)
                .map(|k| Lane {
                    span: AtomicU64::new(pack(len * k / threads..len * (k + 1) / threads)),
                    taken: AtomicBool::new(false),
                })
                .collect(),
            min: min.max(1),
        }
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane a task takes: `home` (modulo the lanes) if no task has it yet,
    /// or else the first free one; `None` when every lane has a task. A lane
    /// has one task at most, and only that task takes from its front; a task
    /// without a lane has nothing to do, since the tasks that own lanes work
    /// until every lane is empty.
    pub fn take_lane(&self, home: usize) -> Option<usize> {
        let n = self.lanes.len();
        (0..n)
            .map(|k| (home + k) % n)
            .find(|&lane| !self.lanes[lane].taken.swap(true, Ordering::Relaxed))
    }

    /// The next chunk for the task that took `lane` ([`take_lane`](Self::take_lane)),
    /// or `None` once every lane is empty. Every index is in exactly one chunk.
    pub fn claim(&self, lane: usize) -> Option<Range<usize>> {
        loop {
            if let Some(chunk) = self.take_front(lane) {
                return Some(chunk);
            }
            if !self.steal_into(lane) {
                return None;
            }
        }
    }

    /// A chunk from the front of `lane`.
    fn take_front(&self, lane: usize) -> Option<Range<usize>> {
        let span = &self.lanes[lane].span;
        let mut now = span.load(Ordering::Relaxed);
        loop {
            let left = unpack(now);
            if left.is_empty() {
                return None;
            }
            let end = left.end.min(left.start + self.min);
            match span.compare_exchange_weak(
                now,
                pack(end..left.end),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(left.start..end),
                Err(seen) => now = seen,
            }
        }
    }

    /// Moves the back half of the fullest other lane (all of it when that is
    /// no more than a chunk) into `lane`, which is empty. Returns `false` when
    /// every other lane is empty.
    fn steal_into(&self, lane: usize) -> bool {
        loop {
            let Some((victim, now)) = (0..self.lanes.len())
                .filter(|&v| v != lane)
                .map(|v| (v, self.lanes[v].span.load(Ordering::Relaxed)))
                .filter(|&(_, span)| !unpack(span).is_empty())
                .max_by_key(|&(v, span)| (unpack(span).len(), std::cmp::Reverse(v)))
            else {
                return false;
            };
            let left = unpack(now);
            let keep = if left.len() <= self.min {
                0
            } else {
                left.len() / 2
            };
            let split = left.start + keep;
            if self.lanes[victim]
                .span
                .compare_exchange(
                    now,
                    pack(left.start..split),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // Only this task takes from the front of its lane, and no thief
                // takes from an empty one: nobody else writes it meanwhile.
                self.lanes[lane]
                    .span
                    .store(pack(split..left.end), Ordering::Relaxed);
                return true;
            }
        }
    }
}

/// The lane a thread's tasks prefer: 0 for the thread that starts the pass,
/// and for the compute workers 1, 2, ... in the order they first took part.
/// Stable from one pass to the next, so a thread keeps to the same part of the
/// due list.
pub(super) fn home_lane(caller: std::thread::ThreadId, lanes: usize) -> usize {
    static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }
    if lanes <= 1 || std::thread::current().id() == caller {
        return 0;
    }
    let worker = WORKER.with(|w| {
        w.get().unwrap_or_else(|| {
            let id = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
            w.set(Some(id));
            id
        })
    });
    1 + worker % (lanes - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(chunks: &Chunks, lane: usize) -> Vec<Range<usize>> {
        std::iter::from_fn(|| chunks.claim(lane)).collect()
    }

    /// Sorted, the ranges cover `0..len` exactly once.
    fn assert_cover(mut ranges: Vec<Range<usize>>, len: usize) {
        ranges.sort_by_key(|r| r.start);
        let mut next = 0;
        for range in &ranges {
            assert_eq!(range.start, next, "{ranges:?}");
            assert!(!range.is_empty());
            next = range.end;
        }
        assert_eq!(next, len);
    }

    #[test]
    fn one_task_takes_every_index_once_in_chunks_of_at_most_min() {
        for (len, threads, min) in [
            (0, 2, 16),
            (1, 2, 16),
            (10_000, 2, 16),
            (999, 3, 7),
            (50, 1, 64),
            (5, 4, 1),
        ] {
            let chunks = Chunks::new(len, threads, min);
            let ranges = drain(&chunks, chunks.take_lane(0).unwrap());
            assert!(ranges.iter().all(|r| r.len() <= min), "{ranges:?}");
            // Its own lane first, in order, then stolen halves.
            if len > 0 {
                assert_eq!(ranges[0].start, 0);
            }
            assert!(
                ranges.len() <= len.div_ceil(min) + 2 * threads * 32,
                "{ranges:?}"
            );
            assert_cover(ranges, len);
        }
    }

    #[test]
    fn each_task_starts_on_its_own_lane_and_the_last_one_steals_the_rest() {
        let chunks = Chunks::new(1000, 2, 10);
        let (a, b) = (chunks.take_lane(0).unwrap(), chunks.take_lane(0).unwrap());
        assert_eq!((a, b), (0, 1), "the second task takes the free lane");
        assert_eq!(chunks.take_lane(1), None, "a lane has one task at most");
        assert_eq!(chunks.claim(a), Some(0..10));
        assert_eq!(chunks.claim(b), Some(500..510));
        assert_eq!(chunks.claim(a), Some(10..20));
        // Lane 0 finishes everything while lane 1's task does nothing more:
        // it steals the back half of lane 1 (755..1000), then the rest.
        let mut ranges = vec![0..10, 500..510, 10..20];
        let rest = drain(&chunks, a);
        assert_eq!(rest[48], 755..765, "the first stolen chunk: {rest:?}");
        ranges.extend(rest);
        assert_eq!(chunks.claim(b), None);
        assert_cover(ranges, 1000);
    }

    /// Four threads, on four lanes or on two (the two without a lane do
    /// nothing), take every index exactly once.
    #[test]
    fn chunks_claimed_from_many_threads_are_disjoint() {
        for (lanes, min) in [(4, 1), (4, 16), (4, 1000), (2, 1), (2, 16)] {
            let chunks = Chunks::new(100_000, lanes, min);
            let claimed: Vec<Vec<Range<usize>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let chunks = &chunks;
                        s.spawn(move || {
                            chunks
                                .take_lane(t)
                                .map_or_else(Vec::new, |lane| drain(chunks, lane))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_cover(claimed.into_iter().flatten().collect(), 100_000);
        }
    }
}
