//! The gzip/brotli/zstd codecs: whole-body encoders for stored variants, bounded decoders for the
//! origin's gzip and zstd bodies, and [`CompressBody`] ([`stream`]), which re-encodes a streamed
//! body frame by frame.

mod stream;

use std::fmt;
use std::io::{Read, Write};

pub use stream::CompressBody;

use crate::rfc::coding::Coding;

/// Brotli window size; 22 (4 MiB) matches the reference encoder's default.
const BROTLI_LGWIN: u32 = 22;
/// Internal buffer size of the brotli writer.
const BROTLI_BUFFER: usize = 4096;
/// Largest zstd window accepted from an origin: 8 MiB, the limit RFC 9659 §3 sets for the `zstd`
/// content coding. It bounds the decoder's memory whatever a frame header claims (zstd's own
/// default allows 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// zstd levels this proxy uses: 20..=22 ("ultra") need windows beyond RFC 9659's 8 MiB.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<u32> = 1..=19;

/// Compression levels per coding: the stored variants' or the streamed answers'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// gzip level, 0..=9.
    pub gzip: u32,
    /// brotli quality, 0..=11.
    pub brotli: u32,
    /// zstd level, 1..=19.
    pub zstd: u32,
}

impl Levels {
    /// The level for `coding` (identity has none).
    pub fn of(&self, coding: Coding) -> u32 {
        match coding {
            Coding::Identity => 0,
            Coding::Gzip => self.gzip,
            Coding::Br => self.brotli,
            Coding::Zstd => self.zstd,
        }
    }
}

/// Compress `data` with gzip at `level` (clamped to 0..=9).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 4 + 64);
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level.min(9)));
    // Writing into a Vec cannot fail, so the only error source is absent.
    let mut out = enc
        .write_all(data)
        .and_then(|()| enc.finish())
        .expect("in-memory gzip encoding is infallible");
    // Stored variants live long: do not keep the growth slack.
    out.shrink_to_fit();
    out
}

/// Compress `data` with brotli at `quality` (clamped to 0..=11).
pub fn brotli(data: &[u8], quality: u32) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 4 + 64);
    // A window no larger than the body: the encoder's ring buffer and hash tables scale with it,
    // and a 4 MiB window for a 30 KiB body is mostly zeroed memory that costs time and RSS.
    let lgwin = (usize::BITS - data.len().leading_zeros()).clamp(16, BROTLI_LGWIN);
    let mut enc = brotli::CompressorWriter::new(out, BROTLI_BUFFER, quality.min(11), lgwin);
    // Writing into a Vec cannot fail; into_inner finishes the stream.
    enc.write_all(data)
        .expect("in-memory brotli encoding is infallible");
    let mut out = enc.into_inner();
    out.shrink_to_fit();
    out
}

/// The zstd level to run for a configured one, clamped to [`ZSTD_LEVELS`].
fn zstd_level(level: u32) -> i32 {
    level.clamp(*ZSTD_LEVELS.start(), *ZSTD_LEVELS.end()) as i32
}

/// Compress `data` into one zstd frame at `level` (clamped to 1..=19). The body's size is known,
/// so zstd sizes its window and tables to it (never past 8 MiB at these levels); it fails only
/// when the C library cannot allocate its context.
pub fn zstd(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut out = zstd::bulk::compress(data, zstd_level(level))?;
    out.shrink_to_fit();
    Ok(out)
}

/// `data` encoded with `coding` at `level`; `None` for identity or when the codec failed.
pub fn encode(data: &[u8], coding: Coding, level: u32) -> Option<Vec<u8>> {
    match coding {
        Coding::Identity => None,
        Coding::Gzip => Some(gzip(data, level)),
        Coding::Br => Some(brotli(data, level)),
        Coding::Zstd => zstd(data, level).ok(),
    }
}

/// Why an encoded body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded output would exceed the caller's limit.
    TooLarge,
    /// The input is not a valid stream of its coding (or needs a larger zstd window than 8 MiB).
    Corrupt,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::TooLarge => "decoded body exceeds size limit",
            DecodeError::Corrupt => "corrupt compressed data",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decode an origin's `coding` body (gzip or zstd), failing if the output would exceed `limit`
/// bytes or the data is corrupt. Other codings are never stored, so they never get here.
pub fn decode_limited(data: &[u8], coding: Coding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Gzip => gunzip_limited(data, limit),
        Coding::Zstd => unzstd_limited(data, limit),
        Coding::Identity if data.len() <= limit => Ok(data.to_vec()),
        Coding::Identity => Err(DecodeError::TooLarge),
        Coding::Br => Err(DecodeError::Corrupt),
    }
}

/// Decode a gzip body, failing if the output would exceed `limit` bytes or the data is corrupt.
pub fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    // Multi-member streams are valid gzip (RFC 1952 §2.2) and some origins emit them.
    read_capped(flate2::read::MultiGzDecoder::new(data), data.len(), limit)
}

/// Decode a zstd body (one or more frames), failing if the output would exceed `limit` bytes,
/// a frame asks for a window over 8 MiB, or the data is corrupt.
pub fn unzstd_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|_| DecodeError::Corrupt)?;
    dec.window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|_| DecodeError::Corrupt)?;
    read_capped(dec, data.len(), limit)
}

/// Read `r` to the end into a buffer that never grows past `limit + 1` bytes (one byte past the
/// limit tells "exactly at" from "over"): a bomb stops at the cap instead of doubling past it.
fn read_capped(mut r: impl Read, input_len: usize, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled >= cap {
                return Err(DecodeError::TooLarge);
            }
            // Start near the likely size (JSON compresses about 4:1), then double, up to the cap.
            let grow = out
                .len()
                .max(input_len.saturating_mul(4))
                .max(16 * 1024)
                .min(cap - filled);
            out.reserve_exact(grow);
            out.resize(filled + grow, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(DecodeError::Corrupt),
        }
    }
    out.truncate(filled);
    if filled > limit {
        return Err(DecodeError::TooLarge);
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests;
