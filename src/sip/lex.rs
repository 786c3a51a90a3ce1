//! Character classes and small scanners of RFC 3261 section 25, shared by every grammar piece.

const TOKEN: u8 = 1;
const CALL_ID: u8 = 2;
const URI: u8 = 4;
const PARAM_VALUE: u8 = 8;
const HOST: u8 = 16;

/// One table lookup per byte instead of a chain of comparisons: these run over every
/// byte of every header the filter validates.
static CLASS: [u8; 256] = CLASS_TABLE;

const CLASS_TABLE: [u8; 256] = {
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
            | ((uri as u8) * URI)
            | ((param_value as u8) * PARAM_VALUE)
            | ((host as u8) * HOST)
            | (((word || b == b'@') as u8) * CALL_ID);
        c += 1;
    }
    t
};

/// A character class that long runs are scanned for sixteen bytes at a time
/// ([`class_end`]).
pub trait Class {
    const BIT: u8;
    /// For each low nibble, one bit per high nibble 2..=7: every class here lies in
    /// 0x21..=0x7e, so a byte belongs when both of its nibbles' entries share a bit
    /// (two table lookups per sixteen bytes with PSHUFB).
    const LO: [u8; 16] = nibble_table(Self::BIT);
    /// Whether runs of this class are long enough to pay for the vector scan when it
    /// cannot be inlined (SSSE3 found at run time: a call, and a CPU check). Tokens
    /// and hosts are a few bytes; they use it only where the build enables SSSE3
    /// (x86-64-v2, `.cargo/config.toml`) and the scan inlines (callgrind, per INVITE:
    /// parse 8,696 instructions byte by byte, 8,559 vectorised).
    const LONG_RUNS: bool = true;
}

/// RFC 3986 URI characters, as [`is_uri_char`].
pub struct Uri;
impl Class for Uri {
    const BIT: u8 = URI;
}
/// A header parameter's unquoted value: token, or a host such as an IPv6 reference.
pub struct ParamValue;
impl Class for ParamValue {
    const BIT: u8 = PARAM_VALUE;
}
/// Tokens, as [`is_token`].
pub struct Token;
impl Class for Token {
    const BIT: u8 = TOKEN;
    const LONG_RUNS: bool = cfg!(target_feature = "ssse3");
}
/// Call-ID characters: word / "@" (RFC 3261 25.1), word being token characters plus
/// the separators Call-ID allows.
pub struct CallId;
impl Class for CallId {
    const BIT: u8 = CALL_ID;
}
/// Host names and IPv4 addresses.
pub struct Host;
impl Class for Host {
    const BIT: u8 = HOST;
    const LONG_RUNS: bool = cfg!(target_feature = "ssse3");
}

const fn nibble_table(class: u8) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut c = 0;
    while c < 256 {
        if CLASS_TABLE[c] & class != 0 {
            // The vector test below relies on it; checked when the table is built.
            assert!(
                c > 0x20 && c < 0x7f,
                "vector classes lie within 0x21..=0x7e"
            );
            t[c & 15] |= 1 << ((c >> 4) - 2);
        }
        c += 1;
    }
    t
}

/// The first position at or after `i` whose byte is not in class `C`, or `b.len()`.
/// Runs of URI and parameter characters are 20-60 bytes long (URIs, branches, tags):
/// sixteen bytes are tested per step where the CPU has SSSE3 (known at compile time in
/// the project's x86-64-v2 build; otherwise checked at run time, so that a baseline
/// build runs everywhere), one byte per step otherwise and for the last fifteen bytes
/// of the buffer.
#[inline]
pub fn class_end<C: Class>(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if C::LONG_RUNS && b.len() >= 16 && std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: SSSE3 is present (tested just above).
        match unsafe { class_mask_ssse3(b, i, &C::LO) } {
            Ok(end) => return end,
            Err(at) => i = at,
        }
    }
    while i < b.len() && CLASS[b[i] as usize] & C::BIT != 0 {
        i += 1;
    }
    i
}

/// Sixteen bytes per step: `Ok(end)` when a byte outside the class was found, `Err(at)`
/// when fewer than sixteen bytes are left from `at` (the caller finishes byte by byte).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
#[inline]
fn class_mask_ssse3(b: &[u8], mut i: usize, lo: &[u8; 16]) -> Result<usize, usize> {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_setr_epi8,
        _mm_setzero_si128, _mm_shuffle_epi8, _mm_srli_epi16,
    };
    // SAFETY: `lo` is sixteen bytes, read unaligned.
    let lo_t = unsafe { core::ptr::read_unaligned(lo.as_ptr().cast::<__m128i>()) };
    // High nibble h in 2..=7 selects bit h - 2; every other high nibble, nothing.
    let hi_t = _mm_setr_epi8(0, 0, 1, 2, 4, 8, 16, 32, 0, 0, 0, 0, 0, 0, 0, 0);
    let nibble = _mm_set1_epi8(0x0f);
    while let Some(c) = b.get(i..).and_then(|r| r.first_chunk::<16>()) {
        // SAFETY: `c` is sixteen readable bytes, read unaligned.
        let x = unsafe { core::ptr::read_unaligned(c.as_ptr().cast::<__m128i>()) };
        let l = _mm_shuffle_epi8(lo_t, _mm_and_si128(x, nibble));
        let h = _mm_shuffle_epi8(hi_t, _mm_and_si128(_mm_srli_epi16::<4>(x), nibble));
        let outside = _mm_cmpeq_epi8(_mm_and_si128(l, h), _mm_setzero_si128());
        let m = _mm_movemask_epi8(outside) as u32;
        if m != 0 {
            return Ok(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    Err(i)
}

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
#[inline(always)]
pub fn is_token(c: u8) -> bool {
    CLASS[c as usize] & TOKEN != 0
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

/// First `a` or `b` in `h`, as [`find_byte`] finds one.
#[inline]
pub fn find_either(h: &[u8], a: u8, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (pa, pb) = (LO * a as u64, LO * b as u64);
    let mut i = 0;
    while i + 8 <= h.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[i..i + 8]);
        let (x, y) = (u64::from_le_bytes(w) ^ pa, u64::from_le_bytes(w) ^ pb);
        // Each test is exact for its lowest zero byte, so the lower of the two is.
        let z = (x.wrapping_sub(LO) & !x | y.wrapping_sub(LO) & !y) & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    h[i..].iter().position(|&c| c == a || c == b).map(|p| i + p)
}

/// Bit `i` set where byte `i` of the sixteen is '\n'.
#[inline(always)]
fn newline_mask(c: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is enabled at compile time (the cfg above; part of the x86_64
        // baseline), `c` is sixteen readable bytes and the load needs no alignment.
        unsafe {
            let x = _mm_loadu_si128(c.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'\n' as i8))) as u32
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        mask_where(c, |b| b == b'\n')
    }
}

/// Bit `i` set where byte `i` of the sixteen cannot be inside a header field name that
/// needs no further check: ':' and every byte outside 0x21..0x7f (space, tab, CR, LF,
/// controls, non-ASCII).
#[inline(always)]
pub fn name_stop_mask(c: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: as in `newline_mask`.
        unsafe {
            let x = _mm_loadu_si128(c.as_ptr().cast());
            let colon = _mm_cmpeq_epi8(x, _mm_set1_epi8(b':' as i8));
            // A signed comparison: bytes 0x80..=0xff are negative, so one test finds
            // them together with 0x00..=0x20.
            let outside = _mm_cmplt_epi8(x, _mm_set1_epi8(0x21));
            _mm_movemask_epi8(_mm_or_si128(colon, outside)) as u32
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        mask_where(c, |b| b == b':' || !(0x21..0x80).contains(&b))
    }
}

fn mask_where(c: &[u8], f: impl Fn(u8) -> bool) -> u32 {
    c.iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | ((f(b) as u32) << i))
}

#[inline(always)]
fn newline_mask_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..) {
        Some(r) => match r.first_chunk::<16>() {
            Some(c) => newline_mask(c),
            // The last, partial chunk (fewer than sixteen bytes).
            None => mask_where(r, |c| c == b'\n'),
        },
        None => 0,
    }
}

/// The line ends of a header section, found sixteen bytes per step and handed out in
/// order. One search per line (memchr) spent most of its work setting up for lines a
/// few tens of bytes long; here a chunk's mask serves every line end inside it.
pub struct NewLines<'a> {
    b: &'a [u8],
    /// The chunk `[base, base + 16)`, and its line ends not yet handed out.
    base: usize,
    mask: u32,
}

impl<'a> NewLines<'a> {
    pub fn new(b: &'a [u8], from: usize) -> NewLines<'a> {
        NewLines {
            b,
            base: from,
            mask: newline_mask_at(b, from),
        }
    }

    /// The first '\n' at or after `from`. Calls must not go backwards: `from` is never
    /// below the position of a line end already returned.
    #[inline]
    pub fn next(&mut self, from: usize) -> Option<usize> {
        debug_assert!(from >= self.base);
        if from >= self.base + 16 {
            self.base = from;
            self.mask = newline_mask_at(self.b, from);
        } else if from > self.base {
            self.mask &= u32::MAX << (from - self.base);
        }
        while self.mask == 0 {
            self.base += 16;
            if self.base >= self.b.len() {
                return None;
            }
            self.mask = newline_mask_at(self.b, self.base);
        }
        Some(self.base + self.mask.trailing_zeros() as usize)
    }
}

/// The first CR in `b` that no LF follows. Such a CR ends a line for some readers and
/// not for others (RFC 3261 allows CR only in CRLF; bare LF is read as a line end
/// here): a field hidden behind one (`X-Note: a<CR>P-Asserted-Identity: ...`) is
/// one field here and two at such a next hop. Sixteen bytes a step, branch-free (the
/// header section of every request is searched); the position is found only then.
pub fn bare_cr(b: &[u8]) -> Option<usize> {
    line_hazard::<false>(b)
}

/// [`bare_cr`], or the first NUL that is no quoted-pair in a quoted string (`"a\<NUL>"`,
/// which RFC 3261 25.1 allows): no field may hold one otherwise, and it ends the text
/// for a reader of C strings. The same pass over the bytes as the CR search.
pub fn bare_cr_or_nul(b: &[u8]) -> Option<usize> {
    line_hazard::<true>(b)
}

fn line_hazard<const NUL: bool>(b: &[u8]) -> Option<usize> {
    if !may_hold_hazard::<NUL>(b) {
        return None;
    }
    (0..b.len()).find(|&i| {
        b[i] == b'\r' && b.get(i + 1) != Some(&b'\n') || NUL && b[i] == 0 && !quoted_pair_at(b, i)
    })
}

/// Whether `b[i]` is the second character of a quoted-pair inside a quoted string of
/// its line (QA 45: a backslash alone, outside quotes or itself escaped, made any NUL
/// pass).
fn quoted_pair_at(b: &[u8], i: usize) -> bool {
    let start = b[..i]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    let (mut j, mut quoted) = (start, false);
    while j < i {
        match b[j] {
            b'\\' if quoted => {
                if j + 1 == i {
                    return true;
                }
                j += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            _ => {}
        }
        j += 1;
    }
    false
}

/// Whether `b` may hold a CR no LF follows, or with `NUL` a NUL (no false negatives):
/// sixteen bytes a step, each compared with the byte after it.
#[inline]
fn may_hold_hazard<const NUL: bool>(b: &[u8]) -> bool {
    let Some((&last, _)) = b.split_last() else {
        return false;
    };
    let mut i = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8, _mm_setzero_si128,
        };
        // SAFETY: SSE2 is enabled at compile time (the cfg above; part of the x86_64
        // baseline); every load reads sixteen bytes at `i` and `i + 1`, both within
        // `b` while `i + 17 <= b.len()`, and needs no alignment.
        unsafe {
            let (cr, lf) = (_mm_set1_epi8(b'\r' as i8), _mm_set1_epi8(b'\n' as i8));
            let mut seen = _mm_setzero_si128();
            while i + 17 <= b.len() {
                let x = _mm_loadu_si128(b.as_ptr().add(i).cast());
                let y = _mm_loadu_si128(b.as_ptr().add(i + 1).cast());
                // CR here and no LF after it.
                let bad = _mm_andnot_si128(_mm_cmpeq_epi8(y, lf), _mm_cmpeq_epi8(x, cr));
                seen = _mm_or_si128(seen, bad);
                if NUL {
                    seen = _mm_or_si128(seen, _mm_cmpeq_epi8(x, _mm_setzero_si128()));
                }
                i += 16;
            }
            if _mm_movemask_epi8(seen) != 0 {
                return true;
            }
        }
    }
    b[i..]
        .iter()
        .zip(b[i..].iter().skip(1))
        .any(|(&x, &y)| x == b'\r' && y != b'\n')
        || last == b'\r'
        || NUL && b[i..].contains(&0)
}

/// Position after a token starting at `i` (== `i` when there is none).
#[inline]
pub fn token_end(b: &[u8], i: usize) -> usize {
    class_end::<Token>(b, i)
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

/// One `name[=value]` of a ';'-separated parameter list, as spans of the buffer the
/// list was found in; name and value untrimmed, the value empty when there is no '='.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: super::Span,
    pub value: super::Span,
    /// The whole parameter, name to the end of its value.
    pub seg: super::Span,
}

impl Param {
    /// Whether the parameter has a '=' (its value may still be empty).
    pub fn has_value(&self) -> bool {
        self.name.end < self.seg.end
    }

    /// The parameter with the ';' before it, for an edit that takes it out whole;
    /// `None` for one that does not follow a ';' (the list's first, given without it).
    pub fn with_semi(&self, b: &[u8]) -> Option<super::Span> {
        let semi = (self.seg.start as usize).checked_sub(1)?;
        (b.get(semi) == Some(&b';')).then(|| super::Span::new(semi, self.seg.end as usize))
    }
}

/// The parameters of the ';'-separated list `b[span]`, in order: the one reader of
/// header parameters (From/To tags) and URI parameters (`user=phone`, phone-context).
/// With `quoted`, a quoted-string (a header parameter's value may be one) is skipped
/// whole, so a ';' inside it does not split; a URI has no quoted-strings (RFC 3261
/// 25.1: '"' is escaped there), and a '"' in one is an ordinary byte.
pub fn params(b: &[u8], span: super::Span, quoted: bool) -> Params<'_> {
    let end = (span.end as usize).min(b.len());
    Params {
        b,
        i: (span.start as usize).min(end),
        end,
        quoted,
    }
}

/// The iterator [`params`] gives.
pub struct Params<'a> {
    b: &'a [u8],
    i: usize,
    end: usize,
    quoted: bool,
}

impl Iterator for Params<'_> {
    type Item = Param;

    #[inline]
    fn next(&mut self) -> Option<Param> {
        if self.i >= self.end {
            return None;
        }
        let (b, start, end) = (self.b, self.i, self.end);
        // Eight bytes a step, a quoted-string skipped whole where one may stand.
        let mut j = start;
        let seg_end = loop {
            let hit = if self.quoted {
                find_either(&b[j..end], b';', b'"')
            } else {
                find_byte(&b[j..end], b';')
            };
            match hit.map(|k| j + k) {
                Some(q) if b[q] == b'"' => j = quoted_end(&b[..end], q).unwrap_or(end),
                Some(semi) => break semi,
                None => break end,
            }
        };
        // The name is first and short: its '=' is found in the first step or two.
        let eq = find_byte(&b[start..seg_end], b'=').map(|k| start + k);
        self.i = seg_end + 1;
        let span = super::Span::new;
        Some(Param {
            name: span(start, eq.unwrap_or(seg_end)),
            value: eq.map_or(span(seg_end, seg_end), |e| span(e + 1, seg_end)),
            seg: span(start, seg_end),
        })
    }
}

/// The octet a URI escape (`%2B`) at the start of `b` stands for (RFC 3986 2.1: hex
/// digits in either case); `None` if `b` starts with no complete escape. The one
/// percent-decoder: parameter names and the number reader both unescape with it.
#[inline]
pub fn escaped_octet(b: &[u8]) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    match *b {
        [b'%', h, l, ..] => Some(hex(h)? << 4 | hex(l)?),
        _ => None,
    }
}

/// The octets `b` stands for, with where each starts: a URI escape (`%2D`) is its
/// octet, anything else (a `%` that starts no escape too) itself.
pub fn unescaped(b: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let at = i;
        let (c, len) = match escaped_octet(b.get(i..)?) {
            Some(c) => (c, 3),
            None => (*b.get(i)?, 1),
        };
        i += len;
        Some((at, c))
    })
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

/// The hash of our To-tags and Via branches: deterministic (stable across runs and
/// instances, so a retransmission or a replay produces the same value), eight bytes per
/// step (FNV-1a's byte per step was 400-800 instructions per call), finished with
/// murmur3's fmix64 so that every input bit reaches every output bit.
pub fn tag_hash(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        let (words, tail) = p.as_chunks::<8>();
        for w in words {
            h = (h ^ u64::from_le_bytes(*w)).wrapping_mul(K).rotate_left(31);
        }
        let mut t = [0u8; 8];
        t[..tail.len()].copy_from_slice(tail);
        // The length closes each part, so that ("ab", "c") and ("a", "bc") differ.
        h = (h ^ u64::from_le_bytes(t) ^ ((p.len() as u64) << 56))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// FNV-1a, for deterministic keys of counters and tables (stable across runs and
/// instances: gateways that share counters through Redis must agree on them).
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
    fn find_either_finds_the_first_of_the_two() {
        for len in 0..24 {
            for (x, y) in [(0, 0), (3, 9), (9, 3), (7, 8), (15, 1)] {
                let mut h = vec![b'a'; len];
                if x < len {
                    h[x] = b';';
                }
                if y < len {
                    h[y] = b'"';
                }
                let naive = h.iter().position(|&c| c == b';' || c == b'"');
                assert_eq!(find_either(&h, b';', b'"'), naive, "{h:?}");
            }
        }
    }

    #[test]
    fn params_split_where_each_grammar_says() {
        let b = br#"x;tag=1;note="a;b" ; lr;;tag="#;
        let list = |quoted| {
            params(b, crate::sip::Span::new(2, b.len()), quoted)
                .map(|p| {
                    let semi = p.with_semi(b).map(|s| s.of(b).to_vec());
                    (
                        p.name.of(b).to_vec(),
                        p.value.of(b).to_vec(),
                        p.has_value(),
                        semi,
                    )
                })
                .collect::<Vec<_>>()
        };
        let header = list(true);
        let names: Vec<_> = header.iter().map(|p| trim(&p.0).to_vec()).collect();
        assert_eq!(names, [&b"tag"[..], b"note", b"lr", b"", b"tag"]);
        assert_eq!(header[1].1, br#""a;b" "#);
        assert!(!header[2].2 && header[4].2 && header[4].1.is_empty());
        assert_eq!(header[0].3.as_deref(), Some(&b";tag=1"[..]));
        // In a URI a '"' is an ordinary byte: the ';' after it splits.
        let uri = list(false);
        assert_eq!(uri[1].1, br#""a"#);
        assert_eq!(uri.len(), 6);
        // The list's first parameter given without its ';'.
        let bare = b"tag=1;lr";
        let first = params(bare, crate::sip::Span::new(0, 8), true)
            .next()
            .unwrap();
        assert_eq!(
            (first.seg.of(bare), first.with_semi(bare)),
            (&b"tag=1"[..], None)
        );
        // An unterminated quoted value runs to the end; an empty list has none.
        let open = br#"a="x;y"#;
        assert_eq!(params(open, crate::sip::Span::new(0, 6), true).count(), 1);
        assert_eq!(params(open, crate::sip::Span::new(6, 6), true).count(), 0);
    }

    #[test]
    fn bare_cr_found_wherever_it_stands() {
        let naive =
            |b: &[u8]| (0..b.len()).find(|&i| b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'));
        for len in 0..48 {
            for at in 0..len {
                for next in [b'\n', b'x'] {
                    let mut b = vec![b'a'; len];
                    b[at] = b'\r';
                    if at + 1 < len {
                        b[at + 1] = next;
                    }
                    assert_eq!(bare_cr(&b), naive(&b), "{len} {at} {next}");
                }
            }
            let crlf: Vec<u8> = b"ab\r\n".iter().copied().cycle().take(len).collect();
            assert_eq!(bare_cr(&crlf), naive(&crlf), "{len}");
        }
        // With NULs: found wherever one stands (the vector pass and the tail alike),
        // but as a quoted-pair in a quoted string.
        for len in 0..48 {
            for at in 0..len {
                let mut b = vec![b'a'; len];
                b[at] = 0;
                assert_eq!(bare_cr_or_nul(&b), Some(at), "{len} {at}");
                assert_eq!(bare_cr(&b), None, "{len} {at}");
                if at >= 2 {
                    b[..at - 1].fill(b'"');
                    b[at - 1] = b'\\';
                    // An odd count of quotes before the backslash leaves one open.
                    let want = if (at - 1) % 2 == 1 { None } else { Some(at) };
                    assert_eq!(bare_cr_or_nul(&b), want, "{len} {at}");
                }
            }
        }
        for (text, want) in [
            (&b"X: \"a\\\0b\"\r\n"[..], None),
            (b"X: a\\\0b\r\n", Some(5)),
            (b"X: \"a\\\\\0b\"\r\n", Some(7)),
            (b"X: \"a\"\\\0\r\n", Some(7)),
            (b"Y: \"\r\nX: a\\\0\r\n", Some(11)),
        ] {
            assert_eq!(
                bare_cr_or_nul(text),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn escapes_decode_or_are_not_escapes() {
        assert_eq!(escaped_octet(b"%2B"), Some(b'+'));
        assert_eq!(escaped_octet(b"%2b1"), Some(b'+'));
        assert_eq!(escaped_octet(b"%e4%b8"), Some(0xe4));
        for not in [&b"%2"[..], b"%", b"%G0", b"2B", b"", b"%-1"] {
            assert_eq!(escaped_octet(not), None, "{not:?}");
        }
        let read: Vec<(usize, u8)> = unescaped(b"a%2Db%%4").collect();
        assert_eq!(
            read,
            [
                (0, b'a'),
                (1, b'-'),
                (4, b'b'),
                (5, b'%'),
                (6, b'%'),
                (7, b'4')
            ]
        );
    }

    #[test]
    fn tag_hash_separates_parts_and_spreads() {
        const GOLDEN: u64 = 0xcb9a_9930_17cc_5113;
        // Parts are not simply concatenated.
        assert_ne!(tag_hash(&[b"ab", b"c"]), tag_hash(&[b"a", b"bc"]));
        assert_ne!(tag_hash(&[b"abcdefgh", b""]), tag_hash(&[b"abcdefg", b"h"]));
        assert_ne!(tag_hash(&[b""]), tag_hash(&[b"", b""]));
        // Branches that differ in one character anywhere (the way sipp numbers them)
        // give different values, with about half the output bits changed on average.
        let base = b"z9hG4bK-524287-1---4b0e3d1b8a1c";
        let h0 = tag_hash(&[base, b"SIP/2.0/UDP 203.0.113.10:5060"]);
        let mut seen = std::collections::HashSet::new();
        let mut flipped = 0;
        for at in 0..base.len() {
            for c in [b'0', b'7', b'z', b'-'] {
                let mut b = *base;
                if b[at] == c {
                    continue;
                }
                b[at] = c;
                let h = tag_hash(&[&b, b"SIP/2.0/UDP 203.0.113.10:5060"]);
                assert!(seen.insert(h), "collision at {at}");
                flipped += (h ^ h0).count_ones();
            }
        }
        let mean = flipped as f64 / seen.len() as f64;
        assert!((24.0..40.0).contains(&mean), "mean bits changed {mean}");
        // Deterministic across runs and builds: a retransmission after a restart, or the
        // same capture replayed, must get the branch and To-tag it got before.
        assert_eq!(tag_hash(&[b"call-id@host", b"tag1", base]), GOLDEN);
    }

    /// The vector class scan stops where the table says, whatever the run length and
    /// wherever the first outsider lies (in a chunk, at its edge, in the scalar tail).
    #[test]
    fn class_end_agrees_with_the_table() {
        fn scalar(b: &[u8], mut i: usize, bit: u8) -> usize {
            while i < b.len() && CLASS[b[i] as usize] & bit != 0 {
                i += 1;
            }
            i
        }
        fn check<C: Class>(b: &[u8]) {
            for i in 0..=b.len() + 1 {
                let want = scalar(b, i, C::BIT);
                assert_eq!(class_end::<C>(b, i), want, "{b:?} from {i}");
                // The vector scan itself, also for the classes that do not use it.
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("ssse3") {
                    // SAFETY: SSSE3 is present.
                    let v = match unsafe { class_mask_ssse3(b, i, &C::LO) } {
                        Ok(end) => end,
                        Err(at) => scalar(b, at, C::BIT),
                    };
                    assert_eq!(v, want, "vector, {b:?} from {i}");
                }
            }
        }
        // Every byte value at every place of runs longer and shorter than a chunk.
        for v in 0..=255u8 {
            for len in [1, 15, 16, 17, 31, 33, 40] {
                for at in (0..len).step_by(5) {
                    let mut b = vec![b'a'; len];
                    b[at] = v;
                    check::<Uri>(&b);
                    check::<ParamValue>(&b);
                    check::<Token>(&b);
                    check::<Host>(&b);
                    check::<CallId>(&b);
                }
            }
        }
        // And a real header's worth of mixed bytes.
        let h = b"<sip:+442071234567@203.0.113.10;user=phone>;tag=9fxced76sl \r\n\x80\x7f";
        check::<Uri>(h);
        check::<ParamValue>(h);
        check::<Token>(h);
        check::<Host>(h);
        check::<CallId>(h);
    }

    /// Every byte value at every position of a chunk: the vector masks agree with the
    /// byte-by-byte definition.
    #[test]
    fn chunk_masks_match_the_definition() {
        for v in 0..=255u8 {
            for at in 0..16 {
                let mut c = [b'a'; 16];
                c[at] = v;
                c[(at + 7) % 16] = v.wrapping_add(1);
                assert_eq!(
                    newline_mask(&c),
                    mask_where(&c, |b| b == b'\n'),
                    "{v:#x}@{at}"
                );
                assert_eq!(
                    name_stop_mask(&c),
                    mask_where(&c, |b| b == b':' || !(0x21..0x80).contains(&b)),
                    "{v:#x}@{at}"
                );
            }
        }
    }

    /// Line ends handed out in order equal a plain search from each position, whatever
    /// the line lengths (empty, longer than a chunk, at a chunk edge, in the last
    /// partial chunk).
    #[test]
    fn new_lines_agree_with_a_plain_search() {
        let mut text = Vec::new();
        for len in [
            0usize, 1, 14, 15, 16, 17, 31, 32, 33, 0, 0, 62, 63, 64, 65, 70, 5, 2, 130,
        ] {
            text.extend(std::iter::repeat_n(b'x', len));
            text.push(b'\n');
        }
        text.extend_from_slice(b"tail without an end");
        for start in 0..70 {
            let mut lines = NewLines::new(&text, start);
            let mut from = start;
            loop {
                let want = text[from..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map(|p| from + p);
                assert_eq!(lines.next(from), want, "from {from} (start {start})");
                match want {
                    Some(nl) => from = nl + 1,
                    None => break,
                }
            }
        }
        assert_eq!(NewLines::new(b"", 0).next(0), None);
        assert_eq!(NewLines::new(b"ab", 2).next(2), None);
    }

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
