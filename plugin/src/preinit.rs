//! Pre-initialisation support (wasm only): what `wizer-initialize` needs so
//! the snapshot holds the loaded model and little else.
//!
//! The snapshot copies every non-zero page of the heap. Loading a model frees
//! far more than it keeps (the ONNX bytes, the decoded protobuf, the
//! unoptimised graph), and dlmalloc keeps freed pages as they were: without
//! help the snapshot would carry all of that garbage. While `init` runs, the
//! allocator zeroes large blocks as they are freed, so those pages are zero
//! and drop out of the image. Outside `init` it adds one relaxed load per free.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks at least this large are zeroed on free during init; smaller ones
/// are not worth it (the allocator's own headers stay anyway).
const ZERO_FROM: usize = 4096;

static ZERO_ON_FREE: AtomicBool = AtomicBool::new(false);

struct ZeroOnFreeDuringInit;

// SAFETY: every call is forwarded to `System`; `dealloc` only writes inside
// the block it is handed back before freeing it, and `realloc` during init
// uses the trait's default (alloc, copy, our `dealloc`).
unsafe impl GlobalAlloc for ZeroOnFreeDuringInit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= ZERO_FROM && ZERO_ON_FREE.load(Ordering::Relaxed) {
            unsafe { zero_volatile(ptr, layout.size()) };
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ZERO_ON_FREE.load(Ordering::Relaxed) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller's contract for `realloc` holds for the new layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Zeroes `len` bytes at `ptr` with volatile stores. A plain `write_bytes`
/// right before `free` is a dead store to LLVM, which removes it: the
/// snapshot then carried every freed page (1.4 GB for a 0.5 GB model).
///
/// # Safety
/// `ptr..ptr+len` must be writable and owned by the caller.
unsafe fn zero_volatile(ptr: *mut u8, len: usize) {
    use core::arch::wasm32::{u64x2_splat, v128};
    let end = ptr.wrapping_add(len);
    let mut p = ptr;
    while p < end && (p as usize) % 16 != 0 {
        unsafe { p.write_volatile(0) };
        p = p.wrapping_add(1);
    }
    let zero = u64x2_splat(0);
    while (end as usize) - (p as usize) >= 16 {
        unsafe { (p as *mut v128).write_volatile(zero) };
        p = p.wrapping_add(16);
    }
    while p < end {
        unsafe { p.write_volatile(0) };
        p = p.wrapping_add(1);
    }
}

#[global_allocator]
static ALLOCATOR: ZeroOnFreeDuringInit = ZeroOnFreeDuringInit;

unsafe extern "C" {
    /// wasi-libc: forgets the preopened directories it looked up (made for
    /// Wizer), so a snapshot carries no descriptor of the init instance.
    fn __wasilibc_reset_preopens();
}

/// Runs `load` with zero-on-free on, then lets go of the preopens it used.
pub fn init<T>(load: impl FnOnce() -> T) -> T {
    ZERO_ON_FREE.store(true, Ordering::Relaxed);
    let out = load();
    ZERO_ON_FREE.store(false, Ordering::Relaxed);
    // SAFETY: no file of the model directory is open any more (`load` read
    // the files whole and closed them); this only clears libc's table.
    unsafe { __wasilibc_reset_preopens() };
    out
}
