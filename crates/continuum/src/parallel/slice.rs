//! A slice that the threads of a pass write to through disjoint ranges.

use std::ops::Range;

/// A slice that tasks write to through disjoint [`Chunks`].
pub(super) struct SharedSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks reach the elements only through `chunk`, whose callers hold
// disjoint ranges; the elements themselves move between threads.
unsafe impl<T: Send> Send for SharedSlice<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    pub(super) fn new(slice: &mut [T]) -> Self {
        Self {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
        }
    }

    /// # Safety
    /// No two live results may overlap, and the slice `self` was made from must
    /// outlive them and not be used otherwise meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn chunk(&self, range: Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}
