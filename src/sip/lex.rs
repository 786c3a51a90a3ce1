//! Character classes and small scanners of RFC 3261 section 25, shared by every grammar piece.

const TOKEN: u8 = 1;
const WORD: u8 = 2;
const URI: u8 = 4;
const PARAM_VALUE: u8 = 8;
const HOST: u8 = 16;

/// One table lookup per byte instead of a chain of comparisons: these run over every
/// byte of every header the filter validates.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alnum = b.is_ascii_alphanumeric();
        let token = alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let word = token
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            );
        let uri = alnum
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'['
                    | b']'
                    | b'%'
                    | b'`'
            );
        // gen-value as sent: token, or a host (IPv6 references included).
        let param_value = token || matches!(b, b':' | b'[' | b']');
        let host = alnum || matches!(b, b'-' | b'.');
        t[c] = ((token as u8) * TOKEN)
            | ((word as u8) * WORD)
            | ((uri as u8) * URI)
            | ((param_value as u8) * PARAM_VALUE)
            | ((host as u8) * HOST);
        c += 1;
    }
    t
};

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
#[inline(always)]
pub fn is_token(c: u8) -> bool {
    CLASS[c as usize] & TOKEN != 0
}

/// word = token characters plus the separators Call-ID allows.
#[inline(always)]
pub fn is_word(c: u8) -> bool {
    CLASS[c as usize] & WORD != 0
}

/// A header parameter's unquoted value: token, or a host such as an IPv6 reference.
#[inline(always)]
pub fn is_param_value(c: u8) -> bool {
    CLASS[c as usize] & PARAM_VALUE != 0
}

/// hostname and IPv4 characters.
#[inline(always)]
pub fn is_host_char(c: u8) -> bool {
    CLASS[c as usize] & HOST != 0
}

#[inline(always)]
pub fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Characters that may appear in a URI as written in a header or Request-URI
/// (RFC 3986 reserved + unreserved + '%'); no whitespace, quotes or angle brackets.
#[inline(always)]
pub fn is_uri_char(c: u8) -> bool {
    CLASS[c as usize] & URI != 0
}

/// Skips linear white space, including folds (CRLF or LF followed by SP/HT).
#[inline(always)]
pub fn skip_lws(b: &[u8], i: usize) -> usize {
    // Called between every two tokens, and almost always at a non-space or a single
    // space ("Via: SIP..."): keep those cases inlined tests.
    match b.get(i) {
        Some(b' ') if b.get(i + 1).is_some_and(|&c| c > b' ') => i + 1,
        Some(b' ' | b'\t' | b'\r' | b'\n') => skip_lws_slow(b, i),
        _ => i,
    }
}

#[inline(never)]
fn skip_lws_slow(b: &[u8], mut i: usize) -> usize {
    loop {
        i += b
            .get(i..)
            .map_or(0, |r| r.iter().take_while(|&&c| is_wsp(c)).count());
        match b.get(i..i + 3) {
            Some([b'\r', b'\n', c]) if is_wsp(*c) => i += 3,
            _ => match b.get(i..i + 2) {
                Some([b'\n', c]) if is_wsp(*c) => i += 2,
                _ => return i,
            },
        }
    }
}

/// First `c` in `h`. SIP lines and URIs are tens of bytes: eight bytes per step in a
/// register beats the set-up of a vector search at that length, and inlines.
#[inline]
pub fn find_byte(h: &[u8], c: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * c as u64;
    let mut i = 0;
    while i + 8 <= h.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ pat;
        // Classic zero-byte test: exact for the lowest zero byte, which is the one wanted.
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    h[i..].iter().position(|&b| b == c).map(|p| i + p)
}

/// Position after a token starting at `i` (== `i` when there is none).
#[inline]
pub fn token_end(b: &[u8], i: usize) -> usize {
    match b.get(i..) {
        Some(r) => i + r.iter().position(|&c| !is_token(c)).unwrap_or(r.len()),
        None => i,
    }
}

/// Position after a quoted-string starting at `i` (which must be `"`), honouring quoted-pairs.
/// `None` when it is not terminated.
pub fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    debug_assert!(b.get(i) == Some(&b'"'));
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            b'\r' | b'\n' => {
                // A fold inside a quoted string is allowed; a bare line end is not.
                let k = skip_lws(b, j);
                if k == j {
                    return None;
                }
                j = k;
            }
            _ => j += 1,
        }
    }
    None
}

pub fn trim(v: &[u8]) -> &[u8] {
    let mut s = 0;
    let mut e = v.len();
    while s < e && (is_wsp(v[s]) || v[s] == b'\r' || v[s] == b'\n') {
        s += 1;
    }
    while e > s && (is_wsp(v[e - 1]) || v[e - 1] == b'\r' || v[e - 1] == b'\n') {
        e -= 1;
    }
    &v[s..e]
}

/// Decimal digits to u32; `None` for empty input, a non-digit or overflow.
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        // Checked per digit, so leading zeros ("0068") are fine and long inputs stop early.
        n = n * 10 + (c - b'0') as u64;
        if n > u32::MAX as u64 {
            return None;
        }
    }
    Some(n as u32)
}

/// Case-insensitive ASCII prefix test.
#[inline]
pub fn starts_with_ci(v: &[u8], prefix: &[u8]) -> bool {
    v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// FNV-1a, for deterministic tags and branches (stable across runs and instances,
/// so a retransmission or a replay produces the same value).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &c in *p {
            h ^= c as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so that ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_parsing() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"000000000000007"), Some(7));
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"1a"), None);
    }

    #[test]
    fn find_byte_agrees_with_position() {
        let h = b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\x80\xff\n";
        for c in [b'\n', b'\r', b'x', b'V', 0x80, 0xff, 0, b'~'] {
            for s in 0..h.len() {
                assert_eq!(
                    find_byte(&h[s..], c),
                    h[s..].iter().position(|&b| b == c),
                    "c={c} s={s}"
                );
            }
        }
    }

    #[test]
    fn lws_and_quotes() {
        assert_eq!(skip_lws(b"  \r\n  x", 0), 6);
        assert_eq!(skip_lws(b" \r\nx", 0), 1);
        assert_eq!(quoted_end(b"\"a\\\"b\" x", 0), Some(6));
        assert_eq!(quoted_end(b"\"abc", 0), None);
    }
}
