//! Calling numbers: normalisation of every form gateways send to one E.164 form, and
//! classification against a data-driven numbering plan ([`plan`]).
//!
//! This is the only place that turns a user part or tel URI into a number; list files,
//! the policy and the CLI all go through [`normalise`].

mod display;
mod glyph;
pub mod plan;

use std::fmt;

pub use display::{
    EMBEDDED_MAX_CANDIDATES, EMBEDDED_MAX_VISIBLE, ShortCodes, Worded, as_displayed, drawn_digits,
    embedded_numbers, embedded_numbers_in, is_dial_string, number_breaks, rtl_numbers,
};
use glyph::{INVISIBLE, unit};
pub use plan::{Class, Classification, Flags, Plan};

/// Longest number kept: 18 digits still fit the list key (see [`Number::key`]) and
/// cover +86 with a 15-digit 700 number.
pub const MAX_DIGITS: usize = 18;

/// A normalised number: international digits without the '+' (e.g. `8613812345678`).
/// Fixed-size and `Copy`, so the hot path never allocates for it. The default is the
/// empty number (a placeholder: [`Number::from_digits`] makes none).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Number {
    digits: [u8; MAX_DIGITS],
    len: u8,
}

impl Number {
    /// From international digits (no '+'); `None` when empty, too long or not all digits.
    pub fn from_digits(d: &[u8]) -> Option<Number> {
        if d.is_empty() || d.len() > MAX_DIGITS || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n = Number {
            digits: [0; MAX_DIGITS],
            len: d.len() as u8,
        };
        n.digits[..d.len()].copy_from_slice(d);
        Some(n)
    }
    pub fn digits(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digits as text (always ASCII digits).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.digits()).unwrap_or("")
    }
    /// `+` followed by the digits.
    pub fn e164(&self) -> String {
        format!("+{}", self.as_str())
    }
    /// Numeric key for sets: a leading 1 keeps the length ("0" and "00" differ), so a
    /// number or a prefix of up to 18 digits maps to a distinct u64.
    #[inline]
    pub fn key(&self) -> u64 {
        key_of(self.digits())
    }
    /// Key of the first `n` digits (a prefix).
    #[inline]
    pub fn prefix_key(&self, n: usize) -> u64 {
        key_of(&self.digits()[..n.min(self.len())])
    }
    pub fn starts_with(&self, p: &[u8]) -> bool {
        self.digits().starts_with(p)
    }
    /// The number (or leading digits) a [`Number::key`] holds: its decimal form without
    /// the leading 1. For reports, not the call path.
    pub fn from_key(k: u64) -> Option<Number> {
        Number::from_digits(k.to_string().as_bytes().get(1..)?)
    }
}

#[inline]
pub fn key_of(d: &[u8]) -> u64 {
    let mut k: u64 = 1;
    for &c in d {
        k = k * 10 + (c - b'0') as u64;
    }
    k
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.as_str())
    }
}
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.as_str())
    }
}

/// Why a caller field holds no usable number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotANumber {
    /// Nothing there.
    Empty,
    /// A privacy keyword: anonymous, unknown, unavailable, restricted, private, withheld.
    Withheld,
    /// Letters or other characters (`alice`, `trunk-gw`).
    NonNumeric,
    /// More digits than any plan allows.
    TooLong,
    /// An international prefix with no number after it (`00`).
    Incomplete,
}

impl NotANumber {
    pub fn as_str(self) -> &'static str {
        match self {
            NotANumber::Empty => "empty",
            NotANumber::Withheld => "withheld",
            NotANumber::NonNumeric => "non-numeric",
            NotANumber::TooLong => "too-long",
            NotANumber::Incomplete => "incomplete",
        }
    }
    /// Digits, but none that a plan could hold: a caller that breaks the numbering plan
    /// (rule `numbering-plan`, 403) rather than a blank one (`blank-caller`, 433, which
    /// tells the other network its caller hid).
    pub fn breaks_plan(self) -> bool {
        matches!(self, NotANumber::TooLong | NotANumber::Incomplete)
    }
}

const WITHHELD: [&[u8]; 7] = [
    b"anonymous",
    b"unknown",
    b"unavailable",
    b"restricted",
    b"private",
    b"withheld",
    b"anonymous.invalid",
];

/// `t` with its escapes decoded, when it fits `out` (the privacy words are short).
fn unescaped<'o>(t: &[u8], out: &'o mut [u8; 16]) -> Option<&'o [u8]> {
    let (mut i, mut n) = (0, 0);
    while i < t.len() {
        let (c, len) = unit(&t[i..]);
        *out.get_mut(n)? = c;
        n += 1;
        i += len;
    }
    Some(&out[..n])
}

/// How a peer writes a number that has no `+`, `00` or trunk `0` in front (a trunk's
/// `bare_numbers`): in the home plan (`13812345678`, `110`), or as E.164 without its
/// plus (`14155550123`), as many international carriers send them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bare {
    #[default]
    National,
    International,
}

impl Bare {
    pub fn as_str(self) -> &'static str {
        match self {
            Bare::National => "national",
            Bare::International => "international",
        }
    }
}

/// Bare numbers shorter than this are read in the home plan whatever the peer's
/// convention: no E.164 number is, and a short code from abroad (`110`, `95588`) is
/// what the callee's network would dial, a forged service number, not a foreign one.
pub const INTERNATIONAL_MIN_DIGITS: usize = 7;
/// E.164's longest number: a longer bare number cannot be one, and is read nationally
/// (an IP dial prefix before a domestic number).
pub const INTERNATIONAL_MAX_DIGITS: usize = 15;

/// Where a number comes from, as far as reading it goes: the plan's country code and
/// the peer's way of writing bare numbers.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// Country code of the plan ("86").
    pub home_cc: &'a [u8],
    pub bare: Bare,
    /// Short codes in display names ([`ShortCodes`]): by the trunk's role.
    pub short: ShortCodes,
}

impl<'a> Reading<'a> {
    /// Bare numbers in the home plan: lists, the CLI, and trunks by default.
    pub const fn national(home_cc: &'a [u8]) -> Reading<'a> {
        Reading {
            home_cc,
            bare: Bare::National,
            short: ShortCodes::SpacedOnly,
        }
    }
}

/// Normalises a caller string (user part of a sip URI, tel URI number, list entry)
/// to international digits, reading bare numbers in the home plan ([`normalise_as`]).
///
/// `home_cc` is the country code of the plan ("86"); `phone_context` the tel URI's
/// context, if any (`+86`, `+8610`; a domain context is treated as national).
/// Forms: `+86…`, `0086…`, `86…` (12+ digits), national `0`+area code or `0`+mobile,
/// bare national numbers and short codes, visual separators `-.() `, `%2B` for '+',
/// and IP/carrier-select dial prefixes (`179xx`, `1[12]xxx`) before a trunk or
/// international prefix or a mobile number.
#[inline]
pub fn normalise(
    raw: &[u8],
    home_cc: &[u8],
    phone_context: Option<&[u8]>,
) -> Result<Number, NotANumber> {
    normalise_as(raw, Reading::national(home_cc), phone_context)
}

/// The start of a number: a list's segment (`+86170*`, `0755 8888*`) or a search for
/// one. A whole number tells `8613812345678` (international, no '+') from a national
/// one by its length; a segment has none, so bare digits that begin with the home
/// country code are read as that form: no national number starts so (China's area codes
/// hold no 86x), and `86170999*` read nationally would be +8686170999, which no caller
/// is in. Anything else reads as [`normalise`] reads it.
pub fn normalise_prefix(raw: &[u8], home_cc: &[u8]) -> Result<Number, NotANumber> {
    let t = crate::sip::lex::trim(raw);
    // Digits and visual separators only (`86 170 999`, `(86)170-999`), read as a screen
    // shows them: full-width digits, Unicode dashes and dots are the same segment.
    let mut d = [0u8; 40];
    let mut n = 0;
    let mut i = 0;
    while i < t.len() {
        let (c, len) = unit(&t[i..]);
        i += len;
        match c {
            b'0'..=b'9' if n < d.len() => {
                d[n] = c;
                n += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' | b'\t' | INVISIBLE => {}
            _ => return normalise(t, home_cc, None),
        }
    }
    if !home_cc.is_empty() && d[..n].starts_with(home_cc) {
        return Number::from_digits(&d[..n])
            .map(|p| without_trunk_zero(p, home_cc))
            .ok_or(NotANumber::TooLong);
    }
    normalise(t, home_cc, None)
}

/// [`normalise`] for a peer whose bare numbers may be international
/// ([`Bare::International`]): digits with no `+`, `00` or `0` in front, of
/// [`INTERNATIONAL_MIN_DIGITS`] to [`INTERNATIONAL_MAX_DIGITS`], are E.164 without the
/// plus. A phone-context, where given, says it instead.
pub fn normalise_as(
    raw: &[u8],
    reading: Reading<'_>,
    phone_context: Option<&[u8]>,
) -> Result<Number, NotANumber> {
    read_number(raw, reading, phone_context).map(|n| without_trunk_zero(n, reading.home_cc))
}

/// The home country code followed by the trunk prefix (`+8602150551001`, `0086 0 21...`:
/// the national form with the country code put in front, as some gateways and PBXs
/// write it, QA 197): no national number of the home plan starts with 0, so that 0 is
/// no digit of the number, as E.123's bracketed `(0)` is not. (Other plans' numbers
/// may: Italy's +39 06... keep theirs.)
fn without_trunk_zero(n: Number, home_cc: &[u8]) -> Number {
    match n.digits().strip_prefix(home_cc) {
        Some([b'0', rest @ ..])
            if !home_cc.is_empty() && rest.len() >= 3 && rest.first() != Some(&b'0') =>
        {
            let mut d = [0u8; MAX_DIGITS];
            d[..home_cc.len()].copy_from_slice(home_cc);
            d[home_cc.len()..home_cc.len() + rest.len()].copy_from_slice(rest);
            Number::from_digits(&d[..home_cc.len() + rest.len()]).unwrap_or(n)
        }
        _ => n,
    }
}

fn read_number(
    raw: &[u8],
    reading: Reading<'_>,
    phone_context: Option<&[u8]>,
) -> Result<Number, NotANumber> {
    let home_cc = reading.home_cc;
    // An escaped context (`phone-context=%2B852`) is the same context (RFC 3261 19.1.4;
    // QA 54: read in the home plan, a Hong Kong caller was refused as a bad +86 number).
    let mut plain = [0u8; 16];
    let phone_context = match phone_context {
        Some(c) if c.contains(&b'%') => Some(unescaped(c, &mut plain).unwrap_or(c)),
        c => c,
    };
    // The form asserted identities almost always take ("+8613812345678"): already
    // international, nothing to strip (a '+' number ignores any phone-context below too).
    if let Some(n) = raw.strip_prefix(b"+").and_then(Number::from_digits) {
        return Ok(n);
    }
    let mut buf = [0u8; 40];
    let mut n = 0usize;
    let mut plus = false;
    let mut i = 0;
    // Bare digits (a national number, a piece of a display name): nothing to take out.
    if !raw.is_empty() && raw.len() <= buf.len() && raw.iter().all(u8::is_ascii_digit) {
        buf[..raw.len()].copy_from_slice(raw);
        n = raw.len();
        i = raw.len();
    }
    while i < raw.len() {
        let (c, len) = unit(&raw[i..]);
        i += len;
        match c {
            b'0'..=b'9' => {
                if n == buf.len() {
                    return Err(NotANumber::TooLong);
                }
                buf[n] = c;
                n += 1;
            }
            // `+44 (0)20 7123 4567`: the national trunk prefix shown in brackets (ITU-T
            // E.123) after a country code is no digit of the number.
            b'(' if (plus && n > 0 || n > 2 && buf.starts_with(b"00")) && i < raw.len() => {
                let (zero, l0) = unit(&raw[i..]);
                if zero == b'0' && i + l0 < raw.len() && unit(&raw[i + l0..]).0 == b')' {
                    i += l0 + unit(&raw[i + l0..]).1;
                }
            }
            b'-' | b'.' | b'(' | b')' | b' ' | INVISIBLE => {}
            b'+' if n == 0 && !plus => plus = true,
            _ => {
                let t = super::sip::lex::trim(raw);
                let withheld = |t: &[u8]| WITHHELD.iter().any(|w| t.eq_ignore_ascii_case(w));
                // Escaped letters name the same user (RFC 3261 19.1.4: `%61nonymous`).
                let mut plain = [0u8; 16];
                if withheld(t)
                    || (t.contains(&b'%') && unescaped(t, &mut plain).is_some_and(withheld))
                {
                    return Err(NotANumber::Withheld);
                }
                return Err(NotANumber::NonNumeric);
            }
        }
    }
    if n == 0 {
        return Err(if plus {
            NotANumber::NonNumeric
        } else {
            NotANumber::Empty
        });
    }
    // A context of digits alone (`phone-context=010`: no '+', so no global number, and
    // no domain either, RFC 3966 5.1.5) is the prefix gateways put in front of the
    // local number when they pass it on (`12345678;phone-context=010` is dialled and
    // shown as 010 12345678): read so, as written digits.
    let mut joined = [0u8; 40];
    let d = match phone_context {
        // (Unescaped above; one too long to be is not read as digits.)
        Some(ctx) if !plus && !ctx.contains(&b'%') && crate::sip::uri::dialled_context(ctx) => {
            let mut k = 0;
            for &c in ctx.iter().filter(|c| c.is_ascii_digit()).chain(&buf[..n]) {
                if k == joined.len() {
                    return Err(NotANumber::TooLong);
                }
                joined[k] = c;
                k += 1;
            }
            &joined[..k]
        }
        _ => &buf[..n],
    };
    let n = d.len();
    let mut out = [0u8; 40];
    let intl: &[u8] = if plus {
        d
    } else if let Some(ctx) = phone_context.and_then(|c| c.strip_prefix(b"+")) {
        // Local number in a global context (RFC 3966 5.1.5): context digits first; a
        // trunk 0 in front of the local number belongs to dialling, not to the number.
        // The context is a global number, visual separators and all (`+86-10`, section
        // 3); a '+' context that is not one says nowhere the number can be placed, and
        // reading it in the home plan would let `+4-4`-style spellings pass for domestic.
        let mut cbuf = [0u8; 16];
        let mut cn = 0;
        for &c in ctx {
            match c {
                b'0'..=b'9' if cn < cbuf.len() => {
                    cbuf[cn] = c;
                    cn += 1;
                }
                b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(NotANumber::NonNumeric),
            }
        }
        if cn == 0 {
            return Err(NotANumber::NonNumeric);
        }
        let ctx = &cbuf[..cn];
        if ctx == home_cc {
            // The home country's context says what no context says: the number is
            // read as the home plan reads it, a trunk 0, an international 00 and an IP
            // dial prefix included (QA 88: `tel:00442071234567;phone-context=+86`, a
            // foreign caller a domestic carrier relays, read as +860442071234567 and
            // refused as no number at all).
            return national(d, home_cc, &mut out);
        }
        concat(ctx, d, &mut out)?
    } else if reading.bare == Bare::International
        && (INTERNATIONAL_MIN_DIGITS..=INTERNATIONAL_MAX_DIGITS).contains(&n)
        && d[0] != b'0'
    {
        d
    } else {
        return national(d, home_cc, &mut out);
    };
    Number::from_digits(intl).ok_or(NotANumber::TooLong)
}

fn concat<'a>(a: &[u8], b: &[u8], out: &'a mut [u8; 40]) -> Result<&'a [u8], NotANumber> {
    if a.len() + b.len() > out.len() {
        return Err(NotANumber::TooLong);
    }
    out[..a.len()].copy_from_slice(a);
    out[a.len()..a.len() + b.len()].copy_from_slice(b);
    Ok(&out[..a.len() + b.len()])
}

/// Whether national digits start with an IP / carrier-select dial prefix ([`national`]).
/// A display name is read as drawn: there such digits are a short code beside a number
/// (`"12345 13912340001"` shows 12345, QA 162), not a prefix dialled before it.
pub fn ip_dial_prefixed(d: &[u8]) -> bool {
    d.len() >= 13
        && (d.starts_with(b"179") || d.starts_with(b"11") || d.starts_with(b"12"))
        && (d[5] == b'0' || (d.len() == 16 && d[5] == b'1' && (b'3'..=b'9').contains(&d[6])))
}

fn national(d: &[u8], home_cc: &[u8], out: &mut [u8; 40]) -> Result<Number, NotANumber> {
    let mut d = d;
    // IP / carrier-select dial prefix before a trunk or international prefix (libphonenumber's
    // national prefix for parsing: 1[12]xxx, 179xx).
    // Mobiles are dialled without the trunk 0, so an IP prefix is also followed directly
    // by an 11-digit mobile number (`17951 13812345678`: 16 digits, no plan has them).
    // Behind the trunk 0 may come a service number after its area code (`17951 010
    // 95588`, 13 digits, QA 92): no number of 13 digits or more starts with 11, 12 or
    // 179 (IoT's start 14, the long toll-free ones 10 and 21).
    if ip_dial_prefixed(d) {
        d = &d[5..];
    }
    let intl: &[u8] = if let Some(rest) = d.strip_prefix(b"00") {
        if rest.is_empty() {
            return Err(NotANumber::Incomplete);
        }
        rest
    } else if let Some(rest) = d.strip_prefix(b"0") {
        concat(home_cc, rest, out)?
    } else if d.starts_with(home_cc) && d.len() >= home_cc.len() + 10 {
        // "8613812345678": no national number is 12+ digits and starts with the country code.
        d
    } else {
        concat(home_cc, d, out)?
    };
    Number::from_digits(intl).ok_or(NotANumber::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller string read in the home plan, as E.164 (the display reader's tests read
    /// with it too).
    pub(super) fn n(s: &str) -> Result<String, NotANumber> {
        normalise(s.as_bytes(), b"86", None).map(|n| n.e164())
    }

    #[test]
    fn every_form_of_one_mobile() {
        for f in [
            "+8613812345678",
            "008613812345678",
            "8613812345678",
            "13812345678",
            "013812345678",
            "+86-138-1234-5678",
            "+86 (138) 1234.5678",
            "%2B8613812345678",
            "%2b86138%31234%35678",
            "＋８６１３８１２３４５６７８",
            "＋８６　１３８－１２３４－５６７８",
            "（０１３８）１２３４５６７８",
            "17951008613812345678",
            "17951013812345678",
            "1795113812345678",
            "1259313812345678",
        ] {
            assert_eq!(n(f).as_deref(), Ok("+8613812345678"), "{f}");
        }
    }

    #[test]
    fn fixed_short_and_foreign() {
        assert_eq!(n("01012345678").unwrap(), "+861012345678");
        assert_eq!(n("02161234567").unwrap(), "+862161234567");
        assert_eq!(n("10086").unwrap(), "+8610086");
        assert_eq!(n("110").unwrap(), "+86110");
        assert_eq!(n("4001234567").unwrap(), "+864001234567");
        assert_eq!(n("+14155550123").unwrap(), "+14155550123");
        assert_eq!(n("0014155550123").unwrap(), "+14155550123");
        assert_eq!(n("700123456789012").unwrap(), "+86700123456789012");
        // An IP prefix goes before a trunk 0 (a fixed number, a service number behind its
        // area code, or digits the plan then refuses); 16 digits that are not an IP
        // prefix and a mobile stay as they are (and the plan refuses them).
        assert_eq!(n("179510102345678").unwrap(), "+86102345678");
        assert_eq!(n("1795101095588").unwrap(), "+861095588");
        assert_eq!(n("11808075595555").unwrap(), "+8675595555");
        assert_eq!(n("1795101012345678").unwrap(), "+861012345678");
        assert_eq!(n("1795112012345678").unwrap(), "+861795112012345678");
    }

    #[test]
    fn bare_numbers_read_internationally() {
        let i = |s: &str, c: Option<&str>| {
            let r = Reading {
                home_cc: b"86",
                bare: Bare::International,
                short: ShortCodes::SpacedOnly,
            };
            normalise_as(s.as_bytes(), r, c.map(str::as_bytes)).map(|n| n.e164())
        };
        assert_eq!(i("14155550123", None).unwrap(), "+14155550123");
        assert_eq!(i("44-20-7123-4567", None).unwrap(), "+442071234567");
        assert_eq!(i("8613812345678", None).unwrap(), "+8613812345678");
        assert_eq!(i("8695588", None).unwrap(), "+8695588");
        // Prefixed numbers read as they say; short codes in the home plan.
        assert_eq!(i("+14155550123", None).unwrap(), "+14155550123");
        assert_eq!(i("0014155550123", None).unwrap(), "+14155550123");
        assert_eq!(i("013812345678", None).unwrap(), "+8613812345678");
        assert_eq!(i("01012345678", None).unwrap(), "+861012345678");
        assert_eq!(i("110", None).unwrap(), "+86110");
        assert_eq!(i("95588", None).unwrap(), "+8695588");
        assert_eq!(i("123456", None).unwrap(), "+86123456");
        assert_eq!(i("1234567", None).unwrap(), "+1234567");
        // Longer than E.164: an IP dial prefix before a domestic mobile.
        assert_eq!(i("1795113812345678", None).unwrap(), "+8613812345678");
        // A phone-context says where a local number belongs.
        assert_eq!(i("5550123", Some("+1415")).unwrap(), "+14155550123");
        assert_eq!(i("13812345678", Some("+86")).unwrap(), "+8613812345678");
        // The default reading is unchanged.
        assert_eq!(n("14155550123").unwrap(), "+8614155550123");
    }

    #[test]
    fn phone_context() {
        let p =
            |s: &str, c: &str| normalise(s.as_bytes(), b"86", Some(c.as_bytes())).map(|n| n.e164());
        assert_eq!(p("010-12345678", "+86").unwrap(), "+861012345678");
        assert_eq!(p("12345678", "+8610").unwrap(), "+861012345678");
        assert_eq!(p("13812345678", "example.com").unwrap(), "+8613812345678");
        assert_eq!(p("5550123", "+1415").unwrap(), "+14155550123");
        // The context is a global number: visual separators may be written in it.
        for c in ["+86-10", "+86.10", "+(86)10", "+86-(10)"] {
            assert_eq!(p("5555-0100", c).unwrap(), "+861055550100", "{c}");
        }
        assert_eq!(p("555-0123", "+1-415").unwrap(), "+14155550123");
        // The home country's context reads as the home plan: an international 00, an IP
        // dial prefix, the country code written again (QA 88: `00442071234567` was read
        // as +860442071234567, a foreign caller refused).
        for (local, e164) in [
            ("00442071234567", "+442071234567"),
            ("0086-755-8888-1234", "+8675588881234"),
            ("1795113812345678", "+8613812345678"),
            ("17951075588881234", "+8675588881234"),
            ("8613812345678", "+8613812345678"),
            ("075588881234", "+8675588881234"),
            ("88881234", "+8688881234"),
        ] {
            assert_eq!(p(local, "+86").unwrap(), e164, "{local}");
            assert_eq!(p(local, "%2B86").unwrap(), e164, "{local}");
            assert_eq!(
                normalise(local.as_bytes(), b"86", None).unwrap().e164(),
                e164
            );
        }
        // Another country's context places the digits as they are.
        assert_eq!(p("00442071234567", "+44").unwrap(), "+4400442071234567");
        // A mobile's digits in a foreign context are not a domestic mobile.
        assert_eq!(p("13912345678", "+4-4").unwrap(), "+4413912345678");
        // A '+' context that is no number places the number nowhere.
        for c in ["+", "+-", "+86x", "+44;x"] {
            assert_eq!(p("13912345678", c), Err(NotANumber::NonNumeric), "{c}");
        }
        // Escaped, the same context (QA 54: `%2B852` was read as no context, in the home
        // plan).
        assert_eq!(p("21234567", "%2B852").unwrap(), "+85221234567");
        assert_eq!(p("12345678", "%2b86%2D10").unwrap(), "+861012345678");
        assert_eq!(p("12345678", "%30%31%30").unwrap(), "+861012345678");
        assert_eq!(p("13912345678", "%2B4-4").unwrap(), "+4413912345678");
    }

    #[test]
    fn not_numbers() {
        assert_eq!(n(""), Err(NotANumber::Empty));
        assert_eq!(n("Anonymous"), Err(NotANumber::Withheld));
        assert_eq!(n("unknown"), Err(NotANumber::Withheld));
        assert_eq!(n("trunk-gw"), Err(NotANumber::NonNumeric));
        assert_eq!(n("+"), Err(NotANumber::NonNumeric));
        assert_eq!(n("138+12"), Err(NotANumber::NonNumeric));
        assert_eq!(n("1234567890123456789012"), Err(NotANumber::TooLong));
        assert_eq!(n("00"), Err(NotANumber::Incomplete));
        assert_eq!(n("%61nonymous"), Err(NotANumber::Withheld));
        assert_eq!(n("%55NKNOWN"), Err(NotANumber::Withheld));
        assert_eq!(n("%61lice"), Err(NotANumber::NonNumeric));
        // The bracketed trunk prefix after a country code (E.123) is not dialled.
        assert_eq!(n("+44 (0)20 7123 4567"), Ok("+442071234567".to_string()));
        assert_eq!(n("+86 (0)10 5555 0100"), Ok("+861055550100".to_string()));
        // The home country code before the national form, trunk prefix and all (QA 197):
        // no home number starts with 0; another plan's may.
        for t in [
            "+86 (010) 5555 0100",
            "+8601055550100",
            "008601055550100",
            "+86-010-5555-0100",
        ] {
            assert_eq!(n(t), Ok("+861055550100".to_string()), "{t}");
        }
        assert_eq!(n("+390612345678"), Ok("+390612345678".to_string()));
        assert_eq!(n("+8601"), Ok("+8601".to_string()));
        // Two zeros or more are no trunk prefix: the number stays as written (QA 201 U2:
        // one 0 went, and the record showed a number no one wrote).
        assert_eq!(n("8600013812345678"), Ok("+8600013812345678".to_string()));
        // A Latin-1 no-break space byte separates too; other bytes outside ASCII, or
        // escaped, are no part of a number.
        assert_eq!(
            normalise(b"138\xa012345678", b"86", None).map(|n| n.e164()),
            Ok("+8613812345678".to_string())
        );
        assert_eq!(n("138%A012345678"), Err(NotANumber::NonNumeric));
        assert_eq!(n("138%FE12345678"), Err(NotANumber::NonNumeric));
        assert_eq!(n("138一2345678"), Err(NotANumber::NonNumeric));
        assert_eq!(n("0755) 8888-1234"), Ok("+8675588881234".to_string()));
        assert_eq!(n("00-"), Err(NotANumber::Incomplete));
        assert_eq!(n("000"), Ok("+0".to_string()));
        // Escapes and full-width forms of what is not a number stay not numbers.
        assert_eq!(n("%41lice"), Err(NotANumber::NonNumeric));
        assert_eq!(n("138%2"), Err(NotANumber::NonNumeric));
        assert_eq!(n("%zz"), Err(NotANumber::NonNumeric));
        assert_eq!(n("１３８ａ"), Err(NotANumber::NonNumeric));
        assert_eq!(n("张三"), Err(NotANumber::NonNumeric));
    }

    #[test]
    fn keys_keep_length() {
        let a = Number::from_digits(b"0").unwrap();
        let b = Number::from_digits(b"00").unwrap();
        assert_ne!(a.key(), b.key());
        let m = Number::from_digits(b"8613812345678").unwrap();
        assert_eq!(m.prefix_key(5), key_of(b"86138"));
        assert!(Number::from_digits(b"999999999999999999").is_some());
    }
}
