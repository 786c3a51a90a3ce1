//! Header field names the filter cares about, with their compact forms (RFC 3261 7.3.3
//! and the IANA registry). Matching is case-insensitive and allocation-free.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    Privacy,
    Expires,
    Date,
    RetryAfter,
    Reason,
    Subject,
    Supported,
    Require,
    ProxyRequire,
    UserAgent,
    Server,
    #[default]
    Other,
}

impl HeaderName {
    /// Recognises a field name as written (any case, compact or long form).
    pub fn parse(n: &[u8]) -> HeaderName {
        if n.len() == 1 {
            return match n[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'm' => HeaderName::Contact,
                b's' => HeaderName::Subject,
                b'k' => HeaderName::Supported,
                _ => HeaderName::Other,
            };
        }
        // Dispatch on length first: one or two comparisons per field instead of a scan.
        let eq = |s: &[u8]| n.eq_ignore_ascii_case(s);
        match n.len() {
            2 if eq(b"To") => HeaderName::To,
            3 if eq(b"Via") => HeaderName::Via,
            4 if eq(b"From") => HeaderName::From,
            4 if eq(b"CSeq") => HeaderName::CSeq,
            4 if eq(b"Date") => HeaderName::Date,
            5 if eq(b"Route") => HeaderName::Route,
            6 if eq(b"Reason") => HeaderName::Reason,
            6 if eq(b"Server") => HeaderName::Server,
            7 if eq(b"Call-ID") => HeaderName::CallId,
            7 if eq(b"Contact") => HeaderName::Contact,
            7 if eq(b"Privacy") => HeaderName::Privacy,
            7 if eq(b"Expires") => HeaderName::Expires,
            7 if eq(b"Subject") => HeaderName::Subject,
            7 if eq(b"Require") => HeaderName::Require,
            9 if eq(b"Supported") => HeaderName::Supported,
            10 if eq(b"User-Agent") => HeaderName::UserAgent,
            11 if eq(b"Retry-After") => HeaderName::RetryAfter,
            12 if eq(b"Max-Forwards") => HeaderName::MaxForwards,
            12 if eq(b"Content-Type") => HeaderName::ContentType,
            12 if eq(b"Record-Route") => HeaderName::RecordRoute,
            13 if eq(b"Proxy-Require") => HeaderName::ProxyRequire,
            14 if eq(b"Content-Length") => HeaderName::ContentLength,
            15 if eq(b"Remote-Party-ID") => HeaderName::RemotePartyId,
            19 if eq(b"P-Asserted-Identity") => HeaderName::PAssertedIdentity,
            20 if eq(b"P-Preferred-Identity") => HeaderName::PPreferredIdentity,
            _ => HeaderName::Other,
        }
    }

    /// Canonical long form, used when writing and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Contact => "Contact",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::PPreferredIdentity => "P-Preferred-Identity",
            HeaderName::RemotePartyId => "Remote-Party-ID",
            HeaderName::Privacy => "Privacy",
            HeaderName::Expires => "Expires",
            HeaderName::Date => "Date",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Reason => "Reason",
            HeaderName::Subject => "Subject",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName as H;

    #[test]
    fn compact_and_case() {
        assert_eq!(H::parse(b"v"), H::Via);
        assert_eq!(H::parse(b"I"), H::CallId);
        assert_eq!(H::parse(b"l"), H::ContentLength);
        assert_eq!(H::parse(b"MaX-fOrWaRdS"), H::MaxForwards);
        assert_eq!(H::parse(b"p-asserted-identity"), H::PAssertedIdentity);
        assert_eq!(H::parse(b"C%6Fntact"), H::Other);
        assert_eq!(H::parse(b"X-Foo"), H::Other);
        for h in [
            H::Via,
            H::To,
            H::Contact,
            H::RemotePartyId,
            H::PPreferredIdentity,
        ] {
            assert_eq!(H::parse(h.as_str().as_bytes()), h);
        }
    }
}
