//! What a screen shows: the characters of a caller string (a user part, a display name)
//! as the person called would read them, for the number reader in the parent module.
//!
//! A display name is text in any script, and a forged number hides in it with whatever
//! a phone draws like a digit, shows as a gap, or does not draw at all. Each character
//! is read as the ASCII one it looks like (`'0'..='9'`, `' '`, `'-'`, `'.'`, `'+'`...),
//! as [`INVISIBLE`] or as [`OTHER`]. The tables are Unicode's (14.0, plus the digits
//! of 15.0): decimal digits of every script and the digit forms (superscript, circled,
//! parenthesised...), the white space, the format characters and the combining marks
//! that ride on a digit.

/// A character that shows nothing: zero-width space and joiners, the word joiner, bidi
/// marks, the byte order mark, the soft hyphen, variation selectors and tags, combining
/// marks (a digit under an accent or a keycap is still that digit), control characters.
/// A number reads through them.
pub(super) const INVISIBLE: u8 = 0xFE;
/// Any other character outside ASCII (a whole UTF-8 sequence, or a byte that starts
/// none): never part of a number.
pub(super) const OTHER: u8 = 0xFF;

/// The next character of `b` as the callee would read it, and the bytes it took.
///
/// A URI escape (`%2B`, `%31`) is its character (RFC 3261 19.1.4: escaped and unescaped
/// unreserved characters are the same URI); a quoted-pair (`\5`) is its character, as
/// a display name's reader unescapes it. A lone byte that starts no UTF-8 sequence is
/// read as Latin-1 where that draws a gap, a dot or nothing (no-break space, middle
/// dot, soft hyphen). Chinese numerals are words (一 is also "a" and "whole") and stay
/// [`OTHER`].
pub(super) fn unit(b: &[u8]) -> (u8, usize) {
    let hex = |c: u8| (c as char).to_digit(16);
    match *b {
        // An escaped octet is that octet, and one outside ASCII alone is no character.
        [b'%', h, l, ..] => match (hex(h), hex(l)) {
            (Some(h), Some(l)) => match (h * 16 + l) as u8 {
                c if c.is_ascii() => (ascii(c), 3),
                _ => (OTHER, 3),
            },
            _ => (b'%', 1),
        },
        [b'\\', c, ..] if c.is_ascii() => (ascii(c), 2),
        [c, ..] if c.is_ascii() => (ascii(c), 1),
        [lead, ..] => match decode(b, lead) {
            Some((c, n)) => (glyph(c), n),
            None => (
                match lead {
                    0xa0 => b' ',
                    0xb7 => b'.',
                    0xad => INVISIBLE,
                    _ => OTHER,
                },
                1,
            ),
        },
        [] => (0, 1),
    }
}

/// An ASCII character as shown: TAB is a gap, other control characters draw nothing.
#[inline]
fn ascii(c: u8) -> u8 {
    match c {
        b'\t' => b' ',
        0..=0x1f | 0x7f => INVISIBLE,
        _ => c,
    }
}

/// The character a UTF-8 sequence starting with `lead` encodes, and its length.
fn decode(b: &[u8], lead: u8) -> Option<(char, usize)> {
    let n = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(b.get(..n)?).ok()?;
    s.chars().next().map(|c| (c, n))
}

fn glyph(c: char) -> u8 {
    let cp = c as u32;
    if let Some(d) = digit_value(cp) {
        return b'0' + d;
    }
    if c.is_whitespace() || matches!(cp, 0x115f | 0x1160 | 0x2800 | 0x3164 | 0xffa0) {
        // White space, and the fillers and blank that draw as a gap.
        return b' ';
    }
    if in_ranges(cp, &INVISIBLES) {
        return INVISIBLE;
    }
    match cp {
        // Hyphens and dashes, hyphen bullet, minus, small and full-width hyphen-minus.
        0x2010..=0x2015 | 0x2043 | 0x2212 | 0xfe58 | 0xfe63 => b'-',
        // Middle dots and bullets, one-dot leader, hyphenation point, dot operators.
        0x00b7 | 0x2022 | 0x2024 | 0x2027 | 0x2219 | 0x22c5 | 0x30fb | 0xff65 => b'.',
        // Ideographic commas, fraction and division slashes, wave dashes.
        0x3001 | 0xff64 => b',',
        0x2044 | 0x2215 => b'/',
        0x301c | 0x3030 => b'~',
        // The full-width forms of ASCII (CJK input methods): `＋８６`, `（０１０）`.
        0xff01..=0xff5e => (cp - 0xfee0) as u8,
        _ => OTHER,
    }
}

/// The digit a character draws, from Unicode's decimal digits and digit forms.
fn digit_value(cp: u32) -> Option<u8> {
    let i = DIGITS.partition_point(|&(start, _, _)| start <= cp);
    let &(start, end, first) = DIGITS.get(i.checked_sub(1)?)?;
    (cp <= end).then(|| first + (cp - start) as u8)
}

fn in_ranges(cp: u32, ranges: &[(u32, u32)]) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= cp);
    i > 0 && cp <= ranges[i - 1].1
}

/// (first, last, digit of the first): every run of characters outside ASCII that
/// Unicode gives a digit value (decimal digits of each script, superscripts,
/// subscripts, circled, parenthesised and full-stop digits, dingbats...), sorted.
const DIGITS: [(u32, u32, u8); 88] = [
    (0xB2, 0xB3, 2),
    (0xB9, 0xB9, 1),
    (0x660, 0x669, 0),
    (0x6F0, 0x6F9, 0),
    (0x7C0, 0x7C9, 0),
    (0x966, 0x96F, 0),
    (0x9E6, 0x9EF, 0),
    (0xA66, 0xA6F, 0),
    (0xAE6, 0xAEF, 0),
    (0xB66, 0xB6F, 0),
    (0xBE6, 0xBEF, 0),
    (0xC66, 0xC6F, 0),
    (0xCE6, 0xCEF, 0),
    (0xD66, 0xD6F, 0),
    (0xDE6, 0xDEF, 0),
    (0xE50, 0xE59, 0),
    (0xED0, 0xED9, 0),
    (0xF20, 0xF29, 0),
    (0x1040, 0x1049, 0),
    (0x1090, 0x1099, 0),
    (0x1369, 0x1371, 1),
    (0x17E0, 0x17E9, 0),
    (0x1810, 0x1819, 0),
    (0x1946, 0x194F, 0),
    (0x19D0, 0x19D9, 0),
    (0x19DA, 0x19DA, 1),
    (0x1A80, 0x1A89, 0),
    (0x1A90, 0x1A99, 0),
    (0x1B50, 0x1B59, 0),
    (0x1BB0, 0x1BB9, 0),
    (0x1C40, 0x1C49, 0),
    (0x1C50, 0x1C59, 0),
    (0x2070, 0x2070, 0),
    (0x2074, 0x2079, 4),
    (0x2080, 0x2089, 0),
    (0x2460, 0x2468, 1),
    (0x2474, 0x247C, 1),
    (0x2488, 0x2490, 1),
    (0x24EA, 0x24EA, 0),
    (0x24F5, 0x24FD, 1),
    (0x24FF, 0x24FF, 0),
    (0x2776, 0x277E, 1),
    (0x2780, 0x2788, 1),
    (0x278A, 0x2792, 1),
    (0xA620, 0xA629, 0),
    (0xA8D0, 0xA8D9, 0),
    (0xA900, 0xA909, 0),
    (0xA9D0, 0xA9D9, 0),
    (0xA9F0, 0xA9F9, 0),
    (0xAA50, 0xAA59, 0),
    (0xABF0, 0xABF9, 0),
    (0xFF10, 0xFF19, 0),
    (0x104A0, 0x104A9, 0),
    (0x10A40, 0x10A43, 1),
    (0x10D30, 0x10D39, 0),
    (0x10E60, 0x10E68, 1),
    (0x11052, 0x1105A, 1),
    (0x11066, 0x1106F, 0),
    (0x110F0, 0x110F9, 0),
    (0x11136, 0x1113F, 0),
    (0x111D0, 0x111D9, 0),
    (0x112F0, 0x112F9, 0),
    (0x11450, 0x11459, 0),
    (0x114D0, 0x114D9, 0),
    (0x11650, 0x11659, 0),
    (0x116C0, 0x116C9, 0),
    (0x11730, 0x11739, 0),
    (0x118E0, 0x118E9, 0),
    (0x11950, 0x11959, 0),
    (0x11C50, 0x11C59, 0),
    (0x11D50, 0x11D59, 0),
    (0x11DA0, 0x11DA9, 0),
    (0x11F50, 0x11F59, 0),
    (0x16A60, 0x16A69, 0),
    (0x16AC0, 0x16AC9, 0),
    (0x16B50, 0x16B59, 0),
    (0x1D7CE, 0x1D7D7, 0),
    (0x1D7D8, 0x1D7E1, 0),
    (0x1D7E2, 0x1D7EB, 0),
    (0x1D7EC, 0x1D7F5, 0),
    (0x1D7F6, 0x1D7FF, 0),
    (0x1E140, 0x1E149, 0),
    (0x1E2F0, 0x1E2F9, 0),
    (0x1E4F0, 0x1E4F9, 0),
    (0x1E950, 0x1E959, 0),
    (0x1F100, 0x1F100, 0),
    (0x1F101, 0x1F10A, 0),
    (0x1FBF0, 0x1FBF9, 0),
];

/// Characters that draw nothing by themselves: the invisible format characters, the
/// combining marks that ride on another character (diacritics, keycap and other
/// enclosing marks, half marks), variation selectors and tags. Sorted.
const INVISIBLES: [(u32, u32); 21] = [
    (0xAD, 0xAD),
    (0x300, 0x36F),
    (0x61C, 0x61C),
    (0x180B, 0x180F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0x20D0, 0x20FF),
    (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE007F),
    (0xE0100, 0xE01EF),
    (0xE01F0, 0xE0FFF),
    (0x10FFFE, 0x10FFFF),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for w in DIGITS.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
        for w in INVISIBLES.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
    }

    #[test]
    fn what_a_screen_shows() {
        let read = |s: &str| {
            let b = s.as_bytes();
            let (mut i, mut out) = (0, vec![]);
            while i < b.len() {
                let (c, n) = unit(&b[i..]);
                out.push(c);
                i += n;
            }
            out
        };
        assert_eq!(read("১২৩"), b"123");
        assert_eq!(read("٣³₃③⑶⒊❸➂𝟑၃៣"), b"33333333333");
        assert_eq!(read("9\u{fe0f}\u{20e3}"), [b'9', INVISIBLE, INVISIBLE]);
        assert_eq!(read("5\u{301}\u{34f}"), [b'5', INVISIBLE, INVISIBLE]);
        assert_eq!(read("\u{1680}\u{2028}\u{3164}"), b"   ");
        assert_eq!(read("\u{2022}\u{ff0f}\u{301c}"), b"./~");
        assert_eq!(read("\\5\u{1}\u{7f}"), [b'5', INVISIBLE, INVISIBLE]);
        assert_eq!(read("一十"), [OTHER, OTHER]);
        // A lone Latin-1 byte; a sequence cut short.
        assert_eq!(unit(b"\xad1"), (INVISIBLE, 1));
        assert_eq!(unit(b"\xe2\x80"), (OTHER, 1));
        assert_eq!(unit(b"%FE"), (OTHER, 3));
    }
}
