//! The numbering plan: which national numbers exist, how long they are, what they are.
//!
//! Loaded from a small line format (see `cn.plan`, the built-in China plan) so that an
//! operator can follow a MIIT allocation change by editing a file, not the code.
//! Lookup is a digit trie: the longest prefix whose length list admits the number wins,
//! shorter prefixes are the fallback.

use super::Number;
use crate::load_error::LoadError;

/// The built-in China (+86) plan.
pub const BUILTIN_CN: &str = include_str!("cn.plan");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Mobile,
    Iot,
    Fixed,
    SharedCost,
    TollFree,
    Premium,
    Service95,
    Service96,
    Government,
    Emergency,
    Operator,
    NumberProtection,
    SmsPort,
    /// Another country's number (not validated beyond E.164 length).
    Foreign,
    /// Breaks the plan: unassigned prefix or wrong length.
    Invalid,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Mobile => "mobile",
            Class::Iot => "iot",
            Class::Fixed => "fixed",
            Class::SharedCost => "shared-cost",
            Class::TollFree => "toll-free",
            Class::Premium => "premium",
            Class::Service95 => "service95",
            Class::Service96 => "service96",
            Class::Government => "government",
            Class::Emergency => "emergency",
            Class::Operator => "operator",
            Class::NumberProtection => "number-protection",
            Class::SmsPort => "sms-port",
            Class::Foreign => "foreign",
            Class::Invalid => "invalid",
        }
    }
    pub fn parse(s: &str) -> Option<Class> {
        Some(match s {
            "mobile" => Class::Mobile,
            "iot" => Class::Iot,
            "fixed" => Class::Fixed,
            "shared-cost" => Class::SharedCost,
            "toll-free" => Class::TollFree,
            "premium" => Class::Premium,
            "service95" => Class::Service95,
            "service96" => Class::Service96,
            "government" => Class::Government,
            "emergency" => Class::Emergency,
            "operator" => Class::Operator,
            "number-protection" => Class::NumberProtection,
            "sms-port" => Class::SmsPort,
            _ => return None,
        })
    }
    /// Numbers that only authorities and operators present: forged from abroad, they are
    /// the classic "police calling" fraud.
    pub fn is_service(self) -> bool {
        matches!(
            self,
            Class::Emergency
                | Class::Government
                | Class::Operator
                | Class::Service95
                | Class::Service96
        )
    }
}

/// Properties of a number range beyond its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub mvno: bool,
    pub satellite: bool,
    /// Data-only or IoT: must not place voice calls.
    pub novoice: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub flags: Flags,
    /// Allocation holder as the plan names it (`cmcc`, `cucc`...), not the current carrier.
    pub operator: Option<&'static str>,
}

impl Classification {
    const INVALID: Classification = Classification {
        class: Class::Invalid,
        flags: Flags {
            mvno: false,
            satellite: false,
            novoice: false,
        },
        operator: None,
    };
    const FOREIGN: Classification = Classification {
        class: Class::Foreign,
        ..Classification::INVALID
    };
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    class: Class,
    flags: Flags,
    /// Bit n set: NSN length n allowed.
    lengths: u64,
    operator: Option<&'static str>,
}

const NO_RULE: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq)]
struct Node {
    child: [u32; 10],
    rule: u32,
}

/// A loaded numbering plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    country: Vec<u8>,
    rules: Vec<Rule>,
    nodes: Vec<Node>,
    /// The country codes in service (`countries` lines), one bit per code: bits 0-9 the
    /// one-digit codes, 10-109 the two-digit ones, 110-1109 the three-digit ones. Empty
    /// when the plan lists none: then any foreign number of a possible length passes.
    countries: Vec<u64>,
    /// Another country's own plan, where the file gives one (`foreign` lines): its code,
    /// then the prefixes of its national numbers with their lengths. A number of such a
    /// code must match one of them; other codes are held to E.164's lengths only.
    foreign: Vec<(Vec<u8>, Vec<ForeignRule>)>,
}

/// One `foreign` line: the digits its prefix allows at each position (bit d: digit d)
/// and the lengths (bit n: n digits). A prefix of digits and classes stands for every
/// combination of its positions' digits, so the masks hold it exactly, and a number is
/// checked in one step per position rather than against every expansion.
#[derive(Debug, Clone, PartialEq)]
struct ForeignRule {
    digits: Vec<u16>,
    lengths: u64,
}

/// A country code as a plan line writes it: 1-3 digits, not starting with 0.
fn country_code(c: &str) -> Result<&[u8], String> {
    let b = c.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) || b[0] == b'0' {
        return Err(format!(
            "'{c}' is not a country code (1-3 digits, not 0...)"
        ));
    }
    Ok(b)
}

/// The bit of a country code of 1-3 digits in [`Plan::countries`].
fn country_bit(cc: &[u8]) -> usize {
    let v = cc.iter().fold(0usize, |v, &c| v * 10 + (c - b'0') as usize);
    match cc.len() {
        1 => v,
        2 => 10 + v,
        _ => 110 + v,
    }
}

fn operator_name(s: &str) -> &'static str {
    // Interned so that a Classification stays Copy and allocation-free.
    match s {
        "cmcc" => "cmcc",
        "cucc" => "cucc",
        "ctcc" => "ctcc",
        "cbn" => "cbn",
        "satnet" => "satnet",
        _ => "other",
    }
}

/// Expands `13[5-9]4` into every digit string it stands for.
fn expand(p: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let set: Vec<u8> = if b[i].is_ascii_digit() {
            i += 1;
            vec![b[i - 1]]
        } else if b[i] == b'[' {
            let close = p[i..].find(']').ok_or("unclosed '['")? + i;
            let inner = &b[i + 1..close];
            let mut set = vec![];
            let mut j = 0;
            while j < inner.len() {
                if j + 2 < inner.len() && inner[j + 1] == b'-' {
                    let (a, z) = (inner[j], inner[j + 2]);
                    if !a.is_ascii_digit() || !z.is_ascii_digit() || a > z {
                        return Err(format!("bad range in '{p}'"));
                    }
                    set.extend(a..=z);
                    j += 3;
                } else if inner[j].is_ascii_digit() {
                    set.push(inner[j]);
                    j += 1;
                } else {
                    return Err(format!("bad character in '{p}'"));
                }
            }
            if set.is_empty() {
                return Err(format!("empty class in '{p}'"));
            }
            i = close + 1;
            set
        } else {
            return Err(format!(
                "prefix '{p}' may hold only digits and [..] classes"
            ));
        };
        out = out
            .iter()
            .flat_map(|s| set.iter().map(move |&c| format!("{s}{}", c as char)))
            .collect();
        if out.len() > 100_000 {
            return Err(format!("prefix '{p}' expands to too many numbers"));
        }
    }
    if out.iter().all(|s| s.is_empty()) {
        return Err("empty prefix".into());
    }
    Ok(out)
}

fn parse_lengths(s: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for part in s.split(',') {
        let (a, z) = match part.split_once('-') {
            Some((a, z)) => (a, z),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| format!("bad length '{part}'"))?;
        let z: u32 = z.parse().map_err(|_| format!("bad length '{part}'"))?;
        if a == 0 || z > 20 || a > z {
            return Err(format!("length '{part}' out of range 1-20"));
        }
        for l in a..=z {
            mask |= 1 << l;
        }
    }
    Ok(mask)
}

impl Plan {
    /// The built-in China plan.
    pub fn builtin() -> Plan {
        // Parsed once per process; every policy load clones it.
        static BUILTIN: std::sync::OnceLock<Plan> = std::sync::OnceLock::new();
        BUILTIN
            // The built-in text is tested; a failure here is a build defect, not input.
            .get_or_init(|| {
                Plan::parse(BUILTIN_CN, "builtin:cn")
                    .unwrap_or_else(|e| panic!("built-in plan: {e}"))
            })
            .clone()
    }

    pub fn parse(text: &str, file: &str) -> Result<Plan, LoadError> {
        let mut plan = Plan {
            country: vec![],
            rules: vec![],
            nodes: vec![Node {
                child: [NO_RULE; 10],
                rule: NO_RULE,
            }],
            countries: vec![],
            foreign: vec![],
        };
        // A byte-order mark (Windows editors) is no part of the first rule, as in lists.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.lines().enumerate() {
            let ln = idx + 1;
            // Old Mac line ends (CR alone) run every line into one: said as lists say it.
            if raw.trim_end_matches('\r').contains('\r') {
                return Err(LoadError::at(
                    file,
                    ln,
                    "line ends with CR alone (old Mac text): save the file with LF or CRLF line ends",
                ));
            }
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f[0] == "country" {
                if f.len() != 2 {
                    return Err(LoadError::at(file, ln, "expected 'country <1-3 digits>'"));
                }
                let cc = country_code(f[1]).map_err(|e| LoadError::at(file, ln, e))?;
                // A second one would silently move every number to another country.
                if !plan.country.is_empty() {
                    return Err(LoadError::at(
                        file,
                        ln,
                        format!(
                            "a second 'country' line (the plan is +{} already)",
                            String::from_utf8_lossy(&plan.country)
                        ),
                    ));
                }
                plan.country = cc.to_vec();
                continue;
            }
            if f[0] == "countries" {
                plan.add_countries(&f[1..])
                    .map_err(|e| LoadError::at(file, ln, e))?;
                continue;
            }
            if f[0] == "foreign" {
                plan.add_foreign(&f[1..])
                    .map_err(|e| LoadError::at(file, ln, e))?;
                continue;
            }
            if plan.country.is_empty() {
                return Err(LoadError::at(
                    file,
                    ln,
                    "the first rule must be 'country <code>'",
                ));
            }
            if f.len() < 3 {
                return Err(LoadError::at(
                    file,
                    ln,
                    "expected '<class> <prefix> <lengths> [flags]'",
                ));
            }
            let class = Class::parse(f[0])
                .ok_or_else(|| LoadError::at(file, ln, format!("unknown class '{}'", f[0])))?;
            let prefixes = expand(f[1]).map_err(|e| LoadError::at(file, ln, e))?;
            let lengths = parse_lengths(f[2]).map_err(|e| LoadError::at(file, ln, e))?;
            let mut rule = Rule {
                class,
                flags: Flags::default(),
                lengths,
                operator: None,
            };
            for flag in &f[3..] {
                match *flag {
                    "mvno" => rule.flags.mvno = true,
                    "satellite" => rule.flags.satellite = true,
                    "novoice" => rule.flags.novoice = true,
                    _ => {
                        if let Some(op) = flag.strip_prefix("operator=") {
                            rule.operator = Some(operator_name(op));
                        } else if !flag.starts_with("note=") {
                            return Err(LoadError::at(file, ln, format!("unknown flag '{flag}'")));
                        }
                    }
                }
            }
            let ri = plan.rules.len() as u32;
            plan.rules.push(rule);
            for p in prefixes {
                let mut node = 0usize;
                for c in p.bytes() {
                    let d = (c - b'0') as usize;
                    if plan.nodes[node].child[d] == NO_RULE {
                        plan.nodes.push(Node {
                            child: [NO_RULE; 10],
                            rule: NO_RULE,
                        });
                        plan.nodes[node].child[d] = (plan.nodes.len() - 1) as u32;
                    }
                    node = plan.nodes[node].child[d] as usize;
                }
                if plan.nodes[node].rule != NO_RULE {
                    return Err(LoadError::at(
                        file,
                        ln,
                        format!("prefix {p} is already defined by an earlier rule"),
                    ));
                }
                plan.nodes[node].rule = ri;
            }
        }
        if plan.country.is_empty() {
            return Err(LoadError::file(file, "no 'country <code>' line"));
        }
        // Found once every line is read: said at the line that makes it so.
        let line_of = |first: &str, second: Option<&[u8]>| {
            text.lines()
                .position(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some(first)
                        && second.is_none_or(|s| w.next().map(str::as_bytes) == Some(s))
                })
                .map_or(0, |i| i + 1)
        };
        if !plan.countries.is_empty() && !plan.country_in_service(&plan.country) {
            return Err(LoadError::at(
                file,
                line_of("countries", None),
                "the plan's own country code is not among its 'countries'",
            ));
        }
        if let Some((cc, _)) = plan.foreign.iter().find(|(cc, _)| {
            *cc == plan.country || !plan.countries.is_empty() && !plan.country_in_service(cc)
        }) {
            return Err(LoadError::at(
                file,
                line_of("foreign", Some(&cc[..])),
                format!(
                    "'foreign {}' names the plan's own country or one not among its 'countries'",
                    String::from_utf8_lossy(cc)
                ),
            ));
        }
        // A plan cut short (QA 70: `country 86` alone loaded): every domestic number
        // would be invalid, and every domestic call refused by numbering-plan.
        if plan.rules.is_empty() {
            return Err(LoadError::file(
                file,
                "no number rules ('<class> <prefixes> <lengths>' lines): every domestic number would be invalid",
            ));
        }
        Ok(plan)
    }

    /// `foreign <code> <prefix> <lengths>`: national numbers of country `code` start
    /// with `prefix` (digits and bracket classes) and have one of `lengths` digits.
    fn add_foreign(&mut self, f: &[&str]) -> Result<(), String> {
        let [code, prefix, lengths] = f else {
            return Err("expected 'foreign <country code> <prefix> <lengths>'".into());
        };
        let cc = country_code(code)?;
        let lengths = parse_lengths(lengths)?;
        if lengths >> 15 != 0 {
            return Err(format!(
                "'{}': no national number is longer than 14 digits",
                f[2]
            ));
        }
        let rules = match self.foreign.iter_mut().find(|(c, _)| c == cc) {
            Some((_, r)) => r,
            None => {
                self.foreign.push((cc.to_vec(), vec![]));
                let last = self.foreign.len() - 1;
                &mut self.foreign[last].1
            }
        };
        let expanded = expand(prefix)?;
        let mut digits = vec![0u16; expanded.iter().map(String::len).max().unwrap_or(0)];
        for p in &expanded {
            for (m, c) in digits.iter_mut().zip(p.bytes()) {
                *m |= 1 << (c - b'0');
            }
        }
        rules.push(ForeignRule { digits, lengths });
        Ok(())
    }

    /// Whether a foreign number (digits after '+') fits its country's plan, where the
    /// file gives one.
    fn foreign_plan_fits(&self, d: &[u8]) -> bool {
        let Some((cc, rules)) = self.foreign.iter().find(|(cc, _)| d.starts_with(cc)) else {
            return true;
        };
        let nsn = &d[cc.len()..];
        let len_bit = 1u64.checked_shl(nsn.len() as u32).unwrap_or(0);
        rules.iter().any(|r| {
            r.lengths & len_bit != 0
                && nsn.len() >= r.digits.len()
                && r.digits
                    .iter()
                    .zip(nsn)
                    .all(|(m, &c)| (c as char).to_digit(10).is_some_and(|d| m & (1 << d) != 0))
        })
    }

    /// `countries` codes: E.164 country codes are a prefix code (no code starts another),
    /// which is what lets a number's code be read off its first digits; a list that breaks
    /// that is refused.
    fn add_countries(&mut self, codes: &[&str]) -> Result<(), String> {
        if codes.is_empty() {
            return Err("expected 'countries <code> [<code> ...]'".into());
        }
        if self.countries.is_empty() {
            self.countries = vec![0; 1110usize.div_ceil(64)];
        }
        for c in codes {
            let b = country_code(c)?;
            if let Some(k) = (1..=b.len()).find(|&k| self.country_in_service(&b[..k])) {
                return Err(format!("country code {c} clashes with {}", &c[..k]));
            }
            if b.len() < 3 && self.countries_under(b) {
                return Err(format!(
                    "country code {c} is the start of a longer one listed"
                ));
            }
            let bit = country_bit(b);
            self.countries[bit / 64] |= 1 << (bit % 64);
        }
        Ok(())
    }

    fn country_in_service(&self, cc: &[u8]) -> bool {
        let bit = country_bit(cc);
        self.countries
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Whether a listed code is longer than `prefix` and starts with it.
    fn countries_under(&self, prefix: &[u8]) -> bool {
        let mut code = prefix.to_vec();
        (0..=9u8).any(|d| {
            code.truncate(prefix.len());
            code.push(b'0' + d);
            self.country_in_service(&code) || (code.len() < 3 && self.countries_under(&code))
        })
    }

    /// Whether a foreign number (digits after '+') starts with a country code in service;
    /// always when the plan lists none.
    fn foreign_code_known(&self, d: &[u8]) -> bool {
        self.countries.is_empty()
            || (1..=3).any(|k| d.get(..k).is_some_and(|cc| self.country_in_service(cc)))
    }

    pub fn country(&self) -> &[u8] {
        &self.country
    }
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether a normalised number belongs to this plan's country.
    pub fn is_domestic(&self, n: &Number) -> bool {
        n.starts_with(&self.country)
    }

    /// Classifies a normalised number.
    pub fn classify(&self, n: &Number) -> Classification {
        let d = n.digits();
        match d.strip_prefix(self.country.as_slice()) {
            Some(nsn) => self.classify_nsn(nsn),
            // E.164 allows at most 15 digits; fewer than 7 is no subscriber number.
            None if (7..=15).contains(&d.len())
                && self.foreign_code_known(d)
                && self.foreign_plan_fits(d) =>
            {
                Classification::FOREIGN
            }
            None => Classification::INVALID,
        }
    }

    /// Whether some national significant number of the plan begins with digit `d`. No
    /// Chinese one begins with 0 (the trunk prefix, dialled nationally only): a list
    /// entry written `+86 0755 ...` is a mistake that would match nothing.
    pub fn nsn_may_begin_with(&self, d: u8) -> bool {
        self.nodes
            .first()
            .and_then(|root| root.child.get(d.wrapping_sub(b'0') as usize))
            .is_some_and(|&c| c != NO_RULE)
    }

    /// Classifies a national significant number (no country code, no trunk prefix).
    pub fn classify_nsn(&self, nsn: &[u8]) -> Classification {
        let mut path = [NO_RULE; 24];
        let mut depth = 0;
        let mut node = 0usize;
        for &c in nsn {
            let next = self.nodes[node].child[(c - b'0') as usize];
            if next == NO_RULE {
                break;
            }
            node = next as usize;
            if self.nodes[node].rule != NO_RULE && depth < path.len() {
                path[depth] = self.nodes[node].rule;
                depth += 1;
            }
        }
        let len_bit = 1u64.checked_shl(nsn.len() as u32).unwrap_or(0);
        for &ri in path[..depth].iter().rev() {
            let r = &self.rules[ri as usize];
            if r.lengths & len_bit != 0 {
                return Classification {
                    class: r.class,
                    flags: r.flags,
                    operator: r.operator,
                };
            }
        }
        Classification::INVALID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        assert_eq!(expand("13[5-7]").unwrap(), vec!["135", "136", "137"]);
        assert_eq!(expand("2[0-57-9]").unwrap().len(), 9);
        assert!(expand("13x").is_err());
        assert!(expand("1[3").is_err());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Plan::parse("country 86\nmobile 13[5 11\n", "p.plan").unwrap_err();
        assert_eq!(e.file, "p.plan");
        assert_eq!(e.line, Some(2));
        let e = Plan::parse("country 86\n\nnosuch 1 11\n", "p.plan").unwrap_err();
        assert_eq!(e.to_string(), "p.plan:3: unknown class 'nosuch'");
        let e = Plan::parse("mobile 13 11\n", "p.plan").unwrap_err();
        assert_eq!(e.line, Some(1));
        let e = Plan::parse("country 86\nmobile 13 11\nfixed 13 10\n", "p.plan").unwrap_err();
        assert!(e.reason.contains("already defined"), "{e}");
        assert!(Plan::parse("country 86\nmobile 13 0\n", "p").is_err());
        assert!(Plan::parse("# nothing\n", "p").is_err());
        // Cut short (QA 70), or old Mac line ends, which run every line into one.
        let e = Plan::parse("country 86\n", "p.plan").unwrap_err();
        assert!(e.reason.contains("no number rules"), "{e}");
        let e = Plan::parse("country 86\rmobile 13 11\r", "p.plan").unwrap_err();
        assert!(e.reason.contains("CR alone") && e.line == Some(1), "{e}");
        // A second country line, and a code no country has, are refused on their line.
        let e = Plan::parse("country 86\nmobile 13 11\ncountry 44\n", "p.plan").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.reason.contains("second 'country'"), "{e}");
        let e = Plan::parse("country 0\nmobile 13 11\n", "p.plan").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.reason.contains("not a country code"), "{e}");
        // A byte-order mark before the first rule is skipped.
        let p = Plan::parse("\u{feff}country 86\nmobile 13 11\n", "p.plan").unwrap();
        assert_eq!(p.country(), b"86");
    }

    #[test]
    fn country_codes_in_service() {
        let p = Plan::parse(
            "country 86\ncountries 1 7 44 86 852\ncountries 882\nmobile 13 11\n",
            "c.plan",
        )
        .unwrap();
        let class = |n: &str| {
            p.classify(&crate::numbering::normalise(n.as_bytes(), b"86", None).unwrap())
                .class
        };
        for n in [
            "+14155550123",
            "+79161234567",
            "+442071234567",
            "+85221234567",
            "+88216123456",
        ] {
            assert_eq!(class(n), Class::Foreign, "{n}");
        }
        // Codes not listed, and a listed code's digits read as another code.
        for n in [
            "+33123456789",
            "+8531234567",
            "+4212345678",
            "+0123456789",
            "+85112345678",
        ] {
            assert_eq!(class(n), Class::Invalid, "{n}");
        }
        assert_eq!(class("+8613812345678"), Class::Mobile);
        // No list: any code of a possible length passes, as before.
        let open = Plan::parse("country 86\nmobile 13 11\n", "o").unwrap();
        let n = crate::numbering::normalise(b"+999123456789", b"86", None).unwrap();
        assert_eq!(open.classify(&n).class, Class::Foreign);
        // Refused with file and line: not a code, a code inside another, the plan's own
        // country missing.
        for (text, line, why) in [
            ("country 86\ncountries 86 0\n", 2, "not a country code"),
            ("country 86\ncountries 86 1234\n", 2, "not a country code"),
            (
                "country 86\ncountries 86\ncountries 4x\n",
                3,
                "not a country code",
            ),
            (
                "country 86\ncountries 86 1\ncountries 12\n",
                3,
                "clashes with 1",
            ),
            (
                "country 86\ncountries 86 123\ncountries 12\n",
                3,
                "start of a longer",
            ),
            ("country 86\ncountries\n", 2, "expected 'countries"),
        ] {
            let e = Plan::parse(text, "c.plan").unwrap_err();
            assert_eq!(
                (e.file.as_str(), e.line),
                ("c.plan", Some(line)),
                "{text:?}: {e}"
            );
            assert!(e.reason.contains(why), "{text:?}: {e}");
        }
        let e = Plan::parse("country 86\ncountries 1 44\n", "c.plan").unwrap_err();
        assert!(e.reason.contains("own country code"), "{e}");
        // Found once the file is read, and still said at its line.
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn foreign_plans_hold_their_numbers_to_their_lengths() {
        let p = Plan::parse(
            "country 86\ncountries 1 44 86\nforeign 1 [2-9][0-8] 10\nmobile 13 11\n",
            "f.plan",
        )
        .unwrap();
        let class = |n: &str| {
            p.classify(&crate::numbering::normalise(n.as_bytes(), b"86", None).unwrap())
                .class
        };
        assert_eq!(class("+14155550123"), Class::Foreign);
        assert_eq!(class("+12125550123"), Class::Foreign);
        // Too short, too long, an area code starting 0 or 1, or with 9 second.
        for n in [
            "+1415555012",
            "+141555501234",
            "+10155550123",
            "+11385550123",
            "+19995550123",
        ] {
            assert_eq!(class(n), Class::Invalid, "{n}");
        }
        // A country without a plan line: E.164's lengths only.
        assert_eq!(class("+4420712345"), Class::Foreign);
        for (text, why) in [
            ("country 86\nforeign 1 [2-9]\n", "expected 'foreign"),
            ("country 86\nforeign 01 [2-9] 10\n", "not a country code"),
            ("country 86\nforeign 1 [2-9] 10-17\n", "longer than 14"),
            ("country 86\nforeign 1 2x 10\n", ""),
        ] {
            let e = Plan::parse(text, "f.plan").unwrap_err();
            assert_eq!(
                (e.file.as_str(), e.line),
                ("f.plan", Some(2)),
                "{text:?}: {e}"
            );
            assert!(e.reason.contains(why), "{text:?}: {e}");
        }
        for text in [
            "country 86\ncountries 1 86\nforeign 44 [1-9] 10\n",
            "country 86\nforeign 86 1 11\n",
        ] {
            let e = Plan::parse(text, "f.plan").unwrap_err();
            assert!(e.reason.contains("'foreign"), "{text:?}: {e}");
            assert_eq!(e.line, Some(text.lines().count()), "{text:?}: {e}");
        }
    }

    #[test]
    fn longest_prefix_with_length_fallback() {
        let p = Plan::parse("country 86\nfixed 10 10\noperator 100 5\n", "t").unwrap();
        assert_eq!(p.classify_nsn(b"10086").class, Class::Operator);
        assert_eq!(p.classify_nsn(b"1001234567").class, Class::Fixed);
        assert_eq!(p.classify_nsn(b"100123").class, Class::Invalid);
    }
}
