//! Helpers shared by the targets: turning fuzz bytes into header values.

use http::HeaderValue;

/// Most lines any target feeds in: enough for repeated-header cases, bounded so runs stay fast.
pub const MAX_LINES: usize = 16;

/// Split `data` on `\n` into at most [`MAX_LINES`] header values, dropping bytes a header value
/// cannot hold (CR, NUL, other controls) so every input still exercises the parsers.
pub fn header_values(data: &[u8]) -> Vec<HeaderValue> {
    data.split(|&b| b == b'\n')
        .take(MAX_LINES)
        .filter_map(|line| {
            let clean: Vec<u8> = line
                .iter()
                .copied()
                .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
                .collect();
            HeaderValue::from_bytes(&clean).ok()
        })
        .collect()
}
