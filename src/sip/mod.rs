//! SIP message parsing (RFC 3261), zero-copy over [`bytes::Bytes`].
//!
//! A [`Message`] keeps the datagram (or framed stream chunk) it was parsed from and
//! describes every piece as a [`Span`] into it: nothing is copied and nothing is
//! allocated while parsing. Grammar pieces live in their own modules:
//! [`parse`] (start line, header lines, framing), [`uri`] (sip/sips/tel URIs),
//! [`addr`] (name-addr / addr-spec lists with parameters), [`via`] (Via).
//! Building answers and editing headers is in [`response`] and [`rewrite`].

pub mod addr;
pub mod auth;
pub mod error;
pub mod header;
pub mod lex;
pub mod multipart;
pub mod parse;
pub mod response;
pub mod rewrite;
pub mod uri;
pub mod via;

use bytes::Bytes;

pub use error::{ErrorKind, ParseError};
pub use header::HeaderName;
pub use parse::{MAX_HEADERS, MAX_MESSAGE, call_id_of, frame_stream};

/// Byte range `[start, end)` into the buffer a message was parsed from.
///
/// `u32` keeps header tables small (a message is at most [`MAX_MESSAGE`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    #[inline]
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
    #[inline]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }
    /// `pos` lies within this span (end excluded).
    #[inline]
    pub fn contains(self, pos: u32) -> bool {
        self.start <= pos && pos < self.end
    }
}

/// SIP methods that the proxy and the policy treat specially; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other,
}

impl Method {
    pub fn from_bytes(m: &[u8]) -> Method {
        // Methods are case-sensitive (RFC 3261 7.1).
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// Whether `m` is one of the known methods spelled in another case ("invite",
    /// "Bye"). RFC 3261 makes that another, extension, method, but Kamailio, OpenSIPS
    /// and many B2BUAs compare methods without case: an "invite" a core sets up as a
    /// call would have passed no caller rule (QA 54), so the parser refuses it.
    pub fn is_miscased(m: &[u8]) -> bool {
        // SUBSCRIBE and REGISTER, the longest known methods, have nine letters.
        let mut up = [0u8; 9];
        let Some(u) = up.get_mut(..m.len()) else {
            return false;
        };
        u.copy_from_slice(m);
        u.make_ascii_uppercase();
        u != m && Method::from_bytes(u) != Method::Other
    }
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// One header field as it stands in the message. 12 bytes: a message keeps up to
/// [`MAX_HEADERS`] of them inline (3 KB), and the proxy's workers parse into one
/// message each rather than build and move a table per datagram. Offsets fit in u16
/// because a message is at most [`MAX_MESSAGE`] (65,535) bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header {
    value_start: u16,
    value_end: u16,
    line_start: u16,
    line_end: u16,
    name_len: u16,
    pub name: HeaderName,
}

const _: () = assert!(MAX_MESSAGE <= u16::MAX as usize);
// `Message::first` keeps 1 + a field's index in a u8.
const _: () = assert!(MAX_HEADERS < u8::MAX as usize);

impl Header {
    pub(crate) fn new(name: HeaderName, line: Span, name_len: usize, value: Span) -> Header {
        Header {
            value_start: value.start as u16,
            value_end: value.end as u16,
            line_start: line.start as u16,
            line_end: line.end as u16,
            name_len: name_len as u16,
            name,
        }
    }
    /// The value with leading and trailing whitespace removed; folds stay inside.
    #[inline]
    pub fn value(&self) -> Span {
        Span {
            start: self.value_start as u32,
            end: self.value_end as u32,
        }
    }
    /// The field name as written (may be a compact form or odd case).
    pub fn name_span(&self) -> Span {
        Span {
            start: self.line_start as u32,
            end: self.line_start as u32 + self.name_len as u32,
        }
    }
    /// The whole field including its line terminator(s): what a rewrite removes.
    pub fn line(&self) -> Span {
        Span {
            start: self.line_start as u32,
            end: self.line_end as u32,
        }
    }
    /// Whether a field no [`HeaderName`] names is `names` (its long and compact forms,
    /// any case), in `b`, the message's bytes.
    pub fn is(&self, b: &[u8], names: FieldNames) -> bool {
        let n = self.name_span().of(b);
        n.eq_ignore_ascii_case(names.0) || n.eq_ignore_ascii_case(names.1)
    }
}

/// A field's long and compact names, for the fields [`HeaderName`] leaves as `Other`
/// (read on a REFER alone: not worth a place in every message's header table).
#[derive(Debug, Clone, Copy)]
pub struct FieldNames(pub &'static [u8], pub &'static [u8]);

pub const REFER_TO: FieldNames = FieldNames(b"Refer-To", b"r");
pub const REFERRED_BY: FieldNames = FieldNames(b"Referred-By", b"b");

/// The start line of an empty message (nothing parsed into it yet, or a failed parse).
const NO_START: StartLine = StartLine::Response {
    code: 0,
    reason: Span { start: 0, end: 0 },
};

/// A parsed SIP message. Cheap to clone (the buffer is reference counted).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    start_line: Span,
    headers: [Header; MAX_HEADERS],
    n_headers: u16,
    /// For each name, 1 + the index of its first field (0: none). The policy asks for a
    /// dozen names per message; a scan of the table each time cost more than the walk
    /// that fills this in.
    first: [u8; HeaderName::COUNT],
    /// Where the header section ends (index of the blank line).
    head_end: u32,
    /// Some line of the head ends in LF alone.
    bare_lf: bool,
    body: Span,
    /// From and To as validated at parse time (first field of each), kept so that the
    /// identity and dialog checks do not parse them again.
    from: Option<addr::NameAddr>,
    to: Option<addr::NameAddr>,
    /// The first two via-parms (over all Via fields), validated at parse time: the
    /// proxy reads the top one for every request and both for every response.
    vias: [Option<via::Via>; 2],
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.headers())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Message {
    /// Parses one complete message (a UDP datagram, or a frame cut by [`frame_stream`]).
    /// Octets after the body that Content-Length announces are ignored (RFC 4475 3.1.1.8).
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        parse::parse_message(buf)
    }

    /// Like [`Message::parse`], but a response is checked only as far as relaying it
    /// needs (its Via); requests are always checked in full.
    pub fn parse_for_relay(buf: Bytes) -> Result<Message, ParseError> {
        parse::parse_message_with(buf, parse::Check::ViaOnly)
    }

    /// [`Message::parse`] into this message, reusing its header table (no ~1 KB table
    /// built and moved per message). On `Err` the message is empty.
    pub fn parse_into(&mut self, buf: Bytes) -> Result<(), ParseError> {
        parse::parse_message_into(self, buf, parse::Check::Full)
    }

    /// [`Message::parse_for_relay`] into this message, reusing its header table: what
    /// the proxy does for every datagram, with one `Message` per worker. On `Err` the
    /// message is empty.
    pub fn parse_for_relay_into(&mut self, buf: Bytes) -> Result<(), ParseError> {
        parse::parse_message_into(self, buf, parse::Check::ViaOnly)
    }

    /// Whether a line of the head ends in LF alone rather than CRLF: such a head is
    /// relayed with CRLFs ([`rewrite::crlf_head`]).
    pub fn bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// A message with no bytes and no fields, to parse into.
    pub fn empty() -> Message {
        Message {
            buf: Bytes::new(),
            start: NO_START,
            start_line: Span::default(),
            headers: [Header::default(); MAX_HEADERS],
            n_headers: 0,
            first: [0; HeaderName::COUNT],
            head_end: 0,
            bare_lf: false,
            body: Span::default(),
            from: None,
            to: None,
            vias: [None; 2],
        }
    }

    /// Back to [`Message::empty`] (but for the header table's unread slots), letting go
    /// of the buffer: a receive loop that reuses its buffer once every message of a
    /// batch is dropped calls this when the batch is done.
    pub fn clear(&mut self) {
        // Every field named, so that a field added to `Message` cannot be left out here
        // (the table's slots past `n_headers` are never read).
        let Message {
            buf,
            start,
            start_line,
            headers: _,
            n_headers,
            first,
            head_end,
            bare_lf,
            body,
            from,
            to,
            vias,
        } = self;
        *buf = Bytes::new();
        *start = NO_START;
        *start_line = Span::default();
        *n_headers = 0;
        *first = [0; HeaderName::COUNT];
        *head_end = 0;
        *bare_lf = false;
        *body = Span::default();
        *from = None;
        *to = None;
        *vias = [None; 2];
    }

    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }
    #[inline]
    pub fn buf(&self) -> &[u8] {
        &self.buf
    }
    #[inline]
    pub fn slice(&self, s: Span) -> &[u8] {
        s.of(&self.buf)
    }
    pub fn start(&self) -> StartLine {
        self.start
    }
    pub fn start_line_span(&self) -> Span {
        self.start_line
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    pub fn method_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { method_span, .. } => Some(self.slice(method_span)),
            StartLine::Response { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }
    pub fn request_uri(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    pub fn headers(&self) -> &[Header] {
        &self.headers[..self.n_headers as usize]
    }
    /// End of the header section: the offset of the empty line that ends it.
    pub fn head_end(&self) -> usize {
        self.head_end as usize
    }
    pub fn body(&self) -> &[u8] {
        self.slice(self.body)
    }
    pub fn body_span(&self) -> Span {
        self.body
    }
    /// Length of this message within the buffer (trailing octets excluded).
    pub fn len(&self) -> usize {
        self.body.end as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All fields with this name, in order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        let from = match self.first[name as usize] {
            0 => self.n_headers as usize,
            i => i as usize - 1,
        };
        self.headers()[from..]
            .iter()
            .filter(move |h| h.name == name)
    }
    /// The first field with this name.
    #[inline]
    pub fn first(&self, name: HeaderName) -> Option<&Header> {
        match self.first[name as usize] {
            0 => None,
            i => self.headers().get(i as usize - 1),
        }
    }
    /// Value of the first field with this name.
    pub fn value(&self, name: HeaderName) -> Option<&[u8]> {
        self.first(name).map(|h| self.slice(h.value()))
    }
    pub fn count(&self, name: HeaderName) -> usize {
        self.all(name).count()
    }
    pub fn call_id(&self) -> &[u8] {
        self.value(HeaderName::CallId).unwrap_or(b"")
    }
    /// The CSeq number and method (validated at parse time when present).
    pub fn cseq(&self) -> Option<(u32, &[u8])> {
        let v = self.value(HeaderName::CSeq)?;
        parse::split_cseq(v)
    }
    /// The tag parameter of To (present on in-dialog requests).
    pub fn to_tag(&self) -> Option<&[u8]> {
        addr::header_param(self.buf(), self.to?.params, b"tag").filter(|t| !t.is_empty())
    }
    pub fn from_tag(&self) -> Option<&[u8]> {
        addr::header_param(self.buf(), self.from?.params, b"tag").filter(|t| !t.is_empty())
    }
    /// [`Message::from_tag`], read from the field when the parse left From aside (a
    /// response parsed for relaying, [`Message::parse_for_relay`]).
    pub fn from_tag_read(&self) -> Option<&[u8]> {
        self.tag_read(self.from, HeaderName::From)
    }
    /// [`Message::to_tag`], read from the field when the parse left To aside.
    pub fn to_tag_read(&self) -> Option<&[u8]> {
        self.tag_read(self.to, HeaderName::To)
    }
    /// The tag of From or To (`name`): of the value parsed, else read from the field.
    fn tag_read(&self, parsed: Option<addr::NameAddr>, name: HeaderName) -> Option<&[u8]> {
        let params = match parsed {
            Some(na) => na.params,
            None => addr::params_unparsed(self.buf(), self.first(name)?.value()),
        };
        addr::header_param(self.buf(), params, b"tag").filter(|t| !t.is_empty())
    }
    /// The From value, parsed.
    pub fn from_addr(&self) -> Option<&addr::NameAddr> {
        self.from.as_ref()
    }
    /// The To value, parsed.
    pub fn to_addr(&self) -> Option<&addr::NameAddr> {
        self.to.as_ref()
    }
    /// The topmost Via value (first value of the first Via field).
    pub fn top_via(&self) -> Option<via::Via> {
        self.vias[0]
    }
    /// The via-parm below the top one: in the same field or the next Via field.
    pub fn second_via(&self) -> Option<via::Via> {
        self.vias[1]
    }
    pub fn max_forwards(&self) -> Option<u32> {
        self.value(HeaderName::MaxForwards)
            .and_then(|v| lex::parse_u32(lex::trim(v)))
    }

    /// Checks a request as an element would before acting on it (RFC 3261 8.2 and 16.3):
    /// required fields present and single-valued, one Content-Length. A message that
    /// parses but fails here gets a 400 rather than being dropped (RFC 4475 3.3.1, 3.3.8, 3.3.9).
    pub fn check_request(&self) -> Result<(), &'static str> {
        // One pass over the fields, counting the ones that matter.
        let (mut to, mut from, mut call_id, mut cseq, mut via, mut mf, mut cl, mut ct) =
            (0u32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
        for h in self.headers() {
            match h.name {
                HeaderName::To => to += 1,
                HeaderName::From => from += 1,
                HeaderName::CallId => call_id += 1,
                HeaderName::CSeq => cseq += 1,
                HeaderName::Via => via += 1,
                HeaderName::MaxForwards => mf += 1,
                HeaderName::ContentLength => cl += 1,
                HeaderName::ContentType => ct += 1,
                _ => {}
            }
        }
        for (n, missing, multiple) in [
            (to, "Missing To", "Multiple To"),
            (from, "Missing From", "Multiple From"),
            (call_id, "Missing Call-ID", "Multiple Call-ID"),
            (cseq, "Missing CSeq", "Multiple CSeq"),
        ] {
            match n {
                0 => return Err(missing),
                1 => {}
                _ => return Err(multiple),
            }
        }
        // Two tags name two dialogs: which one the next element takes is not known (the
        // last, in Kamailio), and the filter would judge, or know, the other (QA 66).
        let b = self.buf();
        if self
            .from
            .is_some_and(|na| addr::param_repeated(b, na.params, b"tag"))
        {
            return Err("Multiple From tags");
        }
        if self
            .to
            .is_some_and(|na| addr::param_repeated(b, na.params, b"tag"))
        {
            return Err("Multiple To tags");
        }
        if self.request_uri().is_some_and(|u| u.is_empty()) && self.to_tag().is_none() {
            return Err("Missing Request-URI");
        }
        if via == 0 {
            return Err("Missing Via");
        }
        if self.top_via().is_some_and(|v| !v.answerable(b)) {
            return Err("Bad Via");
        }
        if mf > 1 {
            return Err("Multiple Max-Forwards");
        }
        if cl > 1 {
            return Err("Multiple Content-Length");
        }
        // Single-valued (RFC 3261 20.15): the filter would read the body as one type (SDP)
        // and the next hop as another (a multipart with the ISUP IAM in it).
        if ct > 1 {
            return Err("Multiple Content-Type");
        }
        if self.method() == Some(Method::Refer) {
            return self.check_refer();
        }
        Ok(())
    }

    /// A REFER names exactly one target (RFC 3515 2.4.1: none, or more, is answered
    /// 400), and at most one referrer (RFC 3892); neither hides an identity the filter
    /// does not judge in a URI header or behind a second '@' ([`uri::hides_an_identity`]):
    /// the call a REFER makes is built from its target's URI headers (RFC 3261 19.1.5),
    /// and its Referred-By is shown to the party transferred (QA 182 F2).
    #[cold]
    fn check_refer(&self) -> Result<(), &'static str> {
        let b = self.buf();
        for (names, missing, multiple, bad) in [
            (
                REFER_TO,
                Some("Missing Refer-To"),
                "Multiple Refer-To",
                "Bad Refer-To",
            ),
            (REFERRED_BY, None, "Multiple Referred-By", "Bad Referred-By"),
        ] {
            let (mut values, mut hides) = (0u32, false);
            for h in self.all(HeaderName::Other).filter(|h| h.is(b, names)) {
                addr::parse_list_skip_empty(b, h.value(), |na| {
                    values += 1;
                    hides |= uri::hides_an_identity(b, na.uri);
                })
                .map_err(|_| bad)?;
            }
            match values {
                0 => {
                    if let Some(m) = missing {
                        return Err(m);
                    }
                }
                1 => {}
                _ => return Err(multiple),
            }
            if hides {
                return Err(bad);
            }
        }
        Ok(())
    }
}
