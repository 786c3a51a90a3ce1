//! sip, sips and tel URIs (RFC 3261 19.1, RFC 3966), described as spans.
//!
//! Other schemes are accepted as opaque (RFC 4475 3.3.2-3.3.4: a proxy may forward
//! what it does not understand) after a character check.

use super::Span;
use super::lex::{self, class_end, is_token, is_uri_char, starts_with_ci};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    /// sip/sips: the user part (before any ':password'); tel: the number.
    pub user: Option<Span>,
    pub host: Span,
    pub port: Option<u16>,
    /// Parameters after the host (sip) or number (tel), without the leading ';'.
    pub params: Span,
    /// `?headers` part without the '?', sip/sips only.
    pub headers: Option<Span>,
}

/// Why a URI was refused (kept small: callers map it to their own error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUri;

pub fn parse(b: &[u8], s: Span) -> Result<Uri, BadUri> {
    if class_end::<lex::Uri>(&b[..s.end as usize], s.start as usize) != s.end as usize {
        return Err(BadUri);
    }
    parse_chars_checked(b, s)
}

/// [`parse`] for a span whose characters are known to be URI characters: every URI a
/// name-addr parse returned (it checks them), so identity extraction does not scan the
/// same bytes twice.
pub fn parse_chars_checked(b: &[u8], s: Span) -> Result<Uri, BadUri> {
    let (start, end) = (s.start as usize, s.end as usize);
    let v = &b[start..end];
    debug_assert!(v.iter().all(|&c| is_uri_char(c)));
    if v.is_empty() {
        return Err(BadUri);
    }
    let colon = v.iter().position(|&c| c == b':').ok_or(BadUri)?;
    let scheme_b = &v[..colon];
    if scheme_b.is_empty()
        || !scheme_b[0].is_ascii_alphabetic()
        || !scheme_b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err(BadUri);
    }
    let scheme = scheme_named(scheme_b);
    let rest = start + colon + 1;
    match scheme {
        Scheme::Sip | Scheme::Sips => parse_sip(b, rest, end, scheme),
        Scheme::Tel => {
            let semi = find(b, rest, end, b';').unwrap_or(end);
            if semi == rest {
                return Err(BadUri);
            }
            Ok(Uri {
                scheme,
                user: Some(Span::new(rest, semi)),
                host: Span::new(semi, semi),
                port: None,
                params: Span::new((semi + 1).min(end), end),
                headers: None,
            })
        }
        Scheme::Other => Ok(Uri {
            scheme,
            user: None,
            host: Span::new(rest, end),
            port: None,
            params: Span::new(end, end),
            headers: None,
        }),
    }
}

fn find(b: &[u8], from: usize, to: usize, c: u8) -> Option<usize> {
    super::lex::find_byte(&b[from..to], c).map(|p| from + p)
}

fn parse_sip(b: &[u8], rest: usize, end: usize, scheme: Scheme) -> Result<Uri, BadUri> {
    // userinfo may itself hold ';', '?', ',' and '/' (RFC 4475 3.1.1.2), but never an
    // unescaped '@', so the first '@' ends it.
    let (user, hp) = match find(b, rest, end, b'@') {
        Some(at) => {
            let ui_end = find(b, rest, at, b':').unwrap_or(at);
            (Some(Span::new(rest, ui_end)), at + 1)
        }
        None => (None, rest),
    };
    // host
    let mut i = hp;
    if i < end && b[i] == b'[' {
        let close = find(b, i, end, b']').ok_or(BadUri)?;
        if !b[i + 1..close]
            .iter()
            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(BadUri);
        }
        i = close + 1;
    } else {
        i = class_end::<lex::Host>(&b[..end], i);
    }
    let host = Span::new(hp, i);
    if host.is_empty() {
        return Err(BadUri);
    }
    let mut port = None;
    if i < end && b[i] == b':' {
        let ps = i + 1;
        i = ps;
        while i < end && b[i].is_ascii_digit() {
            i += 1;
        }
        let p = super::lex::parse_u32(&b[ps..i])
            .filter(|&p| p <= 65535)
            .ok_or(BadUri)?;
        port = Some(p as u16);
    }
    let q = find(b, i, end, b'?');
    let params_end = q.unwrap_or(end);
    let params = if i < params_end {
        if b[i] != b';' {
            return Err(BadUri);
        }
        Span::new(i + 1, params_end)
    } else {
        Span::new(params_end, params_end)
    };
    Ok(Uri {
        scheme,
        user,
        host,
        port,
        params,
        headers: q.map(|q| Span::new(q + 1, end)),
    })
}

/// The scheme a URI's scheme name (before its ':') names, in any case.
pub fn scheme_named(name: &[u8]) -> Scheme {
    if name.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if name.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if name.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    }
}

/// Value of a `;name=value` parameter in a parameter list (case-insensitive name);
/// `Some(empty span)` for a parameter without a value.
pub fn param(b: &[u8], params: Span, name: &[u8]) -> Option<Span> {
    lex::params(b, params, false)
        .find(|p| is_param_name(lex::trim(p.name.of(b)), name))
        .map(|p| p.value)
}

/// Whether a URI parameter's name `n` is `name`, case aside and escaped characters
/// read as themselves (RFC 3261 19.1.4: `phone%2Dcontext` is `phone-context`, as the
/// next element compares it; QA 54 left it unread).
pub fn is_param_name(n: &[u8], name: &[u8]) -> bool {
    if n.eq_ignore_ascii_case(name) {
        return true;
    }
    // An escape takes three bytes for one character: an escaped name is longer.
    if n.len() <= name.len() || !n.contains(&b'%') {
        return false;
    }
    super::lex::unescaped(n)
        .map(|(_, c)| c.to_ascii_lowercase())
        .eq(name.iter().map(u8::to_ascii_lowercase))
}

/// `user=phone` on a sip URI: the user part is a telephone-subscriber (RFC 3261 19.1.1).
pub fn is_user_phone(b: &[u8], u: &Uri) -> bool {
    param(b, u.params, b"user").is_some_and(|v| v.of(b).eq_ignore_ascii_case(b"phone"))
}

/// For a sip user part written as telephone-subscriber (`+8613812345678;npdi;rn=...`),
/// the number without its own parameters.
pub fn user_number(b: &[u8], user: Span) -> Span {
    let u = user.of(b);
    match u.iter().position(|&c| c == b';') {
        Some(p) => Span::new(user.start as usize, user.start as usize + p),
        None => user,
    }
}

/// `phone-context` of a tel URI or of a telephone-subscriber user part: its value.
#[inline]
pub fn phone_context(b: &[u8], u: &Uri) -> Option<Span> {
    phone_context_param(b, u).map(|p| p.value)
}

/// The `phone-context` parameter of the number, whole. Two of them say two places:
/// which one the next element reads is not known, so the number has none (and is read
/// where a number without one is: the home plan, on the safe side).
pub fn phone_context_param(b: &[u8], u: &Uri) -> Option<lex::Param> {
    let mut contexts = lex::params(b, number_params(b, u)?, false)
        .filter(|p| is_param_name(lex::trim(p.name.of(b)), b"phone-context"));
    let first = contexts.next()?;
    contexts.next().is_none().then_some(first)
}

/// The parameters that belong to the number: a tel URI's, or those of a sip user part
/// written as telephone-subscriber.
fn number_params(b: &[u8], u: &Uri) -> Option<Span> {
    match u.scheme {
        Scheme::Tel => Some(u.params),
        _ => {
            let user = u.user?;
            let semi = user.of(b).iter().position(|&c| c == b';')?;
            Some(Span::new(user.start as usize + semi + 1, user.end as usize))
        }
    }
}

/// Every `phone-context` parameter of the number, each with the ';' before it: a number
/// rewritten in global form keeps none (RFC 3966 5.1.5), however many were written
/// (with two, [`phone_context`] reads none; QA 63 saw both stay).
pub fn each_phone_context(b: &[u8], u: &Uri, mut f: impl FnMut(Span)) {
    // A sip URI's own parameters after the host too: no number has a context there,
    // but a reader that takes it as the user's would show the number in it (QA 66).
    let uri_params = (u.scheme != Scheme::Tel).then_some(u.params);
    for params in [number_params(b, u), uri_params].into_iter().flatten() {
        each_context_in(b, params, &mut f);
    }
}

fn each_context_in(b: &[u8], params: Span, f: &mut impl FnMut(Span)) {
    lex::params(b, params, false)
        .filter(|p| is_param_name(lex::trim(p.name.of(b)), b"phone-context"))
        .filter_map(|p| p.with_semi(b))
        .for_each(f);
}

/// Whether a phone-context is a global number's (`+86`, escaped `%2B86`), not a
/// domain's or dialled digits'.
pub fn global_context(ctx: &[u8]) -> bool {
    ctx.starts_with(b"+") || ctx.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"%2B"))
}

/// Whether a phone-context is digits alone (`010`, `00852`; visual separators and
/// escapes allowed, a digit first): not RFC 3966's form, but what equipment that adds
/// the context as the dialled prefix sends. The number reader puts them in front of
/// the local number ([`crate::numbering::normalise`]).
pub fn dialled_context(ctx: &[u8]) -> bool {
    !ctx.is_empty()
        && super::lex::unescaped(ctx)
            .all(|(i, c)| c.is_ascii_digit() || (i > 0 && matches!(c, b'-' | b'.' | b'(' | b')')))
}

/// Whether a phone-context places its local number somewhere (a global number's or
/// dialled digits'), so that the number read is not its digits alone; a domain's says
/// nothing the number reader uses.
pub fn placing_context(ctx: &[u8]) -> bool {
    global_context(ctx) || dialled_context(ctx)
}

/// [`parse_chars_checked`], or, for a sip or sips URI whose host or port breaks the
/// grammar (`sbc_01.carrier.example`, `gw:`, no host at all), its user part and
/// parameters all the same: the number in it reaches the callee whatever the host, so
/// an identity reads it rather than take the URI for one without a number.
#[inline]
pub fn parse_user_anyway(b: &[u8], s: Span) -> Result<Uri, BadUri> {
    parse_chars_checked(b, s).or_else(|_| user_anyway(b, s))
}

#[cold]
fn user_anyway(b: &[u8], s: Span) -> Result<Uri, BadUri> {
    let (start, end) = (s.start as usize, s.end as usize);
    let colon = find(b, start, end, b':').ok_or(BadUri)?;
    let scheme = match &b[start..colon] {
        x if x.eq_ignore_ascii_case(b"sip") => Scheme::Sip,
        x if x.eq_ignore_ascii_case(b"sips") => Scheme::Sips,
        _ => return Err(BadUri),
    };
    let rest = colon + 1;
    let at = find(b, rest, end, b'@').ok_or(BadUri)?;
    let q = find(b, at, end, b'?');
    let params_end = q.unwrap_or(end);
    let semi = find(b, at, params_end, b';');
    Ok(Uri {
        scheme,
        user: Some(Span::new(rest, find(b, rest, at, b':').unwrap_or(at))),
        host: Span::new(at + 1, semi.unwrap_or(params_end)),
        port: None,
        params: semi.map_or(Span::new(params_end, params_end), |s| {
            Span::new(s + 1, params_end)
        }),
        headers: q.map(|q| Span::new(q + 1, end)),
    })
}

/// A URI that names a second identity where a lenient element finds it: an identity
/// field as a URI header (`?P-Asserted-Identity=...`, `?From=...`, escaped or with
/// blanks: an element that applies URI headers, RFC 3261 19.1.5, builds its request
/// from them; QA 173 F4, QA 178 D1), or a second unescaped '@', which ends a userinfo
/// and stands nowhere else before the headers (RFC 3261 25.1: a core refuses such a
/// URI or splits it at the last '@', reading digits the filter never judged, QA 180).
/// Other URI headers (`?Replaces=...`) name none.
pub fn hides_an_identity(b: &[u8], s: Span) -> bool {
    let v = s.of(b);
    let before_headers = &v[..find(v, 0, v.len(), b'?').unwrap_or(v.len())];
    let second_at = find(before_headers, 0, before_headers.len(), b'@')
        .is_some_and(|at| find(before_headers, at + 1, before_headers.len(), b'@').is_some());
    let names_an_identity = |headers: Span| {
        // `&` separates URI headers; a `;` there is read as one by lenient parsers.
        headers.of(b).split(|&c| c == b'&' || c == b';').any(|h| {
            let name = h.split(|&c| c == b'=').next().unwrap_or_default();
            // Escapes read, blanks around the name dropped (`P-Asserted-Identity%20=`,
            // and `+`, a blank to form decoders).
            let name: Vec<u8> = super::lex::unescaped(name)
                .map(|(_, c)| c.to_ascii_lowercase())
                .filter(|c| !c.is_ascii_whitespace() && *c != b'+')
                .collect();
            matches!(
                &name[..],
                b"p-asserted-identity"
                    | b"p-preferred-identity"
                    | b"remote-party-id"
                    | b"from"
                    | b"f"
                    | b"referred-by"
                    | b"b"
            )
        })
    };
    second_at
        || (before_headers.len() < v.len()
            && parse_chars_checked(b, s).is_ok_and(|u| u.headers.is_some_and(names_an_identity)))
}

/// Whether a header value starts like a URI (scheme followed by ':').
pub fn looks_like_uri(v: &[u8]) -> bool {
    let n = v.iter().take_while(|&&c| is_token(c)).count();
    n > 0 && v.get(n) == Some(&b':') && !starts_with_ci(v, b"sip/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Uri, BadUri> {
        parse(s.as_bytes(), Span::new(0, s.len()))
    }
    fn txt(s: &str, sp: Span) -> &str {
        &s[sp.start as usize..sp.end as usize]
    }

    #[test]
    fn sip_parts() {
        let s = "sip:+8613812345678@gw.example.com:5061;user=phone;lr?subject=x";
        let u = p(s).unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(txt(s, u.user.unwrap()), "+8613812345678");
        assert_eq!(txt(s, u.host), "gw.example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(txt(s, u.params), "user=phone;lr");
        assert!(is_user_phone(s.as_bytes(), &u));
        assert_eq!(txt(s, u.headers.unwrap()), "subject=x");
    }

    #[test]
    fn odd_but_valid() {
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = p(s).unwrap();
        assert_eq!(txt(s, u.host), "example.com");
        assert!(u.headers.is_none());
        let s = "sip:user;par=u%40example.net@example.com";
        assert_eq!(
            txt(s, p(s).unwrap().user.unwrap()),
            "user;par=u%40example.net"
        );
        let s = "sip:[2001:db8::1]:5060";
        assert_eq!(p(s).unwrap().port, Some(5060));
    }

    #[test]
    fn tel_and_other() {
        let s = "tel:010-12345678;phone-context=+86";
        let u = p(s).unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(txt(s, u.user.unwrap()), "010-12345678");
        assert_eq!(txt(s, phone_context(s.as_bytes(), &u).unwrap()), "+86");
        // An escaped name is the same parameter; a name that only begins like it or
        // escapes into something else is not.
        for (s, ctx) in [
            ("tel:010-12345678;phone%2Dcontext=+86", Some("+86")),
            ("tel:010-12345678;PHONE%2dCONTEXT=%2B86", Some("%2B86")),
            ("tel:010-12345678;%70hone-context=+86", Some("+86")),
            ("tel:010-12345678;phone%2Dcontex=+86", None),
            ("tel:010-12345678;phone%2Dcontextx=+86", None),
            ("tel:010-12345678;phone%2context=+86", None),
        ] {
            let u = p(s).unwrap();
            assert_eq!(
                phone_context(s.as_bytes(), &u).map(|c| txt(s, c)),
                ctx,
                "{s}"
            );
        }
        assert!(is_param_name(b"us%65r", b"user"));
        for (ctx, dialled) in [
            (&b"010"[..], true),
            (b"00852", true),
            (b"00-852", true),
            (b"%30%30852", true),
            (b"-852", false),
            (b"+852", false),
            (b"example.com", false),
            (b"4a", false),
            (b"", false),
        ] {
            assert_eq!(dialled_context(ctx), dialled, "{ctx:?}");
        }
        assert!(placing_context(b"+852") && placing_context(b"%2B852"));
        assert!(placing_context(b"00852") && !placing_context(b"gw.example"));
        assert!(!is_param_name(b"us%65", b"user"));
        assert_eq!(
            p("soap.beep://192.0.2.103:3002").unwrap().scheme,
            Scheme::Other
        );
    }

    #[test]
    fn refused() {
        assert!(p("sip:user@example.com; lr").is_err());
        assert!(p("<sip:user@example.com>").is_err());
        assert!(p("sip:@").is_err());
        assert!(p("sip:a@b:99999").is_err());
        assert!(p("nocolon").is_err());
        assert!(p("").is_err());
    }
}
