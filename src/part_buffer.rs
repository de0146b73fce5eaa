//! Memory for upload parts, mapped from the OS for each part alone.
//!
//! A part is several MiB, filled on an encoder thread and dropped on whichever thread finishes its
//! upload. Taken from the allocator, that memory stayed resident until the allocator's next purge
//! (10 ms at best, later when another thread freed it), so at every part boundary a segment held
//! about one extra part: a million-item zstd backup peaked at 45–51 MiB, against 39–43 MiB with
//! the allocator purging at once (which doubled its page-fault time for everything else). Mapped
//! for the part alone, the memory goes back to the OS the moment the upload lets go of it, and
//! nothing else pays for that. Elsewhere than Unix it is an ordinary vector.
//!
//! On Linux the pages are populated a step ahead of the writes, 256 KiB per system call, instead
//! of one page fault per 4 KiB: a million-item zstd backup took 1,800–1,900 page faults instead of
//! 18,200, with at most 256 KiB per part populated ahead of use (peak 42.4 MiB against 41.8).
//! Kernels without that advice (before 5.14) refuse it once, and the pages then fault in as before.

use bytes::Bytes;

pub use imp::PartBuffer;

impl PartBuffer {
    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        self.as_ref()
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the bytes over without copying; the memory is released when the last `Bytes` that
    /// shares it is dropped, on whatever thread that is.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::ptr::NonNull;

    /// A growable byte buffer in its own anonymous memory mapping.
    pub struct PartBuffer {
        /// Start of the mapping; dangling when `capacity` is 0 (nothing mapped).
        ptr: NonNull<u8>,
        len: usize,
        capacity: usize,
        /// How far from the start the pages are populated (see [`PartBuffer::populate`]).
        populated: usize,
    }

    // SAFETY: the buffer owns its mapping and nothing else points into it; shared access only
    // reads bytes.
    unsafe impl Send for PartBuffer {}
    // SAFETY: as above.
    unsafe impl Sync for PartBuffer {}

    impl PartBuffer {
        /// Maps `capacity` bytes. Pages count towards memory only once written.
        pub fn with_capacity(capacity: usize) -> io::Result<Self> {
            if capacity == 0 {
                return Ok(PartBuffer {
                    ptr: NonNull::dangling(),
                    len: 0,
                    capacity: 0,
                    populated: 0,
                });
            }
            // SAFETY: a new private anonymous mapping, backed by no file and overlapping nothing;
            // the result is checked before use.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    capacity,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let ptr = NonNull::new(map.cast::<u8>())
                .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
            Ok(PartBuffer {
                ptr,
                len: 0,
                capacity,
                populated: 0,
            })
        }

        /// Appends `data`, moving to a mapping twice as large (or as large as needed) when full.
        pub fn extend_from_slice(&mut self, data: &[u8]) -> io::Result<()> {
            let needed = self
                .len
                .checked_add(data.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "part too large"))?;
            if needed > self.capacity {
                let mut larger =
                    PartBuffer::with_capacity(needed.max(self.capacity.saturating_mul(2)))?;
                larger.extend_from_slice(self.as_ref())?;
                *self = larger;
            }
            if needed > self.populated {
                self.populate(needed);
            }
            // SAFETY: `len + data.len() <= capacity`, so the destination lies inside the mapping,
            // which `data` (borrowed from elsewhere) cannot overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.ptr.as_ptr().add(self.len),
                    data.len(),
                );
            }
            self.len = needed;
            Ok(())
        }

        /// Keeps the first `len` bytes.
        pub fn truncate(&mut self, len: usize) {
            self.len = self.len.min(len);
        }

        /// Populates the pages up to `end`, rounded up to the next step: one system call where
        /// writing them would fault once per page. Where the kernel cannot (before Linux 5.14,
        /// not Linux, or refused once), the writes fault the pages in as usual.
        fn populate(&mut self, end: usize) {
            const STEP: usize = 256 * 1024;
            let end = end.div_ceil(STEP).saturating_mul(STEP).min(self.capacity);
            #[cfg(target_os = "linux")]
            {
                use std::sync::atomic::{AtomicBool, Ordering};
                static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
                // mmap'd memory starts page-aligned, and `populated` only ever ends on a step
                // or at the capacity, so rounding it down to a page keeps the range aligned.
                let start = self.populated & !4095;
                if end > start && !UNSUPPORTED.load(Ordering::Relaxed) {
                    // SAFETY: the range lies inside this buffer's own mapping; populating pages
                    // for writing changes no contents.
                    let done = unsafe {
                        libc::madvise(
                            self.ptr.as_ptr().add(start).cast(),
                            end - start,
                            libc::MADV_POPULATE_WRITE,
                        )
                    };
                    // Any failure (an older kernel, a sandbox that refuses it) is taken as
                    // final: the writes fault the pages in as they would have anyway.
                    if done != 0 {
                        UNSUPPORTED.store(true, Ordering::Relaxed);
                    }
                }
            }
            self.populated = end;
        }
    }

    impl AsRef<[u8]> for PartBuffer {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: the first `len` bytes of the mapping are written; with nothing mapped, `len`
            // is 0 and a dangling, aligned pointer is valid for an empty slice.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl Drop for PartBuffer {
        fn drop(&mut self) {
            if self.capacity > 0 {
                // SAFETY: unmaps exactly the mapping this buffer made and owns; nothing refers to
                // it any more.
                unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.capacity) };
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io;

    /// A growable byte buffer (an ordinary vector on this platform).
    pub struct PartBuffer(Vec<u8>);

    impl PartBuffer {
        /// Reserves `capacity` bytes.
        pub fn with_capacity(capacity: usize) -> io::Result<Self> {
            Ok(PartBuffer(Vec::with_capacity(capacity)))
        }

        /// Appends `data`.
        pub fn extend_from_slice(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }

        /// Keeps the first `len` bytes.
        pub fn truncate(&mut self, len: usize) {
            self.0.truncate(len);
        }
    }

    impl AsRef<[u8]> for PartBuffer {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_truncates_and_hands_over_its_bytes() {
        let mut buffer = PartBuffer::with_capacity(10).unwrap();
        assert!(buffer.is_empty());
        buffer.extend_from_slice(b"hello").unwrap();
        buffer
            .extend_from_slice(b" world, and more than ten bytes")
            .unwrap();
        assert_eq!(buffer.as_slice(), b"hello world, and more than ten bytes");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        buffer.extend_from_slice(&big).unwrap();
        assert_eq!(buffer.len(), 36 + big.len());
        assert_eq!(&buffer.as_slice()[36..], &big[..]);
        buffer.truncate(5);
        buffer.truncate(50);
        assert_eq!(buffer.as_slice(), b"hello");
        let bytes = buffer.into_bytes();
        let shared = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&shared[..], b"el");
    }

    #[test]
    fn small_writes_across_many_populated_steps_keep_every_byte() {
        // 3 MiB in 1,000-byte writes into 1 MiB + 3 bytes: the populated edge moves a step at a
        // time and lands on the capacity, which is not a whole page, before the buffer grows.
        let mut buffer = PartBuffer::with_capacity((1 << 20) + 3).unwrap();
        let data: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(1_000) {
            buffer.extend_from_slice(piece).unwrap();
        }
        assert_eq!(buffer.as_slice(), &data[..]);
    }

    #[test]
    fn empty_buffers_work_and_bytes_may_be_dropped_on_another_thread() {
        let empty = PartBuffer::with_capacity(0).unwrap();
        assert_eq!(empty.as_slice(), b"");
        assert!(empty.into_bytes().is_empty());
        let mut grown = PartBuffer::with_capacity(0).unwrap();
        grown.extend_from_slice(b"x").unwrap();
        assert_eq!(grown.as_slice(), b"x");

        let mut part = PartBuffer::with_capacity(5 << 20).unwrap();
        part.extend_from_slice(&[7u8; 5 << 20]).unwrap();
        let bytes = part.into_bytes();
        let sum = std::thread::spawn(move || bytes.iter().map(|&b| b as u64).sum::<u64>())
            .join()
            .unwrap();
        assert_eq!(sum, 7 * (5 << 20));
    }
}
