//! ISUP (ITU-T Q.763) as SIP-I carries it (Q.1912.5, RFC 3204): the original Initial
//! Address Message in an `application/ISUP` body part, starting at the message type
//! code (no routing label, no CIC).
//!
//! Only the IAM is decoded, and only what the filter judges: the Called Party Number
//! (mandatory variable part) and, among the optional parameters, Calling Party Number,
//! Generic Number, Original Called Number and Redirecting Number. Every other optional
//! parameter is walked over by its length and kept as bytes: an unknown parameter is
//! never an error (Q.764 2.9.5 forward compatibility). Offsets are positions in the
//! ISUP bytes; the caller shifts them to the SIP message.

pub mod encode;
pub mod sipi;

/// Message type code of the Initial Address Message.
pub const IAM: u8 = 0x01;

/// Parameter codes (Q.763 Table 5).
pub mod code {
    pub const END_OF_OPTIONAL: u8 = 0x00;
    pub const CALLED_PARTY_NUMBER: u8 = 0x04;
    pub const CALLING_PARTY_NUMBER: u8 = 0x0a;
    pub const REDIRECTING_NUMBER: u8 = 0x0b;
    pub const ORIGINAL_CALLED_NUMBER: u8 = 0x28;
    pub const GENERIC_NUMBER: u8 = 0xc0;
}

/// Number qualifier of a Generic Number (Q.763 3.26): the "additional calling party
/// number", a second, user-provided calling number: the generic number the rules delete.
pub const QUALIFIER_ADDITIONAL_CALLING: u8 = 0x06;

/// Whether a Generic Number of qualifier `q` may be shown as the caller: every one but
/// those Q.763 3.26 gives to another party (additional called number 1, redirecting
/// terminating 4, additional connected 5, additional original called, redirecting and
/// redirection numbers 7-9). The supplementary user-provided calling numbers (2, 3),
/// the national-use range (0x80-0xFE), which a national variant may use for a calling
/// number, and spare values count as presented numbers: judged on enterprise trunks,
/// deleted at the gateways.
pub fn presents_caller(q: u8) -> bool {
    !matches!(q, 1 | 4 | 5 | 7 | 8 | 9)
}

/// Octets of the mandatory fixed part of an IAM after the type code: nature of
/// connection (1), forward call indicators (2), calling party's category (1),
/// transmission medium requirement (1).
const FIXED: usize = 5;
/// Offset of the pointer to the Called Party Number; the optional-part pointer follows.
const CALLED_PTR: usize = 1 + FIXED;
/// Offset of the pointer to the start of the optional part (0: no optional part).
pub const OPT_PTR: usize = CALLED_PTR + 1;
/// Address signals kept per number: Q.763 numbers are at most 16 octets of digits.
pub const MAX_DIGITS: usize = 32;

/// Nature of address indicator (Q.763 3.9 / 3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nature {
    Subscriber,
    Unknown,
    National,
    International,
    /// Spare, national or network specific values.
    Other(u8),
}

impl Nature {
    fn from_bits(v: u8) -> Nature {
        match v {
            1 => Nature::Subscriber,
            2 => Nature::Unknown,
            3 => Nature::National,
            4 => Nature::International,
            v => Nature::Other(v),
        }
    }
    pub fn bits(self) -> u8 {
        match self {
            Nature::Subscriber => 1,
            Nature::Unknown => 2,
            Nature::National => 3,
            Nature::International => 4,
            Nature::Other(v) => v & 0x7f,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Nature::Subscriber => "subscriber",
            Nature::Unknown => "unknown",
            Nature::National => "national",
            Nature::International => "international",
            Nature::Other(_) => "other",
        }
    }
}

/// Address presentation restricted indicator (Q.763 3.10 d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    Allowed,
    Restricted,
    NotAvailable,
    Reserved,
}

impl Presentation {
    fn from_bits(v: u8) -> Presentation {
        match v & 3 {
            0 => Presentation::Allowed,
            1 => Presentation::Restricted,
            2 => Presentation::NotAvailable,
            _ => Presentation::Reserved,
        }
    }
    pub fn bits(self) -> u8 {
        match self {
            Presentation::Allowed => 0,
            Presentation::Restricted => 1,
            Presentation::NotAvailable => 2,
            Presentation::Reserved => 3,
        }
    }
    /// Whether the number may not be shown: restricted, or `11`, "reserved for
    /// restriction by the network" (Q.763 3.10 d; QA 112: a PBX writing it went past a
    /// trunk that refuses withheld callers). Read as restricted, the safe side.
    pub fn restricts(self) -> bool {
        matches!(self, Presentation::Restricted | Presentation::Reserved)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Presentation::Allowed => "allowed",
            Presentation::Restricted => "restricted",
            Presentation::NotAvailable => "not-available",
            Presentation::Reserved => "reserved",
        }
    }
}

/// One number parameter of an IAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsupNumber {
    /// Parameter code (one of [`code`]).
    pub code: u8,
    /// Where the parameter starts in the ISUP bytes (its code octet when optional, its
    /// length octet when mandatory) and how many octets it takes in all.
    pub at: usize,
    pub len: usize,
    /// Generic Number only: the number qualifier.
    pub qualifier: Option<u8>,
    pub nature: Nature,
    /// Calling, generic, original called and redirecting numbers.
    pub presentation: Option<Presentation>,
    /// Screening indicator (calling and generic numbers): 1 and 3 mean the network
    /// verified or provided it.
    pub screening: Option<u8>,
    digits: [u8; MAX_DIGITS],
    n_digits: u8,
    /// An address signal that is not a digit (codes 11-14) or more than [`MAX_DIGITS`].
    pub odd_signals: bool,
}

impl IsupNumber {
    /// Address signals as ASCII: '0'-'9', then 'B'..'E' for codes 11-14 (`odd_signals`).
    /// The end-of-pulsing signal (ST, code 15) ends the number and is not included.
    pub fn digits(&self) -> &[u8] {
        &self.digits[..self.n_digits as usize]
    }
    pub fn digits_str(&self) -> &str {
        // Only ASCII digits and 'A'..'E' are ever stored.
        std::str::from_utf8(self.digits()).unwrap_or("")
    }
}

/// The numbers of one IAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iam {
    pub called: IsupNumber,
    pub calling: Option<IsupNumber>,
    /// The first Generic Number that is an additional calling party number.
    pub generic: Option<IsupNumber>,
    /// Further such Generic Numbers, each written differently (digits or nature) from
    /// the first and from each other: a contracted number first must not cover another
    /// after it. The same number written nationally and internationally is two here;
    /// only the normaliser ([`crate::identity::isup_identity`]) tells it is one.
    pub generic_more: [Option<IsupNumber>; 3],
    /// More differently written ones than `generic_more` holds: more presented numbers
    /// than are judged (an enterprise trunk refuses the IAM; the gateways delete them
    /// all anyway).
    pub generic_overflow: bool,
    pub original_called: Option<IsupNumber>,
    pub redirecting: Option<IsupNumber>,
    /// Start of the optional part (its first parameter's code), when there is one.
    pub optional_at: Option<usize>,
    /// Optional parameters in all, known and unknown, END excluded.
    pub optional_count: u16,
    /// Generic Numbers that are additional calling party numbers: every one is deleted.
    pub generic_count: u16,
    /// Octets of the message up to and including the end-of-optional-parameters octet.
    pub len: usize,
}

impl Iam {
    pub fn generic_numbers<'a>(&self, isup: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        optional_params(isup, self.optional_at)
            .map_while(Result::ok)
            .filter_map(|(c, at, len)| {
                (c == code::GENERIC_NUMBER && isup.get(at + 2).is_some_and(|&q| presents_caller(q)))
                    .then_some((at, len))
            })
    }
}

/// Why an IAM could not be decoded, with the offset in the ISUP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsupError {
    /// The bytes end inside the message.
    Truncated(usize),
    /// Another message type than IAM (the code).
    NotIam(u8),
    /// A pointer that points before its own end or past the message.
    BadPointer(usize),
    /// A number parameter too short for its fixed octets.
    BadNumber(usize),
    /// ANSI ISUP (SIP-T `version=ansi88/ansi92`, Bellcore `gr-317`), whose IAM is laid
    /// out otherwise: read as ITU-T it would give wrong numbers, so it is not read.
    Ansi,
    /// A multipart body that cannot be split into its parts: it may hide an IAM.
    Multipart(crate::sip::multipart::MultipartError),
    /// More than one ISUP part (at any depth): which one the next hop reads is not
    /// known, so none is trusted.
    SeveralParts,
    /// A second Calling Party Number (at this octet): Q.763 allows one, and which one
    /// the next hop reads is not known.
    RepeatedCalling(usize),
    /// Octets no parameter holds (from this octet): after the end of the optional
    /// parameters, or skipped by a pointer. A decoder that reads on, or parameter by
    /// parameter, finds what this one did not judge.
    Unaccounted(usize),
    /// The optional parameters end with the bytes, without their end octet (due at this
    /// octet): Q.763 1.8 requires it (QA 125: "truncated" said nothing of what to ask
    /// the peer for).
    NoEnd(usize),
}

impl IsupError {
    pub fn offset(self) -> usize {
        match self {
            IsupError::Truncated(o)
            | IsupError::BadPointer(o)
            | IsupError::BadNumber(o)
            | IsupError::RepeatedCalling(o)
            | IsupError::Unaccounted(o)
            | IsupError::NoEnd(o) => o,
            IsupError::NotIam(_) | IsupError::Ansi | IsupError::SeveralParts => 0,
            IsupError::Multipart(e) => e.offset(),
        }
    }
}

impl std::fmt::Display for IsupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IsupError::Truncated(o) => write!(f, "ISUP truncated at octet {o}"),
            IsupError::NotIam(t) => write!(f, "ISUP message type 0x{t:02x} is not an IAM"),
            IsupError::BadPointer(o) => write!(f, "ISUP pointer at octet {o} is out of range"),
            IsupError::BadNumber(o) => write!(f, "ISUP number parameter at octet {o} is too short"),
            IsupError::Ansi => write!(f, "ANSI ISUP (SIP-T) is not decoded, only ITU-T (SIP-I)"),
            // A whole-body ISUP or untyped body is no multipart (QA 46: said to be).
            IsupError::Multipart(
                e @ (crate::sip::multipart::MultipartError::BadContentType(_)
                | crate::sip::multipart::MultipartError::Encoded(_)),
            ) => write!(f, "the body cannot be read as the next hop reads it: {e}"),
            IsupError::Multipart(e) => write!(f, "the multipart body cannot be split: {e}"),
            IsupError::SeveralParts => write!(
                f,
                "more than one ISUP part: which one the next hop reads is not known"
            ),
            IsupError::RepeatedCalling(o) => write!(
                f,
                "a second ISUP Calling Party Number at octet {o}: which one the next hop reads is not known"
            ),
            IsupError::Unaccounted(o) => write!(
                f,
                "ISUP octets from {o} belong to no parameter: another decoder may read a number there"
            ),
            IsupError::NoEnd(o) => write!(
                f,
                "ISUP optional parameters without their end octet (0x00, due at octet {o}): Q.763 requires it"
            ),
        }
    }
}

/// Optional parameters as (code, offset of the code octet, octets in all), up to END.
/// A parameter that does not fit is an error, and the last item. The one walk of the
/// optional part: the decoder and the deletion both use it.
fn optional_params(
    b: &[u8],
    start: Option<usize>,
) -> impl Iterator<Item = Result<(u8, usize, usize), IsupError>> + '_ {
    let mut next = start;
    std::iter::from_fn(move || {
        let i = next.take()?;
        let c = match b.get(i) {
            // Right after a whole parameter (or the pointer's start): no end octet.
            None => return Some(Err(IsupError::NoEnd(i))),
            Some(&code::END_OF_OPTIONAL) => return None,
            Some(&c) => c,
        };
        let Some(&l) = b.get(i + 1) else {
            return Some(Err(IsupError::Truncated(i + 1)));
        };
        let len = 2 + l as usize;
        if i + len > b.len() {
            return Some(Err(IsupError::Truncated(b.len())));
        }
        next = Some(i + len);
        Some(Ok((c, i, len)))
    })
}

/// Decodes an IAM.
pub fn decode_iam(b: &[u8]) -> Result<Iam, IsupError> {
    let t = *b.first().ok_or(IsupError::Truncated(0))?;
    if t != IAM {
        return Err(IsupError::NotIam(t));
    }
    if b.len() < OPT_PTR + 1 {
        return Err(IsupError::Truncated(b.len()));
    }
    // Pointers count from the pointer octet itself (Q.763 1.7). The called number, the
    // one mandatory variable parameter, starts right after the two pointers, and the
    // optional part right after it: octets a pointer skips are read by nobody here,
    // and by a decoder that walks the parameters in turn.
    let cp = b[CALLED_PTR] as usize;
    if cp < 2 {
        return Err(IsupError::BadPointer(CALLED_PTR));
    }
    if cp > 2 {
        return Err(IsupError::Unaccounted(OPT_PTR + 1));
    }
    let called_at = CALLED_PTR + cp;
    let cl = *b.get(called_at).ok_or(IsupError::BadPointer(CALLED_PTR))? as usize;
    let called_end = called_at + 1 + cl;
    if called_end > b.len() {
        return Err(IsupError::Truncated(b.len()));
    }
    let called = number(
        code::CALLED_PARTY_NUMBER,
        called_at,
        1 + cl,
        &b[called_at + 1..called_end],
    )?;
    let op = b[OPT_PTR] as usize;
    let mut iam = Iam {
        called,
        calling: None,
        generic: None,
        generic_more: [None; 3],
        generic_overflow: false,
        original_called: None,
        redirecting: None,
        optional_at: None,
        optional_count: 0,
        generic_count: 0,
        len: called_end,
    };
    if op == 0 {
        if called_end < b.len() {
            return Err(IsupError::Unaccounted(called_end));
        }
        return Ok(iam);
    }
    let start = OPT_PTR + op;
    if start < called_end || start >= b.len() {
        return Err(IsupError::BadPointer(OPT_PTR));
    }
    if start > called_end {
        return Err(IsupError::Unaccounted(called_end));
    }
    iam.optional_at = Some(start);
    let mut end = start;
    for p in optional_params(b, Some(start)) {
        let (c, i, len) = p?;
        let contents = &b[i + 2..i + len];
        iam.optional_count += 1;
        match c {
            code::CALLING_PARTY_NUMBER => {
                if iam.calling.is_some() {
                    return Err(IsupError::RepeatedCalling(i));
                }
                iam.calling = Some(number(c, i, len, contents)?);
            }
            // An empty one has no qualifier to say whose it is: unreadable.
            code::GENERIC_NUMBER if contents.first().is_none_or(|&q| presents_caller(q)) => {
                iam.generic_count += 1;
                let n = number(c, i, len, contents)?;
                let same = |o: Option<IsupNumber>| {
                    o.is_some_and(|o| o.digits() == n.digits() && o.nature == n.nature)
                };
                if iam.generic.is_none() {
                    iam.generic = Some(n);
                } else if !same(iam.generic) && !iam.generic_more.iter().any(|o| same(*o)) {
                    match iam.generic_more.iter_mut().find(|o| o.is_none()) {
                        Some(slot) => *slot = Some(n),
                        None => iam.generic_overflow = true,
                    }
                }
            }
            code::ORIGINAL_CALLED_NUMBER if iam.original_called.is_none() => {
                iam.original_called = Some(number(c, i, len, contents)?);
            }
            code::REDIRECTING_NUMBER if iam.redirecting.is_none() => {
                iam.redirecting = Some(number(c, i, len, contents)?);
            }
            _ => {}
        }
        end = i + len;
    }
    // The walk stopped at the END octet.
    iam.len = end + 1;
    if iam.len < b.len() {
        return Err(IsupError::Unaccounted(iam.len));
    }
    Ok(iam)
}

/// One number parameter's contents (after the length octet).
fn number(code: u8, at: usize, len: usize, c: &[u8]) -> Result<IsupNumber, IsupError> {
    // Octets before the address signals: the generic number has its qualifier first.
    let (qualifier, c) = if code == code::GENERIC_NUMBER {
        let (q, rest) = c.split_first().ok_or(IsupError::BadNumber(at))?;
        (Some(*q), rest)
    } else {
        (None, c)
    };
    if c.len() < 2 {
        return Err(IsupError::BadNumber(at));
    }
    let odd = c[0] & 0x80 != 0;
    let nature = Nature::from_bits(c[0] & 0x7f);
    let (presentation, screening) = match code {
        code::CALLED_PARTY_NUMBER => (None, None),
        code::CALLING_PARTY_NUMBER | code::GENERIC_NUMBER => {
            (Some(Presentation::from_bits(c[1] >> 2)), Some(c[1] & 3))
        }
        _ => (Some(Presentation::from_bits(c[1] >> 2)), None),
    };
    let mut n = IsupNumber {
        code,
        at,
        len,
        qualifier,
        nature,
        presentation,
        screening,
        digits: [0; MAX_DIGITS],
        n_digits: 0,
        odd_signals: false,
    };
    let signals = &c[2..];
    let count = (signals.len() * 2).saturating_sub(odd as usize);
    let signal = |k: usize| {
        // First signal in the low nibble (Q.763 3.9 f).
        let o = signals[k / 2];
        if k.is_multiple_of(2) {
            o & 0x0f
        } else {
            o >> 4
        }
    };
    for k in 0..count {
        let s = signal(k);
        if s == 0x0f {
            // ST, end of pulsing: the last signal. Digits after it are hidden from a
            // decoder that stops there and shown by one that reads on; a filler 0 in
            // the last nibble (a miscounted odd indicator) is all that may follow.
            let rest = count - k - 1;
            if rest > 1 || rest == 1 && (k % 2 == 1 || signal(k + 1) != 0) {
                n.odd_signals = true;
            }
            break;
        }
        if n.n_digits as usize == MAX_DIGITS {
            n.odd_signals = true;
            break;
        }
        n.digits[n.n_digits as usize] = match s {
            0..=9 => b'0' + s,
            _ => {
                n.odd_signals = true;
                b'A' + (s - 10)
            }
        };
        n.n_digits += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::encode::{IamBuilder, NumberSpec};
    use super::*;

    #[test]
    fn decodes_what_the_builder_writes() {
        let b = IamBuilder::new("8613812345678")
            .calling(NumberSpec::international("8613900001111").restricted())
            .generic(NumberSpec::international("442071234567"))
            .unknown(0x39, &[1, 2, 3])
            .redirecting(NumberSpec::national("1012345678"))
            .build();
        let iam = decode_iam(&b).unwrap();
        assert_eq!(iam.called.digits(), b"8613812345678");
        let c = iam.calling.unwrap();
        assert_eq!(c.digits(), b"8613900001111");
        assert_eq!(c.nature, Nature::International);
        assert_eq!(c.presentation, Some(Presentation::Restricted));
        assert_eq!(c.screening, Some(3));
        let g = iam.generic.unwrap();
        assert_eq!(g.digits(), b"442071234567");
        assert_eq!(g.qualifier, Some(QUALIFIER_ADDITIONAL_CALLING));
        assert_eq!(iam.redirecting.unwrap().nature, Nature::National);
        assert_eq!(iam.optional_count, 4);
        assert_eq!(iam.generic_count, 1);
        assert_eq!(iam.len, b.len());
        assert_eq!(iam.generic_numbers(&b).count(), 1);
    }

    #[test]
    fn odd_and_even_digit_counts() {
        for d in ["1", "12", "123", "110", "13812345678", "861012345678"] {
            let b = IamBuilder::new(d).calling(NumberSpec::national(d)).build();
            let iam = decode_iam(&b).unwrap();
            assert_eq!(iam.called.digits(), d.as_bytes());
            assert_eq!(iam.calling.unwrap().digits(), d.as_bytes());
        }
    }

    #[test]
    fn end_of_pulsing_and_odd_signals() {
        // Called number "12" then ST, even count: 0x21 0xF? -> "12" and ST in the low nibble.
        let mut b = IamBuilder::new("12").build();
        let at = b[CALLED_PTR] as usize + CALLED_PTR;
        b[at] = 4; // length: NAI, INN/NPI and two signal octets
        b.splice(at + 3..at + 4, [0x21, 0x0f]);
        b[OPT_PTR] = 0;
        let iam = decode_iam(&b).unwrap();
        assert_eq!(iam.called.digits(), b"12");
        let b = IamBuilder::new("1").build();
        let mut b2 = b.clone();
        let at = b2[CALLED_PTR] as usize + CALLED_PTR;
        b2[at + 3] = 0x0b; // signal code 11, odd count
        let iam = decode_iam(&b2).unwrap();
        assert!(iam.called.odd_signals);
        assert_eq!(iam.called.digits(), b"B");
    }

    /// QA 27: octets outside every parameter (after END, after the called number of an
    /// IAM without optional part, skipped by a pointer) make the IAM unreadable: another
    /// decoder may read a number there.
    #[test]
    fn octets_no_parameter_holds_are_refused() {
        let clean = IamBuilder::new("8613812345678")
            .calling(NumberSpec::international("442071234567"))
            .build();
        assert!(decode_iam(&clean).is_ok());
        // A Generic Number after the END octet.
        let mut after_end = clean.clone();
        after_end.extend_from_slice(&[0xc0, 0x06, 0x06, 0x83, 0x10, 0x59, 0x85, 0x08]);
        assert_eq!(
            decode_iam(&after_end).unwrap_err(),
            IsupError::Unaccounted(clean.len())
        );
        // After the called number of an IAM without optional part.
        let bare = IamBuilder::new("8613812345678").build();
        let mut tail = bare.clone();
        tail.push(0x0a);
        assert_eq!(
            decode_iam(&tail).unwrap_err(),
            IsupError::Unaccounted(bare.len())
        );
        // The optional-part pointer skipping a Calling Party Number.
        let called_end = OPT_PTR + 1 + 1 + bare[OPT_PTR + 1] as usize;
        let hidden = [
            0x0a, 0x09, 0x84, 0x13, 0x68, 0x31, 0x18, 0x32, 0x54, 0x76, 0x08,
        ];
        let mut gap = clean.clone();
        gap.splice(called_end..called_end, hidden);
        gap[OPT_PTR] += hidden.len() as u8;
        assert_eq!(
            decode_iam(&gap).unwrap_err(),
            IsupError::Unaccounted(called_end)
        );
        // The called-number pointer skipping octets.
        let mut skip = clean.clone();
        skip.insert(OPT_PTR + 1, 0x99);
        skip[CALLED_PTR] += 1;
        skip[OPT_PTR] += 1;
        assert_eq!(
            decode_iam(&skip).unwrap_err(),
            IsupError::Unaccounted(OPT_PTR + 1)
        );
        // An empty Generic Number has no qualifier to say whose it is.
        let empty_generic = IamBuilder::new("8613812345678")
            .unknown(code::GENERIC_NUMBER, &[])
            .build();
        assert!(matches!(
            decode_iam(&empty_generic),
            Err(IsupError::BadNumber(_))
        ));
    }

    /// Every Generic Number but those Q.763 gives another party is a presented caller
    /// (QA 27: qualifier 3 went unjudged and undeleted).
    #[test]
    fn generic_numbers_that_present_a_caller() {
        for q in [0x02u8, 0x03, 0x06, 0x00, 0x0b, 0x80, 0xfe] {
            let b = IamBuilder::new("8613812345678")
                .generic_with(q, NumberSpec::national("95588"))
                .build();
            let iam = decode_iam(&b).unwrap();
            assert_eq!(iam.generic.map(|g| g.qualifier), Some(Some(q)), "{q:#x}");
            assert_eq!(iam.generic_numbers(&b).count(), 1, "{q:#x}");
        }
        for q in [0x01u8, 0x04, 0x05, 0x07, 0x08, 0x09] {
            let b = IamBuilder::new("8613812345678")
                .generic_with(q, NumberSpec::national("95588"))
                .build();
            let iam = decode_iam(&b).unwrap();
            assert!(iam.generic.is_none(), "{q:#x}");
            assert_eq!(iam.generic_numbers(&b).count(), 0, "{q:#x}");
        }
    }

    /// Digits after the end-of-pulsing signal are no digits of the number (a decoder
    /// that reads on would show them): flagged; a filler 0 after it is not.
    #[test]
    fn digits_after_end_of_pulsing() {
        let with_signals = |octets: &[u8], odd: bool| {
            let mut b = IamBuilder::new("12").build();
            let at = b[CALLED_PTR] as usize + CALLED_PTR;
            let len = b[at] as usize;
            b.splice(at + 3..at + 1 + len, octets.iter().copied());
            b[at] = 2 + octets.len() as u8;
            b[at + 1] = if odd {
                b[at + 1] | 0x80
            } else {
                b[at + 1] & 0x7f
            };
            decode_iam(&b).unwrap().called
        };
        // "12" ST: clean, odd count.
        let n = with_signals(&[0x21, 0x0f], true);
        assert_eq!((n.digits(), n.odd_signals), (&b"12"[..], false));
        // "12" ST then a filler 0 (even indicator): clean.
        let n = with_signals(&[0x21, 0x0f], false);
        assert_eq!((n.digits(), n.odd_signals), (&b"12"[..], false));
        // "12" ST "0110": the digits after ST are flagged.
        let n = with_signals(&[0x21, 0x1f, 0x01], false);
        assert_eq!(n.digits(), b"12");
        assert!(n.odd_signals);
        // "1" ST "1": flagged.
        let n = with_signals(&[0xf1, 0x01], true);
        assert!(n.odd_signals);
    }

    #[test]
    fn no_optional_part() {
        let b = IamBuilder::new("13812345678").build();
        assert_eq!(b[OPT_PTR], 0);
        let iam = decode_iam(&b).unwrap();
        assert!(iam.calling.is_none() && iam.optional_at.is_none());
    }

    #[test]
    fn refuses_broken_messages() {
        let good = IamBuilder::new("13812345678")
            .calling(NumberSpec::international("8613900001111"))
            .build();
        assert_eq!(decode_iam(&[]), Err(IsupError::Truncated(0)));
        assert_eq!(decode_iam(&[0x06, 0, 0]), Err(IsupError::NotIam(0x06)));
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            assert!(decode_iam(&good[..n]).is_err(), "len {n}");
        }
        let mut b = good.clone();
        b[CALLED_PTR] = 1;
        assert_eq!(decode_iam(&b), Err(IsupError::BadPointer(CALLED_PTR)));
        let mut b = good.clone();
        b[OPT_PTR] = 200;
        assert_eq!(decode_iam(&b), Err(IsupError::BadPointer(OPT_PTR)));
        let mut b = good.clone();
        let at = decode_iam(&good).unwrap().calling.unwrap().at;
        b[at + 1] = 1; // calling number of one octet
        assert!(decode_iam(&b).is_err());
    }
}
