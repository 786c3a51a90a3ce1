//! Digest authentication of a trunk's calls (`[trunk.auth]`): RFC 3261 22 with the
//! MD5 of RFC 2617 and the SHA-256 of RFC 7616 / RFC 8760, qop "auth" or none.
//!
//! Nonces carry their own issue time and an HMAC of it under the policy's key, so any
//! worker (or gateway with the same `general.auth_secret`) can check one without a
//! table of the nonces it gave out: the proxy stays stateless. Each answer is good for
//! one call: the rate counters remember which INVITE transaction used it (for the
//! nonce's lifetime), so its retransmissions pass and a replay of it in another
//! request is challenged again ([`AuthCheck::Replayed`], see [`TrunkAuth::answer_key`]).
//!
//! Pure like the rest of the decision: the time comes in, nothing is read.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::config::AuthConf;
use crate::numbering::Reading;
use crate::sip::auth::{Credentials, parse_digest};
use crate::sip::{HeaderName, Message};

/// A trunk's users and realm, compiled from `[trunk.auth]`.
#[derive(Clone)]
pub struct TrunkAuth {
    pub realm: String,
    users: Vec<User>,
    nonce_secs: u64,
    /// `max_failures_per_minute`: 0 never locks.
    pub max_failures: u32,
    /// Offered in the challenge, in this order (`algorithms`).
    algorithms: Vec<Algorithm>,
    key: [u8; 32],
    /// Key of the dialog tokens in our Record-Route ([`route_key`]).
    route_key: [u8; 32],
    /// The nonce and dialog-token keys of `auth_secrets_accepted`: what was made under
    /// them verifies, nothing is made under them.
    accepted: Vec<([u8; 32], [u8; 32])>,
    /// The trunk's name, in its dialogs' tokens: each trunk's are its own.
    trunk: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

impl std::fmt::Debug for TrunkAuth {
    // The key and the HA1s stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAuth")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("nonce_secs", &self.nonce_secs)
            .field("max_failures", &self.max_failures)
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct User {
    name: Vec<u8>,
    /// H(name:realm:password) in lowercase hex, per algorithm; SHA-256 only when the
    /// password itself was given.
    md5: Hex,
    sha256: Option<Hex>,
}

/// What a call's credentials came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCheck {
    /// Good credentials, in field `field` of the message's header table (taken off
    /// before the call goes on: they are ours, RFC 3261 22.3).
    Ok { field: u16 },
    /// None for this realm, or with a nonce this policy never gave: challenged.
    Missing,
    /// Right answer to a nonce of ours that has expired: challenged with `stale=true`,
    /// so the caller answers again without asking its user.
    Stale,
    /// An unknown user or a wrong answer: refused outright.
    Invalid,
    /// The source sent more wrong answers within a minute than the trunk allows: every
    /// call of it with credentials is refused, right ones too, until its failures age
    /// out of the minute (guessing on meanwhile keeps it locked).
    Locked,
    /// A right answer that another request has already used: a replay of a captured
    /// answer, or a client reusing a nonce without counting (`nc`). Challenged with
    /// `stale=true`: a real client answers the fresh nonce without asking its user, a
    /// replayer cannot.
    Replayed,
    /// A right answer made for another callee: its digest `uri` names another user
    /// than this request's Request-URI (RFC 7616 3.4.6). An answer held back or
    /// captured would otherwise reach any number. Refused with 400, as RFC 7616 says.
    UriMismatch,
}

impl AuthCheck {
    /// The call is refused; with a challenge when [`AuthCheck::challenges`].
    pub fn refuses(self) -> bool {
        !matches!(self, AuthCheck::Ok { .. })
    }
    pub fn challenges(self) -> bool {
        matches!(
            self,
            AuthCheck::Missing | AuthCheck::Stale | AuthCheck::Replayed
        )
    }
    /// The challenge says `stale=true`: the caller knows the password, its answer only
    /// came too late or a second time.
    pub fn stale(self) -> bool {
        matches!(self, AuthCheck::Stale | AuthCheck::Replayed)
    }
    /// The results' names, by [`AuthCheck::index`] (metric labels and records).
    pub const NAMES: [&'static str; 7] = [
        "ok",
        "missing",
        "stale",
        "invalid",
        "locked",
        "replayed",
        "uri-mismatch",
    ];

    pub fn index(self) -> usize {
        match self {
            AuthCheck::Ok { .. } => 0,
            AuthCheck::Missing => 1,
            AuthCheck::Stale => 2,
            AuthCheck::Invalid => 3,
            AuthCheck::Locked => 4,
            AuthCheck::Replayed => 5,
            AuthCheck::UriMismatch => 6,
        }
    }
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

/// Lowercase hex of a digest, kept on the stack (SHA-256's 64 digits at most): checking
/// a call's credentials allocates nothing, like the rest of the allow path.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Hex {
    fn new(bytes: &[u8]) -> Hex {
        const D: &[u8; 16] = b"0123456789abcdef";
        let mut h = Hex {
            buf: [0; 64],
            len: 0,
        };
        for b in bytes.iter().take(32) {
            h.buf[h.len] = D[(b >> 4) as usize];
            h.buf[h.len + 1] = D[(b & 15) as usize];
            h.len += 2;
        }
        h
    }
    /// Hex digits as written (a configured HA1), lowercased.
    fn from_digits(digits: &str) -> Hex {
        let mut h = Hex {
            buf: [0; 64],
            len: digits.len().min(64),
        };
        h.buf[..h.len].copy_from_slice(&digits.as_bytes()[..h.len]);
        h.buf.make_ascii_lowercase();
        h
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn as_str(&self) -> &str {
        // Only hex digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Lowercase hex digest of the parts joined by ':'.
fn h<D: Digest>(parts: &[&[u8]]) -> Hex {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p);
    }
    Hex::new(&d.finalize())
}

/// Equal, in time that does not depend on where they differ (case-insensitive: hex).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
        }) == 0
}

/// The nonce key for `secret`, or a random one (each policy load) when there is none.
/// `${NAME}` or `$NAME` (a shell or envsubst variable; the bare form in capitals, as
/// environment variables are written), `%NAME%` (Windows) or `{{ name }}` (Jinja, Helm,
/// Go templates) left as it was written: a secret that is no secret.
pub fn unexpanded_template(s: &str) -> bool {
    let s = s.trim();
    let word = |n: &str| !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    let windows = s
        .strip_prefix('%')
        .and_then(|r| r.strip_suffix('%'))
        .is_some_and(word);
    let moustache = s.starts_with("{{") && s.ends_with("}}") && s.len() >= 4;
    if windows || moustache {
        return true;
    }
    let braced = s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(word);
    let bare = s.strip_prefix('$').is_some_and(|n| {
        n.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == b'_')
            && n.bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
    });
    braced || bare
}

/// Where the trunk's side of a dialog writes the tag a dialog token binds
/// ([`TrunkAuth::dialog_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    From,
    To,
    /// Not a token: the mark of the place for one in a request to the core (its
    /// Call-ID and the trunk's tag), which tells the answers' entry that is sipfence's
    /// from one the core's side wrote ([`TrunkAuth::token_place`]).
    Place,
}

/// The Record-Route parameter that carries a dialog's token ([`TrunkAuth::dialog_token`]).
pub const DIALOG_PARAM: &[u8] = b"sf-dlg";

/// Key of the dialog tokens: from `auth_secret`, so that every gateway sharing it
/// knows another's dialogs and a restart keeps them; without one drawn once per
/// process, so that at least a reload keeps the tokens of dialogs up.
pub fn route_key(secret: Option<&str>) -> [u8; 32] {
    static PROCESS: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    match secret {
        Some(s) => Sha256::new()
            .chain_update(b"sipfence dialog route\0")
            .chain_update(s.as_bytes())
            .finalize()
            .into(),
        None => *PROCESS.get_or_init(|| nonce_key(None)),
    }
}

/// A name for a secret that gives nothing of it away: the hash of its dialog-token key.
pub fn secret_id(secret: &str) -> u64 {
    crate::sip::lex::fnv1a(&[b"secret", &route_key(Some(secret))])
}

pub fn nonce_key(secret: Option<&str>) -> [u8; 32] {
    match secret {
        Some(s) => Sha256::digest(s.as_bytes()).into(),
        None => {
            let mut k = [0u8; 32];
            let read = std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut k));
            if read.is_err() {
                // No urandom: still unguessable enough from outside for a nonce key.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let seed = format!("{t}:{}:{:p}", std::process::id(), &k);
                k = Sha256::digest(seed.as_bytes()).into();
            }
            k
        }
    }
}

/// Whether a digest answer's `uri` was made for this Request-URI's callee. RFC 7616
/// 3.4.6 has the server check the uri against the request; SIP clients differ in what
/// they write there (the Request-URI, or only its host and port, as sipp does), and a
/// proxy before sipfence may change the host. What matters for a trunk is the number
/// called: a uri that names a user must name the Request-URI's (its number, without
/// parameters, in any form the one normaliser reads as the same number: `+86139...` and
/// `139...`); one that names none fits any. A uri that does not parse must be the
/// Request-URI as written, case aside.
fn same_callee(digest_uri: &[u8], ruri: &[u8], reading: Reading<'_>) -> bool {
    use crate::sip::uri;
    let whole = |b: &[u8]| crate::sip::Span::new(0, b.len());
    let Ok(d) = uri::parse(digest_uri, whole(digest_uri)) else {
        return digest_uri.eq_ignore_ascii_case(ruri);
    };
    let Some(du) = d.user else {
        return true;
    };
    fn number(b: &[u8], u: crate::sip::Span) -> &[u8] {
        uri::user_number(b, u).of(b)
    }
    let (dn, rn) = match uri::parse(ruri, whole(ruri)).ok().and_then(|r| r.user) {
        Some(ru) => (number(digest_uri, du), number(ruri, ru)),
        None => return false,
    };
    if dn == rn {
        return true;
    }
    let e164 = |n: &[u8]| crate::numbering::normalise_as(n, reading, None).ok();
    e164(dn).is_some_and(|d| Some(d) == e164(rn))
}

impl TrunkAuth {
    /// Whether a Proxy-Authorization value answers this trunk's realm: credentials for
    /// us, which go no further than sipfence (RFC 3261 22.3), in the call's INVITE or in
    /// a later request that carries them again (QA 67: pjsip sends them on in-dialog
    /// requests, and they reached the core).
    pub fn is_ours(&self, value: &[u8]) -> bool {
        parse_digest(value).is_some_and(|c| c.realm == self.realm.as_bytes())
    }

    /// The same realm, users, passwords and limits. The nonce key is left out: without
    /// a configured secret every load draws a new one, which is no change of the
    /// trunk's contract.
    pub fn same_terms(&self, o: &TrunkAuth) -> bool {
        self.realm == o.realm
            && self.users == o.users
            && self.nonce_secs == o.nonce_secs
            && self.max_failures == o.max_failures
    }

    pub fn new(
        conf: &AuthConf,
        trunk: &str,
        key: [u8; 32],
        route_key: [u8; 32],
    ) -> Result<TrunkAuth, String> {
        let realm = conf.realm.clone().unwrap_or_else(|| trunk.to_string());
        if realm.is_empty() || realm.contains('"') || realm.contains('\\') {
            return Err(format!(
                "trunk {trunk}: auth realm '{realm}' is empty or quoted"
            ));
        }
        if conf.users.is_empty() {
            return Err(format!("trunk {trunk}: auth has no users"));
        }
        if conf.nonce_secs == 0 {
            return Err(format!("trunk {trunk}: auth nonce_secs must be above 0"));
        }
        // A day is longer than any call set-up needs: past it a captured answer could be
        // replayed for that long (RFC 7616 5.4 leaves the lifetime to the server).
        if conf.nonce_secs > 86_400 {
            return Err(format!(
                "trunk {trunk}: auth nonce_secs = {} is over a day: a captured answer could be replayed that long (the default is 300)",
                conf.nonce_secs
            ));
        }
        let mut users: Vec<User> = Vec::with_capacity(conf.users.len());
        for (i, u) in conf.users.iter().enumerate() {
            // The entry itself is not echoed: it may be a bare password.
            let Some((name, rest)) = u.split_once(':') else {
                return Err(format!(
                    "trunk {trunk}: auth users entry {} is not name:password",
                    i + 1
                ));
            };
            if name.is_empty()
                || name.contains('"')
                || users.iter().any(|x| x.name == name.as_bytes())
            {
                return Err(format!(
                    "trunk {trunk}: auth users entry {}: user name '{name}' is empty, quoted or repeated",
                    i + 1
                ));
            }
            // An unexpanded template (`pbx1:${PW}` left as `pbx1:`) would let anyone in
            // who knows the name; one never expanded at all, anyone who read the
            // deployment's template (QA 70).
            if rest.trim().is_empty() {
                return Err(format!(
                    "trunk {trunk}: auth users entry {}: user '{name}' has an empty password",
                    i + 1
                ));
            }
            if unexpanded_template(rest) {
                return Err(format!(
                    "trunk {trunk}: auth users entry {}: user '{name}' has the password {rest}, a template never filled in",
                    i + 1
                ));
            }
            let user = match rest.strip_prefix("md5:") {
                Some(ha1) if ha1.len() == 32 && ha1.bytes().all(|c| c.is_ascii_hexdigit()) => {
                    User {
                        name: name.as_bytes().to_vec(),
                        md5: Hex::from_digits(ha1),
                        sha256: None,
                    }
                }
                Some(_) => {
                    return Err(format!(
                        "trunk {trunk}: auth users entry {}: user '{name}': md5: needs 32 hex digits",
                        i + 1
                    ));
                }
                None => {
                    let parts: [&[u8]; 3] = [name.as_bytes(), realm.as_bytes(), rest.as_bytes()];
                    User {
                        name: name.as_bytes().to_vec(),
                        md5: h::<Md5>(&parts),
                        sha256: Some(h::<Sha256>(&parts)),
                    }
                }
            };
            users.push(user);
        }
        let mut algorithms = vec![];
        for a in conf.algorithms.as_deref().unwrap_or(&["MD5".to_string()]) {
            let algo = if a.eq_ignore_ascii_case("MD5") {
                Algorithm::Md5
            } else if a.eq_ignore_ascii_case("SHA-256") {
                Algorithm::Sha256
            } else {
                return Err(format!(
                    "trunk {trunk}: auth algorithms: '{a}' is none of MD5, SHA-256 (the -sess forms are not offered)"
                ));
            };
            if algorithms.contains(&algo) {
                return Err(format!(
                    "trunk {trunk}: auth algorithms: {a} is given twice"
                ));
            }
            // SHA-256 needs H(name:realm:password) in SHA-256: the password itself.
            if let (Algorithm::Sha256, Some(u)) = (algo, users.iter().find(|u| u.sha256.is_none()))
            {
                return Err(format!(
                    "trunk {trunk}: auth algorithms: SHA-256 needs every user's password, and user '{}' is given as md5:HA1",
                    String::from_utf8_lossy(&u.name)
                ));
            }
            algorithms.push(algo);
        }
        if algorithms.is_empty() {
            return Err(format!(
                "trunk {trunk}: auth algorithms is empty: no challenge could be answered"
            ));
        }
        Ok(TrunkAuth {
            realm,
            users,
            nonce_secs: conf.nonce_secs,
            max_failures: conf.max_failures_per_minute,
            algorithms,
            key,
            route_key,
            accepted: vec![],
            trunk: trunk.to_string(),
        })
    }

    /// Takes the nonces and dialog tokens made under `secrets` too (`[general]
    /// auth_secrets_accepted`): a fleet rotating its `auth_secret` keeps the calls up
    /// (QA 198 F2: a reload with a new secret had every live call's BYE challenged, at
    /// the gateways still on the old one and, back on it, at this one).
    pub fn accepting(mut self, secrets: &[String]) -> TrunkAuth {
        self.accepted = secrets
            .iter()
            .map(|s| (nonce_key(Some(s)), route_key(Some(s))))
            .collect();
        self
    }

    /// The current keys, then the accepted ones: (nonce key, dialog-token key).
    fn keys(&self) -> impl Iterator<Item = (&[u8; 32], &[u8; 32])> {
        std::iter::once((&self.key, &self.route_key))
            .chain(self.accepted.iter().map(|(n, r)| (n, r)))
    }

    /// The token our Record-Route gives a dialog of this trunk's: an HMAC of its Call-ID
    /// and tags. `Side::From`, a dialog the trunk set up: the tag the trunk's side
    /// writes in From and the core's side's (`other_tag`), written into the core's
    /// answer. `Side::To`, one the core set up: the core's tag (which the trunk's
    /// requests in the dialog carry in To) alone, the peer's not being known when the
    /// request goes out (`other_tag` empty). The side is in the HMAC, so that a
    /// dialog's tags the other way round (the core's tag in From, QA 182 F5) are
    /// vouched for by no token.
    pub fn dialog_token(
        &self,
        call_id: &[u8],
        tag: &[u8],
        other_tag: &[u8],
        side: Side,
    ) -> [u8; 16] {
        self.token_under(&self.route_key, call_id, tag, other_tag, side)
    }

    /// [`TrunkAuth::dialog_token`] under the key `key`.
    fn token_under(
        &self,
        key: &[u8; 32],
        call_id: &[u8],
        tag: &[u8],
        other_tag: &[u8],
        side: Side,
    ) -> [u8; 16] {
        let mut t = [0u8; 16];
        // HMAC takes keys of any length: `new_from_slice` cannot fail here.
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
            m.update(match side {
                Side::From => &b"from:"[..],
                Side::To => b"to:",
                Side::Place => b"place:",
            });
            // The trunk's own (QA 194 B1: another trunk's PBX spent its dialog's token
            // here).
            m.update(&(self.trunk.len() as u32).to_le_bytes());
            m.update(self.trunk.as_bytes());
            // Lengths first: no Call-ID and tags run into another set's.
            m.update(&(call_id.len() as u32).to_le_bytes());
            m.update(call_id);
            m.update(&(tag.len() as u32).to_le_bytes());
            m.update(tag);
            m.update(other_tag);
            let mac = m.finalize().into_bytes();
            t.copy_from_slice(&Hex::new(&mac[..8]).as_bytes()[..16]);
        }
        t
    }

    /// The place for the token of a dialog this trunk's request sets up, in our
    /// Record-Route entry of the request that goes to the core: `~`, the trunk's name,
    /// `.` and a mark of the Call-ID and the trunk's tag under the key. The core's
    /// answer gets the token written there ([`TrunkAuth::is_token_place`]); an entry
    /// the core's side wrote naming sipfence with a place of its own gets none (QA 195:
    /// a callee's forged entry above sipfence's, naming another trunk, had that trunk's
    /// token written in and handed to the PBX).
    pub fn token_place(&self, call_id: &[u8], tag: &[u8]) -> String {
        self.place_under(&self.route_key, call_id, tag)
    }

    fn place_under(&self, key: &[u8; 32], call_id: &[u8], tag: &[u8]) -> String {
        let mark = self.token_under(key, call_id, tag, b"", Side::Place);
        format!("~{}.{}", self.trunk, String::from_utf8_lossy(&mark[..8]))
    }

    /// Whether `place` is [`TrunkAuth::token_place`]'s for this Call-ID and tag (under
    /// the current key or an accepted one: a call set up across a reload that changed
    /// the secret).
    pub fn is_token_place(&self, place: &[u8], call_id: &[u8], tag: &[u8]) -> bool {
        self.keys()
            .any(|(_, k)| place == self.place_under(k, call_id, tag).as_bytes())
    }

    /// Whether a trunk's request within a dialog carries the token of its dialog in a
    /// Route value ([`DIALOG_PARAM`]): the dialog's set-up passed this gateway (or one
    /// with the same `auth_secret`) and was let on, whatever happened since (a restart,
    /// an early dialog, a subscription; no table of dialogs holds them all).
    pub fn vouches_for_dialog(&self, msg: &Message) -> bool {
        let b = msg.buf();
        let mut found = false;
        for r in msg.all(HeaderName::Route) {
            let _ = crate::sip::addr::parse_list(b, r.value(), |na| {
                if found {
                    return;
                }
                let Some(t) = crate::sip::uri::parse(b, na.uri)
                    .ok()
                    .and_then(|u| crate::sip::uri::param(b, u.params, DIALOG_PARAM))
                    .map(|v| v.of(b))
                else {
                    return;
                };
                let (from, to) = (
                    msg.from_tag_read().unwrap_or_default(),
                    msg.to_tag_read().unwrap_or_default(),
                );
                let id = msg.call_id();
                found = t.len() == 16
                    && self.keys().any(|(_, k)| {
                        t == self.token_under(k, id, from, to, Side::From)
                            || t == self.token_under(k, id, to, b"", Side::To)
                    });
            });
            if found {
                break;
            }
        }
        found
    }

    /// For `sipfence check`: realm, users, nonce lifetime (never a secret).
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .users
            .iter()
            .map(|u| String::from_utf8_lossy(&u.name).into_owned())
            .collect();
        let lock = match self.max_failures {
            0 => "never locked".to_string(),
            n => format!("a source locked after {n} wrong answers a minute"),
        };
        let algorithms: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        format!(
            "digest {}, realm \"{}\", users {}, nonces good for {} s, {lock}",
            algorithms.join("/"),
            self.realm,
            names.join(", "),
            self.nonce_secs
        )
    }

    fn nonce_mac(&self, ts_hex: &[u8], salt_hex: &[u8], to: Option<IpAddr>) -> Hex {
        self.nonce_mac_under(&self.key, ts_hex, salt_hex, to)
    }

    fn nonce_mac_under(
        &self,
        key: &[u8; 32],
        ts_hex: &[u8],
        salt_hex: &[u8],
        to: Option<IpAddr>,
    ) -> Hex {
        // HMAC takes keys of any length: `new_from_slice` cannot fail here.
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(ts_hex);
                m.update(b":");
                if !salt_hex.is_empty() {
                    m.update(salt_hex);
                    m.update(b":");
                }
                // The address the nonce was given to: an answer to it from another is
                // no answer to our challenge (QA 52: nonces fetched from one address,
                // wrong answers forged from the PBX's, locked the PBX out).
                match to.map(|ip| ip.to_canonical()) {
                    Some(IpAddr::V4(a)) => m.update(&a.octets()),
                    Some(IpAddr::V6(a)) => m.update(&a.octets()),
                    None => {}
                }
                m.update(self.realm.as_bytes());
                Hex::new(&m.finalize().into_bytes()[..16])
            }
            Err(_) => Hex::new(&[]),
        }
    }

    /// A nonce for `now_ms`: issue time (16 hex digits), `salt` (16), then their MAC
    /// (32). The salt makes every challenge's nonce its own (the request's transaction:
    /// a retransmission is challenged alike), so that calls challenged within the same
    /// second do not share one and their answers, each good for one call, differ even
    /// from clients that answer without qop or with a fixed cnonce.
    /// `to`: the address it is given to, bound into the MAC.
    pub fn nonce(&self, now_ms: u64, salt: u64, to: Option<IpAddr>) -> String {
        let ts = format!("{:016x}", now_ms / 1000);
        let salt = format!("{salt:016x}");
        let mac = self.nonce_mac(ts.as_bytes(), salt.as_bytes(), to);
        ts + &salt + mac.as_str()
    }

    /// The issue time of a nonce this policy gave, in seconds; `None` for any other.
    /// The 48 digits of a nonce without salt (given by a gateway of an earlier version
    /// with the same `auth_secret`) still verify.
    fn nonce_time(&self, nonce: &[u8], from: Option<IpAddr>) -> Option<u64> {
        let (ts, salt, mac) = match nonce.len() {
            64 => (&nonce[..16], &nonce[16..32], &nonce[32..]),
            48 => (&nonce[..16], &b""[..], &nonce[16..]),
            _ => return None,
        };
        if !self
            .keys()
            .any(|(k, _)| same(mac, self.nonce_mac_under(k, ts, salt, from).as_bytes()))
        {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(ts).ok()?, 16).ok()
    }

    /// Checks the credentials of a call (its method and the credentials' `uri` enter
    /// the answer, RFC 2617 3.2.2.3).
    /// `reading`: how the trunk reads its numbers, for the callee named in the answer.
    /// `from`: the address the answer came from, which the nonce must have been given to.
    pub fn check(
        &self,
        msg: &Message,
        now_ms: u64,
        reading: Reading<'_>,
        from: Option<IpAddr>,
    ) -> AuthCheck {
        let b = msg.buf();
        let method = msg.method_bytes().unwrap_or_default();
        for (i, f) in msg.headers().iter().enumerate() {
            if f.name != HeaderName::ProxyAuthorization {
                continue;
            }
            let Some(c) = parse_digest(f.value().of(b)) else {
                continue;
            };
            // Credentials for other realms are another proxy's (RFC 3261 22.3).
            if c.realm != self.realm.as_bytes() {
                continue;
            }
            let Some(issued) = self.nonce_time(c.nonce, from) else {
                return AuthCheck::Missing;
            };
            if !self.answers(&c, method) {
                return AuthCheck::Invalid;
            }
            let ruri = msg.request_uri().map_or(&b""[..], |u| u.of(b));
            if !same_callee(c.uri, ruri, reading) {
                return AuthCheck::UriMismatch;
            }
            let now = now_ms / 1000;
            // A nonce of ours (its MAC says so) from the future beyond a little clock
            // skew: a gateway whose clock runs ahead gave it, or this one's went back.
            // Challenged again as a stale one, which a client answers without asking
            // its user (RFC 7616 3.3; QA 192 F5: a plain second 407, which PBXs take
            // for a wrong password, and recorded as no answer at all).
            return if issued > now + 30 || now.saturating_sub(issued) > self.nonce_secs {
                AuthCheck::Stale
            } else {
                AuthCheck::Ok { field: i as u16 }
            };
        }
        AuthCheck::Missing
    }

    /// What makes the answer in field `field` one use of its nonce: the nonce and the
    /// nonce count (RFC 7616 3.4: a client that reuses a nonce counts up `nc`, so a
    /// count seen once is not good again, whatever client nonce comes with it), or the
    /// nonce alone when the answer has no qop (then each call needs a nonce of its
    /// own). `None` when the field holds no answer.
    /// `trunk` is the trunk's [`crate::policy::Trunk::id`].
    pub fn answer_key(&self, msg: &Message, field: u16, trunk: u64) -> Option<u64> {
        let f = msg.headers().get(field as usize)?;
        let c = parse_digest(f.value().of(msg.buf()))?;
        let t = trunk.to_le_bytes();
        Some(match c.qop {
            Some(_) => crate::sip::lex::fnv1a(&[b"auth-answer", &t, c.nonce, c.nc]),
            None => crate::sip::lex::fnv1a(&[b"auth-answer", &t, c.nonce]),
        })
    }

    /// How long an answer is remembered: as long as its nonce is good, with the clock
    /// skew a nonce from another gateway may have.
    pub fn answer_ttl_ms(&self) -> u64 {
        (self.nonce_secs + 30) * 1000
    }

    /// The response is the right one for a known user.
    fn answers(&self, c: &Credentials<'_>, method: &[u8]) -> bool {
        let Some(u) = self.users.iter().find(|u| u.name == c.username) else {
            return false;
        };
        let algo = c.algorithm.unwrap_or(b"MD5");
        let qop = match c.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case(b"auth") => Some(q),
            // auth-int (a hash of the body) is not offered.
            Some(_) => return false,
        };
        let expected = |ha1: &Hex, hash: fn(&[&[u8]]) -> Hex| {
            let ha2 = hash(&[method, c.uri]);
            match qop {
                Some(q) => hash(&[ha1.as_bytes(), c.nonce, c.nc, c.cnonce, q, ha2.as_bytes()]),
                None => hash(&[ha1.as_bytes(), c.nonce, ha2.as_bytes()]),
            }
        };
        let want = if algo.eq_ignore_ascii_case(b"MD5") {
            expected(&u.md5, h::<Md5>)
        } else if algo.eq_ignore_ascii_case(b"SHA-256") {
            match &u.sha256 {
                Some(ha1) => expected(ha1, h::<Sha256>),
                None => return false,
            }
        } else {
            return false;
        };
        same(c.response, want.as_bytes())
    }

    /// The `Proxy-Authenticate` fields of a 407 for `now_ms` (with their CRLFs), one per
    /// algorithm offered, in the order `algorithms` gives (RFC 8760: most preferred
    /// first).
    pub fn challenge(
        &self,
        now_ms: u64,
        salt: u64,
        to: Option<IpAddr>,
        stale: bool,
        out: &mut Vec<u8>,
    ) {
        let nonce = self.nonce(now_ms, salt, to);
        let stale = if stale { ", stale=true" } else { "" };
        let mut one = |algo: &str| {
            out.extend_from_slice(
                format!(
                    "Proxy-Authenticate: Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={algo}, qop=\"auth\"{stale}\r\n",
                    self.realm
                )
                .as_bytes(),
            );
        };
        for a in &self.algorithms {
            one(a.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_fits_the_callee_it_was_made_for() {
        for (digest, ruri, fits) in [
            (
                "sip:4008001234@10.0.0.100",
                "sip:4008001234@10.0.0.100",
                true,
            ),
            // sipp writes only the host and port: no callee named.
            ("sip:10.0.0.100:5060", "sip:4008001234@10.0.0.100", true),
            // A proxy before sipfence changed the host.
            (
                "sip:4008001234@core.example",
                "sip:4008001234@10.0.0.100",
                true,
            ),
            ("sip:4008001234;npdi@h", "sip:4008001234@h;user=phone", true),
            ("tel:+8613800001111", "sip:+8613800001111@h", true),
            // The same number in another form.
            ("sip:+8613912340001@h", "sip:13912340001@h", true),
            ("sip:008613912340001@h", "sip:+8613912340001@h", true),
            // Made for another number.
            ("sip:+8613800001111@h", "sip:+8613900009999@h", false),
            ("sip:4008001234@h", "sip:h", false),
            ("not a uri", "sip:4008001234@h", false),
        ] {
            assert_eq!(
                same_callee(digest.as_bytes(), ruri.as_bytes(), Reading::national(b"86")),
                fits,
                "{digest} for {ruri}"
            );
        }
    }

    use super::*;
    use bytes::Bytes;

    /// The PBX's address, which its nonces are given to.
    const PBX: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 100, 1, 5)));

    /// Hex as a client would write it, independently of [`Hex`].
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn auth(users: &[&str]) -> TrunkAuth {
        let conf = AuthConf {
            realm: Some("sipfence".into()),
            users: users.iter().map(|s| s.to_string()).collect(),
            nonce_secs: 300,
            max_failures_per_minute: 10,
            algorithms: None,
        };
        TrunkAuth::new(&conf, "ent", nonce_key(Some("test")), route_key(None)).unwrap()
    }

    fn auth_offering(users: &[&str], algorithms: Option<&[&str]>) -> Result<TrunkAuth, String> {
        let conf = AuthConf {
            realm: Some("sipfence".into()),
            users: users.iter().map(|s| s.to_string()).collect(),
            nonce_secs: 300,
            max_failures_per_minute: 10,
            algorithms: algorithms.map(|a| a.iter().map(|s| s.to_string()).collect()),
        };
        TrunkAuth::new(&conf, "ent", nonce_key(Some("test")), route_key(None))
    }

    fn invite(pa: &str) -> Message {
        let s = format!(
            "INVITE sip:4008001234@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\nFrom: <sip:+8613912345678@10.0.0.2>;tag=1\r\nTo: <sip:4008001234@10.0.0.1>\r\nCall-ID: a1\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\n{pa}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(s)).unwrap()
    }

    /// What a client computes (RFC 2617 3.2.2.1), independently of `answers`.
    fn answer(user: &str, pass: &str, nonce: &str, algo: &str, qop: bool) -> String {
        let (ha1, ha2) = match algo {
            "SHA-256" => (
                hex(&Sha256::digest(format!("{user}:sipfence:{pass}"))),
                hex(&Sha256::digest("INVITE:sip:4008001234@10.0.0.1")),
            ),
            _ => (
                hex(&Md5::digest(format!("{user}:sipfence:{pass}"))),
                hex(&Md5::digest("INVITE:sip:4008001234@10.0.0.1")),
            ),
        };
        let s = if qop {
            format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
        } else {
            format!("{ha1}:{nonce}:{ha2}")
        };
        let resp = match algo {
            "SHA-256" => hex(&Sha256::digest(s)),
            _ => hex(&Md5::digest(s)),
        };
        let q = if qop {
            ", qop=auth, nc=00000001, cnonce=\"c0ffee\""
        } else {
            ""
        };
        format!(
            "Proxy-Authorization: Digest username=\"{user}\", realm=\"sipfence\", nonce=\"{nonce}\", uri=\"sip:4008001234@10.0.0.1\", response=\"{resp}\", algorithm={algo}{q}\r\n"
        )
    }

    #[test]
    fn the_rfc_2617_example_computes() {
        // RFC 2617 3.5 (Mufasa): the hash chain, qop=auth, with method GET.
        let ha1 = h::<Md5>(&[b"Mufasa", b"testrealm@host.com", b"Circle Of Life"]);
        let ha2 = h::<Md5>(&[b"GET", b"/dir/index.html"]);
        let r = h::<Md5>(&[
            ha1.as_bytes(),
            b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            b"00000001",
            b"0a4f113b",
            b"auth",
            ha2.as_bytes(),
        ]);
        assert_eq!(r.as_str(), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn good_stale_missing_and_invalid_credentials() {
        let a = auth(&["pbx1:s3cret", "pbx2:md5:0123456789abcdef0123456789abcdef"]);
        let t0 = 1_796_000_000_000u64;
        let nonce = a.nonce(t0, 1, PBX);
        for (algo, qop) in [("MD5", true), ("MD5", false), ("SHA-256", true)] {
            let m = invite(&answer("pbx1", "s3cret", &nonce, algo, qop));
            assert!(
                matches!(
                    a.check(&m, t0 + 5_000, Reading::national(b"86"), PBX),
                    AuthCheck::Ok { field: 6 }
                ),
                "{algo} {qop}"
            );
            // After nonce_secs: the same answer is stale.
            assert_eq!(
                a.check(&m, t0 + 301_000, Reading::national(b"86"), PBX),
                AuthCheck::Stale,
                "{algo}"
            );
        }
        // A user configured by HA1 (written in capitals) answers MD5 like the others.
        let ha1 = hex(&Md5::digest("pbx3:sipfence:pw3")).to_ascii_uppercase();
        let a3 = auth(&[&format!("pbx3:md5:{ha1}")]);
        let nonce3 = a3.nonce(t0, 1, PBX);
        let m = invite(&answer("pbx3", "pw3", &nonce3, "MD5", true));
        assert!(matches!(
            a3.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Ok { .. }
        ));
        // Wrong password, unknown user, SHA-256 for an HA1-only user: invalid.
        for pa in [
            answer("pbx1", "wrong", &nonce, "MD5", true),
            answer("nobody", "s3cret", &nonce, "MD5", true),
            answer("pbx2", "x", &nonce, "SHA-256", true),
        ] {
            assert_eq!(
                a.check(&invite(&pa), t0, Reading::national(b"86"), PBX),
                AuthCheck::Invalid,
                "{pa}"
            );
        }
        // No credentials, another realm's, a nonce we never gave.
        assert_eq!(
            a.check(&invite(""), t0, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
        let other = answer("pbx1", "s3cret", &nonce, "MD5", true)
            .replace("realm=\"sipfence\"", "realm=\"core\"");
        assert_eq!(
            a.check(&invite(&other), t0, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
        let forged = format!("{}{}", &nonce[..16], "0".repeat(32));
        let m = invite(&answer("pbx1", "s3cret", &forged, "MD5", true));
        assert_eq!(
            a.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
        // Ours, from the future past a little skew (a gateway whose clock runs ahead,
        // or this one's went back): stale, answered again without the user (QA 192 F5).
        let later = a.nonce(t0 + 120_000, 2, PBX);
        let m = invite(&answer("pbx1", "s3cret", &later, "MD5", true));
        assert_eq!(
            a.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Stale
        );
        let m = invite(&answer(
            "pbx1",
            "s3cret",
            &a.nonce(t0 + 30_000, 2, PBX),
            "MD5",
            true,
        ));
        assert!(matches!(
            a.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Ok { .. }
        ));
        // Another key (another gateway without the shared secret): not our nonce.
        let b = TrunkAuth::new(
            &AuthConf {
                realm: Some("sipfence".into()),
                users: vec!["pbx1:s3cret".into()],
                nonce_secs: 300,
                max_failures_per_minute: 10,
                algorithms: None,
            },
            "ent",
            nonce_key(Some("other")),
            route_key(None),
        )
        .unwrap();
        let m = invite(&answer("pbx1", "s3cret", &nonce, "MD5", true));
        assert_eq!(
            b.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
        // ... unless it accepts the secret the nonce was made under (a fleet rotating
        // its secret, QA 198 F2); the nonces it makes are its own still.
        let b = b.accepting(&["test".into()]);
        assert!(matches!(
            b.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Ok { .. }
        ));
        let theirs = b.nonce(t0, 3, PBX);
        let m = invite(&answer("pbx1", "s3cret", &theirs, "MD5", true));
        assert_eq!(
            a.check(&m, t0, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
    }

    #[test]
    fn every_challenge_has_its_own_nonce() {
        let a = auth(&["pbx1:s3cret"]);
        let t0 = 1_796_000_000_000;
        let (n1, n2) = (a.nonce(t0, 1, PBX), a.nonce(t0 + 10, 2, PBX));
        assert_ne!(n1, n2, "same second, other request");
        assert_eq!(
            a.nonce(t0, 1, PBX),
            n1,
            "a retransmission is challenged alike"
        );
        assert_eq!(n1.len(), 64);
        for n in [&n1, &n2] {
            let m = invite(&answer("pbx1", "s3cret", n, "MD5", true));
            assert_eq!(
                a.check(&m, t0 + 1000, Reading::national(b"86"), PBX),
                AuthCheck::Ok { field: 6 }
            );
        }
        // The salt is under the MAC: another salt with the same MAC is not ours.
        let forged = format!("{}{:016x}{}", &n1[..16], 9, &n1[32..]);
        let m = invite(&answer("pbx1", "s3cret", &forged, "MD5", true));
        assert_eq!(
            a.check(&m, t0 + 1000, Reading::national(b"86"), PBX),
            AuthCheck::Missing
        );
        // A nonce without salt, as an earlier version gave it: still good.
        let ts = format!("{:016x}", t0 / 1000);
        let legacy = ts.clone() + a.nonce_mac(ts.as_bytes(), b"", PBX).as_str();
        let m = invite(&answer("pbx1", "s3cret", &legacy, "MD5", true));
        assert_eq!(
            a.check(&m, t0 + 1000, Reading::national(b"86"), PBX),
            AuthCheck::Ok { field: 6 }
        );
    }

    #[test]
    fn the_challenge_names_realm_nonce_and_algorithms() {
        let a = auth_offering(&["pbx1:s3cret"], Some(&["MD5", "SHA-256"])).unwrap();
        let mut out = vec![];
        a.challenge(1_796_000_000_000, 7, PBX, true, &mut out);
        let s = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].starts_with("Proxy-Authenticate: Digest realm=\"sipfence\", nonce=\""));
        assert!(
            lines[0].ends_with("algorithm=MD5, qop=\"auth\", stale=true"),
            "{s}"
        );
        assert!(lines[1].contains("algorithm=SHA-256"));
        let c = parse_digest(
            lines[0]
                .trim_start_matches("Proxy-Authenticate: ")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(a.nonce_time(c.nonce, PBX), Some(1_796_000_000));
        // By default MD5 alone (QA 106: a client that meets a second challenge fails
        // the call); in the order written, SHA-256 first if asked so.
        let algos = |a: Option<&[&str]>| {
            let mut out = vec![];
            auth_offering(&["pbx1:s3cret"], a)
                .unwrap()
                .challenge(0, 7, PBX, false, &mut out);
            String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|l| {
                    l.split("algorithm=")
                        .nth(1)
                        .unwrap()
                        .split(',')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(algos(None), ["MD5"]);
        assert_eq!(algos(Some(&["SHA-256", "md5"])), ["SHA-256", "MD5"]);
        assert_eq!(algos(Some(&["sha-256"])), ["SHA-256"]);
    }

    #[test]
    fn bad_configurations_are_refused() {
        for users in [
            vec![],
            vec!["nopassword".to_string()],
            vec![":x".to_string()],
            vec!["a:x".to_string(), "a:y".to_string()],
            vec!["a:md5:xyz".to_string()],
        ] {
            let conf = AuthConf {
                realm: None,
                users,
                nonce_secs: 300,
                max_failures_per_minute: 10,
                algorithms: None,
            };
            assert!(
                TrunkAuth::new(&conf, "ent", [0; 32], [0; 32]).is_err(),
                "{conf:?}"
            );
        }
        for algorithms in [
            &[][..],
            &["SHA-512"][..],
            &["MD5", "md5"][..],
            &["MD5-sess"][..],
        ] {
            assert!(
                auth_offering(&["pbx1:s3cret"], Some(algorithms)).is_err(),
                "{algorithms:?}"
            );
        }
        // SHA-256 for a user whose password is not known (only its MD5 HA1).
        let e = auth_offering(
            &["pbx1:s3cret", "pbx2:md5:0123456789abcdef0123456789abcdef"],
            Some(&["MD5", "SHA-256"]),
        )
        .unwrap_err();
        assert!(e.contains("user 'pbx2' is given as md5:HA1"), "{e}");
    }
}
