//! name-addr / addr-spec values with header parameters (From, To, Contact,
//! P-Asserted-Identity, Remote-Party-ID, ...), RFC 3261 20.10 and 25.1.

use super::Span;
use super::lex::{self, class_end, is_uri_char, quoted_end, skip_lws, token_end};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quotes included when quoted).
    pub display: Option<Span>,
    pub uri: Span,
    /// Header parameters after the URI, from just after the first ';' (may contain LWS).
    pub params: Span,
    pub bracketed: bool,
    /// The whole value, display name to last parameter.
    pub whole: Span,
}

/// Offset of the first byte that breaks the grammar.
pub type AddrError = usize;

/// Parses one value starting at `i`; returns it and the position after it
/// (at a ',' that separates the next value, or at `end`).
pub fn parse_one(b: &[u8], i: usize, end: usize) -> Result<(NameAddr, usize), AddrError> {
    let b = &b[..end];
    let start = skip_lws(b, i);
    let mut i = start;
    if i >= end {
        return Err(i);
    }
    let mut display = None;
    let bracketed;
    let uri;
    if b[i] == b'"' {
        let q = quoted_end(b, i).ok_or(i)?;
        display = Some(Span::new(i, q));
        i = skip_lws(b, q);
        if i >= end || b[i] != b'<' {
            return Err(i);
        }
        let (u, next) = bracketed_uri(b, i)?;
        uri = u;
        i = next;
        bracketed = true;
    } else {
        // Either `*(token LWS) <uri>` or an addr-spec: look for '<' after tokens.
        let mut j = i;
        let mut last_tok_end = i;
        loop {
            let t = display_word_end(b, j);
            if t == j {
                break;
            }
            last_tok_end = t;
            j = skip_lws(b, t);
        }
        if j < end && b[j] == b'<' {
            if last_tok_end > i {
                display = Some(Span::new(i, last_tok_end));
            }
            let (u, next) = bracketed_uri(b, j)?;
            uri = u;
            i = next;
            bracketed = true;
        } else {
            // addr-spec: without brackets the URI cannot carry ';', ',' or '?' (they would
            // be header parameters or a list separator): RFC 3261 20.10, RFC 4475 3.1.2.13.
            let mut k = i;
            while k < end && is_uri_char(b[k]) && b[k] != b';' && b[k] != b',' {
                if b[k] == b'?' {
                    return Err(k);
                }
                k += 1;
            }
            if !super::uri::looks_like_uri(&b[i..k]) {
                return Err(i);
            }
            uri = Span::new(i, k);
            i = k;
            bracketed = false;
        }
    }
    let (params, after) = parse_params(b, i)?;
    let i = skip_lws(b, after);
    if i < end && b[i] != b',' {
        return Err(i);
    }
    Ok((
        NameAddr {
            display,
            uri,
            params,
            bracketed,
            whole: Span::new(start, after),
        },
        i,
    ))
}

/// End of one word of an unquoted display name: a token, in which UTF-8 beyond ASCII is
/// taken too. RFC 3261's grammar allows UTF-8 only inside quotes, but PBXs and softphones
/// write `张三 <sip:8001@pbx>` unquoted (Kamailio and OpenSIPS take it); refusing their
/// calls with 400 would cut off a legitimate caller over a byte of presentation. Only
/// bytes from 0x80 are added, so the characters the grammar keeps out (`,` `"` `@` ...)
/// still make the value invalid, as RFC 4475's 3.1.2.6 wants.
fn display_word_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    loop {
        let t = token_end(b, j);
        let mut k = t;
        while k < b.len() && b[k] >= 0x80 {
            k += 1;
        }
        if k == j {
            return j;
        }
        j = k;
    }
}

fn bracketed_uri(b: &[u8], lt: usize) -> Result<(Span, usize), AddrError> {
    // No LWS inside the brackets (RFC 4475 3.1.2.14).
    // '>' is not a URI character: one class test per byte finds both the end and any
    // byte that does not belong.
    let s = lt + 1;
    let k = class_end::<lex::Uri>(b, s);
    if k >= b.len() || k == s || b[k] != b'>' {
        return Err(k);
    }
    Ok((Span::new(s, k), k + 1))
}

/// `*( SEMI generic-param )`, LWS allowed around every separator. Returns the span of
/// the parameters (after the first ';') and the position after the last one.
fn parse_params(b: &[u8], i: usize) -> Result<(Span, usize), AddrError> {
    let mut pos = i;
    let mut first = None;
    let mut last = i;
    loop {
        let j = skip_lws(b, pos);
        if j >= b.len() || b[j] != b';' {
            break;
        }
        let n = skip_lws(b, j + 1);
        let ne = token_end(b, n);
        if ne == n {
            return Err(n);
        }
        first.get_or_insert(n);
        let mut k = ne;
        let e = skip_lws(b, ne);
        if e < b.len() && b[e] == b'=' {
            let v = skip_lws(b, e + 1);
            if v < b.len() && b[v] == b'"' {
                k = quoted_end(b, v).ok_or(v)?;
            } else {
                let w = class_end::<lex::ParamValue>(b, v);
                if w == v {
                    return Err(v);
                }
                k = w;
            }
        }
        last = k;
        pos = k;
    }
    let params = match first {
        Some(f) => Span::new(f, last),
        None => Span::new(i, i),
    };
    Ok((params, last.max(i)))
}

/// Parses a comma-separated list of values, calling `f` for each.
pub fn parse_list(b: &[u8], v: Span, f: impl FnMut(NameAddr)) -> Result<(), AddrError> {
    list(b, v, false, f)
}

/// [`parse_list`] that passes over empty elements (`, <a>`, `<a>,, <b>`, `<a>,`):
/// RFC 3261's grammar has none, but lenient stacks write them and read the values
/// around them, so the identity headers are read the same way: every value is judged.
pub fn parse_list_skip_empty(b: &[u8], v: Span, f: impl FnMut(NameAddr)) -> Result<(), AddrError> {
    list(b, v, true, f)
}

#[inline]
fn list(b: &[u8], v: Span, skip_empty: bool, mut f: impl FnMut(NameAddr)) -> Result<(), AddrError> {
    let end = v.end as usize;
    let mut i = v.start as usize;
    loop {
        if skip_empty {
            i = skip_lws(&b[..end], i);
            if i >= end {
                return Ok(());
            }
            if b[i] == b',' {
                i += 1;
                continue;
            }
        }
        let (na, next) = parse_one(b, i, end)?;
        f(na);
        if next >= end {
            return Ok(());
        }
        i = next + 1; // skip ','
    }
}

/// The separators a list's empty elements leave (`, <a>`, `<a>,, <b>`, `<a>,`), each as
/// the span whose removal leaves the list without that element, for a field read with
/// [`parse_list_skip_empty`] that goes on to a stack reading RFC 3261's grammar, which
/// has none (QA 105: Kamailio read no P-Asserted-Identity at all). Returns whether
/// any value is left; an error where a value does not parse.
pub fn empty_elements(b: &[u8], v: Span, mut f: impl FnMut(Span)) -> Result<bool, AddrError> {
    let end = v.end as usize;
    let b = &b[..end];
    let mut i = v.start as usize;
    // Where the last value ended, if any; where a run of empty elements started (just
    // after that value's comma, or at the list's start) and where it ends.
    let mut value_end: Option<usize> = None;
    let mut run: Option<(usize, usize)> = None;
    let mut any = false;
    loop {
        let j = skip_lws(b, i);
        if j >= end {
            // Trailing: from the end of the last value, white space and folds with it
            // (QA 109: a fold left a line of blanks); with no value at all, everything.
            match (value_end, run) {
                (Some(e), _) => f(Span::new(e, end)),
                (None, Some((s, _))) => f(Span::new(s, end)),
                (None, None) => {}
            }
            return Ok(any);
        }
        if b[j] == b',' {
            run = Some((run.map_or(i, |r| r.0), j + 1));
            i = j + 1;
            continue;
        }
        match run.take() {
            // Leading: up to the first value, so that the field does not start with a
            // fold.
            Some((s, _)) if value_end.is_none() => f(Span::new(s, j)),
            Some((s, e)) => f(Span::new(s, e)),
            None => {}
        }
        let (na, next) = parse_one(b, j, end)?;
        any = true;
        if next >= end {
            return Ok(true);
        }
        value_end = Some(na.whole.end as usize);
        i = next + 1;
    }
}

/// Exactly one value (From, To).
pub fn parse_single(b: &[u8], v: Span) -> Result<NameAddr, AddrError> {
    let end = v.end as usize;
    let (na, next) = parse_one(b, v.start as usize, end)?;
    if next < end {
        return Err(next);
    }
    Ok(na)
}

/// The header parameters of one From or To value, found without parsing the address:
/// after the '>' of a bracketed URI (a quoted display name skipped), else after the
/// first ';' of an addr-spec (whose parameters are all the header's, RFC 3261 20.10).
/// For a tag of a field the relay parse left aside, cheaper than parsing the address. A
/// value the full parse would refuse gives what it gives (a tag only keys our own
/// tables).
pub fn params_unparsed(b: &[u8], v: Span) -> Span {
    let s = v.of(b);
    let at = |i: usize| Span::new(v.start as usize + i, v.end as usize);
    let mut i = 0;
    while let Some(k) = memchr::memchr3(b'"', b'<', b';', &s[i..]) {
        i += k;
        match s[i] {
            b'"' => i = super::lex::quoted_end(s, i).unwrap_or(s.len()),
            b'<' => {
                let Some(close) = memchr::memchr(b'>', &s[i..]) else {
                    return at(s.len());
                };
                let j = i + close;
                return match memchr::memchr(b';', &s[j..]) {
                    Some(semi) => at(j + semi + 1),
                    None => at(s.len()),
                };
            }
            _ => return at(i + 1),
        }
    }
    at(s.len())
}

/// Whether the header parameter `name` is given more than once: which one an element
/// reads differs (first here, last in Kamailio's parser), so such a tag is refused.
pub fn param_repeated(b: &[u8], params: Span, name: &[u8]) -> bool {
    // Nearly always one parameter (the tag): nothing to look at.
    if memchr::memchr(b';', params.of(b)).is_none() {
        return false;
    }
    lex::params(b, params, true)
        .filter(|p| lex::trim(p.name.of(b)).eq_ignore_ascii_case(name))
        .nth(1)
        .is_some()
}

/// Value of a header parameter (case-insensitive name), with surrounding LWS trimmed.
/// `Some(b"")` when present without a value.
pub fn header_param<'a>(b: &'a [u8], params: Span, name: &[u8]) -> Option<&'a [u8]> {
    lex::params(b, params, true)
        .find(|p| lex::trim(p.name.of(b)).eq_ignore_ascii_case(name))
        .map(|p| lex::trim(p.value.of(b)))
}

/// The tag parameter of a From/To value.
pub fn tag_param(b: &[u8], v: Span) -> Option<&[u8]> {
    let na = parse_single(b, v).ok()?;
    header_param(b, na.params, b"tag").filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<NameAddr, AddrError> {
        parse_single(s.as_bytes(), Span::new(0, s.len()))
    }
    fn txt(s: &str, sp: Span) -> &str {
        &s[sp.start as usize..sp.end as usize]
    }

    /// A list without its empty elements, and whether a value is left.
    fn without_empties(s: &str) -> (String, bool) {
        let mut cut = vec![];
        let any = empty_elements(s.as_bytes(), Span::new(0, s.len()), |sp| cut.push(sp)).unwrap();
        let mut out = String::new();
        let mut at = 0;
        for sp in cut {
            assert!(sp.start as usize >= at, "{s}: overlapping removals");
            out.push_str(&s[at..sp.start as usize]);
            at = sp.end as usize;
        }
        out.push_str(&s[at..]);
        (out, any)
    }

    #[test]
    fn empty_list_elements_are_cut_out() {
        for (list, want, any) in [
            ("<sip:a@x>, <tel:+1>", "<sip:a@x>, <tel:+1>", true),
            (", <sip:a@x>", "<sip:a@x>", true),
            (",\r\n ,\r\n <tel:+1>", "<tel:+1>", true),
            ("<sip:a@x>;p=1\r\n ,\r\n ,", "<sip:a@x>;p=1", true),
            (
                "<sip:a@x>,\r\n ,\r\n <tel:+1>",
                "<sip:a@x>,\r\n <tel:+1>",
                true,
            ),
            (" , ,<sip:a@x>", "<sip:a@x>", true),
            ("<sip:a@x>,, <tel:+1>", "<sip:a@x>, <tel:+1>", true),
            ("<sip:a@x> , , <tel:+1>", "<sip:a@x> , <tel:+1>", true),
            ("<sip:a@x>,", "<sip:a@x>", true),
            ("<sip:a@x>, ,", "<sip:a@x>", true),
            (
                "\"a,b\" <sip:a@x>,,sip:b@y",
                "\"a,b\" <sip:a@x>,sip:b@y",
                true,
            ),
            (",", "", false),
            (" , , ", "", false),
        ] {
            assert_eq!(without_empties(list), (want.to_string(), any), "{list}");
        }
    }

    /// The parameters found without a parse are the parse's, whatever the value holds
    /// before them (quoted ';', '<' and '>', URI parameters, blanks).
    #[test]
    fn params_unparsed_agree_with_the_parse() {
        for v in [
            "<sip:a@b;x=1>;tag=t1",
            "\"A;tag=z<x>\" <sip:a@b;tag=no>;tag=t2",
            "sip:a@b;tag=t3",
            "\"x\\\"y\" <tel:+1;phone-context=+1>;foo;tag=t4",
            "<sip:a@b> ; tag = t5 ",
            "Anonymous <sip:anonymous@anonymous.invalid>;TAG=t6",
            "<sip:a@b>",
            "sip:a@b",
            "\"only;a name\" <sip:a@b>",
        ] {
            let na = one(v).unwrap_or_else(|e| panic!("{v}: {e}"));
            let b = v.as_bytes();
            let fast = params_unparsed(b, Span::new(0, v.len()));
            assert_eq!(
                header_param(b, fast, b"tag"),
                header_param(b, na.params, b"tag"),
                "{v}"
            );
        }
    }

    #[test]
    fn forms() {
        let s =
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8";
        let na = one(s).unwrap();
        assert_eq!(txt(s, na.uri), "sip:jdrosen@example.com");
        assert_eq!(
            header_param(s.as_bytes(), na.params, b"tag"),
            Some(&b"98asjd8"[..])
        );

        let s = "caller<sip:caller@example.com>;tag=323";
        let na = one(s).unwrap();
        assert_eq!(txt(s, na.display.unwrap()), "caller");
        let s = "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n";
        let na = one(s).unwrap();
        assert!(!na.bracketed);
        assert_eq!(txt(s, na.uri), "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(
            tag_param(s.as_bytes(), Span::new(0, s.len())),
            Some(&b"1918181833n"[..])
        );
        let s = "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"x y\";tag=_token~1'+`*%!-.";
        assert!(one(s).is_ok());
    }

    #[test]
    fn refused() {
        assert!(one("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(one("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(one("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(one("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(one("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(one("alan@jasomi.com").is_err());
        assert!(one("").is_err());
    }

    #[test]
    fn unquoted_utf8_display_names_are_read() {
        let s = "张三 <sip:8001@pbx.example.com>;tag=1";
        let na = one(s).unwrap();
        assert_eq!(txt(s, na.display.unwrap()), "张三");
        assert_eq!(txt(s, na.uri), "sip:8001@pbx.example.com");
        let s = "中国银行95588 客服 <tel:+442071234567>";
        assert_eq!(
            txt(s, one(s).unwrap().display.unwrap()),
            "中国银行95588 客服"
        );
        // Beyond ASCII is taken, not what the grammar keeps out of a token.
        assert!(one("张三, 李四 <sip:8001@pbx.example.com>").is_err());
        assert!(one("张三@pbx <sip:8001@pbx.example.com>").is_err());
    }

    #[test]
    fn lists() {
        let s = "<sip:a@x>;expires=3, \"B\" <sip:b@y> , sip:c@z;q=0.5";
        let mut n = 0;
        parse_list(s.as_bytes(), Span::new(0, s.len()), |_| n += 1).unwrap();
        assert_eq!(n, 3);
    }
}
