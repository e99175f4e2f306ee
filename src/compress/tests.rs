//! Codec round trips, bounded decoding (gzip and zstd bombs), and streamed re-encoding.

use super::stream::GUNZIP_FRAME;
use super::*;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::fmt;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

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

fn unzstd(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(data)
        .expect("decoder")
        .read_to_end(&mut out)
        .expect("valid zstd");
    out
}

#[test]
fn zstd_round_trip_and_levels() {
    let data = sample();
    for level in [0, 1, 3, 19, 22, 100] {
        let z = zstd(&data, level).expect("encodes");
        assert_eq!(unzstd(&z), data, "level {level}");
        assert_eq!(unzstd_limited(&z, data.len()).as_deref(), Ok(&data[..]));
    }
    assert!(zstd(&data, 3).unwrap().len() < data.len() / 4);
    assert_eq!(unzstd(&zstd(b"", 3).unwrap()), b"");
    assert_eq!(zstd_level(0), 1);
    assert_eq!(zstd_level(22), 19);
    for c in [Coding::Gzip, Coding::Br, Coding::Zstd] {
        let z = encode(&data, c, 3).expect("encodes");
        let plain = match c {
            Coding::Br => unbrotli(&z),
            c => decode_limited(&z, c, data.len()).expect("decodes"),
        };
        assert_eq!(plain, data, "{c}");
    }
    assert_eq!(encode(&data, Coding::Identity, 3), None);
    let levels = Levels {
        gzip: 1,
        brotli: 2,
        zstd: 3,
    };
    let got = Coding::ALL.map(|c| levels.of(c));
    assert_eq!(got, [0, 1, 2, 3]);
}

#[test]
fn unzstd_limit_corruption_and_frames() {
    let data = vec![b'a'; 100_000];
    let z = zstd(&data, 19).unwrap();
    assert!(z.len() < 1000);
    assert_eq!(unzstd_limited(&z, 100_000).map(|v| v.len()), Ok(100_000));
    assert_eq!(unzstd_limited(&z, 99_999), Err(DecodeError::TooLarge));
    assert_eq!(unzstd_limited(&z, 0), Err(DecodeError::TooLarge));
    assert_eq!(
        unzstd_limited(b"not zstd at all", 1 << 20),
        Err(DecodeError::Corrupt)
    );
    // Cut short: a frame that never ends is not a body.
    let sample = zstd(&sample(), 3).unwrap();
    assert_eq!(
        unzstd_limited(&sample[..sample.len() / 2], 1 << 20),
        Err(DecodeError::Corrupt)
    );
    // Concatenated frames are one zstd stream (RFC 8878 §3).
    let mut two = zstd(b"hello ", 3).unwrap();
    two.extend(zstd(b"world", 3).unwrap());
    assert_eq!(unzstd_limited(&two, 64).as_deref(), Ok(&b"hello world"[..]));
    // No frame at all is no zstd body, as an empty body is no gzip one.
    assert_eq!(unzstd_limited(b"", 64), Err(DecodeError::Corrupt));
    assert_eq!(gunzip_limited(b"", 64), Err(DecodeError::Corrupt));
    assert_eq!(
        decode_limited(b"abc", Coding::Identity, 3).as_deref(),
        Ok(&b"abc"[..])
    );
    assert_eq!(
        decode_limited(b"abc", Coding::Identity, 2),
        Err(DecodeError::TooLarge)
    );
    assert_eq!(
        decode_limited(b"abc", Coding::Br, 64),
        Err(DecodeError::Corrupt)
    );
    assert_eq!(DecodeError::Corrupt.to_string(), "corrupt compressed data");
}

#[test]
fn a_zstd_bomb_stops_at_the_limit() {
    // 256 MiB of zeros in a few KiB: decoding must stop at the limit, not allocate the lot.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let limit = 1 << 20;
    assert_eq!(unzstd_limited(&bomb, limit), Err(DecodeError::TooLarge));
    // The buffer it reads into never grows past the cap.
    let mut dec = zstd::stream::read::Decoder::new(&bomb[..]).unwrap();
    dec.window_log_max(ZSTD_WINDOW_LOG_MAX).unwrap();
    let mut seen = 0usize;
    let capped = read_capped(CountingReader(&mut dec, &mut seen), bomb.len(), limit);
    assert_eq!(capped, Err(DecodeError::TooLarge));
    assert!(
        seen <= limit + 1,
        "read {seen} bytes for a {limit}-byte limit"
    );
}

/// A reader that counts the bytes it hands out.
struct CountingReader<'a, R>(&'a mut R, &'a mut usize);

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        *self.1 += n;
        Ok(n)
    }
}

#[test]
fn a_zstd_window_over_8_mib_is_refused() {
    // A frame that declares a 16 MiB window (windowLog 24) and no content size: a decoder with
    // zstd's default limit would allocate the window; this one refuses the frame.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(24).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(b"{\"small\":true}").unwrap();
    let big_window = enc.finish().unwrap();
    assert_eq!(unzstd(&big_window), b"{\"small\":true}");
    assert_eq!(
        unzstd_limited(&big_window, 1 << 20),
        Err(DecodeError::Corrupt)
    );
    // At 8 MiB it is accepted.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(23).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(b"{\"small\":true}").unwrap();
    let ok = enc.finish().unwrap();
    assert_eq!(
        unzstd_limited(&ok, 1 << 20).as_deref(),
        Ok(&b"{\"small\":true}"[..])
    );
}

#[test]
fn read_capped_never_allocates_past_the_cap() {
    let data = vec![7u8; 300_000];
    for limit in [0, 1, 4095, 16 * 1024, 100_000, 299_999, 300_000, 1 << 30] {
        let got = read_capped(&data[..], 10, limit);
        if limit >= data.len() {
            let v = got.expect("fits");
            assert_eq!(v.len(), data.len());
            assert_eq!(v.capacity(), data.len(), "limit {limit}");
        } else {
            assert_eq!(got, Err(DecodeError::TooLarge), "limit {limit}");
        }
    }
}

#[tokio::test]
async fn compress_body_zstd_streams() {
    let data = sample();
    let body = CompressBody::new(frames_body(chunked(&data, true)), Coding::Zstd, 1);
    let (z, n, trailers) = join_data(collect_frames(body).await);
    assert!(!trailers);
    assert!(n > 2, "got {n} frames");
    assert_eq!(unzstd(&z), data);
    assert_eq!(unzstd_limited(&z, data.len()).as_deref(), Ok(&data[..]));
}

#[tokio::test]
async fn compress_body_zstd_each_frame_decodable_prefix() {
    let body = CompressBody::new(
        frames_body(vec![
            Ok(Frame::data(Bytes::from_static(b"{\"a\":"))),
            Ok(Frame::data(Bytes::from_static(b"1}"))),
        ]),
        Coding::Zstd,
        3,
    );
    let mut body = std::pin::pin!(body);
    let first = body.frame().await.expect("frame").expect("ok");
    let first = first.data_ref().expect("data").clone();
    let mut dec = zstd::stream::read::Decoder::new(&first[..]).unwrap();
    let mut buf = [0u8; 16];
    let got = dec.read(&mut buf).expect("prefix decodes");
    assert_eq!(&buf[..got], b"{\"a\":");
    assert!(format!("{body:?}").contains("Zstd"));
}
