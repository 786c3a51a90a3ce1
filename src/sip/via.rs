//! Via (RFC 3261 20.42): sent-protocol, sent-by and parameters, LWS allowed around
//! every separator (RFC 4475 3.1.1.1).

use super::Span;
use super::lex::{self, class_end, is_token, quoted_end, skip_lws, token_end};

/// Prefix of every branch sipfence generates (RFC 3261 magic cookie + "sf"): how it
/// recognises its own Via on responses.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKsf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    pub params: Span,
    pub branch: Option<Span>,
    pub received: Option<Span>,
    /// `rport` present (with its value when it has one).
    pub rport: Option<Option<u16>>,
    /// End of the `rport` parameter (where `=port` goes when it has no value).
    pub rport_end: Option<u32>,
    /// The value written after `rport=`, port or not.
    pub rport_value: Option<Span>,
    /// The whole via-parm, protocol to last parameter.
    pub whole: Span,
}

pub type ViaError = usize;

fn expect_slash(b: &[u8], i: usize) -> Result<usize, ViaError> {
    let j = skip_lws(b, i);
    if j < b.len() && b[j] == b'/' {
        Ok(skip_lws(b, j + 1))
    } else {
        Err(j)
    }
}

fn token(b: &[u8], i: usize) -> Result<(Span, usize), ViaError> {
    let e = token_end(b, i);
    if e == i {
        Err(i)
    } else {
        Ok((Span::new(i, e), e))
    }
}

/// Parses one via-parm at `i`; returns it and the position of the ',' after it or `end`.
pub fn parse_one(b: &[u8], i: usize, end: usize) -> Result<(Via, usize), ViaError> {
    let b = &b[..end];
    let start = skip_lws(b, i);
    // Nearly every Via starts "SIP/2.0/": one comparison instead of two tokens and two
    // slashes with LWS allowed around each (the general path below).
    let (transport, i) = match b.get(start..start + 8) {
        Some(p)
            if p.eq_ignore_ascii_case(b"SIP/2.0/")
                && b.get(start + 8).is_some_and(|&c| is_token(c)) =>
        {
            token(b, start + 8)?
        }
        _ => {
            let (_name, i) = token(b, start)?;
            let i = expect_slash(b, i)?;
            let (_version, i) = token(b, i)?;
            let i = expect_slash(b, i)?;
            token(b, i)?
        }
    };
    let h = skip_lws(b, i);
    if h == i {
        return Err(i); // LWS is required before sent-by
    }
    let mut i = h;
    if i < end && b[i] == b'[' {
        let close = b[i..].iter().position(|&c| c == b']').ok_or(i)? + i;
        i = close + 1;
    } else {
        i = class_end::<lex::Host>(b, i);
    }
    let host = Span::new(h, i);
    if host.is_empty() {
        return Err(h);
    }
    let mut port = None;
    let c = skip_lws(b, i);
    if c < end && b[c] == b':' {
        let ps = skip_lws(b, c + 1);
        let pe = ps + b[ps..].iter().take_while(|c| c.is_ascii_digit()).count();
        let p = super::lex::parse_u32(&b[ps..pe])
            .filter(|&p| p <= 65535)
            .ok_or(ps)?;
        port = Some(p as u16);
        i = pe;
    }
    let mut v = Via {
        transport,
        host,
        port,
        params: Span::new(i, i),
        branch: None,
        received: None,
        rport: None,
        rport_end: None,
        rport_value: None,
        whole: Span::new(start, i),
    };
    let mut pos = i;
    let mut first = None;
    loop {
        let j = skip_lws(b, pos);
        if j >= end || b[j] != b';' {
            break;
        }
        let n = skip_lws(b, j + 1);
        let (name, ne) = token(b, n)?;
        first.get_or_insert(n);
        let mut k = ne;
        let mut value = None;
        let e = skip_lws(b, ne);
        if e < end && b[e] == b'=' {
            let vs = skip_lws(b, e + 1);
            if vs < end && b[vs] == b'"' {
                k = quoted_end(b, vs).ok_or(vs)?;
            } else {
                let w = class_end::<lex::ParamValue>(b, vs);
                if w == vs {
                    return Err(vs);
                }
                k = w;
            }
            value = Some(Span::new(vs, k));
        }
        let nb = name.of(b);
        if nb.eq_ignore_ascii_case(b"branch") {
            v.branch = value;
        } else if nb.eq_ignore_ascii_case(b"received") {
            v.received = value;
        } else if nb.eq_ignore_ascii_case(b"rport") {
            v.rport_end = Some(k as u32);
            v.rport_value = value;
            v.rport = Some(
                value
                    .and_then(|s| super::lex::parse_u32(s.of(b)))
                    .and_then(|p| u16::try_from(p).ok()),
            );
        }
        pos = k;
    }
    if let Some(f) = first {
        v.params = Span::new(f, pos);
    }
    v.whole = Span::new(start, pos);
    let after = skip_lws(b, pos);
    if after < end && b[after] != b',' {
        return Err(after);
    }
    Ok((v, after))
}

/// Validates every via-parm of one Via field, calling `f` for each.
pub fn parse_list(b: &[u8], v: Span, mut f: impl FnMut(Via)) -> Result<(), ViaError> {
    let end = v.end as usize;
    let mut i = v.start as usize;
    loop {
        let (via, next) = parse_one(b, i, end)?;
        f(via);
        if next >= end {
            return Ok(());
        }
        i = next + 1;
    }
}

/// The first via-parm of a field.
pub fn parse_first(b: &[u8], v: Span) -> Option<Via> {
    parse_one(b, v.start as usize, v.end as usize)
        .ok()
        .map(|(via, _)| via)
}

impl Via {
    /// Whether answers can come back by this Via once a hop has added what it adds
    /// (`received`, the `rport` value): an IPv6 reference that is an address (RFC 5118:
    /// no zone ID, eight groups at most; not `[]`), a `received` that is an address
    /// (RFC 3261 20.42), an `rport` that is empty or a port, not 0 (RFC 3581). QA 95: a call
    /// with `rport=abc`, `received=::zz::` or `[]` was carried to the core, and every
    /// answer to it was dropped as malformed while its caller retransmitted.
    pub fn answerable(&self, b: &[u8]) -> bool {
        let host = self.host.of(b);
        let rport_not_a_port = self.rport == Some(None) && self.rport_value.is_some();
        (host.first() != Some(&b'[') || host_ip(host).is_some_and(|ip| ip.is_ipv6()))
            && self.received.is_none_or(|r| host_ip(r.of(b)).is_some())
            && !rport_not_a_port
            && self.rport != Some(Some(0))
    }

    /// Whether a hop that got this Via from `source` must add `received`: it has none,
    /// and either asks with `rport` (RFC 3581 4: even when it is the sent-by address) or
    /// names another sent-by address (RFC 3261 18.2.2).
    pub fn needs_received(&self, b: &[u8], source: std::net::IpAddr) -> bool {
        self.received.is_none() && (self.rport.is_some() || !self.sent_from(b, source))
    }

    /// Whether the sent-by host is `source` itself (an IPv4-mapped IPv6 address is the
    /// IPv4 one: a dual-stack socket shows IPv4 senders so). A sender whose Via names
    /// another host wrote an address it has behind a NAT (or a name): RFC 3261 18.2.2's
    /// `received`, and the answers to its source port (Kamailio's `nat_uac_test` 2).
    pub fn sent_from(&self, b: &[u8], source: std::net::IpAddr) -> bool {
        host_ip(self.host.of(b)).map(|ip| ip.to_canonical()) == Some(source.to_canonical())
    }
}

/// An IP literal host (`192.0.2.1`, `[2001:db8::1]` or bare IPv6); `None` for a name.
pub fn host_ip(h: &[u8]) -> Option<std::net::IpAddr> {
    if let Some(v4) = ipv4(h) {
        return Some(std::net::IpAddr::V4(v4));
    }
    let h = h
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(h);
    std::str::from_utf8(h).ok()?.parse().ok()
}

/// Dotted-quad IPv4, exactly what `Ipv4Addr::from_str` accepts (no leading zeros, each
/// octet at most 255), without its general parser: every Via of every relayed message
/// is compared with our address (about 1,000 instructions per call set-up).
pub fn ipv4(h: &[u8]) -> Option<std::net::Ipv4Addr> {
    let (mut oct, mut k, mut val, mut digits) = ([0u8; 4], 0usize, 0u32, 0u32);
    for &c in h {
        match c {
            b'0'..=b'9' => {
                if digits > 0 && val == 0 {
                    return None; // leading zero
                }
                val = val * 10 + (c - b'0') as u32;
                digits += 1;
                if val > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && k < 3 => {
                oct[k] = val as u8;
                k += 1;
                val = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    oct[3] = val as u8;
    Some(oct.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_as_std_reads_it() {
        for t in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "a.b.c.d",
            "",
            "10.0.0.1 ",
            "203.0.113.10",
            "1.2.3.04",
            "1234.1.1.1",
            "0.1.2.3",
        ] {
            assert_eq!(ipv4(t.as_bytes()), t.parse().ok(), "{t:?}");
        }
    }

    fn all(s: &str) -> Result<Vec<Via>, ViaError> {
        let mut out = vec![];
        parse_list(s.as_bytes(), Span::new(0, s.len()), |v| out.push(v))?;
        Ok(out)
    }

    #[test]
    fn folded_and_multi() {
        let s = "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239";
        let v = all(s).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].branch.unwrap().of(s.as_bytes()), b"z9hG4bK9ikj8");
        assert_eq!(v[1].host.of(s.as_bytes()), b"192.168.255.111");
        assert_eq!(v[1].branch.unwrap().of(s.as_bytes()), b"z9hG4bK30239");
    }

    #[test]
    fn params() {
        let s = "SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bK1;received=1.2.3.4";
        let v = all(s).unwrap();
        assert_eq!(v[0].port, Some(5070));
        assert_eq!(v[0].rport, Some(None));
        assert_eq!(v[0].received.unwrap().of(s.as_bytes()), b"1.2.3.4");
        let s = "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKx";
        assert_eq!(all(s).unwrap()[0].port, Some(5060));
    }

    #[test]
    fn sent_from_and_received() {
        let ip = |t: &str| -> std::net::IpAddr { t.parse().unwrap() };
        let s = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1";
        let v = all(s).unwrap()[0];
        let b = s.as_bytes();
        // A dual-stack socket shows an IPv4 sender mapped: the same host.
        for src in ["192.0.2.1", "::ffff:192.0.2.1"] {
            assert!(v.sent_from(b, ip(src)), "{src}");
            assert!(!v.needs_received(b, ip(src)), "{src}");
        }
        for src in ["192.0.2.2", "::ffff:192.0.2.2", "2001:db8::1"] {
            assert!(!v.sent_from(b, ip(src)), "{src}");
            assert!(v.needs_received(b, ip(src)), "{src}");
        }
        let s = "SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bK1";
        let v = all(s).unwrap()[0];
        assert!(v.sent_from(s.as_bytes(), ip("2001:db8::1")));
        // rport asks for received even from the sent-by host (RFC 3581 4).
        assert!(v.needs_received(s.as_bytes(), ip("2001:db8::1")));
        let s = "SIP/2.0/UDP pbx.example.com;branch=z9hG4bK1";
        let v = all(s).unwrap()[0];
        assert!(!v.sent_from(s.as_bytes(), ip("192.0.2.1")));
    }

    #[test]
    fn refused() {
        assert!(all("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(all("SIP/2.0/UDP").is_err());
        assert!(all("SIP/2.0 host").is_err());
        assert!(all("SIP/2.0/UDP host:70000").is_err());
        assert!(all("").is_err());
    }
}
