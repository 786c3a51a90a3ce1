//! Who is calling: the numbers a request carries and what the network vouches for.
//!
//! From carries the presented number (the "generic number" a user or PBX may set);
//! P-Asserted-Identity (RFC 3325, one sip and/or one tel value) and, from legacy peers,
//! a screened Remote-Party-ID carry the network-asserted one; P-Preferred-Identity is
//! only a wish of the sender. Privacy (RFC 3323) says whether the caller asked to hide.
//!
//! A SIP-I call (ITU-T Q.1912.5) also carries the original ISUP IAM in its body: its
//! Calling Party Number is the network's word from the PSTN side, its Generic Number
//! (additional calling party number) the presented one. Both are read here, so that a
//! forged number inside the body is judged like one in a header.

use crate::isup::{self, Iam, IsupError, IsupNumber, Nature, Presentation};
use crate::numbering::{
    Bare, Class, NotANumber, Number, Plan, Reading, Worded, as_displayed, embedded_numbers_in,
    normalise, normalise_as, rtl_numbers,
};
use crate::sip::addr::{self, NameAddr};
use crate::sip::uri::{self, Scheme};
use crate::sip::{HeaderName, Message, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    From,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::From => "from",
            Source::PAssertedIdentity => "pai",
            Source::PPreferredIdentity => "ppi",
            Source::RemotePartyId => "rpid",
        }
    }
}

/// One identity as a header states it.
#[derive(Debug, Clone, Copy)]
pub struct Party {
    pub source: Source,
    /// The header value it came from.
    pub value: Span,
    /// The user part (sip) or number (tel) as written; empty span when absent.
    pub user: Span,
    pub number: Result<Number, NotANumber>,
    /// Read as E.164 written without its '+' (a trunk's `bare_numbers =
    /// "international"`): the forwarded request gets the '+' written in.
    pub plus_missing: bool,
    /// Read as a local number in a `phone-context` that places it (a global number's,
    /// `95588;phone-context=+852`, or dialled digits', `95588;phone-context=00852`),
    /// whose digits alone would be another number: equipment that drops the context
    /// (ISUP interworking does) would show them (a domestic bank's 95588; `110` for an
    /// enterprise's `110;phone-context=+8613912340`).
    pub in_context: bool,
}

impl Party {
    pub fn number(&self) -> Option<Number> {
        self.number.ok()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CallerIdentity {
    pub from: Option<Party>,
    pub asserted: Option<Party>,
    /// A second asserted identity (RFC 3325 allows one sip and one tel, naming one
    /// caller). When the first holds no number and this one does, they swap. When both
    /// hold numbers and the numbers differ, the rules judge both: the core behind the
    /// gateway may well show the tel one.
    pub asserted2: Option<Party>,
    /// P-Preferred-Identity: the identity the caller would like; a trusted proxy may
    /// turn it into a P-Asserted-Identity, so one from outside is a presented number.
    pub preferred: Option<Party>,
    /// The first later P-Preferred-Identity value that names another number than
    /// `preferred` (RFC 3325 allows a sip and a tel one). With the first, it holds
    /// every value that is not the caller's whenever one is: if the first is the
    /// caller's, this one is not.
    pub preferred2: Option<Party>,
    /// A Remote-Party-ID that is not the asserted identity (unscreened, or beside a
    /// P-Asserted-Identity): a presented number to legacy equipment that reads it.
    pub rpid: Option<Party>,
    /// The first later such Remote-Party-ID value naming another number than `rpid`
    /// (as `preferred2`).
    pub rpid2: Option<Party>,
    /// An identity field (P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID)
    /// that does not parse: the core or the callee's equipment may read a number in it
    /// that the filter cannot, so the request is refused rather than judged without it.
    pub unreadable: Option<HeaderName>,
    /// A number an identity header shows beside its URI's number: a display name of a
    /// P-Asserted-Identity, P-Preferred-Identity or Remote-Party-ID value (phones and
    /// caller-name services show them as they show From's), or the digits of a user
    /// part that is no number (`<sip:95588,1@x>`, `<sip:95588p1@x>`) in From, a
    /// P-Preferred-Identity or an unasserted Remote-Party-ID. Presented numbers: the
    /// first four distinct, so that one that is not the caller's is kept whenever one
    /// is shown.
    pub header_shown: Shown,
    /// Every number the display names and odd user parts show (From's included), and
    /// every P-Preferred-Identity and unasserted Remote-Party-ID number, up to four: an
    /// enterprise trunk judges each, so that a second contracted number in a name
    /// cannot cover a third number beside it, nor two presented values a third (QA 50:
    /// only the first two distinct were judged).
    pub shown_all: Shown,
    /// A P-Preferred-Identity or unasserted Remote-Party-ID value presents a name or
    /// digits that are no number (`<sip:gw@carrier.example>`), or a Remote-Party-ID
    /// names the called party: presented, if not a number, and deleted at the gateways
    /// like From presenting a name.
    pub presents_name: bool,
    /// A Remote-Party-ID names the called party (`party=called`): no caller, but
    /// equipment that reads the field whatever `party` says would show its number as
    /// one, so it goes wherever the request is forwarded.
    pub called_party: bool,
    /// From's display name is digits that no plan holds (more than any number has:
    /// `"1391234000113812345678"`, two numbers run together): not the caller's number,
    /// and on an enterprise trunk a presented number that breaks the plan.
    pub display_unholdable: bool,
    /// A user part of From, a P-Preferred-Identity or an unasserted Remote-Party-ID is
    /// a dial string (digits among `*`, `#`, `+`, pauses, visual separators and blanks)
    /// that holds no number the plan has (`<sip:*8001@pbx>`, `<sip:*6713812345678@pbx>`): on an
    /// enterprise trunk a presented number that breaks the plan, as `<sip:8001@pbx>` is
    /// (QA 50: the marks hid the digits from every rule, and a next hop that drops
    /// them sends the digits on).
    pub dial_unholdable: bool,
    /// More P-Asserted-Identity values than RFC 3325 9.1 allows (one sip or sips and
    /// one tel): a third would reach the core unjudged, so the request is refused.
    pub excess_asserted: bool,
    /// Privacy: id / user / header, or Remote-Party-ID privacy=full/uri.
    pub withheld: bool,
    /// The ISUP of a SIP-I call.
    pub isup: Option<IsupIdentity>,
    /// From shows the callee something: a number, a name, or a display name that is
    /// neither empty nor a privacy word. An anonymous From (RFC 3323: `"Anonymous"
    /// <sip:anonymous@anonymous.invalid>`) shows nothing, so it holds no generic number.
    pub from_presents: bool,
    /// From's display name when it reads as a number: many phones show the display
    /// name, so a number there is presented as much as one in the URI.
    pub display_number: Option<Number>,
    /// The number From's userinfo password shows (`<sip:+442071234567:110@gw>`), read
    /// as its display name's is ([`password_shows`]).
    pub password_number: Option<Number>,
}

/// Distinct numbers shown in display names and user parts, at most four (more is no
/// display name a phone shows), and whether another one did not fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    nums: [Option<Number>; 4],
    /// A fifth distinct number was shown: one that is not kept, so not judged (an
    /// enterprise trunk, where every presented number is, refuses the request).
    pub overflow: bool,
}

impl Shown {
    /// Keeps `n` unless it is kept already or four others are (then notes the overflow).
    fn note(&mut self, n: Number) {
        match self.nums.iter_mut().find(|s| s.is_none_or(|s| s == n)) {
            Some(slot) => *slot = Some(n),
            None => self.overflow = true,
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = Number> + '_ {
        self.nums.iter().flatten().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.nums[0].is_none()
    }
}

/// What the ISUP of a SIP-I call says about the caller.
#[derive(Debug, Clone, Copy)]
pub struct IsupIdentity {
    /// The ISUP octets in the message buffer.
    pub body: Span,
    /// The Content-Length values of the ISUP part and the parts around it.
    pub part_content_lengths: isup::sipi::PartLengths,
    pub required: bool,
    /// The decoded IAM, or why the body could not be read (a multipart body that cannot
    /// be split counts as unreadable ISUP: it may hide one).
    pub iam: Result<Iam, IsupError>,
    /// Calling Party Number, normalised; `None` when the IAM has none (or none was read).
    pub calling: Option<Result<Number, NotANumber>>,
    /// Generic Number (additional calling party number), normalised.
    pub generic: Option<Result<Number, NotANumber>>,
    /// The first Generic Number naming another number than `generic` once normalised.
    pub generic2: Option<Result<Number, NotANumber>>,
    /// A third number among the Generic Numbers, once normalised, or one with signals
    /// that are no digits: presented numbers that are not judged.
    pub generic_unjudged: bool,
}

impl IsupIdentity {
    /// The IAM could not be read, or (on an enterprise trunk, where every presented
    /// number is judged) it presents more Generic Numbers than are judged.
    pub fn unreadable_on(&self, role: crate::policy::config::Role) -> bool {
        match &self.iam {
            Err(_) => true,
            Ok(_) => self.generic_unjudged && role == crate::policy::config::Role::Enterprise,
        }
    }

    /// Generic Numbers that the deletion rule removes.
    pub fn generic_count(&self) -> usize {
        self.iam.map_or(0, |i| i.generic_count as usize)
    }
    /// Why the ISUP caller is blank: no Calling Party Number in a readable IAM, or one
    /// without a usable number.
    pub fn blank_reason(&self) -> Option<NotANumber> {
        match (self.iam, self.calling) {
            (Err(_), _) => None,
            (Ok(_), None) => Some(NotANumber::Empty),
            (Ok(_), Some(Err(e))) if e != NotANumber::Withheld => Some(e),
            _ => None,
        }
    }
    /// Presentation restricted and no number behind it.
    pub fn withheld(&self) -> bool {
        matches!(self.calling, Some(Err(NotANumber::Withheld)))
    }
    /// The Calling Party Number is marked presentation restricted, digits or none: the
    /// ISUP form of `Privacy: id` (ITU-T Q.1912.5 maps one to the other).
    pub fn calling_restricted(&self) -> bool {
        self.iam
            .as_ref()
            .ok()
            .and_then(|i| i.calling.as_ref())
            .is_some_and(|c| c.presentation.is_some_and(Presentation::restricts))
    }
}

impl CallerIdentity {
    /// The number the filter judges: the asserted identity when the network gives one,
    /// else the presented one.
    pub fn effective(&self) -> Option<&Party> {
        self.asserted.as_ref().or(self.from.as_ref())
    }
    pub fn effective_number(&self) -> Option<Number> {
        self.effective().and_then(Party::number)
    }
    /// Why the caller is blank, if it is: nothing usable where the identity should be,
    /// in the SIP headers or, for a SIP-I call, in the IAM.
    pub fn blank_reason(&self) -> Option<NotANumber> {
        match self.effective() {
            None => Some(NotANumber::Empty),
            Some(p) => p.number.err(),
        }
        .or_else(|| self.isup.and_then(|i| i.blank_reason()))
    }
    /// The caller asked that its number not be shown: SIP privacy (`Privacy: id`,
    /// Remote-Party-ID `privacy=full`), or an IAM whose Calling Party Number is
    /// presentation restricted. Nothing sipfence writes may then show the number
    /// (QA 88: the generic-number rewrite put a restricted ISUP caller in From).
    pub fn hides_number(&self) -> bool {
        self.withheld || self.isup.is_some_and(|i| i.calling_restricted())
    }
    /// Withheld (SIP Privacy, or an ISUP calling number restricted without digits) with
    /// no asserted identity behind it: nobody in the network can say who calls.
    pub fn withheld_without_identity(&self) -> bool {
        let withheld = self.withheld || self.isup.is_some_and(|i| i.withheld());
        withheld && self.asserted.and_then(|p| p.number()).is_none()
    }
    /// The caller asks, in SIP or in its IAM (digits or none), that its number be
    /// withheld from the callee, asserted identity or not.
    pub fn withheld_any(&self) -> bool {
        self.withheld
            || self
                .isup
                .is_some_and(|i| i.withheld() || i.calling_restricted())
    }
    /// From presents another number (or a name) than the asserted one, or its display
    /// name shows another number than the caller's. An anonymous From presents nothing
    /// and differs from nothing.
    pub fn from_differs(&self) -> bool {
        let Some(f) = self.from else { return false };
        let asserted = self.asserted.and_then(|a| a.number());
        let user = asserted.is_some() && self.from_presents && f.number() != asserted;
        let other = |n: &Option<Number>| n.is_some_and(|n| Some(n) != asserted.or(f.number()));
        user || self.display_unholdable
            || other(&self.display_number)
            || other(&self.password_number)
    }
    /// A "generic number" to delete: From differs ([`Self::from_differs`]), or a
    /// P-Preferred-Identity or an unasserted Remote-Party-ID names another number than
    /// the caller's.
    pub fn presented_differs(&self) -> bool {
        self.from_differs() || self.presents_name || self.other_presented().is_some()
    }
    /// The value of the Remote-Party-ID field that is the asserted identity, if one is:
    /// the field a rewrite keeps.
    pub fn asserted_rpid(&self) -> Option<Span> {
        self.asserted
            .filter(|p| p.source == Source::RemotePartyId)
            .map(|p| p.value)
    }
    /// The P-Preferred-Identity and unasserted Remote-Party-ID values kept.
    pub fn presented_parties(&self) -> impl Iterator<Item = Party> + use<> {
        [self.preferred, self.preferred2, self.rpid, self.rpid2]
            .into_iter()
            .flatten()
    }
    /// The number of a P-Preferred-Identity, else of an unasserted Remote-Party-ID, else
    /// one an identity header shows beside its URI's ([`Self::header_shown`]), when it
    /// is not the caller's.
    pub fn other_presented(&self) -> Option<Number> {
        let caller = self.effective_number();
        // A loop over references: this runs for every call, and the iterator chain over
        // copies of four identities cost a few hundred instructions more.
        for p in [&self.preferred, &self.preferred2, &self.rpid, &self.rpid2] {
            if let Some(Party { number: Ok(n), .. }) = p
                && Some(*n) != caller
            {
                return Some(*n);
            }
        }
        self.header_shown.iter().find(|n| Some(*n) != caller)
    }
}

/// Extracts the caller identity of a request, reading numbers shown in display names
/// against `plan`. An identity field that does not parse is noted in
/// [`CallerIdentity::unreadable`] (the parse step already validated From).
pub fn extract(msg: &Message, r: Reading<'_>, plan: &Plan) -> CallerIdentity {
    let mut id = CallerIdentity::default();
    extract_into(msg, r, plan, &mut id);
    id
}

/// [`extract`] into `id` (reset first): the decision fills its own copy in place rather
/// than moving a few hundred bytes of identity into it.
pub fn extract_into(msg: &Message, r: Reading<'_>, plan: &Plan, id: &mut CallerIdentity) {
    let b = msg.buf();
    *id = CallerIdentity::default();
    for h in msg.headers() {
        match h.name {
            HeaderName::From => {
                if id.from.is_none()
                    && let Some(na) = msg.from_addr()
                {
                    let p = party(b, Source::From, h.value(), na, r);
                    let text = na.display.map(|d| unquote(d.of(b)));
                    // Usually the display name is the URI's number as written (and gets
                    // the same '+' written in when the URI does).
                    let as_user = text.is_some_and(|t| !t.is_empty() && t == p.user.of(b));
                    // The display name read as a number, once: empty or a privacy word
                    // shows nothing.
                    let display = text.map(|t| {
                        if as_user {
                            p.number
                        } else {
                            normalise(t, r.home_cc, None)
                        }
                    });
                    id.display_number = match text {
                        _ if as_user => p.number.ok(),
                        Some(t) => {
                            shown_number_into(t, true, r, plan, p.number.ok(), &mut id.shown_all)
                        }
                        None => None,
                    };
                    id.display_unholdable = id.display_number.is_none()
                        && display.is_some_and(|r| r.is_err_and(NotANumber::breaks_plan));
                    match user_shows(b, &p, plan, r, &mut id.shown_all) {
                        Some(n) => id.header_shown.note(n),
                        None => id.dial_unholdable |= dial_string(b, &p),
                    }
                    id.password_number = password_shows(b, &p, plan, r, &mut id.shown_all);
                    if let Some(n) = id.password_number {
                        id.header_shown.note(n);
                    }
                    id.from_presents = match p.number {
                        Ok(_)
                        | Err(
                            NotANumber::NonNumeric | NotANumber::TooLong | NotANumber::Incomplete,
                        ) => true,
                        Err(NotANumber::Empty | NotANumber::Withheld) => display.is_some_and(|r| {
                            !matches!(r, Err(NotANumber::Empty | NotANumber::Withheld))
                        }),
                    };
                    // The same hidden second identity as in the asserted fields (QA 176
                    // N5): `?P-Asserted-Identity=...` in the URI, or a quoted `<`.
                    if hides_a_value(b, na) {
                        id.unreadable.get_or_insert(HeaderName::From);
                    }
                    id.from = Some(p);
                }
            }
            HeaderName::PAssertedIdentity if id.asserted2.is_none() => {
                if let Some(first) = id.asserted
                    && let Some(p) = same_tel(b, h.value(), &first)
                {
                    id.asserted2 = Some(p);
                    continue;
                }
                let read = addr::parse_list_skip_empty(b, h.value(), |na| {
                    if id.asserted2.is_some() {
                        id.excess_asserted = true;
                        return;
                    }
                    // RFC 3325 9.1: an asserted identity is a sip, sips or tel URI.
                    // Another (`h323:95588@gw`) is no identity this network asserts,
                    // yet equipment that takes the first value shows its number (QA 61).
                    if !asserted_scheme(na.uri.of(b)) || hides_a_value(b, &na) {
                        id.unreadable.get_or_insert(HeaderName::PAssertedIdentity);
                    }
                    let p = read_party(
                        b,
                        Source::PAssertedIdentity,
                        h.value(),
                        na.uri,
                        r,
                        id.asserted,
                    );
                    if let Some(n) = shown_beside(b, &na, &p, plan, r, &mut id.shown_all) {
                        id.header_shown.note(n);
                    }
                    match id.asserted {
                        None => id.asserted = Some(p),
                        Some(_) => id.asserted2 = Some(p),
                    }
                });
                note_unreadable(b, h, read, &mut id.unreadable);
            }
            // A field after the two values: a third (an empty field says nothing).
            HeaderName::PAssertedIdentity if !crate::sip::lex::trim(h.value().of(b)).is_empty() => {
                id.excess_asserted = true;
            }
            HeaderName::PPreferredIdentity => {
                let read = addr::parse_list_skip_empty(b, h.value(), |na| {
                    if hides_a_value(b, &na) {
                        id.unreadable.get_or_insert(HeaderName::PPreferredIdentity);
                    }
                    let p = party(b, Source::PPreferredIdentity, h.value(), &na, r);
                    presented(id, b, &na, p, plan, r);
                });
                note_unreadable(b, h, read, &mut id.unreadable);
            }
            HeaderName::Privacy => {
                // Values in quotes (`"id"`, `"id;user"`) break RFC 3323's grammar, but a
                // lenient element behind the gateway reads them as the words (QA 154).
                for v in h.value().of(b).split(|&c| c == b';' || c == b',') {
                    let v = crate::sip::lex::trim(v);
                    let v = v.strip_prefix(b"\"").unwrap_or(v);
                    let v = crate::sip::lex::trim(v.strip_suffix(b"\"").unwrap_or(v));
                    if v.eq_ignore_ascii_case(b"id")
                        || v.eq_ignore_ascii_case(b"user")
                        || v.eq_ignore_ascii_case(b"header")
                    {
                        id.withheld = true;
                    }
                }
            }
            _ => {}
        }
    }
    // Remote-Party-ID is the asserted identity only when no PAI is present (legacy
    // peers send one or the other) and it is screened; otherwise it is a presented one.
    for h in msg.all(HeaderName::RemotePartyId) {
        let read = addr::parse_list_skip_empty(b, h.value(), |na| {
            let param = |n: &[u8]| addr::header_param(b, na.params, n);
            // Anything but `party=called` (quoted or not) names the caller: equipment that
            // reads Remote-Party-ID takes the first one whatever it says. A called-party
            // value in a request is no caller, but has no place beyond the gateway.
            if is_called_party(b, &na) {
                id.presents_name = true;
                id.called_party = true;
                return;
            }
            if param(b"privacy").is_some_and(rpid_privacy_hides_number) {
                id.withheld = true;
            }
            if hides_a_value(b, &na) {
                id.unreadable.get_or_insert(HeaderName::RemotePartyId);
            }
            let p = party(b, Source::RemotePartyId, h.value(), &na, r);
            // Only a screened identity is the network's word (draft-ietf-sip-privacy-04).
            if id.asserted.is_none()
                && param(b"screen").is_some_and(|v| v.eq_ignore_ascii_case(b"yes"))
            {
                if let Some(n) = shown_beside(b, &na, &p, plan, r, &mut id.shown_all) {
                    id.header_shown.note(n);
                }
                id.asserted = Some(p);
            } else {
                presented(id, b, &na, p, plan, r);
            }
        });
        note_unreadable(b, h, read, &mut id.unreadable);
    }
    // Assigned in each branch: an `if` whose value is assigned once was built aside and
    // copied in whole (the reading is several hundred bytes), SDP calls included.
    if isup::sipi::sdp_only(msg) {
        id.isup = None;
    } else {
        id.isup = isup_identity(msg, r);
    }
    // Prefer an asserted value that holds a number (e.g. the tel one of a sip+tel pair).
    if let (Some(a), Some(a2)) = (id.asserted, id.asserted2)
        && a.number.is_err()
        && a2.number.is_ok()
    {
        id.asserted = Some(a2);
        id.asserted2 = Some(a);
    }
    // A foreign caller's name that is its own number as written at home.
    if let Some(shown) = id.display_number
        && let Some(own) = id
            .asserted
            .and_then(|a| a.number())
            .or(id.from.and_then(|f| f.number()))
        && shown != own
        && let Some(display) = msg.from_addr().and_then(|na| na.display)
        && foreign_callers_own(unquote(display.of(b)), own, &id.shown_all, r, plan)
    {
        id.display_number = Some(own);
    }
}

/// Whether a display name that is a number alone shows the foreign `caller`'s own
/// number as people write it in the caller's country: without the country code
/// (`"(415) 555-0123"` for +14155550123), with it but no '+' (`"1-415-555-0123"`), or
/// behind the trunk digit 8 of the former Soviet plans (`"8 (916) 123-45-67"` for
/// +79161234567). QA 197 F1: read in the home plan, such names showed a Shanghai number
/// (`"2125550100"`), and an honest caller's name was taken off and its call labelled
/// `generic-number`. Not when a callee here would read a domestic number in it: one
/// written with the home trunk prefix (`"020 7123 4567"`, London's number, is a
/// Guangzhou one to a callee here) or one the home plan holds as something else than a
/// fixed line without its trunk prefix (a mobile, a 400 number, a service number), whole
/// or in part: of the numbers the reader found in it (`shown`), any but a fixed line's
/// (QA 199 FA: `"95588 123"` over +85295588123 showed the bank's number, and
/// `"1-400-123-4567"` a 400 number).
fn foreign_callers_own(
    text: &[u8],
    caller: Number,
    shown: &Shown,
    r: Reading<'_>,
    plan: &Plan,
) -> bool {
    let only_fixed = !shown.overflow
        && shown
            .iter()
            .all(|n| n == caller || plan.classify(&n).class == Class::Fixed);
    if !only_fixed
        || caller.starts_with(r.home_cc)
        || text.contains(&b'+')
        || !crate::numbering::is_dial_string(text)
    {
        return false;
    }
    let mut buf = [0u8; 24];
    let Some(d) = crate::numbering::drawn_digits(text, &mut buf) else {
        return false;
    };
    let domestic = d.first() == Some(&b'0')
        || normalise(d, r.home_cc, None).is_ok_and(|n| {
            !matches!(
                plan.classify(&n).class,
                Class::Fixed | Class::Invalid | Class::Foreign
            )
        });
    let c = caller.digits();
    let national = |k: usize| {
        let n = &c[k.min(c.len())..];
        n.len() >= 7 && (d == n || d.len() == n.len() + 1 && d[0] == b'8' && &d[1..] == n)
    };
    !domestic && (d == c || (1..=3).any(national))
}

/// A presented value kept: the first, and the first after it that names another
/// number (or fails to name one otherwise).
fn keep_presented(first: &mut Option<Party>, second: &mut Option<Party>, p: Party) {
    match first {
        None => *first = Some(p),
        Some(f) if second.is_none() && f.number != p.number => *second = Some(p),
        Some(_) => {}
    }
}

/// A P-Preferred-Identity or unasserted Remote-Party-ID value: a presented identity,
/// with what its display name or a user part that is no number shows.
fn presented(
    id: &mut CallerIdentity,
    b: &[u8],
    na: &NameAddr,
    p: Party,
    plan: &Plan,
    r: Reading<'_>,
) {
    if let Some(n) = shown_beside(b, na, &p, plan, r, &mut id.shown_all) {
        id.header_shown.note(n);
    }
    match user_shows(b, &p, plan, r, &mut id.shown_all) {
        Some(n) => id.header_shown.note(n),
        None => id.dial_unholdable |= dial_string(b, &p),
    }
    if let Some(n) = password_shows(b, &p, plan, r, &mut id.shown_all) {
        id.header_shown.note(n);
    }
    if let Ok(n) = p.number {
        id.shown_all.note(n);
    }
    if matches!(
        p.number,
        Err(NotANumber::NonNumeric | NotANumber::TooLong | NotANumber::Incomplete)
    ) {
        id.presents_name = true;
    }
    let (first, second) = match p.source {
        Source::PPreferredIdentity => (&mut id.preferred, &mut id.preferred2),
        _ => (&mut id.rpid, &mut id.rpid2),
    };
    keep_presented(first, second, p);
}

/// The number a value's display name shows beside its URI's, if any. One that is the
/// URI's number as written is that number.
fn shown_beside(
    b: &[u8],
    na: &NameAddr,
    p: &Party,
    plan: &Plan,
    r: Reading<'_>,
    all: &mut Shown,
) -> Option<Number> {
    let text = na.display.map(|d| unquote(d.of(b)))?;
    if text == p.user.of(b) {
        return None;
    }
    shown_number_into(text, true, r, plan, p.number.ok(), all)
}

/// The number shown by a user part that is no number but holds one among other
/// characters (`95588,1`, `95588p1`, `tel-13812345678`).
fn user_shows(b: &[u8], p: &Party, plan: &Plan, r: Reading<'_>, all: &mut Shown) -> Option<Number> {
    if p.number != Err(NotANumber::NonNumeric) || p.user.is_empty() {
        return None;
    }
    shown_number_into(p.user.of(b), false, r, plan, None, all)
}

/// The number shown by the password of a sip URI's userinfo (`<sip:+442071234567:110@gw>`):
/// RFC 3261 19.1.1 advises against passwords there, and equipment that shows the
/// userinfo, or splits it at the wrong ':', shows its digits as the caller's (QA 130:
/// a service number rode to the callee unjudged).
fn password_shows(
    b: &[u8],
    p: &Party,
    plan: &Plan,
    r: Reading<'_>,
    all: &mut Shown,
) -> Option<Number> {
    let (start, end) = (p.user.end as usize, (p.value.end as usize).min(b.len()));
    // An empty user shows the password alone (`<sip::95588@gw>`, QA 133).
    if b.get(start) != Some(&b':') {
        return None;
    }
    // Up to the '@' that ends the userinfo; a ':' after a host (a digit host's port,
    // `<sip:95588:5060>`) reaches the URI's end first and is no password.
    let stop = start
        + 1
        + b[start + 1..end]
            .iter()
            .position(|&c| matches!(c, b'@' | b'>' | b';' | b'?' | b' ' | b'\t' | b'\r' | b'\n'))?;
    if b[stop] != b'@' {
        return None;
    }
    shown_number_into(&b[start + 1..stop], false, r, plan, None, all)
}

/// Whether a party's user part that is no number is a dial string
/// ([`crate::numbering::is_dial_string`]): `*8001`, `8001,1`, `*8001%20`. A name is none.
fn dial_string(b: &[u8], p: &Party) -> bool {
    p.number == Err(NotANumber::NonNumeric) && crate::numbering::is_dial_string(p.user.of(b))
}

/// Whether a URI is of a scheme an asserted identity may have (sip, sips, tel).
fn asserted_scheme(uri: &[u8]) -> bool {
    let name = uri.split(|&c| c == b':').next().unwrap_or_default();
    uri::scheme_named(name) != Scheme::Other
}

/// An identity value whose parameters quote what reads as another value (`;x="a,
/// <tel:+8613812345678>"`), or whose URI carries an identity field as a header
/// (`?P-Asserted-Identity=...`; other URI headers are left alone, QA 45), or a second
/// '@': RFC 3325's grammar has none of them, and an element that splits the field at
/// commas without minding quotes, applies URI headers or splits userinfo at its last
/// '@' reads a second identity the filter never judged (QA 173 F4, QA 180). Refused as
/// an unreadable field is.
fn hides_a_value(b: &[u8], na: &addr::NameAddr) -> bool {
    // Outside quotes a comma would have ended the value and a '<' broken it: either
    // in parameters that quote anything is inside the quotes.
    let params = na.params.of(b);
    let quoted_value = params.contains(&b'"') && params.iter().any(|&c| matches!(c, b'<' | b','));
    quoted_value || uri::hides_an_identity(b, na.uri)
}

/// Notes an identity field that did not parse. An empty field says nothing (RFC 3325
/// senders leave one when they have no identity to give).
fn note_unreadable(
    b: &[u8],
    h: &crate::sip::Header,
    read: Result<(), addr::AddrError>,
    unreadable: &mut Option<HeaderName>,
) {
    if read.is_err() && !crate::sip::lex::trim(h.value().of(b)).is_empty() {
        unreadable.get_or_insert(h.name);
    }
}

/// The number a display name shows, if it shows one ([`shown_number`] of its text).
pub fn display_number(
    b: &[u8],
    display: Span,
    r: Reading<'_>,
    plan: &Plan,
    avoid: Option<Number>,
) -> Option<Number> {
    shown_number(unquote(display.of(b)), r, plan, avoid)
}

/// The number a text for a person to read shows (a display name). It is read in the home
/// plan whatever the trunk's `bare_numbers`: a callee shown "13812345678" sees a
/// domestic mobile.
///
/// All of the text, when it is a number the plan holds. Else the best of the pieces
/// [`crate::numbering::embedded_numbers`] finds that the plan holds ("Room 1203" shows none): one other
/// than `avoid` (the URI's own number) first, so that a second number beside the
/// caller's is judged, then the longest, then the first. Digits the plan does not hold
/// show no number (a date, a reference).
pub fn shown_number(
    text: &[u8],
    r: Reading<'_>,
    plan: &Plan,
    avoid: Option<Number>,
) -> Option<Number> {
    shown_number_into(text, true, r, plan, avoid, &mut Shown::default())
}

/// [`shown_number`], noting in `all` every number the text shows (not only the best).
pub fn shown_number_into(
    text: &[u8],
    display: bool,
    r: Reading<'_>,
    plan: &Plan,
    avoid: Option<Number>,
    all: &mut Shown,
) -> Option<Number> {
    // A display name is no URI: its '%' is drawn as one (`"%110"` shows 110), not an
    // escape. One that would read as an escape is read as a mark numbers are not
    // written with ('#' is read so); any other stays a percent sign (`"110% Service"`).
    let mut plain = [0u8; 512];
    let text = if display && text.contains(&b'%') {
        let n = text.len().min(plain.len());
        plain[..n].copy_from_slice(&text[..n]);
        for k in 0..n {
            if text[k] == b'%' && crate::sip::lex::escaped_octet(&text[k..n]).is_some() {
                plain[k] = b'#';
            }
        }
        &plain[..n]
    } else {
        text
    };
    let mut buf = [0u8; 512];
    let text = as_displayed(text, &mut buf);
    let logical = read_shown(text, display, r, plan, avoid, all);
    let other = |r: &Option<Number>| r.is_some_and(|n| Some(n) != avoid);
    if other(&logical) {
        return logical;
    }
    // Numbers a right-to-left character governs stand in the other order on screen.
    let mut rbuf = [0u8; 512];
    match rtl_numbers(text, &mut rbuf) {
        Some(visual) => {
            let visual = read_shown(visual, display, r, plan, avoid, all);
            if other(&visual) { visual } else { logical }
        }
        None => logical,
    }
}

/// [`shown_number`] of a text in the order it is drawn.
fn read_shown(
    text: &[u8],
    display: bool,
    r: Reading<'_>,
    plan: &Plan,
    avoid: Option<Number>,
    all: &mut Shown,
) -> Option<Number> {
    let home_cc = r.home_cc;
    let whole = normalise(text, home_cc, None);
    let known = |n: &Number| plan.classify(n).class != Class::Invalid;
    // Read as drawn, a display name's IP-dial prefix is a number of its own too:
    // `"12345 13912340001"` shows 12345 beside the mobile (QA 162), left to the pieces.
    let ip_dialled = display
        && crate::numbering::drawn_digits(text, &mut [0u8; 24])
            .is_some_and(crate::numbering::ip_dial_prefixed);
    match whole {
        // A subscriber's number; a short one (`110`, and `1.10`, a price) is left to
        // the pieces, which tell a short code from digits that merely add up to one.
        Ok(n) if n.len() >= 9 && known(&n) && !ip_dialled => {
            all.note(n);
            return Some(n);
        }
        Err(NotANumber::Empty | NotANumber::Withheld) => return None,
        _ => {}
    }
    // The numbers fraud forges: an emergency, government, operator or 95/96 service
    // number.
    let forged = |n: &Number| {
        matches!(
            plan.classify(n).class,
            Class::Emergency
                | Class::Government
                | Class::Operator
                | Class::Service95
                | Class::Service96
        )
    };
    // The pieces the plan holds (a bounded few: most digit runs are none). Past the
    // table, the first that is not `avoid` is kept aside, so that a text stuffed with
    // copies of the caller's number cannot push another number out of sight.
    let mut known_pieces = [(0usize, 0usize, Number::default()); 32];
    let mut dialled = [false; 32];
    // For a piece that runs into a count ([`Worded::Count`]): where the number before
    // the count ends, and whether a piece that starts inside that number goes too.
    let mut counted: [Option<(usize, bool)>; 32] = [None; 32];
    let mut fixed = [false; 32];
    let mut n = 0;
    let mut overflow_other = None;
    embedded_numbers_in(text, r.short, display, |piece, digits, worded| {
        // A piece read through an IP-dial prefix is the number dialled (glued,
        // `"1234513812345678"` shows a mobile: QA 163), but hides no piece inside it: the
        // prefix is drawn as a number too (QA 162: `"12345 13912340001"` hid 12345).
        let ipd = display && crate::numbering::ip_dial_prefixed(digits);
        // A count, a room or a house number is no number, unless it is an emergency
        // one: words can be added around any ([`Worded`]). A short code across marks is
        // one only if it is a number fraud forges.
        if let Ok(num) = normalise(digits, home_cc, None)
            && known(&num)
            && match worded {
                Worded::No | Worded::Count { marked: false, .. } => true,
                Worded::Yes => plan.classify(&num).class == Class::Emergency,
                Worded::Marked | Worded::Count { marked: true, .. } => forged(&num),
            }
        {
            if n < known_pieces.len() {
                known_pieces[n] = (piece.start, piece.end, num);
                dialled[n] = ipd;
                let class = plan.classify(&num).class;
                fixed[n] = class == Class::Fixed;
                if let Worded::Count {
                    end, short, joined, ..
                } = worded
                    && class != Class::Emergency
                {
                    // One that starts inside the number before the count goes only
                    // before a short count, where it is written joined to that number by
                    // dashes and dots, or is a fixed line's that shows no area code of its
                    // own (and the number it is cut from a fixed line's, below).
                    let cut_away = short
                        && if fixed[n] {
                            !matches!(digits.first(), Some(b'0' | b'+'))
                        } else {
                            joined
                        };
                    counted[n] = Some((end, cut_away));
                }
                n += 1;
            } else if Some(num) != avoid {
                overflow_other.get_or_insert(num);
                all.note(num);
            }
        }
    });
    let pieces = &known_pieces[..n];
    // Where a display name lists numbers, a piece made of the end of one and the start
    // of the next is none (QA 156-165: each way of telling such a piece from a number
    // written across marks was red-teamed both ways, business names listing their own
    // numbers refused, and forged numbers hidden among them).
    let mut ranges = [(0usize, 0usize); 32];
    for (r, p) in ranges.iter_mut().zip(pieces) {
        *r = (p.0, p.1);
    }
    let (mut breaks, mut apart) = ([false; 32], [false; 32]);
    crate::numbering::number_breaks(text, &ranges[..n], &mut breaks, &mut apart);
    let overlap = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    let contains = |a: (usize, usize), b: (usize, usize)| a.0 <= b.0 && b.1 <= a.1;
    // Overlapping, neither holding the other.
    let cuts = |a, b| overlap(a, b) && !contains(a, b) && !contains(b, a);
    let short_forged = |num: &Number| {
        let national = num.digits().strip_prefix(home_cc).unwrap_or(num.digits());
        forged(num) && national.len() <= 6
    };
    let dropped = |i: usize| {
        let (s, e) = ranges[i];
        // Across a list's separator, into a number that crosses none (`"Ext 123 +86
        // 10 ..."` is no 12386, `"400-800-1234 / 5号"` no 12345, `"0755-23456789/90"`
        // no 2345678990: QA 160, QA 163, QA 164); a short code fraud forges written
        // with its separators inside it is read (`"11/0 013912340001"`: QA 162).
        breaks[i]
            && (0..n).any(|j| {
                j != i
                    && !breaks[j]
                    && cuts(ranges[i], ranges[j])
                    && (apart[i] || !short_forged(&pieces[i].2))
            })
            // Or the end of one such number and the start of the next, with no separator
            // between them (`"(010) 5555 0100 (010) 5555 0101"`, `"139 1234 0001 400 800
            // 1234"` read as +1 400...: QA 160), unless it is a short code fraud forges:
            // nothing then says where one number ends (`"中国银行 0755-23456 955 88
            // 3123-4567"` shows the bank's), while one dialled with an area code made
            // of the two numbers' digits is none (`"0101 0086"`, Beijing's 10086).
            || !short_forged(&pieces[i].2)
                && (0..n).any(|a| {
                    let (s1, e1) = ranges[a];
                    a != i
                        && !breaks[a]
                        && overlap((s, e), (s1, e1))
                        && (0..n).any(|b| {
                            let (s2, e2) = ranges[b];
                            b != i
                                && !breaks[b]
                                && e1 <= s2
                                && overlap((s, e), (s2, e2))
                                && (s > s1 || e < e2)
                        })
                })
    };
    // A piece inside a longer one the plan holds is part of that number, not one of its
    // own ("20 7123 4567" in "+44 20 7123 4567"); not inside one that runs across a
    // separator it does not (`"1 10"` in `"010-5555-010 / 1 10 / 5555-0101"`: QA 160).
    // Each piece's once (the test below asks it of every container of every piece).
    let mut gone = [false; 32];
    for (i, g) in gone.iter_mut().enumerate().take(n) {
        *g = dropped(i);
    }
    // A number, then a count after white space or a mark (`"95566 9折"`,
    // `"010-5555-0100 24小时"`): the count's digits are no end of a number
    // ([`Worded::Count`]). The number and the count go, but for a fixed line's, which
    // is one digit longer in the same city where areas have 7- and 8-digit numbers
    // (`"0851-8123-456 7号"` is Guiyang's 8123 4567: QA 207 F1); a piece cut from the
    // number as `counted` says, a fixed line's only from a fixed line's.
    for i in 0..n {
        if let Some((end, cut_away)) = counted[i] {
            gone[i] |= (0..n).any(|j| {
                j != i
                    && ranges[j].1 == end
                    && (ranges[i].0 == ranges[j].0 && !(fixed[i] && fixed[j])
                        || cut_away && overlap(ranges[i], ranges[j]) && (!fixed[i] || fixed[j]))
                    && counted[j].is_none()
                    && !gone[j]
            });
        }
    }
    let inside = |i: usize| {
        (0..n).any(|j| {
            contains(ranges[j], ranges[i])
                && ranges[j] != ranges[i]
                && !gone[j]
                && (!breaks[j] || breaks[i])
                && !dialled[j]
        })
    };
    let mut best: Option<((bool, usize), Number)> = None;
    for (_, _, num) in (0..n)
        .filter(|&i| !inside(i) && !gone[i])
        .map(|i| pieces[i])
    {
        all.note(num);
        let rank = (Some(num) != avoid, num.len());
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, num));
        }
    }
    // Digits the plan does not hold (a date, an order number) show no number.
    best.filter(|&((other, _), _)| other)
        .map(|(_, n)| n)
        .or(overflow_other)
        .or(best.map(|(_, n)| n))
}

/// Whether a Remote-Party-ID value names the called party (`party=called`, quoted or
/// not): anything else names the caller.
pub fn is_called_party(b: &[u8], na: &NameAddr) -> bool {
    addr::header_param(b, na.params, b"party")
        .is_some_and(|v| unquote(v).eq_ignore_ascii_case(b"called"))
}

/// Whether a Remote-Party-ID `privacy` value asks that the number be hidden: `full` or
/// `uri`, bare or in a quoted list, with or without the `-network` suffix that says the
/// network is to hide it (draft-ietf-sip-privacy-04: `privacy="full-network"`,
/// `privacy="name,uri"`). QA 88: only the bare words were read, so a quoted or
/// `-network` value let a withheld caller through and the generic-number rewrite show
/// the number it asked to hide.
pub fn rpid_privacy_hides_number(v: &[u8]) -> bool {
    unquote(v).split(|&c| c == b',').any(|e| {
        let e = crate::sip::lex::trim(e);
        let word = e.iter().position(|&c| c == b'-').map_or(e, |i| &e[..i]);
        word.eq_ignore_ascii_case(b"full") || word.eq_ignore_ascii_case(b"uri")
    })
}

/// A display name's text: quotes off, blanks trimmed.
pub fn unquote(d: &[u8]) -> &[u8] {
    let d = d
        .strip_prefix(b"\"")
        .and_then(|d| d.strip_suffix(b"\""))
        .unwrap_or(d);
    crate::sip::lex::trim(d)
}

/// The usual second field of a sip + tel pair, `<tel:+8613812345678>` with the first
/// one's global number written the same way, needs no parse: it is the first's number.
fn same_tel(b: &[u8], value: Span, first: &Party) -> Option<Party> {
    let inner = value.of(b).strip_prefix(b"<tel:")?.strip_suffix(b">")?;
    if !written_as_first(b, inner, first) {
        return None;
    }
    let start = value.start as usize + 5;
    Some(Party {
        source: Source::PAssertedIdentity,
        value,
        user: Span::new(start, start + inner.len()),
        number: first.number,
        plus_missing: false,
        in_context: false,
    })
}

/// A number written exactly as the first asserted identity's global (`+`) number: the
/// same number, whatever the plan, so its normalisation can be reused.
fn written_as_first(b: &[u8], written: &[u8], first: &Party) -> bool {
    written.first() == Some(&b'+') && written == first.user.of(b)
}

/// The ISUP identity of a SIP-I message; `None` for a plain SIP one.
pub fn isup_identity(msg: &Message, r: Reading<'_>) -> Option<IsupIdentity> {
    let (body, part_content_lengths, required, iam) = match isup::sipi::find(msg) {
        Ok(None) => return None,
        Ok(Some(s)) => (s.body, s.part_content_lengths, s.required, s.iam),
        Err(isup::sipi::SipIError::Multipart(e)) => (
            msg.body_span(),
            Default::default(),
            true,
            Err(IsupError::Multipart(e)),
        ),
    };
    let num = |n: Option<IsupNumber>| n.map(|n| isup_number(&n, r));
    let (calling, generic, generic2, generic_unjudged) = match iam {
        Ok(i) => {
            // Numbers, not spellings: `13912340002` national and `8613912340002`
            // international are one presented number.
            let generic = num(i.generic);
            let mut generic2 = None;
            // One that holds signals no digit is (after the end of pulsing too) shows a
            // number only some decoders read: not judged, so on an enterprise trunk,
            // where every presented number must be, the IAM is refused as unreadable.
            let mut unjudged = i.generic_overflow
                || std::iter::once(&i.generic)
                    .chain(&i.generic_more)
                    .flatten()
                    .any(|n| n.odd_signals);
            for n in i.generic_more.iter().flatten() {
                let n = Some(isup_number(n, r));
                if n == generic || n == generic2 {
                    continue;
                }
                match generic2 {
                    None => generic2 = n,
                    Some(_) => unjudged = true,
                }
            }
            (num(i.calling), generic, generic2, unjudged)
        }
        Err(_) => (None, None, None, false),
    };
    Some(IsupIdentity {
        body,
        part_content_lengths,
        required,
        iam,
        calling,
        generic,
        generic2,
        generic_unjudged,
    })
}

/// An ISUP number in E.164, through the one normaliser: international numbers get their
/// '+', national (significant) numbers the home country code, others (subscriber,
/// unknown, spare natures) are read as dialled in the home plan, as the core that gets
/// the IAM reads them: the trunk's `bare_numbers` says how its peer writes SIP URIs, and
/// an IAM says what it means by its nature of address (a `13812345678` of unknown
/// nature read as E.164 would be judged foreign and reach the callee domestic).
pub fn isup_number(n: &IsupNumber, r: Reading<'_>) -> Result<Number, NotANumber> {
    if n.odd_signals {
        return Err(NotANumber::NonNumeric);
    }
    let d = n.digits();
    if d.is_empty() {
        return Err(match n.presentation {
            Some(p) if p.restricts() => NotANumber::Withheld,
            _ => NotANumber::Empty,
        });
    }
    let mut buf = [0u8; isup::MAX_DIGITS + 8];
    match n.nature {
        Nature::International => {
            buf[0] = b'+';
            buf[1..1 + d.len()].copy_from_slice(d);
            normalise_as(&buf[..1 + d.len()], r, None)
        }
        Nature::National => {
            // A national significant number: the home country is its context.
            buf[0] = b'+';
            let cc = &r.home_cc[..r.home_cc.len().min(7)];
            buf[1..1 + cc.len()].copy_from_slice(cc);
            normalise_as(d, r, Some(&buf[..1 + cc.len()]))
        }
        _ => normalise_as(
            d,
            Reading {
                bare: Bare::National,
                ..r
            },
            None,
        ),
    }
}

/// Number of one name-addr: the user part of a sip/sips URI (its telephone-subscriber
/// parameters removed) or the number of a tel URI, with phone-context honoured.
pub fn party(b: &[u8], source: Source, value: Span, na: &NameAddr, r: Reading<'_>) -> Party {
    read_party(b, source, value, na.uri, r, None)
}

/// [`party`] of a value that may follow a `first` one. The usual sip + tel pair writes
/// one global number twice: then it is the first one's number, without normalising it
/// again (that was a quarter of the identity's cost).
fn read_party(
    b: &[u8],
    source: Source,
    value: Span,
    uri_span: Span,
    r: Reading<'_>,
    first: Option<Party>,
) -> Party {
    let mut p = Party {
        source,
        value,
        user: Span::new(uri_span.start as usize, uri_span.start as usize),
        number: Err(NotANumber::NonNumeric),
        plus_missing: false,
        in_context: false,
    };
    let Ok(u) = uri::parse_user_anyway(b, uri_span) else {
        return p;
    };
    if !matches!(u.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
        return p;
    }
    // `sip:95588`, no user part and digits for a host: equipment that shows a caller's
    // URI (Asterisk's RPID and PAI readers among them) shows those digits, and with
    // dots among them (`95588.`, the root of a name; `138.1234.5678`, `9.5.5.8.8`) a
    // person reads the same number (QA 61); an IPv4 address is no number.
    let digit_host = || Some(u.host).filter(|h| digit_host(h.of(b)));
    let Some(user) = u.user.filter(|s| !s.is_empty()).or_else(digit_host) else {
        // An empty user still has its place: a password may follow it.
        if let Some(empty) = u.user {
            p.user = empty;
        }
        p.number = Err(NotANumber::Empty);
        return p;
    };
    p.user = uri::user_number(b, user);
    let written = p.user.of(b);
    if let Some(first) = first.filter(|f| written_as_first(b, written, f)) {
        p.number = first.number;
        return p;
    }
    let ctx = uri::phone_context(b, &u);
    (p.number, p.plus_missing) = read(written, r, ctx.map(|s| s.of(b)));
    // The digits alone, as equipment that drops the context reads them, would be
    // another number: `95588` for Hong Kong's +85295588, `110` for an enterprise's
    // +8613912340110 (QA 61). A context that changes nothing (`13812345678;
    // phone-context=+86`) leaves the identity as written.
    p.in_context = ctx.is_some_and(|c| uri::placing_context(c.of(b)))
        && !written.starts_with(b"+")
        && p.number.is_ok()
        && p.number != read(written, r, None).0;
    p
}

/// Whether a URI's host is a number written as a host: digits, three at least, with
/// the separators a person reads through (`.`, `-`: `95588.`, `.110`, `138-1234-5678`;
/// QA 61, QA 63); not an IPv4 address (four groups of one to three digits, each under
/// 256, none with a leading zero: `010.203.040.50` is a Beijing number, as modern
/// address parsers refuse it).
fn digit_host(h: &[u8]) -> bool {
    let digits = h.iter().filter(|c| c.is_ascii_digit()).count();
    if digits < 3
        || !h
            .iter()
            .all(|&c| c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return false;
    }
    let h = h.strip_suffix(b".").unwrap_or(h);
    let ipv4 = h.split(|&c| c == b'.').count() == 4
        && h.split(|&c| c == b'.').all(|g| {
            (1..=3).contains(&g.len())
                && (g.len() == 1 || g[0] != b'0')
                && crate::sip::lex::parse_u32(g).is_some_and(|v| v < 256)
        });
    !ipv4
}

/// `uri_span` comes from a name-addr parse or a parsed Request-URI (both check its characters).
pub fn uri_number(b: &[u8], uri_span: Span, r: Reading<'_>) -> (Span, Result<Number, NotANumber>) {
    let p = read_party(b, Source::From, uri_span, uri_span, r, None);
    (p.user, p.number)
}

/// A user part's number, and whether it was read as E.164 written without its '+'
/// (only a trunk with `bare_numbers = "international"` reads any so: the number then
/// differs from the home plan's reading of the same digits).
#[inline]
fn read(written: &[u8], r: Reading<'_>, ctx: Option<&[u8]>) -> (Result<Number, NotANumber>, bool) {
    let number = normalise_as(written, r, ctx);
    // A domain's context places nothing: read as E.164 there too, the number is one
    // written without its '+' (QA 90 N2: it went on as written, a domestic mobile's
    // digits for the core).
    let plus_missing = r.bare == Bare::International
        && ctx.is_none_or(|c| !uri::placing_context(c))
        && number.is_ok()
        && number != normalise(written, r.home_cc, None);
    (number, plus_missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN: Reading<'static> = Reading::national(b"86");
    use bytes::Bytes;

    fn extract(m: &Message, r: Reading<'_>) -> CallerIdentity {
        super::extract(m, r, &Plan::builtin())
    }

    fn invite(extra: &str, from: &str) -> Message {
        let s = format!(
            "INVITE sip:4008001234@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\nFrom: {from};tag=1\r\nTo: <sip:4008001234@10.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(s)).unwrap()
    }

    #[test]
    fn asserted_wins_and_generic_number_is_seen() {
        let m = invite(
            "P-Asserted-Identity: <sip:+442071234567@10.20.30.40>\r\n",
            "<sip:+8613812345678@10.0.0.2>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.effective_number().unwrap().e164(), "+442071234567");
        assert!(id.presented_differs());
        assert!(id.blank_reason().is_none());
    }

    #[test]
    fn sip_and_tel_pai_prefers_number() {
        let m = invite(
            "P-Asserted-Identity: <sip:alice@example.com>, <tel:+86-138-1234-5678>\r\n",
            "<sip:+8613812345678@x>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.effective_number().unwrap().e164(), "+8613812345678");
        assert!(!id.presented_differs());
    }

    #[test]
    fn second_asserted_value_swaps_in_or_is_kept_beside() {
        // Two fields, the first without a number: the tel one is judged.
        let m = invite(
            "P-Asserted-Identity: <sip:alice@example.com>\r\nP-Asserted-Identity: <tel:+8613912345678>\r\n",
            "<sip:+8613812345678@x>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.effective_number().unwrap().e164(), "+8613912345678");
        assert_eq!(id.asserted2.unwrap().number, Err(NotANumber::NonNumeric));
        // Both hold numbers: the first is the caller, the second is kept for the rules.
        let m = invite(
            "P-Asserted-Identity: <sip:+8613712345678@x>\r\nP-Asserted-Identity: <tel:+8613912345678>\r\n",
            "<sip:+8613812345678@x>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.effective_number().unwrap().e164(), "+8613712345678");
        assert_eq!(
            id.asserted2.unwrap().number().unwrap().e164(),
            "+8613912345678"
        );
        // The usual pair, one number written twice; and written otherwise.
        for (tel, want) in [
            ("<tel:+8613712345678>", "+8613712345678"),
            ("<tel:+86-137-1234-5678>", "+8613712345678"),
            ("<tel:013712345678;phone-context=+86>", "+8613712345678"),
            ("<tel:+442071234567>", "+442071234567"),
        ] {
            let m = invite(
                &format!("P-Asserted-Identity: <sip:+8613712345678@x;user=phone>, {tel}\r\n"),
                "<sip:+8613812345678@x>",
            );
            let id = extract(&m, CN);
            assert_eq!(
                id.asserted2.unwrap().number().unwrap().e164(),
                want,
                "{tel}"
            );
        }
    }

    #[test]
    fn blank_and_withheld() {
        let id = extract(&invite("", "<sip:10.0.0.2>"), CN);
        assert_eq!(id.blank_reason(), Some(NotANumber::Empty));
        let id = extract(
            &invite("", "\"Anonymous\" <sip:anonymous@anonymous.invalid>"),
            CN,
        );
        assert_eq!(id.blank_reason(), Some(NotANumber::Withheld));
        let id = extract(&invite("Privacy: id\r\n", "<sip:+14155550123@x>"), CN);
        assert!(id.withheld_without_identity());
        // QA 154: quoted values, which a lenient element behind reads as the words.
        for privacy in [
            "\"id\"",
            "\"none;id\"",
            "\"user\" ; critical",
            "\" header \"",
        ] {
            let id = extract(
                &invite(&format!("Privacy: {privacy}\r\n"), "<sip:+14155550123@x>"),
                CN,
            );
            assert!(id.withheld_without_identity(), "{privacy}");
        }
        let id = extract(&invite("Privacy: \"none\"\r\n", "<sip:+14155550123@x>"), CN);
        assert!(!id.withheld_without_identity());
        let id = extract(
            &invite(
                "Privacy: id;critical\r\nP-Asserted-Identity: <tel:+14155550123>\r\n",
                "<sip:anonymous@anonymous.invalid>",
            ),
            CN,
        );
        assert!(!id.withheld_without_identity());
        assert!(id.blank_reason().is_none());
        let id = extract(
            &invite(
                "P-Asserted-Identity: <sip:anonymous@x>\r\n",
                "<sip:13812345678@x>",
            ),
            CN,
        );
        assert_eq!(id.blank_reason(), Some(NotANumber::Withheld));
    }

    #[test]
    fn remote_party_id_when_screened() {
        let m = invite(
            "Remote-Party-ID: \"x\" <sip:+8613812345678@gw>;party=calling;screen=yes;privacy=off\r\n",
            "<sip:+14155550123@x>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.asserted.unwrap().source, Source::RemotePartyId);
        let m = invite(
            "Remote-Party-ID: <sip:+8613812345678@gw>;screen=no;privacy=full\r\n",
            "<sip:+14155550123@x>",
        );
        let id = extract(&m, CN);
        assert!(id.asserted.is_none());
        assert!(id.withheld_without_identity());
        // Quoted, listed or with `-network`, the same request (QA 88); `name` and `off`
        // hide no number.
        for v in [
            "\"full\"",
            "full-network",
            "\"uri-network\"",
            "\"name, uri\"",
            "URI",
            "\" full \"",
        ] {
            let m = invite(
                &format!("Remote-Party-ID: <sip:+8613812345678@gw>;screen=no;privacy={v}\r\n"),
                "<sip:+8613812345678@x>",
            );
            assert!(extract(&m, CN).withheld_without_identity(), "{v}");
        }
        for v in ["off", "\"name\"", "name-network", "\"off\"", "fuller"] {
            let m = invite(
                &format!("Remote-Party-ID: <sip:+8613812345678@gw>;screen=no;privacy={v}\r\n"),
                "<sip:+8613812345678@x>",
            );
            assert!(!extract(&m, CN).withheld_without_identity(), "{v}");
        }
    }

    #[test]
    fn user_phone_and_subscriber_params() {
        let m = invite(
            "",
            "<sip:+8613812345678;npdi;rn=+8613900000000@gw;user=phone>",
        );
        let id = extract(&m, CN);
        assert_eq!(id.effective_number().unwrap().e164(), "+8613812345678");
    }
}
