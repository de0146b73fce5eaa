//! Memory for upload parts, mapped from the OS for each part alone.
//!
//! A part is several MiB, filled on an encoder thread and dropped on whichever thread finishes its
//! upload. Taken from the allocator, that memory would stay resident until the allocator's next
//! purge (later still when another thread freed it), so at every part boundary a segment would
//! hold about one extra part. Mapped for the part alone, the memory goes back to the OS the
//! moment the upload lets go of it, and nothing else pays for that. Elsewhere than Unix it is an
//! ordinary vector.
//!
//! On Linux the pages are populated a step ahead of the writes, 256 KiB per system call, instead
//! of one page fault per 4 KiB, with at most 256 KiB per part populated ahead of use. Kernels
//! without that advice (before 5.14) refuse it once, and the pages then fault in as before.

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

    /// Hands the bytes over without copying; the memory is released when the last `Bytes` that
    /// shares it is dropped, on whatever thread that is.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

#[cfg(unix)]
mod imp {
    use std::io;

    use memmap2::MmapMut;

    /// A growable byte buffer in its own anonymous memory mapping.
    pub struct PartBuffer {
        /// The mapping; `None` while nothing is mapped (capacity 0).
        map: Option<MmapMut>,
        len: usize,
        /// How far from the start the pages are populated (see [`PartBuffer::populate`]).
        populated: usize,
    }

    impl PartBuffer {
        /// Maps `capacity` bytes. Pages count towards memory only once written.
        pub fn with_capacity(capacity: usize) -> io::Result<Self> {
            let map = match capacity {
                0 => None,
                _ => Some(MmapMut::map_anon(capacity)?),
            };
            Ok(PartBuffer {
                map,
                len: 0,
                populated: 0,
            })
        }

        fn capacity(&self) -> usize {
            self.map.as_ref().map_or(0, |m| m.len())
        }

        /// Appends `data`, moving to a mapping twice as large (or as large as needed) when full.
        pub fn extend_from_slice(&mut self, data: &[u8]) -> io::Result<()> {
            let needed = self
                .len
                .checked_add(data.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "part too large"))?;
            if needed > self.capacity() {
                let mut larger =
                    PartBuffer::with_capacity(needed.max(self.capacity().saturating_mul(2)))?;
                larger.extend_from_slice(self.as_ref())?;
                *self = larger;
            }
            if needed > self.populated {
                self.populate(needed);
            }
            if let Some(map) = self.map.as_mut() {
                map[self.len..needed].copy_from_slice(data);
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
            let end = end.div_ceil(STEP).saturating_mul(STEP).min(self.capacity());
            #[cfg(target_os = "linux")]
            {
                use std::sync::atomic::{AtomicBool, Ordering};
                static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
                // A mapping starts page-aligned, and `populated` only ever ends on a step or at
                // the capacity, so rounding it down to a page keeps the range aligned.
                let start = self.populated & !4095;
                if let Some(map) = self.map.as_ref() {
                    if end > start && !UNSUPPORTED.load(Ordering::Relaxed) {
                        // Any failure (an older kernel, a sandbox that refuses it) is taken as
                        // final: the writes fault the pages in as they would have anyway.
                        let advice = memmap2::Advice::PopulateWrite;
                        if map.advise_range(advice, start, end - start).is_err() {
                            UNSUPPORTED.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            self.populated = end;
        }
    }

    impl AsRef<[u8]> for PartBuffer {
        fn as_ref(&self) -> &[u8] {
            self.map.as_ref().map_or(&[][..], |m| &m[..self.len])
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
        assert_eq!(buffer.len(), 0);
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
