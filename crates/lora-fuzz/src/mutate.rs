//! The mutations: what turns a seed into a test input. Binary formats get bit and byte flips,
//! overwritten little-endian length/count fields, truncation, extension, chunk duplication and
//! splicing between corpus entries; text formats (JSON, merges) also get numbers replaced with
//! boundary values and structural tokens inserted.

use crate::rng::Rng;

/// Little-endian u32 values a length, count or type field is overwritten with.
pub const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    12,
    13,
    31,
    32,
    255,
    256,
    4096,
    65535,
    1 << 16,
    1 << 24,
    0x7FFF_FFFF,
    1 << 31,
    u32::MAX - 1,
    u32::MAX,
];

/// Little-endian u64 values a length, count, dimension or offset field is overwritten with.
pub const INTERESTING_U64: &[u64] = &[
    0,
    1,
    2,
    32,
    64,
    1 << 16,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 60,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
];

/// Decimal numbers a number in a text input is replaced with.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "1e308",
    "-1e308",
    "0.5",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1152921504606846976",
    "99999999999",
    "NaN",
    "null",
    "true",
    "\"x\"",
    "[]",
    "{}",
];

/// JSON fragments inserted at random.
const TOKENS: &[&str] = &[
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "null",
    "\\u0000",
    "\\ud800",
    "\n",
    " ",
    "é",
    "\u{10FFFF}",
];

/// Applies 1 to 4 random mutations to `input`, drawing splice material from `corpus`; the
/// result is at most `max_len` bytes.
pub fn mutate(input: &[u8], corpus: &[Vec<u8>], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(&mut out, corpus, rng);
    }
    out.truncate(max_len);
    out
}

fn mutate_once(buf: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    if buf.is_empty() {
        let n = 1 + rng.below(16);
        buf.extend((0..n).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = buf.len();
    // Early fields (headers, counts) matter most in the binary formats: half the positions
    // fall in the first 256 bytes.
    let pos = if rng.one_in(2) {
        rng.below(len.min(256))
    } else {
        rng.below(len)
    };
    match rng.below(14) {
        0 => buf[pos] ^= 1 << rng.below(8),
        1 => buf[pos] = rng.next_u64() as u8,
        2 => buf[pos] = *rng.pick(&[0u8, 1, 0x7F, 0x80, 0xFF]),
        3 => overwrite(buf, pos, &rng.pick(INTERESTING_U32).to_le_bytes()),
        4 => overwrite(buf, pos, &rng.pick(INTERESTING_U64).to_le_bytes()),
        5 => {
            // A field set to the input's own size, or just past it.
            let v = (len as u64).wrapping_add(rng.below(3) as u64);
            overwrite(buf, pos, &v.to_le_bytes());
        }
        6 => buf.truncate(pos),
        7 => {
            let n = 1 + rng.below(64);
            buf.extend((0..n).map(|_| rng.next_u64() as u8));
        }
        8 => {
            let end = (pos + 1 + rng.below(64)).min(len);
            buf.drain(pos..end);
        }
        9 => {
            // Duplicate a chunk in place.
            let end = (pos + 1 + rng.below(128)).min(len);
            let chunk = buf[pos..end].to_vec();
            let at = rng.below(buf.len() + 1);
            buf.splice(at..at, chunk);
        }
        10 => {
            // Splice: this input's head with another's tail, or a chunk of another inserted.
            if let Some(other) = corpus.get(rng.below(corpus.len())) {
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    if rng.one_in(2) {
                        buf.truncate(pos);
                        buf.extend_from_slice(&other[from..]);
                    } else {
                        let end = (from + 1 + rng.below(256)).min(other.len());
                        buf.splice(pos..pos, other[from..end].iter().copied());
                    }
                }
            }
        }
        11 => replace_number(buf, pos, rng),
        12 => {
            let t = rng.pick(TOKENS).as_bytes();
            buf.splice(pos..pos, t.iter().copied());
        }
        _ => {
            // Swap two bytes.
            let other = rng.below(len);
            buf.swap(pos, other);
        }
    }
}

/// Writes `bytes` at `pos`, clipped to the buffer.
fn overwrite(buf: &mut [u8], pos: usize, bytes: &[u8]) {
    let n = bytes.len().min(buf.len() - pos);
    buf[pos..pos + n].copy_from_slice(&bytes[..n]);
}

/// Replaces the run of ASCII digits at or after `pos` (if any) with a boundary value.
fn replace_number(buf: &mut Vec<u8>, pos: usize, rng: &mut Rng) {
    let Some(start) = buf[pos..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|i| pos + i)
    else {
        return;
    };
    let end = buf[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(buf.len(), |i| start + i);
    let with = rng.pick(INTERESTING_TEXT).as_bytes();
    buf.splice(start..end, with.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let seed = b"{\"a\": [1, 2, 300]}".to_vec();
        let corpus = vec![seed.clone(), vec![0u8; 40]];
        let run = |s| {
            let mut r = Rng::new(s);
            (0..200)
                .map(|_| mutate(&seed, &corpus, &mut r, 64))
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(3), run(3));
        assert_eq!(a, b);
        assert!(a.iter().all(|m| m.len() <= 64));
        assert!(a.iter().any(|m| m != &seed));
        assert_ne!(a, run(4));
    }

    #[test]
    fn number_replacement_hits_the_digits() {
        let mut r = Rng::new(1);
        let mut buf = b"x: 123, y".to_vec();
        replace_number(&mut buf, 0, &mut r);
        let s = String::from_utf8_lossy(&buf).to_string();
        assert!(
            s.starts_with("x: ") && s.ends_with(", y") && !s.contains("123"),
            "{s}"
        );
    }
}
