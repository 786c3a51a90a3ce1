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
/// Punctuation and symbols outside ASCII that no number is written with but that a
/// number can be written across (brackets, quotes, CJK full stops, stars, arrows:
/// `"【95】588"`): a separator where short codes written with any separator are read
/// (the gateways); elsewhere a mark that joins digits into long numbers only.
pub(super) const PUNCT: u8 = 0xFD;
/// A currency sign outside ASCII (`¥`, `￥`, `€`, `£`): digits after one are a price.
pub(super) const CURRENCY: u8 = 0xFC;
/// A letter drawn as a line, a bar, a dot or a plus (`一`, `丨`, `十`, `ㅡ`, `ㄧ`, the
/// Arabic tatweel...): a word, but read as the mark it is drawn like between two digits
/// (`"138一1234一5678"`, `"95丨588"`: QA 154, QA 156).
pub(super) const LINE_LETTER: u8 = 0xFB;
/// One character that draws a number of two digits (`⑪`, `⑽`, `⒒`, `㉑`): this
/// plus the number, 10 to 50.
pub(super) const TWO_DIGITS: u8 = 0x80;

/// The next character of `b` as the callee would read it, and the bytes it took.
///
/// A URI escape (`%2B`, `%31`) is its character (RFC 3261 19.1.4: escaped and unescaped
/// unreserved characters are the same URI); a quoted-pair (`\5`) is its character, as
/// a display name's reader unescapes it. A lone byte that starts no UTF-8 sequence is
/// read as Latin-1 where that draws a gap, a dot or nothing (no-break space, middle
/// dot, soft hyphen). Chinese numerals are words (一 is also "a" and "whole"): [`OTHER`],
/// or [`LINE_LETTER`] for those drawn as a line (the reader takes a 一 between two digits
/// for the dash it is drawn like).
pub(super) fn unit(b: &[u8]) -> (u8, usize) {
    match *b {
        // An escaped octet is that octet, and one outside ASCII alone is no character.
        [b'%', ..] => match crate::sip::lex::escaped_octet(b) {
            Some(c) if c.is_ascii() => (ascii(c), 3),
            // A character escaped octet by octet (`%E3%80%87`) is that character (QA 42).
            Some(_) => match escaped_char(b) {
                Some((c, n)) => (glyph(c), n),
                None => (OTHER, 3),
            },
            None => (b'%', 1),
        },
        [b'\\', c, ..] if c.is_ascii() => (ascii(c), 2),
        // A quoted-pair of a character outside ASCII (`\５`) is that character.
        [b'\\', c, ..] if c >= 0x80 => {
            let (g, n) = unit(&b[1..]);
            (g, n + 1)
        }
        [c, ..] if c.is_ascii() => (ascii(c), 1),
        [lead, ..] => match decode(b) {
            Some((c, n)) => (glyph(c), n),
            None => legacy(b, lead),
        },
        [] => (0, 1),
    }
}

/// Bytes that are no UTF-8, as the legacy encodings Chinese equipment still sends draw
/// them: GB 2312 / GBK's full-width digits, signs and ideographic space (two bytes), or
/// Latin-1's no-break space, soft hyphen, middle dot and superscript digits (one).
fn legacy(b: &[u8], lead: u8) -> (u8, usize) {
    match (lead, b.get(1).copied()) {
        (0xa3, Some(c @ 0xb0..=0xb9)) => (c - 0xb0 + b'0', 2),
        (0xa3, Some(0xab)) => (b'+', 2),
        (0xa3, Some(0xad)) => (b'-', 2),
        (0xa3, Some(0xae)) => (b'.', 2),
        (0xa3, Some(0xa8)) => (b'(', 2),
        (0xa3, Some(0xa9)) => (b')', 2),
        (0xa1, Some(0xa1)) => (b' ', 2),
        (0xa0, _) => (b' ', 1),
        (0xad, _) => (INVISIBLE, 1),
        (0xb7, _) => (b'.', 1),
        (0xb9, _) => (b'1', 1),
        (0xb2, _) => (b'2', 1),
        (0xb3, _) => (b'3', 1),
        _ => (OTHER, 1),
    }
}

/// The character `b` starts with as URI escapes (`%4F`, or `%E3%80%87` octet by octet),
/// and the bytes they take; `None` when they are no escaped UTF-8 character.
fn escaped_char(b: &[u8]) -> Option<(char, usize)> {
    let first = crate::sip::lex::escaped_octet(b)?;
    let len = match first {
        0..=0x7f => return Some((first as char, 3)),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let mut octets = [0u8; 4];
    for (k, o) in octets.iter_mut().enumerate().take(len) {
        *o = crate::sip::lex::escaped_octet(b.get(3 * k..)?)?;
    }
    let c = std::str::from_utf8(&octets[..len]).ok()?.chars().next()?;
    Some((c, 3 * len))
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

/// Whether `c` is drawn as a gap or not at all (white space, the fillers, characters
/// that draw nothing).
pub(super) fn blank(c: char) -> bool {
    matches!(class(c), b' ' | INVISIBLE)
}

/// Whether `c` draws nothing (a zero-width space, a soft hyphen, a control character).
pub(super) fn draws_nothing(c: char) -> bool {
    class(c) == INVISIBLE
}

fn class(c: char) -> u8 {
    if c.is_ascii() {
        ascii(c as u8)
    } else {
        glyph(c)
    }
}

/// The last character of `t`, when it ends in whole UTF-8 (the text before a word, read
/// backwards).
pub(super) fn last_char(t: &[u8]) -> Option<char> {
    (1..=4)
        .filter_map(|n| t.len().checked_sub(n))
        .find_map(|at| std::str::from_utf8(&t[at..]).ok())
        .and_then(|t| t.chars().next())
}

/// The character at the start of `b`, and its length; `None` for a byte that starts no
/// UTF-8 sequence (or starts one cut short).
pub(super) fn decode(b: &[u8]) -> Option<(char, usize)> {
    let n = match *b.first()? {
        0..=0x7f => 1,
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
    if let Some(v) = two_digit_value(cp) {
        return TWO_DIGITS + v;
    }
    if c.is_whitespace() || matches!(cp, 0x2800 | 0x115f | 0x1160 | 0x3164 | 0xffa0) {
        // White space, the braille blank and the Hangul fillers, which fonts draw as a
        // gap (Unicode calls the fillers ignorable; a screen shows `"0\u{3164}100"` as
        // `0 100`: QA 208).
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
        // Marks drawn like a dash, a full stop or a comma: the katakana long vowel
        // mark, the ideographic full stop, Arabic decimal and thousands separators.
        0x30fc | 0xff70 => b'-',
        0x3002 | 0xff61 | 0x066b => b'.',
        0x066c => b',',
        0x00a2..=0x00a5 | 0x20a0..=0x20c0 | 0xffe0 | 0xffe1 | 0xffe5 | 0xffe6 => CURRENCY,
        // Latin-1, general and supplemental punctuation, CJK symbols and brackets,
        // vertical and small forms, half-width brackets.
        0x00a1..=0x00bf
        | 0x2016..=0x205e
        | 0x2329
        | 0x232a
        | 0x27e6..=0x27ef
        | 0x2983..=0x2998
        | 0x2e00..=0x2e7f
        | 0x3003..=0x303f
        | 0xfe10..=0xfe6f
        | 0xff5f..=0xff63 => PUNCT,
        // Letters drawn as a line, a bar, a dot or a plus ([`LINE_LETTER`]): 一 (one), 丨,
        // 丶, 十 (ten), 乛, 亅, Hangul ㅡ, ᅳ and ㆍ, bopomofo ㄧ, the Arabic tatweel, N'Ko's
        // lajanyalan, the modifier macrons.
        0x4e00 | 0x4e28 | 0x4e36 | 0x5341 | 0x4e5b | 0x4e85 | 0x3161 | 0x1173 | 0x318d | 0x3127
        | 0x0640 | 0x07fa | 0x02c9 | 0x02cd => LINE_LETTER,
        // Letters and numerals of any script are words; every other symbol (arrows,
        // shapes, stars, emoji, box drawing) draws between digits like punctuation.
        _ if c.is_alphanumeric() => OTHER,
        _ => PUNCT,
    }
}

/// The number of a character that draws two digits: circled, parenthesised, full-stop,
/// negative circled and double circled numbers 10 to 20, and circled 21 to 50.
fn two_digit_value(cp: u32) -> Option<u8> {
    let v = match cp {
        0x2469..=0x2473 => cp - 0x2469 + 10,
        0x247d..=0x2487 => cp - 0x247d + 10,
        0x2491..=0x249b => cp - 0x2491 + 10,
        0x24eb..=0x24f4 => cp - 0x24eb + 11,
        0x24fe | 0x277f | 0x2789 | 0x2793 => 10,
        0x3251..=0x325f => cp - 0x3251 + 21,
        0x32b1..=0x32bf => cp - 0x32b1 + 36,
        _ => return None,
    };
    Some(v as u8)
}

/// The letters of `text` as a reader takes its words, for matching words (not
/// numbers): what draws nothing, white space and marks are left out (`"公<ZWSP>安"`,
/// `"公 安"` and `"P.o.l.i.c.e"` read as the word), full-width Latin is ASCII, Latin is
/// lower case, and the Cyrillic and Greek letters drawn like Latin ones are those
/// (`"Pоlice"` with a Cyrillic о). Digits are kept: they end words. At most `out`'s
/// length is written.
pub(super) fn letters<'a>(text: &[u8], out: &'a mut [u8; 256]) -> &'a [u8] {
    let mut n = 0;
    let mut push = |bytes: &[u8]| {
        if n + bytes.len() <= out.len() {
            out[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        }
    };
    let mut i = 0;
    while i < text.len() {
        let (c, len) = match decode(&text[i..]) {
            Some(c) => c,
            None => {
                i += 1;
                continue;
            }
        };
        i += len;
        let cp = c as u32;
        let c = match cp {
            0xff01..=0xff5e => char::from((cp - 0xfee0) as u8),
            _ => c,
        };
        if c.is_ascii_alphanumeric() {
            push(&[c.to_ascii_lowercase() as u8]);
        } else if let Some(l) = latin_look_alike(c) {
            push(&[l]);
        } else if c.is_alphanumeric() && !in_ranges(cp, &INVISIBLES) {
            let mut b = [0u8; 4];
            push(c.encode_utf8(&mut b).as_bytes());
        }
    }
    &out[..n]
}

/// What a letter or sign drawn like a digit would be read as, beside digits: `O`, `o`,
/// `〇`, `Ø`, `○` and their Cyrillic, Greek, Armenian, Coptic, Lisu, small-capital,
/// circled, full-width and mathematical twins as 0; `l`, `I` and theirs (the
/// palochka, Roman numeral one, `ℓ`, the dental click) as 1: the confusables of
/// Unicode's UTS #39 for those digits.
fn digit_look_alike(c: char) -> Option<u8> {
    let cp = c as u32;
    // Mathematical alphanumerics: thirteen styles of A-Z a-z, 52 code points each.
    if (0x1d400..0x1d6a4).contains(&cp) {
        return match (cp - 0x1d400) % 52 {
            14 | 40 => Some(0),
            8 | 37 => Some(1),
            _ => None,
        };
    }
    match c {
        'O' | 'o' | '〇' | 'О' | 'о' | 'Ο' | 'ο' | 'Ｏ' | 'ｏ' | 'Ø' | 'ø' | '○' | '◯' | 'Ⓞ'
        | 'ⓞ' | 'ᴏ' | 'օ' | 'ⲟ' | 'Ⲟ' | 'ꓳ' => Some(0),
        'l' | 'I' | 'І' | 'Ӏ' | 'ӏ' | 'Ι' | 'ｌ' | 'Ｉ' | 'Ⅰ' | 'ⅼ' | 'ℓ' | 'ǀ' => {
            Some(1)
        }
        _ => None,
    }
}

/// A letter of an alphabet (Latin, Cyrillic, Greek, full-width Latin...): not an
/// ideograph, kana or hangul, which are words of their own beside digits.
fn alphabetic_letter(c: char) -> bool {
    let cp = c as u32;
    c.is_alphabetic()
        && !matches!(cp, 0x2e80..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff | 0x20000..)
}

/// `text` with the letters drawn like digits read as those digits, where they stand in
/// a word made of digits and such letters only (`"11O"`, `"1l0"`, `"1O086"`, `"11〇"`,
/// QA 36 R3): a callee reads `110` there. Characters that draw nothing are passed over
/// inside the word (`"11<ZWSP>O"`), and a URI escape or a quoted-pair is the character
/// it stands for (`"11%4F"`: QA 41). A word with any other letter (`"H2O"`, `"Win10"`,
/// `"110kV"`) keeps its letters, and so does one without a digit (`"IO"`). A capital
/// `I` before digits is read too (`"I10"`): a code written so (`"Gate I19"`) is refused
/// with it, since a letter-prefix exception let `"公安 I1O"` and `"I0086"` through
/// (QA 42). Each letter becomes a digit of its own byte length (ASCII, Arabic-Indic,
/// full-width, mathematical; an escaped one an escaped digit and escaped characters
/// that draw nothing), so that every offset into the text still holds. `None` (no copy)
/// when there is no such word.
pub(super) fn with_look_alike_digits(text: &[u8]) -> Option<Vec<u8>> {
    #[derive(Clone, Copy, PartialEq)]
    enum K {
        Digit,
        Look(u8),
        Letter,
        /// Draws nothing: part of the word it stands in.
        Unseen,
        Gap,
    }
    // The kind of the character at the start of `b` (an escape read as what it stands
    // for), and its length in `b`.
    let kind = |b: &[u8]| -> (K, usize) {
        let (c, n) = match *b {
            [b'%', ..] => match escaped_char(b) {
                Some(x) => x,
                None => return (K::Gap, 1),
            },
            [b'\\', c, ..] if c.is_ascii() => (c as char, 2),
            [c, ..] if c.is_ascii() => (c as char, 1),
            _ => match decode(b) {
                Some(x) => x,
                None => return (K::Gap, 1),
            },
        };
        // As the number reader draws it ([`unit`]): a digit, or nothing at all.
        let drawn = if c.is_ascii() {
            ascii(c as u8)
        } else {
            glyph(c)
        };
        let k = if drawn.is_ascii_digit() {
            K::Digit
        } else if let Some(d) = digit_look_alike(c) {
            K::Look(d)
        } else if drawn == INVISIBLE {
            K::Unseen
        } else if alphabetic_letter(c) {
            K::Letter
        } else {
            K::Gap
        };
        (k, n)
    };
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < text.len() {
        let (k, n) = kind(&text[i..]);
        if matches!(k, K::Gap | K::Unseen) {
            i += n;
            continue;
        }
        let start = i;
        let (mut digits, mut looks, mut letters) = (0, 0, 0);
        while i < text.len() {
            let (k, n) = kind(&text[i..]);
            match k {
                K::Gap => break,
                K::Unseen => {}
                K::Digit => digits += 1,
                K::Look(_) => looks += 1,
                K::Letter => letters += 1,
            }
            i += n;
        }
        if digits == 0 || looks == 0 || letters > 0 {
            continue;
        }
        let o = out.get_or_insert_with(|| text.to_vec());
        let mut j = start;
        while j < i {
            let (k, n) = kind(&text[j..]);
            if let K::Look(d) = k {
                if text[j] == b'%' {
                    // An escaped letter: an escaped digit, and escaped controls (which
                    // draw nothing) for the rest of its octets.
                    let mut esc = format!("%3{d}");
                    while esc.len() < n {
                        esc.push_str("%01");
                    }
                    if esc.len() == n {
                        o[j..j + n].copy_from_slice(esc.as_bytes());
                    }
                    j += n;
                    continue;
                }
                let digit = match n {
                    1 => Some(char::from(b'0' + d)),
                    2 => char::from_u32(0x660 + d as u32),
                    3 => char::from_u32(0xff10 + d as u32),
                    _ => char::from_u32(0x1d7ce + d as u32),
                };
                let mut buf = [0u8; 4];
                if let Some(enc) = digit.map(|c| c.encode_utf8(&mut buf).as_bytes())
                    && enc.len() == n
                {
                    o[j..j + n].copy_from_slice(enc);
                }
            }
            j += n;
        }
    }
    out
}

/// The Latin letter a Cyrillic or Greek one is drawn like, in lower case.
fn latin_look_alike(c: char) -> Option<u8> {
    Some(match c {
        'а' | 'А' | 'α' | 'Α' => b'a',
        'В' | 'Β' => b'b',
        'с' | 'С' => b'c',
        'ԁ' => b'd',
        'е' | 'Е' | 'ε' | 'Ε' => b'e',
        'Н' | 'н' | 'Η' => b'h',
        'і' | 'І' | 'ι' | 'Ι' | 'ӏ' => b'i',
        'ј' | 'Ј' => b'j',
        'к' | 'К' | 'κ' | 'Κ' => b'k',
        'М' | 'м' | 'Μ' => b'm',
        'Ν' => b'n',
        'о' | 'О' | 'ο' | 'Ο' | 'σ' => b'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => b'p',
        'ѕ' | 'Ѕ' => b's',
        'т' | 'Т' | 'τ' | 'Τ' => b't',
        'υ' => b'u',
        'ν' => b'v',
        'х' | 'Х' | 'χ' | 'Χ' => b'x',
        'у' | 'У' | 'Υ' => b'y',
        'Ζ' => b'z',
        _ => return None,
    })
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

/// Characters that draw nothing by themselves: the nonspacing and enclosing marks that
/// ride on another character (a digit under an accent, a tone mark or a keycap is still
/// that digit), the format characters (zero-width, bidi, tags...) but for the number
/// signs that draw, the C1 controls but NEL, and the rest of Unicode's default-ignorable
/// code points (Hangul fillers, variation selectors, the unassigned ones). Generated
/// from Unicode 14.0's categories Mn, Me and Cf and its Default_Ignorable_Code_Point
/// list. Sorted.
const INVISIBLES: [(u32, u32); 346] = [
    (0x80, 0x84),
    (0x86, 0x9F),
    (0xAD, 0xAD),
    (0x300, 0x36F),
    (0x483, 0x489),
    (0x591, 0x5BD),
    (0x5BF, 0x5BF),
    (0x5C1, 0x5C2),
    (0x5C4, 0x5C5),
    (0x5C7, 0x5C7),
    (0x610, 0x61A),
    (0x61C, 0x61C),
    (0x64B, 0x65F),
    (0x670, 0x670),
    (0x6D6, 0x6DC),
    (0x6DF, 0x6E4),
    (0x6E7, 0x6E8),
    (0x6EA, 0x6ED),
    (0x711, 0x711),
    (0x730, 0x74A),
    (0x7A6, 0x7B0),
    (0x7EB, 0x7F3),
    (0x7FD, 0x7FD),
    (0x816, 0x819),
    (0x81B, 0x823),
    (0x825, 0x827),
    (0x829, 0x82D),
    (0x859, 0x85B),
    (0x898, 0x89F),
    (0x8CA, 0x8E1),
    (0x8E3, 0x902),
    (0x93A, 0x93A),
    (0x93C, 0x93C),
    (0x941, 0x948),
    (0x94D, 0x94D),
    (0x951, 0x957),
    (0x962, 0x963),
    (0x981, 0x981),
    (0x9BC, 0x9BC),
    (0x9C1, 0x9C4),
    (0x9CD, 0x9CD),
    (0x9E2, 0x9E3),
    (0x9FE, 0x9FE),
    (0xA01, 0xA02),
    (0xA3C, 0xA3C),
    (0xA41, 0xA42),
    (0xA47, 0xA48),
    (0xA4B, 0xA4D),
    (0xA51, 0xA51),
    (0xA70, 0xA71),
    (0xA75, 0xA75),
    (0xA81, 0xA82),
    (0xABC, 0xABC),
    (0xAC1, 0xAC5),
    (0xAC7, 0xAC8),
    (0xACD, 0xACD),
    (0xAE2, 0xAE3),
    (0xAFA, 0xAFF),
    (0xB01, 0xB01),
    (0xB3C, 0xB3C),
    (0xB3F, 0xB3F),
    (0xB41, 0xB44),
    (0xB4D, 0xB4D),
    (0xB55, 0xB56),
    (0xB62, 0xB63),
    (0xB82, 0xB82),
    (0xBC0, 0xBC0),
    (0xBCD, 0xBCD),
    (0xC00, 0xC00),
    (0xC04, 0xC04),
    (0xC3C, 0xC3C),
    (0xC3E, 0xC40),
    (0xC46, 0xC48),
    (0xC4A, 0xC4D),
    (0xC55, 0xC56),
    (0xC62, 0xC63),
    (0xC81, 0xC81),
    (0xCBC, 0xCBC),
    (0xCBF, 0xCBF),
    (0xCC6, 0xCC6),
    (0xCCC, 0xCCD),
    (0xCE2, 0xCE3),
    (0xD00, 0xD01),
    (0xD3B, 0xD3C),
    (0xD41, 0xD44),
    (0xD4D, 0xD4D),
    (0xD62, 0xD63),
    (0xD81, 0xD81),
    (0xDCA, 0xDCA),
    (0xDD2, 0xDD4),
    (0xDD6, 0xDD6),
    (0xE31, 0xE31),
    (0xE34, 0xE3A),
    (0xE47, 0xE4E),
    (0xEB1, 0xEB1),
    (0xEB4, 0xEBC),
    (0xEC8, 0xECD),
    (0xF18, 0xF19),
    (0xF35, 0xF35),
    (0xF37, 0xF37),
    (0xF39, 0xF39),
    (0xF71, 0xF7E),
    (0xF80, 0xF84),
    (0xF86, 0xF87),
    (0xF8D, 0xF97),
    (0xF99, 0xFBC),
    (0xFC6, 0xFC6),
    (0x102D, 0x1030),
    (0x1032, 0x1037),
    (0x1039, 0x103A),
    (0x103D, 0x103E),
    (0x1058, 0x1059),
    (0x105E, 0x1060),
    (0x1071, 0x1074),
    (0x1082, 0x1082),
    (0x1085, 0x1086),
    (0x108D, 0x108D),
    (0x109D, 0x109D),
    (0x115F, 0x1160),
    (0x135D, 0x135F),
    (0x1712, 0x1714),
    (0x1732, 0x1733),
    (0x1752, 0x1753),
    (0x1772, 0x1773),
    (0x17B4, 0x17B5),
    (0x17B7, 0x17BD),
    (0x17C6, 0x17C6),
    (0x17C9, 0x17D3),
    (0x17DD, 0x17DD),
    (0x180B, 0x180F),
    (0x1885, 0x1886),
    (0x18A9, 0x18A9),
    (0x1920, 0x1922),
    (0x1927, 0x1928),
    (0x1932, 0x1932),
    (0x1939, 0x193B),
    (0x1A17, 0x1A18),
    (0x1A1B, 0x1A1B),
    (0x1A56, 0x1A56),
    (0x1A58, 0x1A5E),
    (0x1A60, 0x1A60),
    (0x1A62, 0x1A62),
    (0x1A65, 0x1A6C),
    (0x1A73, 0x1A7C),
    (0x1A7F, 0x1A7F),
    (0x1AB0, 0x1ACE),
    (0x1B00, 0x1B03),
    (0x1B34, 0x1B34),
    (0x1B36, 0x1B3A),
    (0x1B3C, 0x1B3C),
    (0x1B42, 0x1B42),
    (0x1B6B, 0x1B73),
    (0x1B80, 0x1B81),
    (0x1BA2, 0x1BA5),
    (0x1BA8, 0x1BA9),
    (0x1BAB, 0x1BAD),
    (0x1BE6, 0x1BE6),
    (0x1BE8, 0x1BE9),
    (0x1BED, 0x1BED),
    (0x1BEF, 0x1BF1),
    (0x1C2C, 0x1C33),
    (0x1C36, 0x1C37),
    (0x1CD0, 0x1CD2),
    (0x1CD4, 0x1CE0),
    (0x1CE2, 0x1CE8),
    (0x1CED, 0x1CED),
    (0x1CF4, 0x1CF4),
    (0x1CF8, 0x1CF9),
    (0x1DC0, 0x1DFF),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x20D0, 0x20F0),
    (0x2CEF, 0x2CF1),
    (0x2D7F, 0x2D7F),
    (0x2DE0, 0x2DFF),
    (0x302A, 0x302D),
    (0x3099, 0x309A),
    (0x3164, 0x3164),
    (0xA66F, 0xA672),
    (0xA674, 0xA67D),
    (0xA69E, 0xA69F),
    (0xA6F0, 0xA6F1),
    (0xA802, 0xA802),
    (0xA806, 0xA806),
    (0xA80B, 0xA80B),
    (0xA825, 0xA826),
    (0xA82C, 0xA82C),
    (0xA8C4, 0xA8C5),
    (0xA8E0, 0xA8F1),
    (0xA8FF, 0xA8FF),
    (0xA926, 0xA92D),
    (0xA947, 0xA951),
    (0xA980, 0xA982),
    (0xA9B3, 0xA9B3),
    (0xA9B6, 0xA9B9),
    (0xA9BC, 0xA9BD),
    (0xA9E5, 0xA9E5),
    (0xAA29, 0xAA2E),
    (0xAA31, 0xAA32),
    (0xAA35, 0xAA36),
    (0xAA43, 0xAA43),
    (0xAA4C, 0xAA4C),
    (0xAA7C, 0xAA7C),
    (0xAAB0, 0xAAB0),
    (0xAAB2, 0xAAB4),
    (0xAAB7, 0xAAB8),
    (0xAABE, 0xAABF),
    (0xAAC1, 0xAAC1),
    (0xAAEC, 0xAAED),
    (0xAAF6, 0xAAF6),
    (0xABE5, 0xABE5),
    (0xABE8, 0xABE8),
    (0xABED, 0xABED),
    (0xFB1E, 0xFB1E),
    (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x101FD, 0x101FD),
    (0x102E0, 0x102E0),
    (0x10376, 0x1037A),
    (0x10A01, 0x10A03),
    (0x10A05, 0x10A06),
    (0x10A0C, 0x10A0F),
    (0x10A38, 0x10A3A),
    (0x10A3F, 0x10A3F),
    (0x10AE5, 0x10AE6),
    (0x10D24, 0x10D27),
    (0x10EAB, 0x10EAC),
    (0x10F46, 0x10F50),
    (0x10F82, 0x10F85),
    (0x11001, 0x11001),
    (0x11038, 0x11046),
    (0x11070, 0x11070),
    (0x11073, 0x11074),
    (0x1107F, 0x11081),
    (0x110B3, 0x110B6),
    (0x110B9, 0x110BA),
    (0x110C2, 0x110C2),
    (0x11100, 0x11102),
    (0x11127, 0x1112B),
    (0x1112D, 0x11134),
    (0x11173, 0x11173),
    (0x11180, 0x11181),
    (0x111B6, 0x111BE),
    (0x111C9, 0x111CC),
    (0x111CF, 0x111CF),
    (0x1122F, 0x11231),
    (0x11234, 0x11234),
    (0x11236, 0x11237),
    (0x1123E, 0x1123E),
    (0x112DF, 0x112DF),
    (0x112E3, 0x112EA),
    (0x11300, 0x11301),
    (0x1133B, 0x1133C),
    (0x11340, 0x11340),
    (0x11366, 0x1136C),
    (0x11370, 0x11374),
    (0x11438, 0x1143F),
    (0x11442, 0x11444),
    (0x11446, 0x11446),
    (0x1145E, 0x1145E),
    (0x114B3, 0x114B8),
    (0x114BA, 0x114BA),
    (0x114BF, 0x114C0),
    (0x114C2, 0x114C3),
    (0x115B2, 0x115B5),
    (0x115BC, 0x115BD),
    (0x115BF, 0x115C0),
    (0x115DC, 0x115DD),
    (0x11633, 0x1163A),
    (0x1163D, 0x1163D),
    (0x1163F, 0x11640),
    (0x116AB, 0x116AB),
    (0x116AD, 0x116AD),
    (0x116B0, 0x116B5),
    (0x116B7, 0x116B7),
    (0x1171D, 0x1171F),
    (0x11722, 0x11725),
    (0x11727, 0x1172B),
    (0x1182F, 0x11837),
    (0x11839, 0x1183A),
    (0x1193B, 0x1193C),
    (0x1193E, 0x1193E),
    (0x11943, 0x11943),
    (0x119D4, 0x119D7),
    (0x119DA, 0x119DB),
    (0x119E0, 0x119E0),
    (0x11A01, 0x11A0A),
    (0x11A33, 0x11A38),
    (0x11A3B, 0x11A3E),
    (0x11A47, 0x11A47),
    (0x11A51, 0x11A56),
    (0x11A59, 0x11A5B),
    (0x11A8A, 0x11A96),
    (0x11A98, 0x11A99),
    (0x11C30, 0x11C36),
    (0x11C38, 0x11C3D),
    (0x11C3F, 0x11C3F),
    (0x11C92, 0x11CA7),
    (0x11CAA, 0x11CB0),
    (0x11CB2, 0x11CB3),
    (0x11CB5, 0x11CB6),
    (0x11D31, 0x11D36),
    (0x11D3A, 0x11D3A),
    (0x11D3C, 0x11D3D),
    (0x11D3F, 0x11D45),
    (0x11D47, 0x11D47),
    (0x11D90, 0x11D91),
    (0x11D95, 0x11D95),
    (0x11D97, 0x11D97),
    (0x11EF3, 0x11EF4),
    (0x13430, 0x13438),
    (0x16AF0, 0x16AF4),
    (0x16B30, 0x16B36),
    (0x16F4F, 0x16F4F),
    (0x16F8F, 0x16F92),
    (0x16FE4, 0x16FE4),
    (0x1BC9D, 0x1BC9E),
    (0x1BCA0, 0x1BCA3),
    (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46),
    (0x1D167, 0x1D169),
    (0x1D173, 0x1D182),
    (0x1D185, 0x1D18B),
    (0x1D1AA, 0x1D1AD),
    (0x1D242, 0x1D244),
    (0x1DA00, 0x1DA36),
    (0x1DA3B, 0x1DA6C),
    (0x1DA75, 0x1DA75),
    (0x1DA84, 0x1DA84),
    (0x1DA9B, 0x1DA9F),
    (0x1DAA1, 0x1DAAF),
    (0x1E000, 0x1E006),
    (0x1E008, 0x1E018),
    (0x1E01B, 0x1E021),
    (0x1E023, 0x1E024),
    (0x1E026, 0x1E02A),
    (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE),
    (0x1E2EC, 0x1E2EF),
    (0x1E8D0, 0x1E8D6),
    (0x1E944, 0x1E94A),
    (0xE0000, 0xE0FFF),
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
        assert_eq!(read("\u{1680}\u{2028}"), b"  ");
        assert_eq!(
            read("9\u{302a}\u{17b4}\u{80}\u{2065}5"),
            [b'9', INVISIBLE, INVISIBLE, INVISIBLE, INVISIBLE, b'5']
        );
        // The Hangul fillers are drawn as a gap (QA 208), whatever Unicode calls them.
        assert_eq!(read("9\u{3164}\u{ffa0}\u{115f}\u{1160}5"), b"9    5");
        // A sign that is no letter (the Arabic number sign) draws like punctuation.
        assert_eq!(read("\u{600}"), [PUNCT]);
        assert_eq!(read("★\u{1f600}ab"), [PUNCT, PUNCT, b'a', b'b']);
        assert_eq!(read("中"), [OTHER]);
        assert_eq!(read("\u{2022}\u{ff0f}\u{301c}"), b"./~");
        assert_eq!(read("\\5\u{1}\u{7f}"), [b'5', INVISIBLE, INVISIBLE]);
        assert_eq!(read("一十"), [LINE_LETTER, LINE_LETTER]);
        assert_eq!(
            read("丨ㅡـ二"),
            [LINE_LETTER, LINE_LETTER, LINE_LETTER, OTHER]
        );
        // A lone Latin-1 byte; a sequence cut short.
        assert_eq!(unit(b"\xad1"), (INVISIBLE, 1));
        assert_eq!(unit(b"\xe2\x80"), (OTHER, 1));
        assert_eq!(unit(b"%FE"), (OTHER, 3));
        // GBK full-width digits; Latin-1 superscripts.
        assert_eq!(unit(b"\xa3\xb9"), (b'9', 2));
        assert_eq!(unit(b"\xb9"), (b'1', 1));
    }
}
