//! One output file while it is being produced: items go into the format's encoder, which writes
//! into the compressor, which writes into a buffer that hashes and counts the stored bytes. Full
//! parts are taken out of that buffer for upload while encoding goes on, so a file of any size
//! needs only about one part of memory.

use std::io::{self, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::backup::compress::Compressor;
use crate::backup::part_buffer::PartBuffer;
use crate::codec::encode::{encoder_for, Column, EncodeError, EncodeOptions, RecordEncoder};
use crate::model::format::{Compression, Format};
use crate::source::PageItems;

/// Counts bytes on their way into the compressor (the manifest's `uncompressed_bytes`).
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The bottom of the stream: stored bytes waiting to be uploaded, hashed as they arrive.
struct StoredBytes {
    /// Sized for a whole part up front, and handed over whole when the part is taken, so bytes
    /// are copied once on their way in and never again; its memory is the part's own, returned
    /// to the OS as soon as the upload is done with it.
    pending: PartBuffer,
    hasher: Sha256,
    total: u64,
}

impl Write for StoredBytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf)?;
        self.hasher.update(buf);
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Slack beyond a part's size: one encoder flush (64 KiB) or compressor block can overshoot it.
const TAIL_ROOM: usize = 256 * 1024;

/// A file being encoded.
pub struct EncodingFile {
    encoder: Box<dyn RecordEncoder>,
    stream: Counting<Compressor<StoredBytes>>,
    items: u64,
}

/// A file whose encoding is complete.
#[derive(Debug)]
pub struct FinishedFile {
    /// Stored bytes not yet taken as parts: the last part.
    pub rest: Bytes,
    /// Items in the file.
    pub items: u64,
    /// Stored (compressed) size.
    pub bytes: u64,
    /// Encoded size before compression.
    pub uncompressed_bytes: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// The columns of a CSV or Parquet file.
    pub columns: Option<Vec<Column>>,
}

impl EncodingFile {
    /// A new, empty file of `format` compressed with `compression`, whose first part will be
    /// `first_part_size` bytes (memory is reserved, but only touched as it fills).
    pub fn new(
        format: Format,
        compression: Compression,
        options: &EncodeOptions,
        first_part_size: usize,
    ) -> io::Result<Self> {
        let stored = StoredBytes {
            pending: PartBuffer::with_capacity(first_part_size + TAIL_ROOM)?,
            hasher: Sha256::new(),
            total: 0,
        };
        Ok(EncodingFile {
            encoder: encoder_for(format, options),
            stream: Counting {
                inner: Compressor::new(compression, stored)?,
                count: 0,
            },
            items: 0,
        })
    }

    /// Encodes a page of items.
    pub fn encode(&mut self, items: &PageItems) -> Result<(), EncodeError> {
        match items {
            PageItems::Decoded(items) => self.encoder.encode_batch(items, &mut self.stream)?,
            PageItems::Wire(items) => self.encoder.encode_wire(items, &mut self.stream)?,
        }
        self.items += items.len() as u64;
        Ok(())
    }

    /// Takes exactly `size` stored bytes, if that many are waiting. The buffer for the next part
    /// is reserved at `next_size` so it rarely needs to grow.
    pub fn take_part(&mut self, size: usize, next_size: usize) -> io::Result<Option<Bytes>> {
        let pending = &mut self.stream.inner.get_mut().pending;
        if pending.len() < size {
            return Ok(None);
        }
        let mut next = PartBuffer::with_capacity(next_size.max(pending.len() - size) + TAIL_ROOM)?;
        next.extend_from_slice(&pending.as_slice()[size..])?;
        pending.truncate(size);
        Ok(Some(std::mem::replace(pending, next).into_bytes()))
    }

    /// Stored bytes produced so far (the file's size if it were closed now, roughly).
    pub fn stored_bytes(&mut self) -> u64 {
        self.stream.inner.get_mut().total
    }

    /// Writes trailers and returns the last bytes with the file's totals.
    pub fn finish(mut self) -> Result<FinishedFile, EncodeError> {
        self.encoder.finish(&mut self.stream)?;
        let uncompressed_bytes = self.stream.count;
        let stored = self.stream.inner.finish()?;
        Ok(FinishedFile {
            rest: stored.pending.into_bytes(),
            items: self.items,
            bytes: stored.total,
            uncompressed_bytes,
            sha256: hex::encode(stored.hasher.finalize()),
            columns: self.encoder.columns(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::compress::decompressing_reader;
    use crate::codec::decode::decode_dynamodb_json_line;
    use crate::codec::encode::test_items::every_type;
    use std::io::BufRead;

    #[test]
    fn parts_plus_rest_are_the_whole_hashed_stream() {
        for compression in Compression::ALL {
            let mut file = EncodingFile::new(
                Format::DynamodbJson,
                compression,
                &EncodeOptions::default(),
                16 * 1024,
            )
            .unwrap();
            let page = PageItems::Decoded((0..250).map(|_| every_type()).collect());
            let mut stored = Vec::new();
            for _ in 0..8 {
                file.encode(&page).unwrap();
                while let Some(part) = file.take_part(16 * 1024, 16 * 1024).unwrap() {
                    assert_eq!(part.len(), 16 * 1024);
                    stored.extend_from_slice(&part);
                }
            }
            let done = file.finish().unwrap();
            stored.extend_from_slice(&done.rest);
            assert_eq!(done.items, 2_000);
            assert_eq!(done.bytes, stored.len() as u64);
            assert_eq!(done.sha256, hex::encode(Sha256::digest(&stored)));
            let reader = decompressing_reader(compression, &stored[..]).unwrap();
            let mut lines = 0u64;
            let mut plain = 0u64;
            for line in io::BufReader::new(reader).lines() {
                let line = line.unwrap();
                plain += line.len() as u64 + 1;
                assert_eq!(decode_dynamodb_json_line(&line).unwrap(), every_type());
                lines += 1;
            }
            assert_eq!(lines, 2_000, "{compression}");
            assert_eq!(plain, done.uncompressed_bytes, "{compression}");
        }
    }

    #[test]
    fn a_page_larger_than_the_room_reserved_for_it_grows_the_buffer() {
        // Uncompressed, one page of 2,000 items is far more than a 16 KiB part plus TAIL_ROOM,
        // so the part buffer must move to a larger mapping, and the parts still add up.
        let mut file = EncodingFile::new(
            Format::DynamodbJson,
            Compression::None,
            &EncodeOptions::default(),
            16 * 1024,
        )
        .unwrap();
        let page = PageItems::Decoded((0..2_000).map(|_| every_type()).collect());
        file.encode(&page).unwrap();
        assert!(file.stored_bytes() > (16 * 1024 + TAIL_ROOM) as u64);
        let mut stored = Vec::new();
        while let Some(part) = file.take_part(16 * 1024, 16 * 1024).unwrap() {
            assert_eq!(part.len(), 16 * 1024);
            stored.extend_from_slice(&part);
        }
        let done = file.finish().unwrap();
        assert!(done.rest.len() < 16 * 1024);
        stored.extend_from_slice(&done.rest);
        assert_eq!(done.bytes, stored.len() as u64);
        assert_eq!(done.sha256, hex::encode(Sha256::digest(&stored)));
        let lines: Vec<&[u8]> = stored
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 2_000);
        for line in lines {
            let line = std::str::from_utf8(line).unwrap();
            assert_eq!(decode_dynamodb_json_line(line).unwrap(), every_type());
        }
    }
}
