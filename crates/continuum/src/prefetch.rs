//! Asking the processor for memory ahead of its use.
//!
//! Most of a tick's time at a million agents is spent waiting for memory
//! that is in no cache: an index cell, a site, a shared fact. A loop that
//! knows what it will read next can ask for those lines first, so that the
//! misses overlap instead of following one another.

/// Asks for the lines that `value` lies on (the first and the last, which
/// are the same for a value within one line). A hint: it reads and writes
/// nothing, and costs an instruction or two where the lines are cached.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    let first = std::ptr::from_ref(value).cast::<u8>();
    line(first);
    line(first.wrapping_add(size_of::<T>().saturating_sub(1)));
}

/// Asks for the line of `address`. Any address will do: a prefetch reads
/// and writes nothing, and never faults.
#[inline(always)]
fn line(address: *const u8) {
    // SAFETY: SSE, which `_mm_prefetch` needs, is part of every x86-64
    // processor, and a prefetch touches no memory the program can see.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Asks for the lines of `values`, at most `most` of them from its start.
#[inline(always)]
pub(crate) fn prefetch_slice<T>(values: &[T], most: usize) {
    let start = values.as_ptr().cast::<u8>();
    for offset in line_offsets(start as usize, size_of_val(values), most) {
        line(start.wrapping_add(offset));
    }
}

/// The offset, from `start`, of each of the first `most` 64-byte lines that
/// `bytes` bytes from `start` lie on: the first at 0, the others where
/// their lines begin.
#[inline(always)]
fn line_offsets(start: usize, bytes: usize, most: usize) -> impl Iterator<Item = usize> {
    const LINE: usize = 64;
    let first_line = start / LINE;
    (0..bytes.div_ceil(LINE) + 1)
        .map(move |k| ((first_line + k) * LINE).saturating_sub(start))
        .take_while(move |&offset| offset < bytes)
        .take(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_a_range_lies_on_is_asked_for_once() {
        let offsets = |start, bytes, most| line_offsets(start, bytes, most).collect::<Vec<_>>();
        // 200 bytes from 10 bytes into a line: four lines.
        assert_eq!(offsets(64 * 5 + 10, 200, 8), [0, 54, 118, 182]);
        assert_eq!(offsets(64 * 5 + 10, 200, 2), [0, 54]);
        // From a line's start: exactly the lines it fills.
        assert_eq!(offsets(128, 128, 8), [0, 64]);
        assert_eq!(offsets(128, 1, 8), [0]);
        // The last byte on a line of its own.
        assert_eq!(offsets(63, 2, 8), [0, 1]);
        assert!(offsets(100, 0, 8).is_empty());
        let data = [7u32; 100];
        prefetch_slice(&data, 8);
        prefetch_slice(&data[..0], 8);
        assert_eq!(data, [7; 100]);
    }
}
