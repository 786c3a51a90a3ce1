//! Header field names the filter cares about, with their compact forms (RFC 3261 7.3.3
//! and the IANA registry). Matching is case-insensitive and allocation-free.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeaderName {
    /// First, so that an empty header table is all zero bytes (a memset, not a loop).
    #[default]
    Other,
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentDisposition,
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
    ProxyAuthorization,
    UserAgent,
    Server,
}

impl HeaderName {
    /// Number of names (the size of a table indexed by `name as usize`).
    pub const COUNT: usize = HeaderName::Server as usize + 1;

    /// Recognises a field name as written (any case, compact or long form). `n` is a
    /// token (the parser cuts it so), which is what makes the case folding below exact.
    pub fn parse(n: &[u8]) -> HeaderName {
        if n.is_empty() {
            return HeaderName::Other;
        }
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
        // Dispatch on length and first letter: usually one comparison per field.
        let eq = |s: &[u8]| eq_lower(n, s);
        match (n.len(), n[0] | 0x20) {
            (2, b't') if eq(b"to") => HeaderName::To,
            (3, b'v') if eq(b"via") => HeaderName::Via,
            (4, b'f') if eq(b"from") => HeaderName::From,
            (4, b'c') if eq(b"cseq") => HeaderName::CSeq,
            (4, b'd') if eq(b"date") => HeaderName::Date,
            (5, b'r') if eq(b"route") => HeaderName::Route,
            (6, b'r') if eq(b"reason") => HeaderName::Reason,
            (6, b's') if eq(b"server") => HeaderName::Server,
            (7, b'c') if eq(b"call-id") => HeaderName::CallId,
            (7, b'c') if eq(b"contact") => HeaderName::Contact,
            (7, b'p') if eq(b"privacy") => HeaderName::Privacy,
            (7, b'e') if eq(b"expires") => HeaderName::Expires,
            (7, b's') if eq(b"subject") => HeaderName::Subject,
            (7, b'r') if eq(b"require") => HeaderName::Require,
            (9, b's') if eq(b"supported") => HeaderName::Supported,
            (10, b'u') if eq(b"user-agent") => HeaderName::UserAgent,
            (11, b'r') if eq(b"retry-after") => HeaderName::RetryAfter,
            (12, b'm') if eq(b"max-forwards") => HeaderName::MaxForwards,
            (12, b'c') if eq(b"content-type") => HeaderName::ContentType,
            (12, b'r') if eq(b"record-route") => HeaderName::RecordRoute,
            (13, b'p') if eq(b"proxy-require") => HeaderName::ProxyRequire,
            (14, b'c') if eq(b"content-length") => HeaderName::ContentLength,
            (15, b'r') if eq(b"remote-party-id") => HeaderName::RemotePartyId,
            (19, b'p') if eq(b"p-asserted-identity") => HeaderName::PAssertedIdentity,
            (19, b'p') if eq(b"proxy-authorization") => HeaderName::ProxyAuthorization,
            (19, b'c') if eq(b"content-disposition") => HeaderName::ContentDisposition,
            (20, b'p') if eq(b"p-preferred-identity") => HeaderName::PPreferredIdentity,
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
            HeaderName::ContentDisposition => "Content-Disposition",
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
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Other => "other",
        }
    }
}

/// `n` equals the lowercase ASCII `lower`, ignoring case. Setting bit 0x20 folds letters
/// and leaves '-' alone; the only other byte it could confuse with '-' is CR, which a
/// token never holds.
///
/// Eight bytes per comparison (the last window overlapping the one before): names like
/// P-Asserted-Identity cost three comparisons instead of nineteen.
#[inline(always)]
fn eq_lower(n: &[u8], lower: &[u8]) -> bool {
    if n.len() != lower.len() {
        return false;
    }
    if n.len() < 8 {
        return n.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b);
    }
    let word = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(w)
    };
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let mut i = 0;
    while i + 8 < n.len() {
        if word(n, i) | FOLD != word(lower, i) {
            return false;
        }
        i += 8;
    }
    word(n, n.len() - 8) | FOLD == word(lower, n.len() - 8)
}

/// Header fields registered with IANA for SIP ("Header Fields" of the Session
/// Initiation Protocol Parameters registry), and the unregistered ones carriers use
/// (Diversion, Remote-Party-ID). A configured label header may be none of them, nor a
/// one-letter name (compact forms): it is removed from every call a peer sends, and a
/// second value of a real field would change what the next hop reads.
const SIP_FIELDS: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Resource-Priority",
    "Additional-Identity",
    "Alert-Info",
    "AlertMsg-Error",
    "Allow",
    "Allow-Events",
    "Answer-Mode",
    "Attestation-Info",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Cellular-Network-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Diversion",
    "Encryption",
    "Error-Info",
    "Event",
    "Expires",
    "Feature-Caps",
    "Flow-Timer",
    "From",
    "Geolocation",
    "Geolocation-Error",
    "Geolocation-Routing",
    "Hide",
    "History-Info",
    "Identity",
    "Identity-Info",
    "Info-Package",
    "In-Reply-To",
    "Join",
    "Max-Breadth",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "Origination-Id",
    "P-Access-Network-Info",
    "P-Answer-State",
    "P-Asserted-Identity",
    "P-Asserted-Service",
    "P-Associated-URI",
    "P-Called-Party-ID",
    "P-Charge-Info",
    "P-Charging-Function-Addresses",
    "P-Charging-Vector",
    "P-DCS-Billing-Info",
    "P-DCS-LAES",
    "P-DCS-OSPS",
    "P-DCS-Redirect",
    "P-DCS-Trace-Party-ID",
    "P-Early-Media",
    "P-Media-Authorization",
    "P-Preferred-Identity",
    "P-Preferred-Service",
    "P-Private-Network-Indication",
    "P-Profile-Key",
    "P-Refused-URI-List",
    "P-Served-User",
    "P-User-Database",
    "P-Visited-Network-ID",
    "Path",
    "Permission-Missing",
    "Policy-Contact",
    "Policy-ID",
    "Priority",
    "Priority-Share",
    "Priority-Verstat",
    "Priv-Answer-Mode",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Reason-Phrase",
    "Record-Route",
    "Recv-Info",
    "Refer-Events-At",
    "Refer-Sub",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Relayed-Charge",
    "Remote-Party-ID",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Resource-Priority",
    "Resource-Share",
    "Response-Key",
    "Response-Source",
    "Restoration-Info",
    "Retry-After",
    "Route",
    "RSeq",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Server",
    "Service-Interact-Info",
    "Service-Route",
    "Session-Expires",
    "Session-ID",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Suppress-If-Match",
    "Target-Dialog",
    "Timestamp",
    "To",
    "Trigger-Consent",
    "Unsupported",
    "User-Agent",
    "User-to-User",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Whether `name` is a SIP header field of its own (any case), or a compact form.
pub fn is_sip_field(name: &[u8]) -> bool {
    name.len() == 1
        || HeaderName::parse(name) != HeaderName::Other
        || SIP_FIELDS
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
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
        assert_eq!(H::parse(b""), H::Other);
        // Bytes that fold onto a letter with bit 0x20 are not letters: still no match.
        assert_eq!(H::parse(b"Vi\x01"), H::Other);
        assert_eq!(H::parse(b"Via_"), H::Other);
        // Long names compare eight bytes at a time, the last window overlapping.
        assert_eq!(H::parse(b"P-ASSERTED-IDENTITY"), H::PAssertedIdentity);
        assert_eq!(H::parse(b"P-Asserted-Identitx"), H::Other);
        assert_eq!(H::parse(b"Q-Asserted-Identity"), H::Other);
        assert_eq!(H::parse(b"Content-Lengtg"), H::Other);
        assert_eq!(H::parse(b"CONTENT-LENGTH"), H::ContentLength);
        assert_eq!(H::parse(b"Max-Forwards"), H::MaxForwards);
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
