//! Writing IAMs to Q.763: what the tests, the benches, the fuzz seeds and the test
//! capture generator use to build SIP-I calls. The filter itself never builds an IAM; it
//! only deletes parameters from one (see [`crate::verdict`]).

use super::{IAM, Nature, Presentation, QUALIFIER_ADDITIONAL_CALLING, code};

/// A number to write: digits (ASCII '0'-'9'), nature, presentation, screening.
#[derive(Debug, Clone)]
pub struct NumberSpec {
    pub digits: String,
    pub nature: Nature,
    pub presentation: Presentation,
    /// 3 = network provided, 1 = user provided, verified and passed.
    pub screening: u8,
}

impl NumberSpec {
    pub fn international(d: &str) -> NumberSpec {
        NumberSpec {
            digits: d.to_string(),
            nature: Nature::International,
            presentation: Presentation::Allowed,
            screening: 3,
        }
    }
    pub fn national(d: &str) -> NumberSpec {
        NumberSpec {
            nature: Nature::National,
            ..NumberSpec::international(d)
        }
    }
    pub fn with_nature(mut self, n: Nature) -> NumberSpec {
        self.nature = n;
        self
    }
    pub fn restricted(mut self) -> NumberSpec {
        self.presentation = Presentation::Restricted;
        self
    }
    pub fn not_available(mut self) -> NumberSpec {
        self.presentation = Presentation::NotAvailable;
        self.digits.clear();
        self
    }
}

/// Builds one IAM: the called number, then optional parameters in the order added.
#[derive(Debug, Clone)]
pub struct IamBuilder {
    called: String,
    optional: Vec<(u8, Vec<u8>)>,
}

/// Odd/even indicator and the address signals, two per octet, first in the low nibble.
fn signals(digits: &str) -> (u8, Vec<u8>) {
    let d: Vec<u8> = digits
        .bytes()
        .map(|c| c.wrapping_sub(b'0') & 0x0f)
        .collect();
    let odd = (d.len() % 2) as u8;
    let packed = d
        .chunks(2)
        .map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 4))
        .collect();
    (odd << 7, packed)
}

fn number_contents(n: &NumberSpec, with_screening: bool) -> Vec<u8> {
    let (odd, packed) = signals(&n.digits);
    // ISDN numbering plan (1), presentation, screening.
    let mut second = (1 << 4) | (n.presentation.bits() << 2);
    if with_screening {
        second |= n.screening & 3;
    }
    let mut v = vec![odd | n.nature.bits(), second];
    v.extend(packed);
    v
}

impl IamBuilder {
    pub fn new(called: &str) -> IamBuilder {
        IamBuilder {
            called: called.to_string(),
            optional: vec![],
        }
    }
    pub fn calling(mut self, n: NumberSpec) -> IamBuilder {
        self.optional
            .push((code::CALLING_PARTY_NUMBER, number_contents(&n, true)));
        self
    }
    /// A Generic Number qualified as additional calling party number.
    pub fn generic(self, n: NumberSpec) -> IamBuilder {
        self.generic_with(QUALIFIER_ADDITIONAL_CALLING, n)
    }
    pub fn generic_with(mut self, qualifier: u8, n: NumberSpec) -> IamBuilder {
        let mut v = vec![qualifier];
        v.extend(number_contents(&n, true));
        self.optional.push((code::GENERIC_NUMBER, v));
        self
    }
    pub fn original_called(mut self, n: NumberSpec) -> IamBuilder {
        self.optional
            .push((code::ORIGINAL_CALLED_NUMBER, number_contents(&n, false)));
        self
    }
    pub fn redirecting(mut self, n: NumberSpec) -> IamBuilder {
        self.optional
            .push((code::REDIRECTING_NUMBER, number_contents(&n, false)));
        self
    }
    /// Any other optional parameter, as bytes.
    pub fn unknown(mut self, code: u8, contents: &[u8]) -> IamBuilder {
        self.optional.push((code, contents.to_vec()));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let (odd, packed) = signals(&self.called);
        // Called party: NAI national (3) unless it starts like an international number.
        let mut called = vec![odd | 3, 1 << 4];
        called.extend(packed);
        let mut b = vec![
            IAM, 0x00, // nature of connection: no satellite, no continuity check
            0x20,
            0x01, // forward call indicators: national call, ISUP all the way, ISDN access
            0x0a, // calling party's category: ordinary subscriber
            0x00, // transmission medium requirement: speech
        ];
        // Pointers: to the called number (two octets on, past both pointers), to the
        // optional part (past the called number) or 0 when there is none.
        b.push(2);
        let opt_ptr = if self.optional.is_empty() {
            0
        } else {
            (1 + 1 + called.len()) as u8
        };
        b.push(opt_ptr);
        b.push(called.len() as u8);
        b.extend(called);
        if !self.optional.is_empty() {
            for (c, v) in &self.optional {
                b.push(*c);
                b.push(v.len() as u8);
                b.extend(v);
            }
            b.push(code::END_OF_OPTIONAL);
        }
        b
    }
}

/// A SIP-I body: `multipart/mixed` with an SDP part and an `application/ISUP` part.
/// Returns the Content-Type header value and the body.
pub fn sipi_body(sdp: &str, isup: &[u8], boundary: &str) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--{boundary}\r\nContent-Type: application/ISUP;version=itu-t92+\r\nContent-Disposition: signal;handling=required\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(isup);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed;boundary={boundary}"), body)
}

/// A SIP message made SIP-I: its body (the SDP) becomes the first part beside the IAM,
/// Content-Type and Content-Length are replaced and MIME-Version added; every other
/// line stays. `None` when `plain` has no empty line ending its headers or is not text.
pub fn to_sipi(plain: &[u8], isup: &[u8], boundary: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(plain).ok()?;
    let (head, sdp) = text.split_once("\r\n\r\n")?;
    let (ct, body) = sipi_body(sdp, isup, boundary);
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.starts_with("Content-Type") && !l.starts_with("Content-Length"))
        .collect();
    let mut m = format!(
        "{}\r\nMIME-Version: 1.0\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        head.join("\r\n"),
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(&body);
    Some(m)
}
