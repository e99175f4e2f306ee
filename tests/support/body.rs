//! Bodies: JSON of a given size, and gzip/brotli/zstd done with flate2/brotli/zstd directly
//! (independent of apicache's own codec code).

use std::io::{Read, Write};

/// A JSON body of about `n` bytes.
pub fn json_body(n: usize, seed: &str) -> Vec<u8> {
    let mut s = format!("{{\"seed\":\"{seed}\",\"items\":[");
    let mut i = 0;
    while s.len() + 40 < n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{{\"id\":{i},\"name\":\"item-{i}\"}}"));
        i += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Decode exactly one gzip member.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

pub fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Decode a zstd body (every frame), with the decoder's default limits.
pub fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(data).expect("valid zstd")
}

/// One zstd frame at the library's default level.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 0).unwrap()
}

/// Starts with the zstd frame magic number.
pub fn is_zstd(data: &[u8]) -> bool {
    data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}
