//! Parse errors: a small closed set of kinds, so that metrics can count them by kind
//! without an attacker being able to invent new label values.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Ran out of bytes before the header section ended.
    Truncated,
    /// Not a SIP start line at all (junk, binary, HTTP...).
    BadStartLine,
    BadVersion,
    BadMethod,
    BadRequestUri,
    BadStatusCode,
    /// A header line without a colon or with an invalid name.
    BadHeaderLine,
    /// A known header whose value breaks its grammar.
    BadHeaderValue,
    BadContentLength,
    /// No Content-Length on a stream, where it is what frames the message (RFC 3261
    /// 18.3): named as missing, not as a bad value of a field that is not there (QA 44).
    NoContentLength,
    /// Content-Length announces more body than the message carries.
    BodyTruncated,
    CSeqMismatch,
    TooManyHeaders,
    TooLarge,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Truncated,
        ErrorKind::BadStartLine,
        ErrorKind::BadVersion,
        ErrorKind::BadMethod,
        ErrorKind::BadRequestUri,
        ErrorKind::BadStatusCode,
        ErrorKind::BadHeaderLine,
        ErrorKind::BadHeaderValue,
        ErrorKind::BadContentLength,
        ErrorKind::NoContentLength,
        ErrorKind::BodyTruncated,
        ErrorKind::CSeqMismatch,
        ErrorKind::TooManyHeaders,
        ErrorKind::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadStartLine => "bad_start_line",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::BadMethod => "bad_method",
            ErrorKind::BadRequestUri => "bad_request_uri",
            ErrorKind::BadStatusCode => "bad_status_code",
            ErrorKind::BadHeaderLine => "bad_header_line",
            ErrorKind::BadHeaderValue => "bad_header_value",
            ErrorKind::BadContentLength => "bad_content_length",
            ErrorKind::NoContentLength => "no_content_length",
            ErrorKind::BodyTruncated => "body_truncated",
            ErrorKind::CSeqMismatch => "cseq_mismatch",
            ErrorKind::TooManyHeaders => "too_many_headers",
            ErrorKind::TooLarge => "too_large",
        }
    }
}

/// Why a message was refused, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Byte offset in the message where the problem was found.
    pub offset: u32,
    /// The header concerned, for `BadHeaderValue`.
    pub header: Option<super::HeaderName>,
}

impl ParseError {
    pub fn new(kind: ErrorKind, offset: usize) -> ParseError {
        ParseError {
            kind,
            offset: offset as u32,
            header: None,
        }
    }
    pub fn header(name: super::HeaderName, offset: usize) -> ParseError {
        ParseError {
            kind: ErrorKind::BadHeaderValue,
            offset: offset as u32,
            header: Some(name),
        }
    }
    /// Whether the sender can be told (a request whose start line was readable gets a
    /// 400, where its top Via says or, when no Via can be read, where it came from: QA
    /// 139, an IPv6 Via without brackets was left unanswered; anything else is dropped
    /// and counted).
    pub fn answerable(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::Truncated | ErrorKind::BadStartLine | ErrorKind::TooLarge
        )
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.header {
            Some(h) => write!(
                f,
                "{} in {} at byte {}",
                self.kind.as_str(),
                h.as_str(),
                self.offset
            ),
            None => write!(f, "{} at byte {}", self.kind.as_str(), self.offset),
        }
    }
}

impl std::error::Error for ParseError {}
