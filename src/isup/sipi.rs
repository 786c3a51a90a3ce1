//! Finding the ISUP in a SIP message: the whole body when its type is `application/ISUP`,
//! else the `application/ISUP` part of a `multipart/*` body, multipart parts inside it
//! opened too (up to [`multipart::MAX_DEPTH`] levels). More than one ISUP part is an
//! unreadable IAM: which one the next hop reads is not known.

use super::{Iam, IsupError, decode_iam};
use crate::sip::lex;
use crate::sip::multipart::{self, MultipartError};
use crate::sip::{HeaderName, Message, Span};

/// The ISUP body of a SIP-I message and its IAM.
#[derive(Debug, Clone, Copy)]
pub struct SipI {
    /// The ISUP octets in the message buffer.
    pub body: Span,
    /// The Content-Length values of the part and of the multipart parts around it,
    /// where they have one: a rewrite must follow each.
    pub part_content_lengths: PartLengths,
    /// `handling=required` (the default for `signal`): the next hop must understand it.
    pub required: bool,
    pub iam: Result<Iam, IsupError>,
}

/// Content-Length values of an ISUP part and the parts it is nested in.
pub type PartLengths = [Option<Span>; multipart::MAX_DEPTH];

/// Why a message that declares ISUP has none we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipIError {
    Multipart(MultipartError),
}

/// The ISUP of `msg`, if it carries any. `Ok(None)`: not SIP-I.
pub fn find(msg: &Message) -> Result<Option<SipI>, SipIError> {
    if sdp_only(msg) {
        return Ok(None);
    }
    // A body the next hop must guess the type of (RFC 3261 20.15: a body has a
    // Content-Type) may be read as ISUP there when it looks like an IAM or holds parts.
    // Anything else (an SDP a broken client sent untyped) is no SIP-I call.
    let Some(ct) = msg.value(HeaderName::ContentType) else {
        // Parts: a delimiter line anywhere (a preamble may come first: QA 28).
        let body = lex::trim(msg.body());
        let parts = body.starts_with(b"--") || memchr::memmem::find(body, b"\n--").is_some();
        return if body.first() == Some(&super::IAM) || parts {
            Err(SipIError::Multipart(MultipartError::BadContentType(
                msg.body_span().start as usize,
            )))
        } else {
            Ok(None)
        };
    };
    let b = msg.buf();
    // ISUP or parts under a transfer encoding that changes bytes: a next hop that
    // decodes it reads another IAM than these bytes (RFC 2045 6; base64 decoders skip
    // what is not of their alphabet, so "clean" bytes can carry an encoded IAM).
    // The same for SIP's own Content-Encoding (RFC 3261 20.12, compact `e`: gzip): the
    // type names the body decoded, and a gzip stream's header can carry a clean
    // multipart while the compressed data holds a forged IAM.
    let encoded = || {
        msg.all(HeaderName::Other)
            .find(|h| multipart::encoding_changes_bytes(h.name_span().of(b), h.value().of(b)))
            .map(|h| SipIError::Multipart(MultipartError::Encoded(h.line().start as usize)))
    };
    // Another type's body a next hop may take for ISUP is judged as one too.
    let whole = is_isup(ct) || (multipart::plain_media_type(ct) && taken_for_isup(ct, msg.body()));
    let (body, part_cl, disposition, isup_ct) = if whole {
        if let Some(e) = encoded() {
            return Err(e);
        }
        let disp = msg.first(HeaderName::ContentDisposition).map(|h| h.value());
        (msg.body_span(), [None; multipart::MAX_DEPTH], disp, ct)
    } else if multipart::is_multipart(ct) {
        if let Some(e) = encoded() {
            return Err(e);
        }
        let mut found = Found::default();
        collect(
            b,
            msg.body_span(),
            ct,
            1,
            [None; multipart::MAX_DEPTH],
            &mut found,
        )?;
        let Some((p, lengths)) = found.first else {
            return Ok(None);
        };
        if found.count > 1 {
            return Ok(Some(SipI {
                body: p.body,
                part_content_lengths: lengths,
                required: true,
                iam: Err(IsupError::SeveralParts),
            }));
        }
        (
            p.body,
            lengths,
            p.disposition,
            p.content_type.map_or(&[][..], |t| t.of(b)),
        )
    } else if multipart::plain_media_type(ct) {
        return Ok(None);
    } else {
        let at = msg
            .first(HeaderName::ContentType)
            .map_or(0, |h| h.value().start);
        return Err(SipIError::Multipart(MultipartError::BadContentType(
            at as usize,
        )));
    };
    // RFC 3204's version parameter names the ISUP variant; ITU-T's and the national
    // variants built on it (China's among them) share the IAM's layout, ANSI's does not.
    let ansi = ansi_variant(isup_ct);
    Ok(Some(SipI {
        body,
        part_content_lengths: part_cl,
        required: disposition.is_none_or(|d| multipart::handling_required(d.of(b))),
        iam: if ansi {
            Err(IsupError::Ansi)
        } else {
            decode_iam(body.of(b))
        },
    }))
}

/// A body typed `application/sdp`, as written by nearly every gateway: no SIP-I call,
/// told by one comparison of the field's bytes. The identity reader asks before it
/// reads the body, so that an SDP call does not copy an empty ISUP reading into place
/// (the general path costs ~450 instructions per INVITE, a thirtieth of a decision).
#[inline]
pub fn sdp_only(msg: &Message) -> bool {
    msg.value(HeaderName::ContentType) == Some(&b"application/sdp"[..])
}

/// The ISUP parts of a multipart body, multipart parts opened in turn.
#[derive(Default)]
struct Found {
    /// The first ISUP part, and its Content-Length with those of the parts around it.
    first: Option<(multipart::Part, PartLengths)>,
    count: usize,
}

/// Looks for ISUP parts in the multipart `body` of type `ct`, `depth` levels down: an
/// IAM in a second ISUP part, or inside a multipart part, is as much the next hop's to
/// read as one in the first.
fn collect(
    b: &[u8],
    body: Span,
    ct: &[u8],
    depth: usize,
    mut lengths: PartLengths,
    found: &mut Found,
) -> Result<(), SipIError> {
    let boundary = multipart::boundary(ct).map_err(SipIError::Multipart)?;
    let (parts, n) = multipart::parts(b, body, boundary).map_err(SipIError::Multipart)?;
    for p in &parts[..n] {
        let t = p.content_type.map_or(&[][..], |t| t.of(b));
        let nested = multipart::is_multipart(t);
        // A part without a type is a lenient reader's to guess.
        let isup = is_isup(t)
            || (!nested
                && (p.content_type.is_none() || multipart::plain_media_type(t))
                && taken_for_isup(t, p.body.of(b)));
        if let Some(cte) = p.encoding.filter(|_| isup || nested) {
            return Err(SipIError::Multipart(MultipartError::Encoded(
                cte.start as usize,
            )));
        }
        // This part's length is the innermost so far (depth counts from 1). One that is
        // not the part's (QA 138) is a second reading of where the IAM ends; the CRLF
        // before the next delimiter, which RFC 2046 gives the delimiter, may be counted.
        lengths[depth - 1] = p.content_length;
        if let Some(cl) = p.content_length.filter(|_| isup || nested) {
            let len = p.body.len();
            let crlf = &b[p.body.end as usize..(p.body.end as usize + 2).min(b.len())];
            let with_eol = len + if crlf == b"\r\n" { 2 } else { 1 };
            if !lex::parse_u32(cl.of(b))
                .is_some_and(|n| n as usize == len || n as usize == with_eol)
            {
                return Err(SipIError::Multipart(MultipartError::LengthDisagrees(
                    cl.start as usize,
                )));
            }
        }
        if !isup
            && !nested
            && p.content_type
                .is_some_and(|_| !multipart::plain_media_type(t))
        {
            return Err(SipIError::Multipart(MultipartError::BadContentType(
                p.content_type.map_or(0, |c| c.start as usize),
            )));
        }
        if isup {
            found.count += 1;
            found.first.get_or_insert((*p, lengths));
        } else if nested {
            if depth >= multipart::MAX_DEPTH {
                return Err(SipIError::Multipart(MultipartError::TooDeep(
                    p.body.start as usize,
                )));
            }
            collect(b, p.body, t, depth + 1, lengths, found)?;
        }
    }
    Ok(())
}

/// The `version` parameter names ANSI ISUP (SIP-T `ansi88`/`ansi92`, Bellcore's
/// `gr-317`), or `base` does (RFC 3204: the variant a national one is built on,
/// `version=nxv3;base=ansi92`). Every SIP-I call asks, so the usual `version=itu-t92+`
/// is let go by the first letter of its value, before any parameter is parsed.
fn ansi_variant(content_type: &[u8]) -> bool {
    // RFC 2231's encoded or continued values (`version*=''ansi92`,
    // `version*0=ans;version*1=i92`): no SIP-I peer writes them, and a lenient reader
    // joins them into what this one would not see. Taken as ANSI: unreadable, refused.
    if lex::find_byte(content_type, b'*').is_some() {
        let encoded = |name: &[u8]| {
            content_type.split(|&c| c == b';').skip(1).any(|p| {
                let n = p.split(|&c| c == b'=').next().unwrap_or_default();
                let n = multipart::without_comments(n);
                n.len() > name.len()
                    && n[..name.len()].eq_ignore_ascii_case(name)
                    && n[name.len()] == b'*'
            })
        };
        if encoded(b"version") || encoded(b"base") {
            return true;
        }
    }
    let mut rest = content_type;
    while let Some(eq) = lex::find_byte(rest, b'=') {
        rest = &rest[eq + 1..];
        let first = rest
            .iter()
            .find(|&&c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'"'))
            .copied();
        // `(` : a comment first (`version=(c)ansi92`), which a lenient reader skips.
        if matches!(first, Some(b'a' | b'A' | b'g' | b'G' | b'(')) {
            // Any of them, if one is given twice: the next hop may read either.
            let ansi = |name: &[u8]| {
                multipart::params(content_type, name)
                    .any(|v| lex::starts_with_ci(v, b"ansi") || lex::starts_with_ci(v, b"gr-"))
            };
            return ansi(b"version") || ansi(b"base");
        }
    }
    false
}

/// A body (or part) of another media type than `application/ISUP` that a next hop may
/// take for ISUP all the same, and so is judged as it: a type that names ISUP otherwise
/// (a subtype with `isup` among its words, `x-isup`, `vnd.example.isup`, `foo+isup`,
/// or `sipi`/`sip-i`; not in a comment), or bytes that start as an IAM does where no
/// type says what they are (`application/octet-stream`, a part without a type). Other
/// types (an image, `application/QSIG`, SDP, text) are read as what they say. QA 125:
/// a forged Calling Party Number under `application/x-isup` went on unjudged; QA 126:
/// `vnd.isupport+json` is no ISUP, nor a PNG that happens to start with 0x01.
fn taken_for_isup(content_type: &[u8], body: &[u8]) -> bool {
    let mt = lex::trim(multipart::without_comments(multipart::media_type(
        content_type,
    )));
    let sub = lex::find_byte(mt, b'/').map_or(&[][..], |at| lex::trim(&mt[at + 1..]));
    let names_isup = sub
        .split(|&c| matches!(c, b'.' | b'-' | b'+'))
        .any(|w| w.eq_ignore_ascii_case(b"isup"))
        || sub.eq_ignore_ascii_case(b"sipi")
        || sub.eq_ignore_ascii_case(b"sip-i");
    let untyped =
        mt.is_empty() || multipart::is_type(content_type, b"application", Some(b"octet-stream"));
    names_isup || (untyped && body.first() == Some(&super::IAM))
}

/// Whether a Content-Type value names ISUP, however a lenient reader would take it.
pub fn is_isup(content_type: &[u8]) -> bool {
    // Every INVITE asks; nearly all say "application/sdp", which is shorter than the
    // prefix compared here: refused before any search for parameters.
    const ISUP: &[u8] = b"application/isup";
    let ct = lex::trim(content_type);
    match ct.get(..ISUP.len()) {
        Some(p) if p.eq_ignore_ascii_case(ISUP) => {
            multipart::media_type(ct).len() == ISUP.len()
                // `application/ISUP (SIP-I)`: a comment after it.
                || multipart::is_type(ct, b"application", Some(b"isup"))
        }
        // `application / ISUP`: still ISUP to a lenient next hop. `application/sdp`,
        // every INVITE's, is let go by the byte after the slash.
        _ if lex::starts_with_ci(ct, b"application") => match &ct[b"application".len()..] {
            [b'/', c, ..] if !c.is_ascii_whitespace() && *c != b'(' => false,
            _ => multipart::is_type(ct, b"application", Some(b"isup")),
        },
        // A comment first: `(SIP-I) application/isup`.
        _ if ct.first() == Some(&b'(') => multipart::is_type(ct, b"application", Some(b"isup")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{ansi_variant, is_isup};

    #[test]
    fn ansi_named_by_version_or_base() {
        for ct in [
            "application/isup;version=ansi92",
            "application/ISUP; version=\"GR-317\"",
            "application/isup;version=nxv3;base=ansi92",
            "application/isup;base=ansi88;version=nxv3",
            "application/isup;version=(SIP-T) ansi92",
            "application/isup;version=\"ansi92\" (c)",
            "application/isup;base=(c)\"ansi92\"(d)",
            "application/isup; (c) version=ansi92",
            "application/isup;version*=''ansi92",
            "application/isup;version*0=ans;version*1=i92",
            "application/isup;BASE*=us-ascii'en'ansi92",
            "application/isup;version=\t(c)gr-317",
            "application/isup;version=itu-t92+;version=ansi92",
            "application/isup;base=itu-t92+;base=ansi92",
        ] {
            assert!(ansi_variant(ct.as_bytes()), "{ct}");
        }
        for ct in [
            "application/isup;version=itu-t92+",
            "application/isup;version=nxv3;base=etsi121",
            "application/isup;version=chn;base=itu-t92+",
            "application/isup",
        ] {
            assert!(!ansi_variant(ct.as_bytes()), "{ct}");
        }
    }

    #[test]
    fn the_isup_media_type_in_every_form_and_nothing_else() {
        for ct in [
            "application/isup",
            "Application/ISUP;version=itu-t92+",
            "application/isup ; version=chn",
            "application/isup\t;base=itu-t92+",
            " application/isup",
            "application / ISUP;version=itu-t92+",
            "application/\r\n isup",
        ] {
            assert!(is_isup(ct.as_bytes()), "{ct:?}");
        }
        for ct in [
            "application/sdp",
            "application/isupx",
            "application/isup-foo;version=itu-t92+",
            "application/isu",
            "multipart/mixed;boundary=x",
            "",
        ] {
            assert!(!is_isup(ct.as_bytes()), "{ct:?}");
        }
    }
}
