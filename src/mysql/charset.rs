//! MySQL character sets: decoding a column's bytes to text, and whether (and how
//! long) a text is in a column's character set.

/// MySQL's `latin1` is Windows-1252, with the five bytes cp1252 leaves undefined
/// (0x81, 0x8D, 0x8F, 0x90, 0x9D) mapped to the C1 controls of the same number.
const LATIN1_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn latin1_char(b: u8) -> char {
    match b {
        0x80..=0x9F => LATIN1_80_9F[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn latin1_representable(c: char) -> bool {
    let u = u32::from(c);
    u < 0x80 || (0xA0..=0xFF).contains(&u) || LATIN1_80_9F.contains(&c)
}

/// How a supported character set stores text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Charset {
    Utf8mb4,
    /// utf8mb3 (MySQL's `utf8` before 8.0.30): the Basic Multilingual Plane only.
    Utf8mb3,
    Ascii,
    Latin1,
    /// UCS-2, big-endian: the BMP only.
    Ucs2,
    Utf16,
    Utf16le,
    Utf32,
    Binary,
}

pub(super) fn charset_of(name: &str) -> Option<Charset> {
    Some(match name {
        "utf8mb4" => Charset::Utf8mb4,
        "utf8mb3" | "utf8" => Charset::Utf8mb3,
        "ascii" => Charset::Ascii,
        "latin1" => Charset::Latin1,
        "ucs2" => Charset::Ucs2,
        "utf16" => Charset::Utf16,
        "utf16le" => Charset::Utf16le,
        "utf32" => Charset::Utf32,
        "binary" => Charset::Binary,
        _ => return None,
    })
}

/// Decode column bytes in a character set; `Err` carries the reason.
pub(super) fn decode_charset(cs: Charset, bytes: &[u8]) -> Result<String, String> {
    let utf16 = |big_endian: bool| -> Result<String, String> {
        if bytes.len() % 2 != 0 {
            return Err("odd number of bytes for a UTF-16 string".into());
        }
        let units = bytes.chunks_exact(2).map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| "invalid UTF-16".to_string())
    };
    match cs {
        Charset::Utf8mb4 | Charset::Utf8mb3 => String::from_utf8(bytes.to_vec())
            .map_err(|_| "not valid UTF-8 (the column's character set)".to_string()),
        Charset::Ascii => {
            if bytes.is_ascii() {
                Ok(bytes.iter().map(|&b| char::from(b)).collect())
            } else {
                Err("byte outside ASCII in an ascii column".into())
            }
        }
        Charset::Latin1 => Ok(bytes.iter().map(|&b| latin1_char(b)).collect()),
        Charset::Ucs2 | Charset::Utf16 => utf16(true),
        Charset::Utf16le => utf16(false),
        Charset::Utf32 => {
            if bytes.len() % 4 != 0 {
                return Err("byte count not a multiple of 4 for a UTF-32 string".into());
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| "invalid UTF-32".to_string())
        }
        Charset::Binary => Err("binary data in a text column".into()),
    }
}

/// The first character a character set cannot store, with the reason.
pub(super) fn charset_refusal(cs: Charset, name: &str, s: &str) -> Option<String> {
    let bad = |c: char, why: &str| Some(format!("contains U+{:04X} ({c:?}), {why}", u32::from(c)));
    match cs {
        Charset::Utf8mb4 | Charset::Utf16 | Charset::Utf16le | Charset::Utf32 | Charset::Binary => {
            None
        }
        Charset::Utf8mb3 | Charset::Ucs2 => s.chars().find(|&c| u32::from(c) > 0xFFFF).and_then(|c| {
            bad(
                c,
                &format!("outside the Basic Multilingual Plane, which {name} cannot store (use utf8mb4)"),
            )
        }),
        Charset::Ascii => s
            .chars()
            .find(|c| !c.is_ascii())
            .and_then(|c| bad(c, "which an ascii column cannot store")),
        Charset::Latin1 => s
            .chars()
            .find(|&c| !latin1_representable(c))
            .and_then(|c| bad(c, "which latin1 cannot store")),
    }
}

/// Bytes a string takes in a character set.
pub(super) fn charset_len(cs: Charset, s: &str) -> u64 {
    match cs {
        Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Binary => s.len() as u64,
        Charset::Ascii | Charset::Latin1 => s.chars().count() as u64,
        Charset::Ucs2 => 2 * s.chars().count() as u64,
        Charset::Utf16 | Charset::Utf16le => s.chars().map(|c| c.len_utf16() as u64 * 2).sum(),
        Charset::Utf32 => 4 * s.chars().count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {

        #[test]
        fn latin1_decode_encode_agree(b in any::<u8>()) {
            let s = decode_charset(Charset::Latin1, &[b]).unwrap_or_default();
            prop_assert_eq!(s.chars().count(), 1);
            prop_assert!(charset_refusal(Charset::Latin1, "latin1", &s).is_none());
        }

    }
}
