//! Stream compression as an [`io::Write`] adapter: it sees only bytes, never items or S3.

use std::io::{self, Write};

use flate2::write::GzEncoder;

use crate::model::format::Compression;

/// zstd level 3 is zstd's own default: several times gzip's speed at a better ratio.
pub const ZSTD_LEVEL: i32 = 3;
/// gzip level 6 is the zlib default, the usual balance of speed and size.
pub const GZIP_LEVEL: u32 = 6;

/// A writer that compresses everything written to it into `W`.
pub enum Compressor<W: Write> {
    /// No compression.
    None(W),
    /// gzip via flate2's zlib-rs backend.
    Gzip(GzEncoder<W>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Wraps `inner` in the requested compression.
    pub fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::None(inner),
            Compression::Gzip => {
                Compressor::Gzip(GzEncoder::new(inner, flate2::Compression::new(GZIP_LEVEL)))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                // A checksum per frame lets `zstd -t` and our verify catch corruption by themselves.
                encoder.include_checksum(true)?;
                Compressor::Zstd(encoder)
            }
        })
    }

    /// The stream below, to take finished bytes out of it while compression goes on.
    pub fn get_mut(&mut self) -> &mut W {
        match self {
            Compressor::None(w) => w,
            Compressor::Gzip(w) => w.get_mut(),
            Compressor::Zstd(w) => w.get_mut(),
        }
    }

    /// Writes the compression trailer and returns the stream below.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.write_all(buf),
            Compressor::Gzip(w) => w.write_all(buf),
            Compressor::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Reads a stored stream back: the inverse of [`Compressor`], for verify, restore and tests.
pub fn decompressing_reader<'a, R: io::BufRead + 'a>(
    compression: Compression,
    reader: R,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_compression_round_trips() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for compression in Compression::ALL {
            let mut c = Compressor::new(compression, Vec::new()).unwrap();
            for chunk in data.chunks(7777) {
                c.write_all(chunk).unwrap();
            }
            let stored = c.finish().unwrap();
            if compression != Compression::None {
                assert!(stored.len() < data.len(), "{compression} did not compress");
            }
            let mut back = Vec::new();
            decompressing_reader(compression, &stored[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{compression}");
        }
    }

    #[test]
    fn output_can_be_drained_while_compressing() {
        let mut c = Compressor::new(Compression::Zstd, Vec::new()).unwrap();
        let mut drained = Vec::new();
        for i in 0..50_000u32 {
            c.write_all(format!("line {i}\n").as_bytes()).unwrap();
            drained.append(c.get_mut());
        }
        drained.extend(c.finish().unwrap());
        let mut back = String::new();
        decompressing_reader(Compression::Zstd, &drained[..])
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back.lines().count(), 50_000);
    }
}
