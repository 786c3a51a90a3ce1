//! Digest credentials (RFC 3261 22.4, RFC 2617 3.2.2, RFC 7616, RFC 8760): the
//! `Proxy-Authorization` value a caller sends back after a 407, read without copying.

use super::lex::{self, skip_lws};

/// One `Digest` credentials value. Every field is the parameter's value as sent, quotes
/// taken off (escaped characters inside quotes are kept as written: none of the fields
/// used here has a reason to contain one, and a value that does simply fails to match).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: &'a [u8],
    pub realm: &'a [u8],
    pub nonce: &'a [u8],
    pub uri: &'a [u8],
    pub response: &'a [u8],
    /// `MD5` when absent (RFC 2617).
    pub algorithm: Option<&'a [u8]>,
    pub qop: Option<&'a [u8]>,
    pub nc: &'a [u8],
    pub cnonce: &'a [u8],
    pub opaque: Option<&'a [u8]>,
}

/// Reads `Digest name=value, name="value", ...`; `None` for another scheme or a value
/// that breaks the grammar (then the caller is challenged again, as without credentials).
pub fn parse_digest(v: &[u8]) -> Option<Credentials<'_>> {
    let v = lex::trim(v);
    // `credentials = "Digest" LWS digest-response`: the LWS may be a line fold (QA 191
    // F5: a right answer folded after the scheme was challenged again and again).
    let mut i = skip_lws(v, 6);
    if v.len() < 7 || !v[..6].eq_ignore_ascii_case(b"Digest") || i == 6 {
        return None;
    }
    let mut c = Credentials::default();
    loop {
        let ne = lex::token_end(v, i);
        if ne == i {
            return None;
        }
        let name = &v[i..ne];
        let mut j = skip_lws(v, ne);
        if v.get(j) != Some(&b'=') {
            return None;
        }
        j = skip_lws(v, j + 1);
        let (value, next) = if v.get(j) == Some(&b'"') {
            let q = lex::quoted_end(v, j)?;
            (&v[j + 1..q - 1], q)
        } else {
            let e = lex::token_end(v, j);
            if e == j {
                return None;
            }
            (&v[j..e], e)
        };
        // Names are case-insensitive; unknown ones (auth-param) are allowed and ignored.
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"username") {
            c.username = value;
        } else if is(b"realm") {
            c.realm = value;
        } else if is(b"nonce") {
            c.nonce = value;
        } else if is(b"uri") {
            c.uri = value;
        } else if is(b"response") {
            c.response = value;
        } else if is(b"nc") {
            c.nc = value;
        } else if is(b"cnonce") {
            c.cnonce = value;
        } else if is(b"algorithm") {
            c.algorithm = Some(value);
        } else if is(b"qop") {
            c.qop = Some(value);
        } else if is(b"opaque") {
            c.opaque = Some(value);
        }
        let k = skip_lws(v, next);
        match v.get(k) {
            None => break,
            Some(b',') => i = skip_lws(v, k + 1),
            Some(_) => return None,
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_field_in_any_order_and_spacing() {
        // RFC 2617 3.5's example, as SIP sends it in Proxy-Authorization.
        let v = br#"Digest username="Mufasa", realm="testrealm@host.com",
 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
 nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse_digest(v).expect("parses");
        assert_eq!(c.username, b"Mufasa");
        assert_eq!(c.realm, b"testrealm@host.com");
        assert_eq!(c.nonce, b"dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(c.uri, b"/dir/index.html");
        assert_eq!(c.qop, Some(&b"auth"[..]));
        assert_eq!(c.nc, b"00000001");
        assert_eq!(c.cnonce, b"0a4f113b");
        assert_eq!(c.response, b"6629fae49393a05397450978507c4ef1");
        assert_eq!(c.opaque, Some(&b"5ccc069c403ebaf9f0171e9517f40e41"[..]));
        assert_eq!(c.algorithm, None);
        let c = parse_digest(b"digest  algorithm=SHA-256 ,username=\"a\",realm=\"r\",nonce=\"n\",uri=\"sip:x@y\",response=\"0\",x-ext=1").unwrap();
        assert_eq!(c.algorithm, Some(&b"SHA-256"[..]));
        assert_eq!(c.username, b"a");
        // Folded right after the scheme.
        for fold in ["\r\n ", "\n\t", " \r\n  "] {
            let v = format!(
                "Digest{fold}username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x@y\", response=\"0\""
            );
            let c = parse_digest(v.as_bytes()).expect(&v);
            assert_eq!((c.username, c.realm), (&b"a"[..], &b"r"[..]));
        }
    }

    #[test]
    fn other_schemes_and_broken_values_are_not_credentials() {
        for v in [
            &b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="[..],
            b"Digest",
            b"Digestusername=\"a\"",
            b"Digest username",
            b"Digest username=\"a",
            b"Digest username=\"a\" realm=\"b\"",
            b"Digest =\"a\"",
            b"Digest username=",
        ] {
            assert_eq!(parse_digest(v), None, "{:?}", String::from_utf8_lossy(v));
        }
    }
}
