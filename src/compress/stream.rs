//! [`CompressBody`]: a streamed body encoded (gzip, br, zstd) or gunzipped frame by frame, each
//! input frame flushed so a slow origin's bytes reach the client as they come.

use std::fmt;
use std::io::Write;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{zstd_level, BROTLI_BUFFER, BROTLI_LGWIN};
use crate::rfc::coding::Coding;

/// The streaming encoder state behind [`CompressBody`].
enum Encoder {
    Identity,
    Gzip(Option<flate2::write::GzEncoder<Vec<u8>>>),
    // Boxed because the brotli state is large and would bloat every CompressBody.
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    Zstd(Option<Box<zstd::stream::write::Encoder<'static, Vec<u8>>>>),
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
            Encoder::Zstd(Some(enc)) => {
                enc.write_all(data)?;
                enc.flush()?;
                Ok(std::mem::take(enc.get_mut()))
            }
            // Fed through `gunzip_step` instead: its output is bounded per frame.
            Encoder::Gunzip(_) => Ok(Vec::new()),
            Encoder::Gzip(None) | Encoder::Br(None) | Encoder::Zstd(None) => Ok(Vec::new()),
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
            Encoder::Zstd(enc) => enc.take().map_or(Ok(Vec::new()), |e| e.finish()),
            // finish() fails on a truncated stream, so a cut-off gzip body surfaces as an error.
            Encoder::Gunzip(dec) => dec.take().map_or(Ok(Vec::new()), |d| d.finish()),
        }
    }
}

/// Decoded bytes a gunzipping body emits per frame, about.
pub(super) const GUNZIP_FRAME: usize = 64 * 1024;

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
    /// Wrap `inner`, encoding with `coding` at `level`; `Identity` passes frames through, and so
    /// does zstd in the unlikely case its C context cannot be allocated.
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
            // Unknown size: zstd picks its large-input window for the level, 8 MiB at most.
            Coding::Zstd => zstd::stream::write::Encoder::new(Vec::new(), zstd_level(level))
                .map_or(Encoder::Identity, |e| Encoder::Zstd(Some(Box::new(e)))),
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
            Encoder::Zstd(_) => Coding::Zstd,
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
