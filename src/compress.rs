//! The gzip/brotli codecs: whole-body encoders for stored variants, a bounded gunzip, and
//! [`CompressBody`], which re-encodes a streamed body frame by frame.

use std::fmt;
use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::rfc::coding::Coding;

/// Brotli window size; 22 (4 MiB) matches the reference encoder's default.
const BROTLI_LGWIN: u32 = 22;
/// Internal buffer size of the brotli writer.
const BROTLI_BUFFER: usize = 4096;

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

/// Why a gzip body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded output would exceed the caller's limit.
    TooLarge,
    /// The input is not a valid gzip stream.
    Corrupt,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::TooLarge => "decoded body exceeds size limit",
            DecodeError::Corrupt => "corrupt gzip data",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decode a gzip body, failing if the output would exceed `limit` bytes or the data is corrupt.
pub fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    // Multi-member streams are valid gzip (RFC 1952 §2.2) and some origins emit them.
    let dec = flate2::read::MultiGzDecoder::new(data);
    // Reading one byte past the limit distinguishes "exactly at limit" from "over".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    dec.take(cap)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// The streaming encoder state behind [`CompressBody`].
enum Encoder {
    Identity,
    Gzip(Option<flate2::write::GzEncoder<Vec<u8>>>),
    // Boxed because the brotli state is large and would bloat every CompressBody.
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    /// Decoding gzip for a client that does not accept it.
    Gunzip(Option<Box<flate2::write::MultiGzDecoder<Vec<u8>>>>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Encoder {
    /// Feed one chunk and flush, returning whatever output is ready.
    fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Identity => Ok(data.to_vec()),
            Encoder::Gzip(Some(enc)) => {
                enc.write_all(data)?;
                enc.flush()?;
                Ok(std::mem::take(enc.get_mut()))
            }
            Encoder::Br(Some(enc)) => {
                enc.write_all(data)?;
                enc.flush()?;
                Ok(std::mem::take(enc.get_mut()))
            }
            // Fed through `gunzip_step` instead: its output is bounded per frame.
            Encoder::Gunzip(_) => Ok(Vec::new()),
            Encoder::Gzip(None) | Encoder::Br(None) => Ok(Vec::new()),
        }
    }

    /// Decode from `input` until about [`GUNZIP_FRAME`] bytes are out or the input is used up,
    /// leaving the rest in `input`: a small, highly compressed chunk (a gzip bomb) becomes many
    /// bounded frames, each sent before the next is decoded.
    fn gunzip_step(&mut self, input: &mut Bytes) -> std::io::Result<Vec<u8>> {
        let Encoder::Gunzip(Some(dec)) = self else {
            input.clear();
            return Ok(Vec::new());
        };
        // Each write() runs the inflater once over a 32 KiB output window, so it is bounded.
        let before = input.len();
        for _ in 0..1024 {
            if input.is_empty() || dec.get_ref().len() >= GUNZIP_FRAME {
                break;
            }
            let n = dec.write(input)?;
            if n == 0 {
                break;
            }
            let _ = input.split_to(n);
        }
        dec.flush()?;
        let out = std::mem::take(dec.get_mut());
        if out.is_empty() && input.len() == before {
            // Never spin on input the decoder will not take.
            input.clear();
            return Err(std::io::Error::other("gzip decoder made no progress"));
        }
        Ok(out)
    }

    /// Finish the stream, returning the trailing bytes; later calls return nothing.
    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Identity => Ok(Vec::new()),
            Encoder::Gzip(enc) => enc.take().map_or(Ok(Vec::new()), |e| e.finish()),
            Encoder::Br(enc) => Ok(enc.take().map_or(Vec::new(), |e| e.into_inner())),
            // finish() fails on a truncated stream, so a cut-off gzip body surfaces as an error.
            Encoder::Gunzip(dec) => dec.take().map_or(Ok(Vec::new()), |d| d.finish()),
        }
    }
}

/// Decoded bytes a gunzipping body emits per frame, about.
const GUNZIP_FRAME: usize = 64 * 1024;

pin_project_lite::pin_project! {
    /// Wraps a body and compresses its frames on the fly, flushing per input frame.
    pub struct CompressBody<B> {
        #[pin]
        inner: B,
        encoder: Encoder,
        // Input not decoded yet (gunzip only).
        pending: Bytes,
        done: bool,
    }
}

impl<B> CompressBody<B> {
    /// Wrap `inner`, encoding with `coding` at `level`; `Identity` passes frames through.
    pub fn new(inner: B, coding: Coding, level: u32) -> Self {
        let encoder = match coding {
            Coding::Identity => Encoder::Identity,
            Coding::Gzip => Encoder::Gzip(Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.min(9)),
            ))),
            Coding::Br => Encoder::Br(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level.min(11),
                BROTLI_LGWIN,
            )))),
        };
        CompressBody {
            inner,
            encoder,
            pending: Bytes::new(),
            done: false,
        }
    }

    /// Wrap a gzip-encoded `inner` and emit its decoded bytes.
    pub fn gunzip(inner: B) -> Self {
        CompressBody {
            inner,
            encoder: Encoder::Gunzip(Some(Box::new(flate2::write::MultiGzDecoder::new(
                Vec::new(),
            )))),
            pending: Bytes::new(),
            done: false,
        }
    }
}

impl<B> fmt::Debug for CompressBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let coding = match self.encoder {
            Encoder::Identity => Coding::Identity,
            Encoder::Gzip(_) => Coding::Gzip,
            Encoder::Br(_) => Coding::Br,
            Encoder::Gunzip(_) => Coding::Identity,
        };
        f.debug_struct("CompressBody")
            .field("coding", &coding)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B> Body for CompressBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() {
                match this.encoder.gunzip_step(this.pending) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                    Err(e) => {
                        *this.done = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
            let passthrough = matches!(this.encoder, Encoder::Identity);
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) if passthrough => {
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Ok(frame)) => {
                    // Trailers cannot describe the re-encoded bytes, so they are dropped.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if matches!(this.encoder, Encoder::Gunzip(_)) {
                        *this.pending = data;
                        continue;
                    }
                    match this.encoder.push(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => {
                            *this.done = true;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                Some(Err(e)) => {
                    // Finishing after an upstream error would make a truncated body look complete.
                    *this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    *this.done = true;
                    return match this.encoder.finish() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => Poll::Ready(Some(Err(e.into()))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.encoder {
            Encoder::Identity => self.done || self.inner.is_end_stream(),
            _ => self.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.encoder {
            Encoder::Identity => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn hv(s: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(s).expect("test header")
    }

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..2000 {
            v.extend_from_slice(format!("{{\"id\":{i},\"name\":\"item-{i}\"}},").as_bytes());
        }
        v
    }

    fn unbrotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .expect("valid brotli");
        out
    }

    #[test]
    fn gzip_round_trip() {
        let data = sample();
        for level in [0, 1, 6, 9, 100] {
            let z = gzip(&data, level);
            assert_eq!(gunzip_limited(&z, data.len()).as_deref(), Ok(&data[..]));
        }
        assert!(gzip(&data, 6).len() < data.len() / 4);
        assert_eq!(gunzip_limited(&gzip(b"", 6), 0), Ok(Vec::new()));
    }

    #[test]
    fn brotli_round_trip() {
        let data = sample();
        for q in [0, 4, 11, 99] {
            assert_eq!(unbrotli(&brotli(&data, q)), data);
        }
        assert!(brotli(&data, 5).len() < data.len() / 4);
        assert_eq!(unbrotli(&brotli(b"", 5)), b"");
    }

    #[test]
    fn a_gzip_bomb_is_decoded_in_bounded_frames() {
        let plain = vec![0u8; 8 << 20];
        let bomb = Bytes::from(gzip(&plain, 9));
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        // The whole bomb arrives as one frame.
        let body = CompressBody::gunzip(http_body_util::Full::new(bomb));
        let frames = futures_executor_frames(body);
        let total: usize = frames.iter().map(|f| f.len()).sum();
        assert_eq!(total, plain.len());
        let largest = frames.iter().map(|f| f.len()).max().unwrap();
        assert!(largest <= 4 * GUNZIP_FRAME, "a frame of {largest} bytes");
    }

    /// Poll a body to the end on this thread, keeping its frames.
    fn futures_executor_frames<B>(body: B) -> Vec<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut body = std::pin::pin!(body);
            let mut out = Vec::new();
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.unwrap().into_data() {
                    out.push(d);
                }
            }
            out
        })
    }

    #[test]
    fn gunzip_limit_and_corruption() {
        let data = vec![b'a'; 100_000];
        let z = gzip(&data, 9);
        assert!(z.len() < 1000);
        assert_eq!(gunzip_limited(&z, 100_000).map(|v| v.len()), Ok(100_000));
        assert_eq!(gunzip_limited(&z, 99_999), Err(DecodeError::TooLarge));
        assert_eq!(gunzip_limited(&z, 0), Err(DecodeError::TooLarge));
        assert_eq!(
            gunzip_limited(b"not gzip at all", 1 << 20),
            Err(DecodeError::Corrupt)
        );
        let truncated = &z[..z.len() / 2];
        assert_eq!(
            gunzip_limited(truncated, 1 << 20),
            Err(DecodeError::Corrupt)
        );
        let mut flipped = gzip(b"hello world hello world", 6);
        let n = flipped.len();
        flipped[n - 6] ^= 0xff; // corrupt the CRC32 trailer
        assert_eq!(gunzip_limited(&flipped, 1 << 20), Err(DecodeError::Corrupt));
        let mut two = gzip(b"hello ", 6);
        two.extend(gzip(b"world", 6));
        assert_eq!(gunzip_limited(&two, 64).as_deref(), Ok(&b"hello world"[..]));
        assert_eq!(
            DecodeError::TooLarge.to_string(),
            "decoded body exceeds size limit"
        );
    }

    type TestFrame = Result<Frame<Bytes>, std::io::Error>;

    /// A body that yields a fixed list of frames, one per poll.
    struct FramesBody(std::collections::VecDeque<TestFrame>);

    impl Body for FramesBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn frames_body(chunks: Vec<TestFrame>) -> FramesBody {
        FramesBody(chunks.into())
    }

    fn chunked(data: &[u8], with_trailers: bool) -> Vec<TestFrame> {
        let mut frames: Vec<TestFrame> = data
            .chunks(7000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        frames.insert(1, Ok(Frame::data(Bytes::new())));
        if with_trailers {
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", hv("abc"));
            frames.push(Ok(Frame::trailers(t)));
        }
        frames
    }

    async fn collect_frames<B>(body: B) -> Vec<Frame<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: fmt::Debug,
    {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(f) = body.frame().await {
            out.push(f.expect("frame"));
        }
        out
    }

    fn join_data(frames: Vec<Frame<Bytes>>) -> (Vec<u8>, usize, bool) {
        let mut data = Vec::new();
        let mut n = 0;
        let mut trailers = false;
        for f in frames {
            match f.into_data() {
                Ok(d) => {
                    n += 1;
                    data.extend_from_slice(&d);
                }
                Err(_) => trailers = true,
            }
        }
        (data, n, trailers)
    }

    #[tokio::test]
    async fn compress_body_gzip_streams() {
        let data = sample();
        let body = CompressBody::new(frames_body(chunked(&data, true)), Coding::Gzip, 1);
        let (z, n, trailers) = join_data(collect_frames(body).await);
        assert!(!trailers, "trailers must be dropped");
        assert!(n > 2, "expected one output frame per input frame, got {n}");
        assert_eq!(gunzip_limited(&z, data.len()).as_deref(), Ok(&data[..]));
    }

    #[tokio::test]
    async fn gunzip_body_streams_and_rejects_truncation() {
        let data = sample();
        let z = gzip(&data, 6);
        let body = CompressBody::gunzip(frames_body(chunked(&z, false)));
        let (plain, _, _) = join_data(collect_frames(body).await);
        assert_eq!(plain, data);
        let cut = z[..z.len() - 10].to_vec();
        let mut body = std::pin::pin!(CompressBody::gunzip(frames_body(chunked(&cut, false))));
        let mut failed = false;
        while let Some(f) = body.frame().await {
            failed |= f.is_err();
        }
        assert!(
            failed,
            "a truncated gzip body must end in an error, not look complete"
        );
    }

    #[tokio::test]
    async fn compress_body_brotli_streams() {
        let data = sample();
        let body = CompressBody::new(frames_body(chunked(&data, true)), Coding::Br, 1);
        let (z, n, trailers) = join_data(collect_frames(body).await);
        assert!(!trailers);
        assert!(n > 2, "got {n} frames");
        assert_eq!(unbrotli(&z), data);
    }

    #[tokio::test]
    async fn compress_body_each_frame_decodable_prefix() {
        // After each flushed frame the output so far must decode to the input so far.
        let body = CompressBody::new(
            frames_body(vec![
                Ok(Frame::data(Bytes::from_static(b"{\"a\":"))),
                Ok(Frame::data(Bytes::from_static(b"1}"))),
            ]),
            Coding::Br,
            4,
        );
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.expect("frame").expect("ok");
        let mut out = Vec::new();
        let mut dec = brotli::Decompressor::new(&first.data_ref().expect("data")[..], 4096);
        let mut buf = [0u8; 16];
        let got = dec.read(&mut buf).expect("prefix decodes");
        out.extend_from_slice(&buf[..got]);
        assert_eq!(out, b"{\"a\":");
    }

    #[tokio::test]
    async fn compress_body_identity_passthrough() {
        let data = sample();
        let body = CompressBody::new(frames_body(chunked(&data, true)), Coding::Identity, 1);
        let (out, _, trailers) = join_data(collect_frames(body).await);
        assert!(trailers, "identity passes trailers through");
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn compress_body_empty_and_full() {
        let body = CompressBody::new(frames_body(vec![]), Coding::Gzip, 1);
        let z = body.collect().await.expect("ok").to_bytes();
        assert_eq!(gunzip_limited(&z, 10).as_deref(), Ok(&b""[..]));

        let inner = http_body_util::Full::new(Bytes::from_static(b"hello hello hello"));
        let body = CompressBody::new(inner, Coding::Br, 3);
        assert!(!body.is_end_stream());
        let z = body.collect().await.expect("ok").to_bytes();
        assert_eq!(unbrotli(&z), b"hello hello hello");
    }

    #[tokio::test]
    async fn compress_body_propagates_errors_and_stops() {
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err(std::io::Error::other("upstream reset")),
            Ok(Frame::data(Bytes::from_static(b"never"))),
        ];
        let body = CompressBody::new(frames_body(frames), Coding::Gzip, 1);
        let mut body = std::pin::pin!(body);
        assert!(body.frame().await.expect("frame").is_ok());
        let err = body.frame().await.expect("frame").expect_err("error");
        assert_eq!(err.to_string(), "upstream reset");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
