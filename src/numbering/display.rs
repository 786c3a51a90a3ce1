//! Numbers among words: what a display name, or a dial string, shows a person, read
//! as a phone screen draws it (`"中国银行 95 588"`, `"Tel: +86 138-1234-5678"`,
//! right-to-left runs). The caller of [`embedded_numbers`] judges each piece against a
//! plan; this module only finds the digit runs a callee may read as one number, and says
//! what words and signs around them make of them ([`Worded`]).

use super::glyph::{self, INVISIBLE, unit};

/// Most digits a number written among words may hold: an IP dial prefix, `00`, a
/// country code and a 700 number.
const EMBEDDED_MAX_DIGITS: usize = 24;
/// Most pieces of one text [`embedded_numbers`] offers: a display name a phone shows
/// holds a handful, and a flood of digit groups must cost no more than this (more than
/// [`EMBEDDED_MAX_VISIBLE`] characters make).
pub const EMBEDDED_MAX_CANDIDATES: usize = 2048;
/// Characters of a text read for numbers, not counting those that draw nothing: more
/// than a phone shows of a caller's name (an incoming-call screen shows 20 to 30). The
/// bound keeps a display name of digit soup to about 430 pieces (some 260k
/// instructions, against 40k for a whole call).
pub const EMBEDDED_MAX_VISIBLE: usize = 64;

/// The numbers a text may show among words, as a display name does (`"Bank of China
/// 95588"`, `"中国银行９５５８８"`, `"Tel: +86 138-1234-5678"`): every run of digit groups
/// joined by the separators numbers are written with (and a leading '+'), and every
/// part of such a run made of whole groups, holding 3 to [`EMBEDDED_MAX_DIGITS`]
/// digits. Two numbers side by side (`"13812345678 13912345678"`), or a number and a
/// stray digit (`"报警110 1"`), are then offered apart as well as together: which one
/// the text shows is for the caller of this to judge against a plan. A part of several
/// groups holds 7 digits or more, or is a short code written with spaces (`"95 588"`)
/// (or across other marks, offered [`Worded::Marked`]), and no short code starts with
/// a trunk 0: dates, prices and versions are no numbers.
/// `each` gets each piece's range in `text` and its digits (with the leading '+', and
/// without a bracketed `(0)` trunk prefix after a country code), in text order of
/// their ends, at most [`EMBEDDED_MAX_CANDIDATES`] of them.
pub fn embedded_numbers(
    text: &[u8],
    short: ShortCodes,
    each: impl FnMut(std::ops::Range<usize>, &[u8], Worded),
) {
    embedded_numbers_in(text, short, true, each)
}

/// For each of `pieces` (ranges of `text` that [`embedded_numbers_in`] offered, at most
/// the outputs' length), whether it runs across a mark that ends a number in a list of
/// them (`breaks`): `/`, `,`, `|`, `;`, or a `+` after anything but a digit (`"... 0100
/// / +86 10 ..."`, `"7x24 +86 10 ..."`); and whether one of those stands apart
/// (`apart`): with white space beside it, full-width (`、`, which carries its own
/// space), or a `+`. The reader does not take such a piece where it cuts into a number
/// that runs across none (QA 156, QA 160, QA 163), but for a short code written with
/// its separators inside it (`"12/345"`, `"11|0"`: QA 162, QA 164).
pub fn number_breaks(
    text: &[u8],
    pieces: &[(usize, usize)],
    breaks: &mut [bool],
    apart: &mut [bool],
) {
    let folded = glyph::with_look_alike_digits(text);
    let text = folded.as_deref().unwrap_or(text);
    for ((&(start, end), b), a) in pieces.iter().zip(breaks.iter_mut()).zip(apart.iter_mut()) {
        let (mut i, mut before) = (start, 0u8);
        (*b, *a) = (false, false);
        while i < end.min(text.len()) {
            let (c, len) = unit(&text[i..]);
            if c != INVISIBLE {
                let plus = c == b'+' && !is_digit_glyph(before);
                if i > start && (plus || matches!(c, b'/' | b',' | b'|' | b';')) {
                    *b = true;
                    *a |= plus
                        || len > 1
                        || before == b' '
                        || next_drawn(text, i + len, false) == b' ';
                }
                before = c;
            }
            i += len;
        }
    }
}

/// The digits a text draws, in any script (two-digit glyphs as both), into `out`;
/// `None` past its length.
pub fn drawn_digits<'a>(text: &[u8], out: &'a mut [u8; 24]) -> Option<&'a [u8]> {
    let (mut i, mut n) = (0, 0);
    while i < text.len() {
        let (c, len) = unit(&text[i..]);
        if is_digit_glyph(c) {
            let (pair, k) = ascii_digits(c);
            for &d in &pair[..k] {
                *out.get_mut(n)? = d;
                n += 1;
            }
        }
        i += len;
    }
    Some(&out[..n])
}

/// Whether the mark `rest` starts with is one a number's groups are written with:
/// hyphens, dashes and the minus sign, the full stop and the middle dots (ASCII and
/// full-width). Not a sentence's full stop (`。`, `｡`) nor a bullet (`•`, `⁃`, `∙`, `⋅`,
/// `‧`, `․`), which end one item and start another (QA 209), though all of them
/// separate digit groups when the reader joins digits across marks.
fn joins_a_number(rest: &[u8]) -> bool {
    matches!(
        glyph::decode(rest).map(|(c, _)| c),
        Some(
            '-' | '.' | '\u{2010}'
                ..='\u{2015}'
                    | '\u{2212}'
                    | '\u{fe58}'
                    | '\u{fe63}'
                    | '\u{ff0d}'
                    | '\u{ff0e}'
                    | '\u{00b7}'
                    | '\u{30fb}'
                    | '\u{ff65}'
        )
    )
}

/// Whether a URI user part is a dial string with digits: digits (of any script), the
/// marks of a dial string (`*`, `#`, `+`, the pauses `,` `p` `w`, visual separators `-`
/// `.` `(` `)`), white space and what draws nothing, escaped or not, and nothing else.
/// A name (`pbx-gw`, `alice`) is none.
pub fn is_dial_string(user: &[u8]) -> bool {
    let (mut digits, mut i) = (false, 0);
    while i < user.len() {
        let (c, len) = glyph::unit(&user[i..]);
        match c {
            c if is_digit_glyph(c) => digits = true,
            b'*'
            | b'#'
            | b'+'
            | b','
            | b'p'
            | b'P'
            | b'w'
            | b'W'
            | b'-'
            | b'.'
            | b'('
            | b')'
            | b' '
            | glyph::INVISIBLE => {}
            _ => return false,
        }
        i += len.max(1);
    }
    digits
}

/// [`embedded_numbers`] of a display name (`display`), or of a URI's user part, a dial
/// string, where a comma is a pause and no decimal comma (QA 42: `<sip:110,00@x>`
/// dials 110).
pub fn embedded_numbers_in(
    text: &[u8],
    short: ShortCodes,
    display: bool,
    mut each: impl FnMut(std::ops::Range<usize>, &[u8], Worded),
) {
    // Letters drawn like digits among digits are read as the callee reads them.
    let folded = glyph::with_look_alike_digits(text);
    let text = folded.as_deref().unwrap_or(text);
    let any = short == ShortCodes::AnySeparator;
    // Where only spaced short codes are read, dates and times are known as such.
    let fresh = || Run {
        dates: !any,
        display,
        ..Run::default()
    };
    let mut run = fresh();
    let mut group: Option<Group> = None;
    // Where the digits of a count that the group ending at `i` starts end
    // ([`count_follows`]): looked for only after a group set apart from the one before
    // it by white space or a mark, the only group a count can start (`"95566，9折"`).
    let count_at = |g: &Group, i: usize| {
        (g.blank || g.sep != 0)
            .then(|| {
                count_follows(&text[i..])
                    .or_else(|| day_and_month(g, text))
                    .map(|l| i + l)
            })
            .flatten()
    };
    let mut dates = DateLists::default();
    // Whether amounts, units, ordinals and addresses hide short codes: only where a
    // number shown is judged, and not in a text that names the police or an emergency
    // service (`"110人民警察"`, `"110个警察"`: QA 31), where a callee reads the short
    // code as that service's whatever word it is glued to. Read at the first digit.
    let mut amounts: Option<bool> = None;
    // Whether the text names the police or an emergency service, read at the first
    // time of day: there a time hides no short code before it (`"公安 1 10:00"`).
    let mut police: Option<bool> = None;
    let mut budget = EMBEDDED_MAX_CANDIDATES;
    let mut visible = 0;
    // The last character drawn before the group being read, and whether the run
    // started with a '+'.
    let mut before = 0u8;
    let mut plus_at: Option<usize> = None;
    // Only white space between the last group and the next.
    let mut gap_spaced = true;
    // A currency sign, then white space only, since.
    let mut after_currency = false;
    // A mark numbers are not written with between the last group and the next.
    let mut gap_marked = false;
    // Some white space between the last group and the next.
    let mut gap_blank = false;
    // The last mark between the last group and the next (0: none).
    let mut gap_sep = 0u8;
    // Only dashes and dots between the last group and the next: one number's groups.
    let mut gap_dashed = true;
    // The marks between the last group and the next, and whether the last was an
    // ASCII `,` or `.` ([`Group::amount_sep`]).
    let mut gap_marks = 0u8;
    let mut gap_amount_mark = false;
    // Whether the group being read, and the one before it, are of raised or lowered
    // digits ([`small_digit`]).
    let mut group_small = false;
    let mut last_small = false;
    // The currency sign just read ended a group: a sign after its amount, no price's
    // before the digits after it (`"5$ 95 588"`: QA 215).
    let mut currency_after = false;
    let mut i = 0;
    // The last character drawn that is no white space, mark or letter drawn as a line.
    let mut solid = 0u8;
    while i < text.len() && budget > 0 && visible < EMBEDDED_MAX_VISIBLE {
        let (mut c, mut len) = unit(&text[i..]);
        // A square or a cube after a letter is the unit's exponent (`"5m²"`, `"x³"`), no
        // digit: `"5m²,110"` read `2,110` as an amount and hid the police's number
        // (QA 214).
        if before.is_ascii_alphabetic()
            && (text[i..].starts_with("\u{b2}".as_bytes())
                || text[i..].starts_with("\u{b3}".as_bytes()))
            && !is_digit_glyph(next_drawn(text, i + len, false))
        {
            c = glyph::OTHER;
        }
        // A raised or lowered digit (a footnote's `¹`, a subscript) beside full-size ones
        // is drawn apart from them: a word of its own, as after white space (`"报警¹110"`
        // read 1110 and hid the police's number, QA 215). Read as a space here, without
        // moving on; the digit is read again next, in a group of its own.
        if is_digit_glyph(c) {
            let small = small_digit(&text[i..]);
            if group.is_some() && small != group_small {
                (c, len) = (b' ', 0);
            } else {
                group_small = small;
            }
        }
        // A letter drawn as a line between digits (`"138一1234一5678"`, `"95 丨 588"`,
        // QA 154, QA 156) is the mark it is drawn like: a callee reads the digits across
        // it; elsewhere a word (`"一号店"`).
        if c == glyph::LINE_LETTER {
            let next = next_drawn(text, i + len, true);
            c = if run.open && is_digit_glyph(solid) && is_digit_glyph(next) {
                glyph::PUNCT
            } else {
                solid = glyph::OTHER;
                glyph::OTHER
            };
        } else if c != INVISIBLE && !is_filler(c) {
            solid = c;
        }
        // White space before anything drawn (escaped, or Unicode's) is padding a phone
        // trims: it must not push a number past the reading bound.
        if c == INVISIBLE || c == b' ' && visible == 0 {
            i += len;
            continue;
        }
        // A run of white space is one gap: blanks in bulk (Hangul fillers drawn as
        // blanks, QA 208) must not push a number past the reading bound either.
        if c == b' ' && before == b' ' {
            i += len;
            continue;
        }
        visible += 1;
        match c {
            c if is_digit_glyph(c) => {
                // Digits right after a currency sign are a price (`"¥1,110"`), and after
                // an ordinal word a place or a reference (`"Room 110"`): where a number
                // shown is judged, no short number of that amount is offered.
                let amounts = *amounts.get_or_insert_with(|| !any && !names_an_emergency(text));
                if amounts && !run.open {
                    // A dial string has no prices: `<sip:$95588@x>` dials 95588 (QA 50).
                    run.price = after_currency && display;
                    run.signed = after_currency && display;
                    run.quantity = quantity_before(&text[..i]);
                }
                if group.is_none() {
                    // Raised digits after full-size ones across a mark (`"5²,110"`), or
                    // the other way round, are another word, as after white space.
                    gap_blank |= group_small != last_small;
                    last_small = group_small;
                }
                let g = group.get_or_insert_with(|| Group {
                    plus: plus_at.is_some(),
                    start: plus_at.take().unwrap_or(i),
                    after_paren: before == b'(' || before == b'[',
                    lettered: before.is_ascii_alphabetic() && !after_phone_word(&text[..i]),
                    spaced: gap_spaced,
                    blank: gap_blank && run.open,
                    marked: gap_marked,
                    sep: gap_sep,
                    dashed: gap_dashed && run.open,
                    amount_sep: gap_marks == 1 && gap_amount_mark,
                    marks: gap_marks,
                    ranged: after_range(&text[..i]),
                    ..Group::default()
                });
                g.end = i + len;
                let (pair, k) = ascii_digits(c);
                for &d in &pair[..k] {
                    g.push(d);
                }
                run.open = true;
            }
            b'-' | b'.' | b'(' | b')' | b' ' | b',' | b'/' | b'_' | b'~' if run.open => {
                if let Some(mut g) = group.take() {
                    if !*police.get_or_insert_with(|| names_an_emergency(text))
                        && run.may_be_hour(&g)
                        && starts_time(&g, &text[i..])
                    {
                        (g.calendar, g.time) = (true, true);
                    }
                    let mut unit = if amounts == Some(true) {
                        amount_goes_on(&g, c, &text[i..], display)
                    } else {
                        Amount::None
                    };
                    // A currency sign across white space ends the amount before it
                    // (`"5 € 95 588"`: the bank's number after it is no price), but
                    // makes no price of digits that are no amount's (`"1 1 0 ¥ 10"`,
                    // `"95-588 ¥ 5"` show the number before it: QA 218 F4).
                    if unit == Amount::Sign
                        && c == b' '
                        && !g.amount_sep
                        && currency_sign(past_gap(&text[i..])).is_some()
                    {
                        unit = Amount::Ends;
                    }
                    let counts = count_at(&g, i);
                    dates.mark(text, &mut g, amounts == Some(true));
                    run.close(g, c == b')', unit, counts, &mut budget, &mut each);
                    if unit == Amount::Ends && c == b',' {
                        run = fresh();
                    }
                    gap_spaced = true;
                    gap_marked = false;
                    gap_blank = false;
                    gap_sep = 0;
                    gap_dashed = true;
                    gap_marks = 0;
                }
                gap_dashed &= joins_a_number(&text[i..]);
                gap_blank |= c == b' ';
                if c != b' ' {
                    gap_sep = c;
                    gap_marks = gap_marks.saturating_add(1);
                    // A full-width full stop too: a decimal typed so (`"0．5"`, QA 215).
                    gap_amount_mark = amount_mark(&text[i..]).is_some();
                }
                gap_spaced &= c == b' ' || any;
                plus_at = None;
            }
            // Any other mark between digits (`"[95]588"`, `"95|588"`, `"1。1。0"`,
            // `"138★1234★5678"`): a callee reads the digits across it. A '+' among
            // digits too (`"138+1234+5678"`, `"95 +588"`: QA 154, QA 157); the group after
            // it keeps it, for the pieces that start there (`"13812345678
            // +8613912345678"`; the reader does not take a piece across two numbers).
            _ if run.open
                && (c == glyph::PUNCT || c == glyph::CURRENCY || c.is_ascii_punctuation()) =>
            {
                // (Also after white space, when none glues it to digits after it: `"5 €
                // 95 588"`, QA 216; `"1234 ¥5"` is a price's.)
                currency_after = group.is_some()
                    || run.ended && !is_digit_glyph(next_drawn(text, i + len, false));
                if let Some(mut g) = group.take() {
                    if !*police.get_or_insert_with(|| names_an_emergency(text))
                        && run.may_be_hour(&g)
                        && starts_time(&g, &text[i..])
                    {
                        (g.calendar, g.time) = (true, true);
                    }
                    let unit = if amounts != Some(true) {
                        Amount::None
                    } else if rated(&run, &g, &text[i..]) {
                        Amount::Sign
                    } else {
                        quantity_after(&text[i..], true)
                    };
                    let counts = count_at(&g, i);
                    dates.mark(text, &mut g, amounts == Some(true));
                    run.close(g, c == b']', unit, counts, &mut budget, &mut each);
                    // Digits before a sign or a unit and digits after it are never one
                    // number (`"95%·400-800-1234"` made 95400, `"10%·110"` 10110: QA 213).
                    if matches!(unit, Amount::Sign | Amount::Quantity) {
                        run = fresh();
                    }
                    gap_spaced = true;
                    gap_marked = false;
                    gap_blank = false;
                    gap_marks = 0;
                }
                gap_sep = c;
                gap_dashed = false;
                gap_spaced &= any;
                gap_marked |= !any;
                gap_marks = gap_marks.saturating_add(1);
                gap_amount_mark = false;
                plus_at = (c == b'+').then_some(i);
                // Digits after a currency sign are a price of their own, never the end of
                // the number before it (`"400-800-1234 ¥5"` read 12345: QA 214).
                if c == glyph::CURRENCY || c == b'$' {
                    run = fresh();
                }
            }
            _ => {
                if let Some(mut g) = group.take() {
                    let unit = if amounts == Some(true) {
                        quantity_after(&text[i..], true)
                    } else {
                        Amount::None
                    };
                    let counts = count_at(&g, i);
                    dates.mark(text, &mut g, amounts == Some(true));
                    run.close(g, false, unit, counts, &mut budget, &mut each);
                }
                run = fresh();
                gap_blank = false;
                gap_dashed = true;
                gap_marks = 0;
                run.open = c == b'+';
                plus_at = run.open.then_some(i);
            }
        }
        after_currency =
            (c == b'$' || c == glyph::CURRENCY) && !currency_after || c == b' ' && after_currency;
        currency_after = false;
        before = c;
        i += len;
    }
    if let Some(mut g) = group.take() {
        dates.mark(text, &mut g, amounts == Some(true));
        run.close(g, false, Amount::None, None, &mut budget, &mut each);
    }
}

/// Whether the group `g`, ended by the mark `rest` starts with, is the hour of a time of
/// day (`9:00`, `09:30`; full-width `9：00` as Chinese input methods type it, QA 199
/// FB), as [`Run::note_calendar`] tells one. That flags a time's groups once its minutes
/// are read, which is too late for the pieces that end with its hour (QA 197 F2:
/// `"中国银行 95566 9:00-17:00"` showed 955669, and `"021-5055-1000 9:00-18:00"` a
/// Beijing number). A callee reads a time as one; not so a date written with `/` or
/// `-` after digits, which stays a date only once complete (QA 201: a lookahead for
/// those hid 110 in `"1 10/10"` and 10086 in `"1008/6/10"`).
fn starts_time(g: &Group, rest: &[u8]) -> bool {
    let (sep, len) = unit(rest);
    if rest.is_empty() || sep != b':' || !is_hour(g.n, g.value()) {
        return false;
    }
    let (mut v, mut n, mut at) = (0u32, 0usize, len);
    while at < rest.len() && n < 3 {
        let (c, l) = unit(&rest[at..]);
        if !c.is_ascii_digit() {
            break;
        }
        v = v * 10 + u32::from(c - b'0');
        n += 1;
        at += l;
    }
    is_minutes(n, v)
}

/// A group of `n` digits worth `v` that can be a time's hour, and one that can be its
/// minutes ([`starts_time`] reads them ahead in the text, [`Run::note_calendar`] in the
/// groups read).
fn is_hour(n: usize, v: u32) -> bool {
    n <= 2 && v <= 24
}

fn is_minutes(n: usize, v: u32) -> bool {
    n == 2 && v <= 59
}

/// A group of `n` digits worth `v` that can be a date's day or month, and one that can be
/// its year ([`Run::note_calendar`], [`Run::may_be_hour`], [`day_and_month`]).
fn is_day_or_month(n: usize, v: u32) -> bool {
    n <= 2 && (1..=31).contains(&v)
}

fn is_year(n: usize, v: u32) -> bool {
    n == 4 && (1900..=2099).contains(&v) || n == 2
}

/// Whether a character as [`unit`] reads it draws digits.
fn is_digit_glyph(c: u8) -> bool {
    matches!(c, b'0'..=b'9' | glyph::TWO_DIGITS..=0xb2)
}

/// The ASCII digits a digit glyph ([`is_digit_glyph`]) draws, and how many: one, or
/// two for a glyph of two ([`glyph::TWO_DIGITS`]).
fn ascii_digits(c: u8) -> ([u8; 2], usize) {
    if c >= glyph::TWO_DIGITS {
        let v = c - glyph::TWO_DIGITS;
        ([b'0' + v / 10, b'0' + v % 10], 2)
    } else {
        ([c, 0], 1)
    }
}

/// Whether `t` starts with a raised or lowered digit (superscripts `⁰¹²³⁴⁵⁶⁷⁸⁹`,
/// subscripts `₀`-`₉`), which a screen draws small, apart from full-size digits.
fn small_digit(t: &[u8]) -> bool {
    matches!(
        t,
        [0xc2, 0xb2 | 0xb3 | 0xb9, ..]
            | [0xe2, 0x81, 0xb0 | 0xb4..=0xb9, ..]
            | [0xe2, 0x82, 0x80..=0x89, ..]
    )
}

/// What may stand between digits a callee reads across: white space, a mark, a letter
/// drawn as a line.
fn is_filler(c: u8) -> bool {
    c == b' ' || c == glyph::LINE_LETTER || c == glyph::PUNCT || c.is_ascii_punctuation()
}

/// The next character drawn in `text` from `at` on, as [`unit`] reads it, past what
/// draws nothing and, with `fillers`, [`is_filler`]s; 0 at the end.
fn next_drawn(text: &[u8], mut at: usize, fillers: bool) -> u8 {
    while at < text.len() {
        let (c, len) = unit(&text[at..]);
        if c != INVISIBLE && !(fillers && is_filler(c)) {
            return c;
        }
        at += len;
    }
    0
}

/// Whether words or a sign around a piece make it a count, a place, a reference or a
/// measure ([`Amount::Quantity`], [`Amount::Sign`]): such a piece is offered marked,
/// and the reader keeps it only if it is an emergency number. Words and signs can be
/// added to any text, so none hides 110, 119, 120 or 122 (`"110个公安"`, `"Room
/// 110指挥中心"`, `"¥110 经侦"`: QA 33, 34, 36); being one group of a larger amount
/// (`"1,110"`, `"10.0.0.110"`) does.
///
/// `Marked`: a short code written across marks where only spaced ones are read (`"中国银行
/// 95-588"`, `"【95】588"`, `"100.86"`): the reader keeps it only if it is a number fraud
/// forges (an emergency, government, operator or 95/96 service number): a business name's
/// reference or range (`"No.3-21"`) is none of those, while a forged bank's number is
/// written so to slip past a reader of plain digits (QA 36 R2).
///
/// `Count { end, short, joined, marked }`: a piece that runs from digits before a mark or white space
/// into digits a unit makes a count of (`"95566 9折"`, `"95566，9折"`, `"010-5555-0100
/// 24小时"`, `"95566 9am-5pm"`, `"3F"`): a callee reads a number ending at `end` (the
/// text's offset where the group before the count ends), then the count, and no number
/// made of the two. `short`: the count's first group has one or two digits (hours,
/// floors, shares); `joined`: the piece's digits before the count are joined by marks to
/// each other and to the digits before them (`"1234"` in `"400-800-1234 9折"`). The
/// reader drops such a piece where it is a number it reads, that ends at `end`, and the
/// count (`"95566 9折"`); or where it starts inside that number, the count is short, and
/// it is `joined` (`"400-800-1234 9折"` shows no 12349: a callee reads the dashed number
/// whole), or a fixed line's with no trunk prefix or country code of its own cut from
/// another (`"010 5555 0100 24小时"` shows no `0555 5010024`). A mobile, a 400 or a
/// service number made of the end of another number and a count is what a callee reads
/// (`"1390 138 1234 5678号"`, `"01055550 100 86号"`: QA 205 H1), and so is one holding
/// the number before the count with digits in front (`"138 95566 123号"`: QA 206 H2) and
/// a fixed line whose area code shows (`"1390-010-8402 1110号"`: QA 206 H1). With no
/// number before it (`"138 1234 5678号"`) the piece is read as written; an emergency
/// number always. `marked`: otherwise [`Worded::Marked`] (a short code across marks
/// where only spaced ones are read), kept only if fraud forges it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Worded {
    No,
    Yes,
    Marked,
    Count {
        end: usize,
        short: bool,
        joined: bool,
        marked: bool,
    },
}

/// What the text around a digit group makes of it, where a number shown is judged.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Amount {
    #[default]
    None,
    /// A count, a place or a reference (a unit or a place word after it, an ordinal
    /// word before it, a street name after a house number): no piece under 5 digits is
    /// a number but an emergency one ([`Worded`]). Service numbers of five digits
    /// (`95588个人业务`, `Room 95588`) are still read: rooms and counts are short.
    Quantity,
    /// A decimal, a version or an address (`"110.5"`, `"10.0.0.110"`): no piece under 5
    /// digits is a number.
    Decimal,
    /// A price or an amount (a currency sign, a thousands group): no piece under a
    /// subscriber's 7 digits is a number.
    Price,
    /// A sign after the digits (`%`, `℃`, `㎡`, a currency): with a currency sign before
    /// them, what a sign makes of a lone group hides no emergency number ([`Worded`]):
    /// signs, like words, can be added to any name (`"¥110 经侦"`, `"110% 𝐏𝐨𝐥𝐢𝐜𝐞"`:
    /// QA 36).
    Sign,
    /// The amount ends there, and what ends it makes nothing of the digits: a currency
    /// sign set apart after them (whose sign it is: `"5 € 95 588"`, `"1 1 0 ¥ 10"`), a
    /// comma after a range of counts (`"3~5,120"`).
    Ends,
}

/// The length of the mark `rest` starts with when it is one an amount's groups are
/// written with: ASCII `,` and `.`, and a full-width full stop, a decimal point typed so
/// (`"0．5"`, QA 215); `None` for any other.
fn amount_mark(rest: &[u8]) -> Option<usize> {
    match rest {
        [b',' | b'.', ..] => Some(1),
        _ if rest.starts_with("\u{ff0e}".as_bytes()) => Some(3),
        _ => None,
    }
}

/// What the digit group `g`, ended by the separator `c` with `rest` (from `c` on)
/// after it, is part of: a thousands amount (`"110,000"`), a price; a decimal, a
/// version or an address (`"110.5"`, `"2.10.110"`, `"10.0.0.110"`), or a unit after it
/// (`"120 RMB"`), a quantity. Not a price, for a decimal: `"95588.1"` shows the bank's
/// number and an extension (QA 31).
fn amount_goes_on(g: &Group, c: u8, rest: &[u8], display: bool) -> Amount {
    // Past the mark: a sentence's `，` `、` is no thousands mark (one byte on, within it).
    let mark = amount_mark(rest).unwrap_or(1);
    let digit_at = |k: usize| rest.get(mark - 1 + k).is_some_and(u8::is_ascii_digit);
    // After a comma's group of other than three digits (a decimal comma's fraction, or
    // none), no thousands group or decimal goes on (`"0,5,120"`, `"9,99,110"`, `"€5,5.110"`
    // show the emergency number: QA 219 H1).
    if g.amount_sep && g.sep == b',' && g.n != 3 && matches!(c, b',' | b'.') {
        return Amount::None;
    }
    match c {
        b'.' if digit_at(1) => Amount::Decimal,
        // After a range or a product of counts (`"3~5,120"`, `"7x24,110"`), a thousands
        // group is a word of its own: the range's end is no amount's first group, and
        // no number runs across the comma (`"1-2,500元"` shows no 12500).
        b',' if g.n <= 3 && (1..4).all(digit_at) && !digit_at(4) => {
            if g.ranged {
                Amount::Ends
            } else {
                Amount::Price
            }
        }
        // A decimal comma (Europe writes cents so: `"110,00元"`, QA 36 R4): one or two
        // digits and no more, which no thousands group is (`"0,5,120"`: QA 215).
        // Its fraction ends there: no other mark and digits, no count or word but a
        // currency after it (`"110,8.8折"`, `"119,9折"`, `"110,9:00-18:00"`, `"110,2至3天"`
        // show the police's number: QA 217 E1).
        b',' if display
            && digit_at(1)
            && !(digit_at(2) && digit_at(3))
            && fraction_ends(&rest[mark + usize::from(digit_at(2)) + 1..]) =>
        {
            Amount::Decimal
        }
        b' ' => quantity_after(rest, false),
        _ => Amount::None,
    }
}

/// Currencies written after an amount (`"1,110元"`, `"120 RMB"`), Chinese ones glued
/// (Chinese writes no space): units of a price ([`quantity_after`]).
const CURRENCIES_AFTER_CJK: &[&str] = &[
    "元",
    "块",
    "圆",
    "角",
    "毛",
    "人民币",
    "美元",
    "港币",
    "港元",
    "欧元",
    "日元",
    "英镑",
];
const CURRENCIES: &[&str] = &[
    "rmb", "cny", "yuan", "usd", "hkd", "eur", "gbp", "jpy", "dollar", "dollars", "euro", "euros",
];

/// Words that introduce a telephone number: digits glued after one are the number
/// (`"Tel9-5588"`, `"Hotline1-10"`), no label's (`"Q1-2024"`: QA 218 F1, F7).
const PHONE_WORDS: &[&str] = &[
    "tel",
    "tele",
    "telephone",
    "telno",
    "phone",
    "phones",
    "phoneno",
    "ph",
    "hotline",
    "helpline",
    "call",
    "callus",
    "fax",
    "mobile",
    "mob",
    "cell",
    "contact",
    "dial",
    "telefon",
    "telefono",
    "tlf",
    "tél",
    "téléphone",
];

/// A letter a telephone word is written in: Latin, its full-width forms and the letters
/// drawn like it (Cyrillic, Greek), not a CJK character.
fn latin_letter(c: char) -> bool {
    c.is_alphabetic() && (c < '\u{2e80}' || ('\u{ff21}'..='\u{ff5a}').contains(&c))
}

/// `head` without what draws nothing at its end, then without the blanks too when
/// `blanks`.
fn trim_end(mut head: &[u8], blanks: bool) -> &[u8] {
    while let Some(c) =
        glyph::last_char(head).filter(|&c| glyph::draws_nothing(c) || blanks && glyph::blank(c))
    {
        head = &head[..head.len() - c.len_utf8()];
    }
    head
}

/// Whether `head` (the text before a digit group) ends with one of [`PHONE_WORDS`], read
/// as the callee reads words: full-width, look-alike letters and what draws nothing
/// inside it as well (`"ＴＥＬ"`, `"Теl"`, `"T<ZWSP>el"`: QA 220).
fn after_phone_word(head: &[u8]) -> bool {
    // (A CJK word before it is another word: `"银行Tel9-5588"`.)
    let mut start = head.len();
    while let Some(c) =
        glyph::last_char(&head[..start]).filter(|&c| latin_letter(c) || glyph::draws_nothing(c))
    {
        start -= c.len_utf8();
    }
    let mut buf = [0u8; 256];
    let word = glyph::letters(&head[start..], &mut buf);
    PHONE_WORDS.iter().any(|w| word == w.as_bytes())
}

/// Whether `head` (the text before a digit group) ends with the mark of a product of
/// counts glued to a digit (`"7x"`, `"3*"`), or of a range after the one or two digits
/// of its low end, a decimal's too (`"3~"`, `"5至"`, `"3-"`, `"3 – "`, `"1.5-"`: QA 218
/// F3, QA 220): a range of amounts starts with one (`"1,000~2,000"`).
fn after_range(head: &[u8]) -> bool {
    let h = trim_end(head, true);
    let product = [
        "x", "X", "\u{d7}", "*", "\u{2715}", "\u{2716}", "\u{2a2f}", "\u{ff0a}", "\u{ff58}",
        "\u{ff38}",
    ]
    .iter()
    .find_map(|m| h.strip_suffix(m.as_bytes()));
    if let Some(h) = product {
        return trim_end(h, false).last().is_some_and(u8::is_ascii_digit);
    }
    // Any dash or wave a screen draws (`-` `‐` `‑` `–` `—` `−` `－` `~` `～` `〜`), or a word.
    let Some(c) = glyph::last_char(h) else {
        return false;
    };
    let mut b = [0u8; 4];
    let h = if matches!(glyph::unit(c.encode_utf8(&mut b).as_bytes()).0, b'-' | b'~') {
        &h[..h.len() - c.len_utf8()]
    } else if let Some(h) = ["至", "到", "to"]
        .iter()
        .find_map(|w| h.strip_suffix(w.as_bytes()))
    {
        h
    } else {
        return false;
    };
    let mut h = trim_end(h, true);
    let digits = |t: &[u8]| t.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    // A decimal's fraction: the whole part before it is the low end.
    let fraction = digits(h);
    if fraction > 0
        && let Some(whole) = h[..h.len() - fraction].strip_suffix(b".")
        && digits(whole) > 0
    {
        h = whole;
    }
    let low = digits(h);
    (1..=2).contains(&low)
        && !h[..h.len() - low]
            .last()
            .is_some_and(|c| matches!(c, b'0'..=b'9' | b',' | b'.'))
}

/// Whether `rest`, after a decimal comma's one or two digits, lets them be a fraction:
/// the text ends, or white space, a currency, or a mark with no digit after it follows.
fn fraction_ends(rest: &[u8]) -> bool {
    if rest.is_empty() {
        return true;
    }
    let (c, len) = unit(rest);
    c == b' '
        || c == b'$'
        || c == glyph::CURRENCY
        || names_a_currency(rest)
        || (c == glyph::PUNCT || c.is_ascii_punctuation())
            && !is_digit_glyph(next_drawn(rest, len, false))
}

/// Words after digits that make them a quantity, an amount or a place besides a
/// currency ([`CURRENCIES_AFTER_CJK`]): a house or room number (`"人民路120号"`), a count
/// or a date (`"110次"`, `"2024年"`).
const UNITS_AFTER_CJK: &[&str] = &[
    "号", "室", "楼", "层", "栋", "幢", "座", "单元", "弄", "期", "路", "国道", "周年", "个", "件",
    "次", "天", "年", "月", "日", "岁", "米", "公里", "公斤", "千克", "斤", "分钟", "小时", "度",
    "℃", "万", "亿", "台", "套", "张", "瓶", "盒", "箱", "条", "只", "份", "位", "人", "名", "家",
    "集", "届", "折", "平米", "平方", "亩", "吨", "克", "升", "厘米", "毫米", "寸", "秒", "分",
    "周", "页", "章",
];
/// Signs after digits that make them a measure or a share ([`Amount::Sign`]).
const SIGNS_AFTER: &[&str] = &[
    "‰", "‱", "°", "℃", "℉", "㎡", "㎎", "㎏", "㎜", "㎝", "㎞", "㏄", "﹪", "٪",
];
/// Words that start with a unit but say something else (`"110号码"`, the number 110;
/// `"110人民警察"`, the people's police).
const NOT_UNITS_AFTER_CJK: &[&str] = &[
    "号码", "人工", "个人", "元旦", "人民", "天网", "分机", "分局", "路况",
];
const UNITS_AFTER: &[&str] = &[
    "pcs", "kg", "km", "min", "mins", "minute", "minutes", "sec", "secs", "hr", "hrs", "hour",
    "hours", "day", "days", "week", "weeks", "month", "months", "year", "years", "yrs", "people",
    "persons", "items", "stores", "shops", "units", "rooms", "seats", "sqm", "sqft", "m2", "ml",
    "mm", "cm", "gb", "mb", "tb", "hz", "khz", "mhz", "ghz", "v", "kv", "w", "kw", "mah",
];
/// The last word of an English street name (`"120 Main St"`, `"110 5th Ave"`): the
/// digits before the name are a house number.
const STREET_WORDS: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "av",
    "road",
    "rd",
    "boulevard",
    "blvd",
    "lane",
    "ln",
    "drive",
    "dr",
    "way",
    "place",
    "pl",
    "court",
    "ct",
    "square",
    "sq",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "terrace",
    "plaza",
    "crescent",
    "circle",
];
/// Street names of one word.
const STREETS: &[&str] = &["broadway"];
/// Words that name the police, a court or an emergency service: a text that holds one
/// reads a short code as that service's, whatever amount or unit is around it. Matched
/// in the text's letters as read ([`glyph::letters`]: no invisible characters, spaces,
/// marks, width or look-alike letters between), simplified and traditional. Single
/// characters where every word they start is one (`急`: 急救, 急诊, 紧急, 应急; `救`:
/// 救护, 救援, 救火).
const EMERGENCY_WORDS_CJK: &[&str] = &[
    "警",
    "急",
    "救",
    "公安",
    "派出所",
    "反诈",
    "反詐",
    "诈骗",
    "詐騙",
    "国安",
    "國安",
    "治安",
    "刑侦",
    "刑偵",
    "消防",
    "火警",
    "火灾",
    "火災",
    "灭火",
    "滅火",
    "法院",
    "法庭",
    "法官",
    "最高法",
    "中院",
    "检察",
    "檢察",
    "最高检",
    "最高檢",
    "司法",
    "报案",
    "報案",
    "医院",
    "醫院",
    "事故",
    "安全局",
    "政法",
    "纪委",
    "紀委",
    "监委",
    "監委",
    "卫健",
    "衛健",
    "巡逻",
    "巡邏",
];
/// English ones, in the letters as read (`"fire dept"` is `firedept`).
const EMERGENCY_WORDS: &[&str] = &[
    "police",
    "polizei",
    "emergency",
    "ambulance",
    "paramedic",
    "rescue",
    "hospital",
    "sheriff",
    "firefight",
    "firebrigade",
    "firedep",
    "firestation",
    "publicsecurity",
    "prosecut",
    "procurat",
    "antifraud",
    "interpol",
    "nypd",
    "lapd",
];
/// Short English ones, matched as whole words (`"cop"` is no `"copy"`'s).
const EMERGENCY_WORDS_WHOLE: &[&str] = &[
    "cop", "cops", "ems", "psb", "swat", "fbi", "court", "courts", "judge", "fire", "justice",
];

/// Whether `text` names the police, a court or an emergency service
/// ([`EMERGENCY_WORDS_CJK`]).
fn names_an_emergency(text: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    let letters = glyph::letters(text, &mut buf);
    if holds_any(letters, EMERGENCY_WORDS_CJK) || holds_any(letters, EMERGENCY_WORDS) {
        return true;
    }
    has_whole_word(text, EMERGENCY_WORDS_WHOLE)
}

/// Whether a word of `text` is one of `words`: runs of ASCII letters, marks and white
/// space between, case ignored (an invisible character inside a word is passed over).
fn has_whole_word(text: &[u8], words: &[&str]) -> bool {
    let mut word = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    loop {
        let (c, len) = if i < text.len() {
            glyph::unit(&text[i..])
        } else {
            (0, 1)
        };
        i += len;
        if c == glyph::INVISIBLE {
            continue;
        }
        if c.is_ascii_alphabetic() {
            if n < word.len() {
                word[n] = c.to_ascii_lowercase();
            }
            n += 1;
            continue;
        }
        if n > 0 && n <= word.len() && words.iter().any(|w| w.as_bytes() == &word[..n]) {
            return true;
        }
        n = 0;
        if i > text.len() {
            return false;
        }
    }
}

/// Words before digits that make them a place, a reference or an amount (`"Room
/// 110"`, `"第110"`, `"RMB 110"`). Not `No.`, `Ext` or `分机`: `"Tel No. 95588"` and
/// `"Ext 95588"` show a number.
const ORDINALS_BEFORE_CJK: &[&str] = &[
    "第", "编号", "单号", "工号", "房间", "订单", "座", "栋", "幢", "楼", "区", "单元", "层", "室",
];
/// Of [`ORDINALS_BEFORE_CJK`], the place words written after a count (`"3楼"`, `"5栋"`,
/// `"301室"`) as well as before a number (`"楼5"`, `"座1001"`).
const PLACES_AFTER_CJK: &[&str] = &["座", "栋", "幢", "楼", "区", "单元", "层", "室"];
const ORDINALS_BEFORE: &[&str] = &[
    "page", "pg", "chapter", "ch", "vol", "volume", "part", "pt", "step", "phase", "stage",
    "section", "room", "rm", "suite", "unit", "apt", "flat", "floor", "fl", "level", "order",
    "ref", "inv", "invoice", "ticket", "case", "box", "gate", "bldg", "block", "lot", "item",
    "model", "ver", "version", "office", "shop", "store", "hall", "booth", "desk", "door", "ward",
    "bed", "seat", "table", "route", "bus", "platform", "pier", "dock", "bay", "stand", "rmb",
    "cny", "usd", "hkd", "eur", "gbp", "jpy",
];

/// `rest` past a gap of up to three blanks of any kind (a space, a no-break or
/// ideographic space, a tab: QA 220): a word a run of spaces pushes off the screen is no
/// word the callee reads beside the digits (`"95588<30 spaces>RMB"`).
fn past_gap(mut rest: &[u8]) -> &[u8] {
    for _ in 0..3 {
        match unit(rest) {
            (b' ', len) if !rest.is_empty() => rest = &rest[len..],
            _ => break,
        }
    }
    rest
}

/// The length of the currency sign `rest` starts with: one drawn as a currency (`¥`,
/// `€`, `$`), or a country's letters before a dollar (`"HK$"`, `"US$"`: QA 220).
fn currency_sign(rest: &[u8]) -> Option<usize> {
    let (c, len) = unit(rest);
    if !rest.is_empty() && (c == b'$' || c == glyph::CURRENCY) {
        return Some(len);
    }
    let letters = rest.iter().take_while(|c| c.is_ascii_uppercase()).count();
    ((1..=3).contains(&letters) && rest.get(letters) == Some(&b'$')).then_some(letters + 1)
}

/// The length of the longest of `words` that `rest` starts with.
fn longest_word(rest: &[u8], words: &[&str]) -> Option<usize> {
    words
        .iter()
        .filter(|w| rest.starts_with(w.as_bytes()))
        .map(|w| w.len())
        .max()
}

/// Whether `rest` (from the character after a number's digits on) starts with a currency
/// word (a price's unit, [`CURRENCIES`]), glued or not: `"元"` but not `"元旦"`.
fn names_a_currency(rest: &[u8]) -> bool {
    let word = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let word = &rest[..word];
    longest_word(rest, CURRENCIES_AFTER_CJK) > longest_word(rest, NOT_UNITS_AFTER_CJK)
        || CURRENCIES
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// Whether `rest` (from the character after a number's digits on) starts with a unit or
/// a currency ([`UNITS_AFTER`], [`names_a_currency`]), past white space; `glued`: no
/// white space came between (English ordinals, `"110th"`, are read only so).
fn quantity_after(rest: &[u8], glued: bool) -> Amount {
    let rest = past_gap(rest);
    let (c, _) = glyph::unit(rest);
    let sign = currency_sign(rest);
    // A currency sign set apart from the digits before it and glued to digits after it
    // is the sign of the price after it (`"1 1 0 €10"`, `"95-588 ¥5"` hid the number
    // before it: QA 217 E2).
    if let Some(len) = sign
        && !glued
        && is_digit_glyph(next_drawn(rest, len, false))
    {
        return Amount::None;
    }
    // A sign, not a word (`"110%"`, `"110％"`, `"120°C"`, `"120℃"`, `"120㎡"`, `"110$"`,
    // `"5 HK$"`).
    if sign.is_some() || c == b'%' || SIGNS_AFTER.iter().any(|w| rest.starts_with(w.as_bytes())) {
        return Amount::Sign;
    }
    if !glued && street_after(rest) {
        return Amount::Quantity;
    }
    if names_a_currency(rest) {
        return Amount::Quantity;
    }
    // The longest word read wins: `"人民币"` is a currency, `"人民警察"` no unit.
    if longest_word(rest, UNITS_AFTER_CJK) > longest_word(rest, NOT_UNITS_AFTER_CJK) {
        return Amount::Quantity;
    }
    let word = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let word = &rest[..word];
    let is = |w: &&str| word.eq_ignore_ascii_case(w.as_bytes());
    if UNITS_AFTER.iter().any(is) || glued && ["st", "nd", "rd", "th"].iter().any(is) {
        Amount::Quantity
    } else {
        Amount::None
    }
}

/// Whether `rest` (from the character after a digit group on; `glued`: no white space
/// came between) makes the digits before it a count, an hour, a floor or a share: a
/// unit or a sign ([`quantity_after`]) or a word said only of counts and times of day,
/// glued or after one space (`"9点"`, `"9时"`, `"9am"`, `"9 pm"`, `"9 a.m."`, `"24h"`,
/// `"24 h"`), or a letter that says so glued to the digits (`"3F"`, `"5G"`, `"4S"`).
/// Read wherever digits are read: a callee reads no number in `"95566 9折"` but the
/// bank's.
fn counts_after(rest: &[u8], glued: bool) -> bool {
    if matches!(quantity_after(rest, glued), Amount::Quantity | Amount::Sign) {
        return true;
    }
    let rest = past_gap(rest);
    if longest_word(rest, COUNTS_AFTER_CJK) > longest_word(rest, NOT_COUNTS_AFTER_CJK) {
        return true;
    }
    let word = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let (word, after) = rest.split_at(word);
    let is = |w: &&str| word.eq_ignore_ascii_case(w.as_bytes());
    // `a.m.`, `p.m.` too.
    let dotted = |w: &[u8]| {
        rest.len() >= 4
            && rest[..4].eq_ignore_ascii_case(w)
            && !rest[4..].first().is_some_and(u8::is_ascii_alphanumeric)
    };
    let bare = !after.first().is_some_and(u8::is_ascii_digit);
    ["am", "pm", "h"].iter().any(is)
        || glued && bare && ["f", "g", "s"].iter().any(is)
        || dotted(b"a.m.")
        || dotted(b"p.m.")
}

/// Whether a digit group starts a count: [`counts_after`] of `rest` (from the character
/// after the group on), or of what follows a range, a decimal or a product of counts the
/// group starts (`"9-17点"`, `"9~17点"`, `"9至17点"`, `"9.5折"`, `"0.5%"`, `"9-5pm"`,
/// `"3/F"`), or a count written with no unit (`"7*24"`, `"7 x 24"`, `"24/7"`): all of
/// them a callee reads as one count. The length of `rest` the count's other digits
/// take, up to its unit.
fn count_follows(rest: &[u8]) -> Option<usize> {
    let spaced = |r: &[u8]| r.first() == Some(&b' ') || r.starts_with("\u{3000}".as_bytes());
    if counts_after(rest, !spaced(rest)) {
        return Some(0);
    }
    let digits = |r: &[u8]| r.iter().take_while(|c| c.is_ascii_digit()).count();
    let ends = |r: &[u8]| !r.first().is_some_and(|c| c.is_ascii_alphanumeric());
    let space = |r: &'_ [u8]| -> usize { usize::from(r.first() == Some(&b' ')) };
    let mut at = 0;
    for step in 0..3 {
        let r = &rest[at..];
        let s = space(r);
        let m = RANGE_MARKS
            .iter()
            .find(|m| r[s..].starts_with(m.as_bytes()))?;
        // White space around a word or a sign (`"9 至 17点"`, `"7 x 24"`), not around a
        // mark that also ends a number in a list (`"... 4567 / 3F"`, `"... 4567 - 3楼"`).
        let spaced_mark = matches!(*m, "至" | "到" | "x" | "X" | "×" | "~" | "～" | "〜");
        if s > 0 && !spaced_mark {
            return None;
        }
        let after = s + m.len();
        let after = after + if s > 0 { space(&r[after..]) } else { 0 };
        let n = digits(&r[after..]);
        if n == 0 {
            // A floor written `3/F`, a count with its unit after a dash (`"24-hour"`).
            return (step == 0 && matches!(*m, "/" | "-") && counts_after(&r[after..], true))
                .then_some(after);
        }
        at += after + n;
        // Round the clock: `7x24`, `7*24`, `24x7`, `24/7`, `7/24`.
        let round = matches!(&r[after..after + n], b"24" | b"7");
        if step == 0 && round && matches!(*m, "x" | "X" | "×" | "*" | "/") && ends(&rest[at..]) {
            return Some(at);
        }
        if counts_after(&rest[at..], !spaced(&rest[at..])) {
            return Some(at);
        }
    }
    None
}

/// Whether the group `g`, with `head` before it and `rest` after it, starts a day and a
/// month (`"5/1"`, `"12/31"`, and with a year after them, `"12/31/2025"`): read as a
/// count is, no digits of the number before it run on into it (`"Acme 400-800-1234
/// 5/1休息"` read 12345: QA 217 F1). The length of the text after `g` the date takes.
fn day_and_month(g: &Group, text: &[u8]) -> Option<usize> {
    // Written with any dash or dot too (`"5-1休息"`, `"5.1休息"`, `"5–1休息"`: QA 218 F8,
    // QA 220), set apart from the digits before it or joined to a number's last group
    // (`"400-800-1234—3-1"`), not to a short code's group (`"9-5-5-8-8"`), nor going on
    // with the same mark (`"5-5-8"`).
    if g.dashed {
        let head = &text[..g.start];
        let mut h = glyph::last_char(head).map_or(head, |c| &head[..head.len() - c.len_utf8()]);
        let mut digits = 0;
        while let Some(c) = glyph::last_char(h).filter(|c| c.is_numeric()) {
            h = &h[..h.len() - c.len_utf8()];
            digits += 1;
        }
        if digits < 3 {
            return None;
        }
    }
    // (A '+' before it is the group's, not the date's.)
    let start = if g.plus {
        g.start + unit(text.get(g.start..)?).1
    } else {
        g.start
    };
    let (len, ..) = date_at(text.get(start..)?)?;
    len.checked_sub(g.end - start)
}

/// Whether `g`, the run's group before it and the star `rest` starts with make a
/// rating (`"4.9★"`): a sign after its amount, so that no digits after it are read
/// with its own (`"Acme 4.9★ 5000+门店"` showed 95000, a 95 number: QA 221). Only a
/// rating a shop shows (3.0 to 5.0: `"9.5★ 588"` shows the bank's number, `"1.1★ 0"`
/// the police's: QA 223), and no digit glued after the star: a code written with stars
/// between its digits is read across them (`"1★1★0"`, `"1.1★0"`, `"138★1234★5678"`).
fn rated(run: &Run, g: &Group, rest: &[u8]) -> bool {
    let whole = &run.groups[run.len.wrapping_sub(1) % EMBEDDED_MAX_DIGITS];
    run.len > 0
        && whole.n == 1
        && (3..=5).contains(&whole.value())
        && (whole.value() < 5 || g.value() == 0)
        && g.n == 1
        && g.sep == b'.'
        && g.amount_sep
        && match glyph::decode(rest) {
            Some(('★' | '☆' | '⭐' | '✩' | '✰', len)) => {
                !is_digit_glyph(next_drawn(rest, len, false))
            }
            _ => false,
        }
}

/// The lists and ranges of dates of a text: [`DateLists::mark`] flags a group a date's
/// where it is part of a list or a range of dates (`"5-1、10-1休息"`, a holiday notice;
/// `"5.1-5.5、10.1-10.7放假"`, `"11-4至11-9停业"`), or of a date with its year
/// (`"截止1-20-2026"`), which a callee reads as dates: read across the list's
/// marks, their digits showed 110 or a mobile's and refused the enterprise's own calls
/// (QA 221-223). Only where a number shown is judged (`judged`: not in a text that names
/// the police, `"公安 5-1、1-10"`), where the text says they are dates and asks no one to
/// dial ([`dates_told`]: `"Tel: 9-5、5-11"`, `"平安银行 9-5、5-11"` show the bank's
/// number; not asked of a date with a year of four digits), and for a list that starts
/// an item and has no digits after it ([`starts_an_item`], [`date_list_at`]).
#[derive(Default)]
struct DateLists {
    /// Where the list last found ends.
    until: usize,
    /// [`dates_told`] of the text, once asked.
    told: Option<bool>,
}

impl DateLists {
    fn mark(&mut self, text: &[u8], g: &mut Group, judged: bool) {
        if !judged {
            return;
        }
        if g.start >= self.until
            && g.n <= 2
            && starts_an_item(&text[..g.start])
            && let Some((len, words)) = date_list_at(&text[g.start..])
            && (!words || *self.told.get_or_insert_with(|| dates_told(text)))
        {
            self.until = g.start + len;
        }
        g.calendar |= g.start < self.until;
    }
}

/// Words that say the digits beside them are dates: a holiday, opening days, a deadline,
/// an offer's days.
const DATE_WORDS_CJK: &[&str] = &[
    "休", "假", "节", "節", "营业", "營業", "停业", "停業", "歇业", "歇業", "闭店", "閉店", "闭馆",
    "閉館", "开业", "開業", "开放", "開放", "截止", "到期", "有效", "通知", "活动", "活動", "促销",
    "促銷", "期间", "期間", "日期", "档期", "檔期",
];
const DATE_WORDS: &[&str] = &[
    "closed", "close", "closing", "holiday", "holidays", "open", "opens", "opening", "until",
    "till", "sale", "off", "date", "dates", "valid", "event", "vacation", "break", "deadline",
    "due", "from",
];
/// Words that ask a callee to dial, or name those whose numbers fraud forges (a bank,
/// an insurer, the government): there digits read as a number, dates or not.
const DIAL_WORDS_CJK: &[&str] = &[
    "电话",
    "電話",
    "热线",
    "熱線",
    "拨",
    "撥",
    "请打",
    "請打",
    "致电",
    "致電",
    "来电",
    "來電",
    "联系",
    "聯繫",
    "联络",
    "聯絡",
    "号码",
    "號碼",
    "微信",
    "客服",
    "咨询",
    "諮詢",
    "服务",
    "服務",
    "银行",
    "銀行",
    "平安",
    "广发",
    "廣發",
    "保险",
    "保險",
    "人寿",
    "人壽",
    "国寿",
    "國壽",
    "证券",
    "證券",
    "政务",
    "政務",
    "政府",
    "税务",
    "稅務",
    "社保",
    "医保",
    "醫保",
    "公积金",
    "公積金",
    "铁路",
    "鐵路",
    "国家安全",
    "國家安全",
    "邮政",
    "郵政",
];
const DIAL_WORDS: &[&str] = &[
    "bank",
    "insurance",
    "service",
    "hotline",
    "helpline",
    "whatsapp",
    "wechat",
    "line",
    "icbc",
    "gongan",
];
/// Signs that ask a callee to dial, or name the police or an ambulance.
const DIAL_SIGNS: &[&str] = &[
    "☎", "📞", "✆", "📱", "📲", "☏", "🚓", "🚔", "🚑", "🚒", "🚨",
];

/// Whether `text` says its dates are dates: a date word ([`DATE_WORDS_CJK`],
/// [`DATE_WORDS`]) and nothing that asks to dial ([`DIAL_WORDS_CJK`], [`DIAL_WORDS`],
/// [`PHONE_WORDS`], [`DIAL_SIGNS`]).
fn dates_told(text: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    let letters = glyph::letters(text, &mut buf);
    (holds_any(letters, DATE_WORDS_CJK) || has_whole_word(text, DATE_WORDS))
        && !holds_any(letters, DIAL_WORDS_CJK)
        && !holds_any(text, DIAL_SIGNS)
        && !has_dial_word(text)
}

/// Whether one of `words` stands anywhere in `t`.
fn holds_any(t: &[u8], words: &[&str]) -> bool {
    words
        .iter()
        .any(|w| memchr::memmem::find(t, w.as_bytes()).is_some())
}

/// Whether a word of `text` in Latin letters (full-width and look-alike ones too, read
/// through [`glyph::letters`]: `"Теl"`, `"ＴＥＬ"`, `"Tél"`) is a telephone word or a dial
/// word ([`PHONE_WORDS`], [`DIAL_WORDS`]).
fn has_dial_word(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        let start = i;
        while let Some((c, len)) = glyph::decode(&text[i..]) {
            if !(latin_letter(c) || glyph::draws_nothing(c)) {
                break;
            }
            i += len;
        }
        if i > start {
            let mut buf = [0u8; 256];
            let word = glyph::letters(&text[start..i], &mut buf);
            if PHONE_WORDS
                .iter()
                .chain(DIAL_WORDS)
                .any(|w| word == w.as_bytes())
            {
                return true;
            }
        } else {
            i += glyph::decode(&text[i..]).map_or(1, |(_, len)| len);
        }
    }
    false
}

/// Whether a word starts after `head`: at the start, after white space, a list's mark, an
/// opening bracket, a Chinese character (`"休息日5-1、10-1"`), or a colon or a middle dot
/// after a word (`"休息："`, `"星巴克·10-1"`; not a time's, `"1:5-1"`); and no short
/// group of digits stands before it across white space or a list's mark (`"9 5-5、8-8"`
/// shows the bank's number: QA 223), while a whole number may (`"400-800-1234
/// 5.1-5.5放假"`).
fn starts_an_item(head: &[u8]) -> bool {
    // (Past what draws nothing: `"¥<ZWSP>5.1,1–20"` is a price's.)
    let head = trim_end(head, false);
    let Some(c) = glyph::last_char(head) else {
        return true;
    };
    let after_digit = || {
        let h = &head[..head.len() - c.len_utf8()];
        glyph::last_char(h).is_some_and(|d| d.is_numeric())
    };
    match c {
        ':' | '：' | '·' | '・' => !after_digit(),
        '(' | '（' | '【' | '[' | '「' | '《' => !short_digits_before(head),
        c if glyph::blank(c) || list_mark(c) => !short_digits_before(head),
        c => {
            matches!(c as u32, 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0x20000..=0x3134f)
        }
    }
}

/// Whether `head` ends, past white space, brackets and marks (`"9 + 5-5、8-8"`, `"9(5-5、
/// 8-8)"`: QA 224), with digits of fewer than a subscriber's number (seven): a code's
/// first group, not a number before a list.
fn short_digits_before(mut head: &[u8]) -> bool {
    while let Some(c) = glyph::last_char(head).filter(|&c| !c.is_alphanumeric()) {
        head = &head[..head.len() - c.len_utf8()];
    }
    let mut digits = 0;
    while let Some(c) = glyph::last_char(head)
        .filter(|&c| c.is_numeric() || glyph::blank(c) || "-.()（）–—－．‐‑".contains(c))
    {
        digits += usize::from(c.is_numeric());
        head = &head[..head.len() - c.len_utf8()];
        if digits >= 7 {
            return false;
        }
    }
    digits > 0
}

/// The marks that set the items of a list apart.
fn list_mark(c: char) -> bool {
    matches!(c, '、' | '，' | ',' | ';' | '；')
}

/// The length of a list or a range of two dates or more at the start of `t`, or of one
/// date with its year: days and months ([`date_at`]) joined by a list's mark or a
/// range's (`-` between dates written with another mark, `–`, `—`, `~`, `至`, `到`) or a
/// word (`和`, `及`, `与`, `&`, `and`, `to`), white space beside it or not; `None` for one
/// date alone, or where digits come after the last (past white space and marks). With
/// it, whether words must say they are dates ([`dates_told`]): all but one date with a
/// year of four digits, which no one reads as anything else (`"1-20-2026"`).
fn date_list_at(t: &[u8]) -> Option<(usize, bool)> {
    let (mut end, mut sep, year) = date_at(t)?;
    let mut dates = 1;
    while dates < 16 {
        let rest = &t[end..];
        let k = blanks(rest);
        let Some((c, len)) = glyph::decode(&rest[k..]) else {
            break;
        };
        let range =
            matches!(c, '–' | '—' | '~' | '～' | '〜' | '至' | '到') || c == '-' && sep != b'-';
        let word = ["和", "及", "与", "與", "&", "and ", "to "]
            .iter()
            .find(|w| rest[k..].starts_with(w.as_bytes()))
            .map(|w| w.len());
        let len = match word {
            Some(l) => l,
            None if list_mark(c) || range => len,
            None => break,
        };
        let at = k + len + blanks(&rest[k + len..]);
        let Some((l, s, _)) = date_at(&rest[at..]) else {
            break;
        };
        (end, sep, dates) = (end + at + l, s, dates + 1);
    }
    ((dates >= 2 || year > 0) && !is_digit_glyph(next_drawn(&t[end..], 0, true)))
        .then_some((end, dates >= 2 || year < 4))
}

/// The length of the white space `t` starts with (and of what draws nothing).
fn blanks(t: &[u8]) -> usize {
    let mut k = 0;
    while let Some((_, len)) = glyph::decode(&t[k..]).filter(|&(c, _)| glyph::blank(c)) {
        k += len;
    }
    k
}

/// A day and a month at the start of `t` (`"5-1"`, `"10.1"`, `"12/31"`, `"5–1"`), in
/// ASCII or full-width digits ([`small_number`]), and maybe a year after the same mark
/// (`"12/31/2025"`, `"31.12.2025"`: QA 221): its length, the mark between them and the
/// year's digits (0 for none). `None` where the same mark goes on to digits that are no
/// year (`"5-5-8"`, and `"12-3-45"`: a year of two digits only after `/` or `.`), or a
/// digit is drawn right after it past what draws nothing; a year of two digits with
/// digits after it past white space and marks is none either (`"7·24·95 588"` shows the
/// bank's number).
fn date_at(t: &[u8]) -> Option<(usize, u8, usize)> {
    let ((a, na), la) = small_number(t)?;
    let (sep, l) = unit(&t[la..]);
    if !matches!(sep, b'-' | b'.' | b'/') {
        return None;
    }
    let mark = &t[la..la + l];
    let ((b, nb), lb) = small_number(&t[la + l..])?;
    let end = la + l + lb;
    if !(is_day_or_month(na, a) && is_day_or_month(nb, b))
        || is_digit_glyph(next_drawn(t, end, false))
    {
        return None;
    }
    // The same mark again: any dot, but only the same dash (`"12-27—12-31"` is a range).
    let (again, l) = unit(&t[end..]);
    if again != sep || sep == b'-' && !t[end..].starts_with(mark) {
        return Some((end, sep, 0));
    }
    let y_at = end + l;
    match small_number(&t[y_at..]) {
        Some(((y, n), ly))
            if is_year(n, y)
                && (n == 4 || sep != b'-')
                && !(unit(&t[y_at + ly..]).0 == sep
                    && is_digit_glyph(next_drawn(
                        t,
                        y_at + ly + unit(&t[y_at + ly..]).1,
                        false,
                    )))
                && !is_digit_glyph(next_drawn(t, y_at + ly, n == 2)) =>
        {
            Some((y_at + ly, sep, n))
        }
        Some(_) => None,
        // No digits after the mark, or more than four: a number of its own after the
        // date (`"7·24·95588"` shows the bank's number).
        None => Some((end, sep, 0)),
    }
}

/// The value and the count of the digits `t` starts with (ASCII or full-width, as dates
/// are typed; up to four), and their length; `None` where it starts with none, goes on
/// past four, or goes on in digits of another style (`"¹1-10"`, `"①9—6"`: QA 223).
fn small_number(t: &[u8]) -> Option<((u32, usize), usize)> {
    let (mut v, mut n, mut at) = (0u32, 0usize, 0usize);
    while at < t.len() {
        let (d, len) = match t[at..] {
            [d @ b'0'..=b'9', ..] => (d - b'0', 1),
            [0xef, 0xbc, d @ 0x90..=0x99, ..] => (d - 0x90, 3),
            _ if is_digit_glyph(unit(&t[at..]).0) => return None,
            _ => break,
        };
        v = v * 10 + u32::from(d);
        n += 1;
        if n > 4 {
            return None;
        }
        at += len;
    }
    (n > 0).then_some(((v, n), at))
}

/// Marks that join the numbers of one count: a range (`9-17`, `9~17`, `9至17`), a
/// decimal (`9.5`), a product (`7x24`).
const RANGE_MARKS: &[&str] = &[
    "-", "~", "～", "〜", "–", "—", "至", "到", ".", "/", "x", "X", "×", "*",
];

/// Words after digits said of hours and counts that are no unit of an amount
/// ([`UNITS_AFTER_CJK`] reads those): `"9点-17点"`, `"9时"`, `"7×24"` (a multiplication
/// sign), `"3折"` is a unit already.
const COUNTS_AFTER_CJK: &[&str] = &[
    "点", "時", "时", "×", "倍", "點", "鐘", "小時", "號", "樓", "層", "個", "萬", "億", "週",
    "星", "对", "對", "張", "條", "臺", "台", "分鐘", "店",
];
/// Words that start with one of those and say something else.
const NOT_COUNTS_AFTER_CJK: &[&str] = &["点击", "点评", "时代", "时尚", "时间"];

/// Whether `rest` (after a house number and its space) names a street: a one-word
/// street, or up to three words of a name (`"5th"` among them) ending with a street
/// word ([`STREET_WORDS`], maybe with a '.').
fn street_after(rest: &[u8]) -> bool {
    let mut words = rest.split(|&c| c == b' ');
    let is = |list: &[&str], w: &[u8]| {
        let w = w.strip_suffix(b".").unwrap_or(w);
        list.iter().any(|s| w.eq_ignore_ascii_case(s.as_bytes()))
    };
    let Some(first) = words.next() else {
        return false;
    };
    if is(STREETS, first) {
        return true;
    }
    let name = |w: &[u8]| {
        let letters = w.iter().skip_while(|c| c.is_ascii_digit()).count();
        !w.is_empty() && letters > 0 && w[w.len() - letters..].iter().all(u8::is_ascii_alphabetic)
    };
    if !name(first) || is(STREET_WORDS, first) {
        return false;
    }
    for w in words.take(3) {
        if is(STREET_WORDS, w) {
            return true;
        }
        if !name(w) {
            return false;
        }
    }
    false
}

/// Whether `head` (the text before a run of digits) ends with an ordinal word or a
/// currency ([`ORDINALS_BEFORE`]), past white space and a '.', ':' or '#' after it.
fn quantity_before(head: &[u8]) -> bool {
    // Any white space or what draws nothing (`"Room\u{a0}3"`, `"Room\u{200b}3"`: QA 218
    // F2).
    fn trim(mut h: &[u8]) -> &[u8] {
        while let Some(c) = glyph::last_char(h).filter(|&c| glyph::blank(c)) {
            h = &h[..h.len() - c.len_utf8()];
        }
        h
    }
    let spaced = trim(head).len() < head.len();
    let mut head = trim(head);
    if let Some(w) = ORDINALS_BEFORE_CJK
        .iter()
        .find(|w| head.ends_with(w.as_bytes()))
    {
        // A place word is written after the count or the letter it names (`"3楼"`,
        // `"5号楼"`, `"B座"`, `"三楼"`: QA 213 H2, QA 214), so digits set apart after it
        // are another word (`"3楼 95 588"` shows the bank's number); glued, a room there
        // (`"3楼301"`, `"B座1203"`).
        return !(spaced && PLACES_AFTER_CJK.contains(w));
    }
    let mut marked = false;
    if let Some(h) = head
        .strip_suffix(b".")
        .or_else(|| head.strip_suffix(b":"))
        .or_else(|| head.strip_suffix(b"#"))
    {
        head = trim(h);
        marked = true;
    }
    let word = head
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let (before, word) = head.split_at(head.len() - word);
    // As for the place words above: `"3rd Floor 95 588"` and `"3rd Floor: 95 588"`
    // name the floor, and digits set apart after it are another word (QA 213 H2, QA
    // 215); `"Floor 3"` is a floor's number.
    let before = trim(before);
    // A currency word after an amount is that amount's (`"5 RMB 95 588"`: QA 215).
    let ends_in_digit = glyph::last_char(before).is_some_and(char::is_numeric);
    if ends_in_digit
        && (spaced || marked)
        && CURRENCIES
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
    {
        return false;
    }
    let floor_of = (spaced || marked)
        && ["floor", "fl", "level"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
        && before.len() >= 3
        && before[before.len() - 3].is_ascii_digit()
        && ["st", "nd", "rd", "th"]
            .iter()
            .any(|s| before[before.len() - 2..].eq_ignore_ascii_case(s.as_bytes()));
    !floor_of
        && ORDINALS_BEFORE
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// Which short codes of several digit groups a display name shows
/// ([`embedded_numbers`]): where a misreading refuses a call (an enterprise trunk judges
/// every number shown), those written with spaces (`"95 588"`), since dates, prices and
/// versions are written with the other separators, and across other marks only the
/// numbers fraud forges ([`Worded::Marked`]); where it costs a display
/// name (the gateways delete presented numbers), those written with any separator as
/// well (`"95-588"`, `"1-1-0"`, `"(95)588"`), which a callee reads as the bank's or the
/// police's number all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortCodes {
    SpacedOnly,
    AnySeparator,
}

/// One group of digits in a run, as written (its digits, at most a piece's worth).
#[derive(Clone, Copy, Default)]
struct Group {
    start: usize,
    end: usize,
    digits: [u8; EMBEDDED_MAX_DIGITS],
    n: usize,
    /// After a '+': the run's first group, or one a '+' joins to the group before it.
    plus: bool,
    after_paren: bool,
    /// Right after a Latin letter (`"Q1"`, `"v2"`): a label's digit, not a number's.
    lettered: bool,
    /// Joined to the group before it by white space only.
    spaced: bool,
    /// White space (and maybe marks) between it and the group before it: a new word.
    blank: bool,
    /// Joined to the group before it across a mark numbers are not written with
    /// (`|`, `:`, brackets), where only spaced short codes are read.
    marked: bool,
    /// `(0)` after a '+' or `00` country code: the trunk prefix E.123 shows, dialled
    /// nowhere.
    trunk_zero: bool,
    /// The last mark between the group before it and this one (0: white space only).
    sep: u8,
    /// Joined to the group before it by dashes and dots only: one number's groups
    /// (`"400-800-1234"`), where brackets, colons and white space start another item.
    dashed: bool,
    /// Joined to the group before it by one ASCII `,` or `.` and nothing else: the only
    /// way an amount goes on (`"1,110.00"`); a sentence's `，` `、` `。` or a bullet, or
    /// a symbol beside the mark, ends it (`"0.5，110"`, `"4.9★,110"`: QA 214).
    amount_sep: bool,
    /// How many marks stand between it and the group before it.
    marks: u8,
    /// Right after a range's or a product's mark glued to digits (`"3~5"`, `"7x24"`): the
    /// end of a count, which no thousands group goes on from (`"7x24,110"`, `"3~5,120"`:
    /// QA 217 E5).
    ranged: bool,
    /// Part of a date or a time of day (`2024-01-10`, `10/01`, `09:00`).
    calendar: bool,
    /// Part of a time of day: what hides digits where they are read across any mark.
    time: bool,
    /// Part of a quantity or a place ([`Amount::Quantity`]) when it was read: no short
    /// code starts with it (`"Page 1 2024"`, `"Chapter 1 10"`).
    quantity: bool,
}

impl Group {
    /// Its value, for a group of a few digits.
    fn value(&self) -> u32 {
        self.digits[..self.n.min(4)]
            .iter()
            .fold(0, |v, &d| v * 10 + u32::from(d - b'0'))
    }
    fn push(&mut self, d: u8) {
        if let Some(slot) = self.digits.get_mut(self.n) {
            *slot = d;
        }
        self.n += 1;
    }
    /// The digits it adds to a piece that spans it.
    fn digits(&self) -> &[u8] {
        if self.trunk_zero {
            &[]
        } else {
            &self.digits[..self.n.min(EMBEDDED_MAX_DIGITS)]
        }
    }
}

/// The groups of the run being read: the last EMBEDDED_MAX_DIGITS of them are all a
/// piece can span, since each holds a digit.
#[derive(Default)]
struct Run {
    groups: [Group; EMBEDDED_MAX_DIGITS],
    len: usize,
    open: bool,
    /// A price: no piece of it shorter than a subscriber's number is offered.
    price: bool,
    /// A count, a place or a reference: pieces under 5 digits are offered marked.
    quantity: bool,
    /// A decimal, a version, an address: no piece under 5 digits is offered.
    decimal: bool,
    /// A currency sign before it, or a sign after its group ([`Amount::Sign`]).
    signed: bool,
    /// Its last group had a unit or a sign after it: the amount ends there, and digits
    /// after a `,` or `.` are another word's (`"5%，110"`, `"5℃。119"`: QA 213 H1).
    ended: bool,
    /// Its last group is a decimal's fraction: no thousands group comes after it
    /// (`"0.5,110"`: QA 214).
    fraction: bool,
    /// What the text after its last group made of it: after a `,`, only a thousands
    /// group or a decimal comma goes on ([`amount_goes_on`]: `"¥5,95588"` is a price
    /// and the bank's number, QA 214).
    last_unit: Amount,
    /// Dates and times of day show no number (where a number shown is judged).
    dates: bool,
    /// Text for a person to read (a display name), not a dial string.
    display: bool,
    /// The count being read ([`count_follows`]): the index in the run of its first
    /// group, which white space or a mark sets apart, and the offset in the text where
    /// its digits end.
    count: Option<(usize, usize)>,
}

impl Run {
    /// Whether `g`, about to be added, may be a time's hour: not the number after an
    /// ordinal word (`"Room 3:12 345"`, `"第5：12 345"`), nor the last part of a date
    /// (`"2025/6/18：12-345"`, `"6/18:12 345"`: QA 217 E4), as [`Run::note_calendar`]
    /// reads one.
    fn may_be_hour(&self, g: &Group) -> bool {
        // Where dates show digits (the gateways), a time still keeps digits from running
        // on into it (`"2025-06-18：12-345"` shows 12345, no 2025061812: QA 219 W3).
        if !self.dates {
            return true;
        }
        if self.len == 0 {
            return !self.quantity;
        }
        let at = |k: usize| &self.groups[(self.len - 1 - k) % EMBEDDED_MAX_DIGITS];
        let b = at(0);
        if g.blank || g.sep == 0 || b.time {
            return true;
        }
        let day_or_month = |x: &Group| is_day_or_month(x.n, x.value());
        let year = |x: &Group| is_year(x.n, x.value());
        let dated = day_or_month(b)
            && day_or_month(g)
            && (g.sep == b'/'
                || matches!(g.sep, b'-' | b'.')
                    && b.sep == g.sep
                    && !b.blank
                    && self.len >= 2
                    && year(at(1)));
        !dated
    }

    /// Flags the last groups when they make a date (`2024-01-10`, `10/01/2024`,
    /// `24.01.10`, `10/01`) or a time of day (`09:00`): business names show them, and
    /// read as digits they make fixed-line numbers (`"2024-01-10 09:00"`, Guangzhou).
    fn note_calendar(&mut self) {
        let at = |k: usize| (self.len - 1 - k) % EMBEDDED_MAX_DIGITS;
        let (c, b) = (
            self.groups[at(0)],
            self.len.checked_sub(2).map(|_| self.groups[at(1)]),
        );
        let Some(b) = b else { return };
        let day_or_month = |g: &Group| is_day_or_month(g.n, g.value());
        // No time or date is written with white space after its mark (`"Room 3: 12 345"`,
        // `"Room 3 / 1 10"`: QA 215).
        // Nor across other marks beside the ':' (`"4.9★:12 345"`), nor from a room's number
        // or a date (`"Room 3:12 345"`, `"2025/6/18：12-345"`: QA 217 E4).
        let time = c.sep == b':'
            && !c.blank
            && c.marks == 1
            && !b.quantity
            && (b.time || !b.calendar)
            && is_hour(b.n, b.value())
            && is_minutes(c.n, c.value());
        let day_and_month = c.sep == b'/' && !c.blank && day_or_month(&b) && day_or_month(&c);
        let mut flag = if time || day_and_month { 2 } else { 0 };
        if time {
            self.groups[at(0)].time = true;
            self.groups[at(1)].time = true;
        }
        if self.len >= 3 {
            let a = self.groups[at(2)];
            let year = |g: &Group| is_year(g.n, g.value());
            if matches!(c.sep, b'-' | b'/' | b'.')
                && b.sep == c.sep
                && !b.blank
                && !c.blank
                && (year(&a) && day_or_month(&b) && day_or_month(&c)
                    || day_or_month(&a) && day_or_month(&b) && year(&c))
            {
                flag = 3;
            }
        }
        for k in 0..flag {
            self.groups[at(k)].calendar = true;
        }
    }

    /// Adds `g` (closed by a ')' or not; a unit or a currency after it or not; `counts`:
    /// where the digits of a count it starts end, [`count_follows`]) and offers every
    /// piece that ends with it.
    fn close(
        &mut self,
        mut g: Group,
        paren_closed: bool,
        unit_after: Amount,
        counts: Option<usize>,
        budget: &mut usize,
        each: &mut impl FnMut(std::ops::Range<usize>, &[u8], Worded),
    ) {
        // An amount goes on across the marks amounts are written with (`"¥1,110.00"`,
        // `"v2.10.110"`) and, for a price, a thousands group written with a space
        // (`"¥ 95 588"`); anything else joins another word (`"¥12 95588"`, `"Room
        // 110/95588"`, `"No.1-95588"` show the bank's number).
        // No thousands group after a time or a date (`"10:00,110"`, `"5/6,110"`: QA 216).
        let after_calendar = self.len > 0 && {
            let last = &self.groups[(self.len - 1) % EMBEDDED_MAX_DIGITS];
            last.calendar || last.time
        };
        let goes_on = !(g.blank || !g.amount_sep || self.ended || g.sep == b',' && after_calendar)
            && (g.sep != b','
                || !self.fraction && matches!(self.last_unit, Amount::Price | Amount::Decimal))
            // A price's fraction is its cents (`"¥5.95588"` shows the bank's number).
            && !(g.sep == b'.' && self.price && g.n > 2);
        if self.len > 0 && !goes_on {
            let last = self.groups[(self.len + EMBEDDED_MAX_DIGITS - 1) % EMBEDDED_MAX_DIGITS];
            // (Not after cents: `"¥1.00 110"`, QA 215.)
            self.price &= g.blank && g.sep == 0 && g.n == 3 && last.n <= 3 && !self.fraction;
            self.quantity = false;
            self.decimal = false;
            self.signed = false;
        }
        // After any dot a callee reads as a decimal point (`"0·5,110"`, `"0٫5,119"`: QA
        // 216), not only an amount's.
        self.fraction = self.len > 0
            && !g.blank
            && (g.sep == b'.' || goes_on && g.sep == b',' && self.last_unit == Amount::Decimal);
        self.ended = matches!(unit_after, Amount::Sign | Amount::Quantity | Amount::Ends);
        self.last_unit = unit_after;
        match unit_after {
            Amount::Price => self.price = true,
            Amount::Quantity => self.quantity = true,
            Amount::Decimal => self.decimal = true,
            Amount::Sign => self.signed = true,
            Amount::None | Amount::Ends => {}
        }
        // The group before: a country code after '+' or `00` (the run's first, or one a
        // '+' starts within it: `"... / +86 (0)10 ..."`, QA 160).
        let country = self.len >= 1 && {
            let prev = &self.groups[(self.len - 1) % EMBEDDED_MAX_DIGITS];
            prev.plus || prev.digits().starts_with(b"00")
        };
        g.trunk_zero = country && g.after_paren && paren_closed && g.digits() == b"0";
        g.quantity = self.quantity;
        // A count goes on through the digits it holds (`"9-17点"`, `"9.5折"`); one starts
        // at a group set apart by white space or a mark, which `counts` is given for
        // (`"95566，9折"`: QA 206 M2).
        if self
            .count
            .is_some_and(|(at, end)| g.start >= end || self.len - at >= EMBEDDED_MAX_DIGITS)
        {
            self.count = None;
        }
        if self.count.is_none()
            && let Some(end) = counts
        {
            self.count = Some((self.len, end));
        }
        self.groups[self.len % EMBEDDED_MAX_DIGITS] = g;
        self.len += 1;
        self.note_calendar();
        // The pieces ending here, shortest first: each takes the group before the last
        // one's digits in front of them, so they are written back to front, once.
        let mut buf = [0u8; EMBEDDED_MAX_DIGITS + 1];
        let mut pos = buf.len();
        let mut digits = 0;
        // Whether the groups after the head are joined by white space alone, and all
        // hold one digit.
        let (mut spaced, mut single, mut marked, mut calendar) = (true, true, false, false);
        // Whether a time of day's group is in the piece, whether another is, and whether
        // the group read now is a time's.
        let (mut timed, mut untimed) = (false, false);
        // Whether the piece runs across white space.
        let mut words = false;
        let ends_timed = self.groups[(self.len - 1) % EMBEDDED_MAX_DIGITS].time;
        for k in 0..self.len.min(EMBEDDED_MAX_DIGITS) {
            if k > 0 {
                let joined = &self.groups[(self.len - k) % EMBEDDED_MAX_DIGITS];
                spaced &= joined.spaced;
                marked |= joined.marked;
                words |= joined.blank;
            }
            let head = &self.groups[(self.len - 1 - k) % EMBEDDED_MAX_DIGITS];
            single &= head.n == 1;
            calendar |= head.calendar;
            timed |= head.time;
            untimed |= !head.time;
            digits += head.n;
            if digits > EMBEDDED_MAX_DIGITS || *budget == 0 {
                break;
            }
            let d = head.digits();
            for (to, from) in buf[pos - d.len()..pos].iter_mut().zip(d) {
                *to = *from;
            }
            pos -= d.len();
            // Several groups make a subscriber's number (7 digits and more), or a short
            // one written with spaces ("95 588", "1 1 0"); not a date, a price or a
            // version ("2024-01-10", "95,588", "1/10", "v1.2.3"), nor a short code after
            // a stray digit ("Q1 2024").
            // A single digit first is a number's (`"9 5588"`, `"1 10"`: QA 29) unless a
            // Latin letter holds it (`"Q1 2024"`).
            let short_ok = spaced && (single || head.n >= 2 || !head.lettered);
            // Where only spaced short codes are read, one written across other marks is
            // still offered, for the reader to keep if it is a service number
            // ([`Worded::Marked`]); never one a Latin letter holds (`"Q1-2024"`), an
            // amount's (`"95,588元"`, `"v2.10.110"`), nor a reference's or a range's
            // under five digits (`"Room 1-10"`).
            let across_marks = k > 0 && digits < 7 && !short_ok;
            // A Latin letter holds the head digit (`"Q1-2024"`, `"Q1 2024"`): a label's
            // digit, and the piece a number only if it is an emergency one, as with any
            // word around it (`"Q1-10"`, `"Bank1-1-0"`: QA 217 E3, QA 218 F1), on every
            // trunk; not before a unit (`"Top1)10分钟"`). A code written digit by digit
            // before a unit (`"1-1-0号"`) is no range or reference either: kept if it is
            // an emergency number (QA 218 F5).
            // Where a number shown is judged, only a code spelt digit by digit
            // (`"Bank1-2-0"`); a label's range or reference is none (`"万达广场B1-20"`, a
            // shop: QA 219 W1).
            let lettered = head.n == 1 && head.lettered;
            let label = across_marks && lettered && (single || !self.dates);
            let quantity = (self.quantity || head.quantity) && digits < 5;
            // A sign after it too (`"1-1-0%"`, `"1 1 0℃"`: QA 220).
            let spelt = single && (across_marks && quantity || self.signed);
            if digits < 3
                || head.trunk_zero
                || across_marks
                    && ((!self.dates || lettered) && !label
                        || self.price
                        || self.decimal
                        || self.signed && !spelt
                        || quantity && !spelt)
            {
                continue;
            }
            // A price (digits after a currency sign) shows no short number, and digits
            // joined across other marks (`"138|1234|5678"`) where only spaced short
            // codes are read make a number with an area code or more.
            // A lone group with a sign: counted like words (kept if an emergency number).
            let lone_signed = (self.len == 1 || spelt) && self.signed;
            let by_marks = self.price && digits < 7 || (self.decimal || self.signed) && digits < 5;
            // Where digits are read across any mark, dates hide none (`"100 8/6"` shows
            // 10086, QA 202 U3), and a time's are still read for a short code (`"1:10"` is
            // how 110 is hidden), but digits do not run on into a time (`"95588
            // 8:00-20:00"` showed 9558880020, QA 197 F2; `"2026-12-07 09:00"` a Guangzhou
            // number, QA 199 FC), nor from one time to the next across white space.
            let calendar = if self.dates {
                calendar
            } else {
                timed && (untimed && ends_timed || !untimed && words)
            };
            if by_marks && !lone_signed || marked && digits < 10 && !across_marks || calendar {
                continue;
            }
            // A lone group of five digits or more with a sign (`"客服 $95588"`) counts as
            // a short code across marks does: kept if it is a number fraud forges (QA 50:
            // a currency sign hid the bank's number beside "customer service").
            let worded = if label || spelt && !lone_signed {
                Worded::Yes
            } else if across_marks || by_marks && lone_signed && digits >= 5 {
                Worded::Marked
            } else if self.quantity && digits < 5
                || k > 0 && head.quantity && digits < 7
                || by_marks && lone_signed
            {
                Worded::Yes
            } else {
                Worded::No
            };
            // The piece runs into a count from the digits before it.
            let worded = match (worded, self.count) {
                (Worded::No | Worded::Marked, Some((at, _))) if self.len - 1 - k < at => {
                    let h = self.len - 1 - k;
                    Worded::Count {
                        end: self.groups[(at - 1) % EMBEDDED_MAX_DIGITS].end,
                        short: self.groups[at % EMBEDDED_MAX_DIGITS].n <= 2,
                        // Its digits before the count joined by dashes and dots to each
                        // other and to the digits before them (`"1234"` in `"400-800-1234
                        // 9折"`); not by brackets or colons (`"400-800【1234 5号】"` shows
                        // 12345: QA 208).
                        joined: h > 0
                            && (h..at).all(|x| self.groups[x % EMBEDDED_MAX_DIGITS].dashed),
                        marked: worded == Worded::Marked,
                    }
                }
                _ => worded,
            };
            // A '+' before fewer digits than an international number holds (`"+95588"`,
            // `"+110"`) shown to a person prefixes nothing: the callee reads the service
            // number after it (QA 154). A dial string's is dialled.
            // Nor does one before a trunk 0 (`"+010-6666-0100"`: no country code starts
            // with 0; the callee reads the national number after it, QA 213 H3).
            let plus =
                head.plus && (digits >= 7 || !self.display) && !(self.display && buf[pos] == b'0');
            // No short code is dialled with the trunk 0 (`"2024 01 10"` is a date).
            if digits < 7 && !plus && buf[pos] == b'0' {
                continue;
            }
            // At most EMBEDDED_MAX_DIGITS digits are written: a byte is left for the '+'
            // of the head group, which has no digits of its own before it.
            let piece = if plus {
                buf[pos - 1] = b'+';
                &buf[pos - 1..]
            } else {
                &buf[pos..]
            };
            each(head.start..g.end, piece, worded);
            *budget -= 1;
        }
    }
}

/// `text` as a screen shows it: a right-to-left override (U+202E) draws what follows
/// it, up to its end (U+202C, U+2069) or the text's, backwards, so `"Bank <RLO>88559"`
/// shows `Bank 95588`. Such text is copied into `buf` with those runs reversed (at most
/// `buf`'s length of it); any other is returned as it is.
pub fn as_displayed<'a>(text: &'a [u8], buf: &'a mut [u8; 512]) -> &'a [u8] {
    const RLO: &[u8] = "\u{202e}".as_bytes();
    if !text.windows(3).any(|w| w == RLO) {
        return text;
    }
    // The explicit bidi controls (embeddings, overrides, isolates and their ends) draw
    // nothing and are not copied, so that any number of them cannot push a number out
    // of `buf`.
    let control = |t: &[u8]| -> Option<u8> {
        match *t {
            [0xe2, 0x80, c @ 0xaa..=0xae, ..] | [0xe2, 0x81, c @ 0xa6..=0xa9, ..] => Some(c),
            _ => None,
        }
    };
    const PDF: u8 = 0xac;
    const PDI: u8 = 0xa9;
    // Where the override starting at `from` ends: at its own PDF (embeddings and
    // overrides opened inside it close first), at a PDI closing an isolate opened
    // inside it, or at the end. A PDI that closes nothing opened inside it is ignored,
    // as the algorithm ignores one with no isolate to close.
    let run_end = |from: usize| {
        let (mut depth, mut isolates) = (0usize, 0usize);
        let mut j = from;
        while j < text.len() {
            match control(&text[j..]) {
                Some(PDF) if depth == 0 => return j,
                Some(PDF) => depth -= 1,
                Some(PDI) if isolates > 0 => isolates -= 1,
                Some(0xa6..=0xa8) => isolates += 1,
                Some(0xaa..=0xae) => depth += 1,
                _ => {}
            }
            j += 1;
        }
        text.len()
    };
    let mut out = 0;
    let mut push = |bytes: &[u8], out: &mut usize| {
        let n = bytes.len().min(buf.len() - *out);
        buf[*out..*out + n].copy_from_slice(&bytes[..n]);
        *out += n;
    };
    let mut i = 0;
    while i < text.len() && out < 512 {
        if !text[i..].starts_with(RLO) {
            if control(&text[i..]).is_some() {
                i += 3;
            } else {
                push(&text[i..i + 1], &mut out);
                i += 1;
            }
            continue;
        }
        // Overrides that follow one another with only controls between draw as one
        // run (`<RLO>88<PDF><RLO>559` is 95588).
        let start = i + RLO.len();
        let mut end = run_end(start);
        loop {
            let mut k = end;
            while k < text.len() && control(&text[k..]).is_some() && !text[k..].starts_with(RLO) {
                k += 3;
            }
            if end < text.len() && text[k..].starts_with(RLO) {
                end = run_end(k + RLO.len());
            } else {
                break;
            }
        }
        // The run's characters, last first (each one's bytes in order), its controls
        // left out.
        let mut j = end;
        while j > start && out < 512 {
            let mut k = j - 1;
            while k > start && text[k] & 0xc0 == 0x80 {
                k -= 1;
            }
            if control(&text[k..j]).is_none() {
                push(&text[k..j], &mut out);
            }
            j = k;
        }
        i = end;
    }
    &buf[..out]
}

/// `text` with its numbers laid out as the Unicode bidirectional algorithm draws them
/// where a right-to-left character governs them: a run of numbers whose nearest strong
/// character before it is right-to-left (Hebrew, Arabic, a right-to-left mark; or none,
/// in a paragraph whose first strong character is one) is drawn from the right, each
/// number in its own order, so `"中国银行<RLM>588 95"` and `"<RLM>588 95 中国银行"` show
/// `95 588`, while digits after a left-to-right letter keep their order (`"<RLM>中国银行
/// 588 95"` shows `588 95`). Numbers are the digits joined by `+ - . , / :`; white space
/// and other separators (`•`, `·`) between them are neutral. `None` when no run is
/// governed so. At most `buf`'s length of the text is read.
pub fn rtl_numbers<'a>(text: &[u8], buf: &'a mut [u8; 512]) -> Option<&'a [u8]> {
    let text = &text[..text.len().min(buf.len())];
    // The character at `i`, and its length (1 for a byte that is no UTF-8).
    let char_at = |i: usize| glyph::decode(&text[i..]).map_or((None, 1), |(c, n)| (Some(c), n));
    // Some(true) for a strong right-to-left character, Some(false) for a strong
    // left-to-right one, None for digits, white space, punctuation and the rest.
    let strong = |c: char| -> Option<bool> {
        let cp = c as u32;
        // RLE and RLI open a right-to-left embedding or isolate: numbers inside are laid
        // out in its order as after a right-to-left letter; LRE and LRI the other way.
        if matches!(
            cp,
            0x200f | 0x061c | 0x202b | 0x2067 | 0x0590..=0x08ff | 0xfb1d..=0xfdff | 0xfe70..=0xfefe
        ) || (0x10800..=0x10fff).contains(&cp)
            || (0x1e800..=0x1efff).contains(&cp)
        {
            Some(true)
        } else if matches!(cp, 0x200e | 0x202a | 0x2066) || c.is_alphabetic() {
            Some(false)
        } else {
            None
        }
    };
    let digit = |c: char| c.is_ascii_digit() || (c.is_numeric() && !c.is_alphabetic());
    let joiner = |c: char| matches!(c, '+' | '-' | '.' | ',' | '/' | ':');
    let neutral = |c: char| c.is_whitespace() || matches!(c, '\u{2022}' | '\u{b7}');
    let mut rtl = {
        let mut i = 0;
        let mut first = None;
        while i < text.len() && first.is_none() {
            let (c, n) = char_at(i);
            first = c.and_then(strong);
            i += n;
        }
        first == Some(true)
    };
    let mut out = 0;
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let (c, n) = char_at(i);
        let Some(c) = c else {
            buf[out] = text[i];
            out += 1;
            i += 1;
            continue;
        };
        if !(rtl && digit(c)) {
            if let Some(s) = strong(c) {
                rtl = s;
            }
            buf[out..out + n].copy_from_slice(&text[i..i + n]);
            out += n;
            i += n;
            continue;
        }
        // A run of numbers under a right-to-left character: its numbers (digits and
        // joiners) and the neutrals between them, up to the next strong character or
        // anything else.
        let start = i;
        let mut end = i;
        let mut j = i;
        while j < text.len() {
            let (c, n) = char_at(j);
            match c {
                Some(c) if digit(c) => end = j + n,
                Some(c) if joiner(c) || neutral(c) => {}
                _ => break,
            }
            j += n;
        }
        // Its numbers, last first, with single spaces between.
        let run = &text[start..end];
        let mut numbers = [(0usize, 0usize); 64];
        let mut count = 0;
        let mut k = 0;
        while k < run.len() && count < numbers.len() {
            let (c, n) = char_at(start + k);
            if c.is_some_and(neutral) {
                k += n;
                continue;
            }
            let from = k;
            while k < run.len() {
                let (c, n) = char_at(start + k);
                if c.is_some_and(neutral) {
                    break;
                }
                k += n;
            }
            numbers[count] = (from, k);
            count += 1;
        }
        for (m, &(from, to)) in numbers[..count].iter().rev().enumerate() {
            if m > 0 {
                buf[out] = b' ';
                out += 1;
            }
            buf[out..out + (to - from)].copy_from_slice(&run[from..to]);
            out += to - from;
        }
        changed |= count > 1;
        // What follows the run (the neutrals after its last digit) goes on as written.
        i = end;
    }
    changed.then_some(&buf[..out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numbering::NotANumber;
    use crate::numbering::tests::n;

    /// Where a misreading costs only a display name (the gateways), digits are read
    /// across any mark; where it refuses a call (enterprise), only across the ones
    /// numbers are written with, and never in a price.
    #[test]
    fn short_codes_by_where_they_are_read() {
        let pieces = |t: &str, short: ShortCodes| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), short, |_, d, w| {
                if w == Worded::No {
                    v.push(String::from_utf8_lossy(d).into_owned())
                }
            });
            v
        };
        use ShortCodes::{AnySeparator, SpacedOnly};
        for (text, digits) in [
            ("[95]588", "95588"),
            ("【95】588", "95588"),
            ("95|588", "95588"),
            ("1。1。0", "110"),
            ("95-588", "95588"),
            ("⑪⓪", "110"),
            ("㉑3", "213"),
        ] {
            assert!(
                pieces(text, AnySeparator).contains(&digits.to_string()),
                "{text}"
            );
        }
        for text in ["[95]588", "95|588", "95-588", "2024-01-10"] {
            assert!(
                !pieces(text, SpacedOnly).contains(&"95588".to_string()),
                "{text}"
            );
        }
        // There, a short code across marks is offered for the reader to judge as a
        // service number ([`Worded::Marked`]); not in a date, a price or a label.
        let marked = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), SpacedOnly, |_, d, w| {
                if w == Worded::Marked {
                    v.push(String::from_utf8_lossy(d).into_owned())
                }
            });
            v
        };
        for text in [
            "[95]588",
            "95|588",
            "95-588",
            "9-5-5-8-8",
            "【95】588",
            "Room 95-588",
        ] {
            assert!(marked(text).contains(&"95588".to_string()), "{text}");
        }
        // A date is known as one at its last group (a first piece of it holds no
        // service number).
        assert!(!marked("95-01-10").contains(&"950110".to_string()));
        for text in [
            "Q1-2024",
            "¥95,588",
            "95,588",
            "10/12",
            "95.588",
            "v2.10.110",
            "Room 1-10",
        ] {
            assert!(marked(text).is_empty(), "{text}: {:?}", marked(text));
        }
        // QA 154: a '+' among digits joins them as a mark does, and the group after it
        // still starts a number of its own; before fewer digits than an international
        // number holds, a display name's '+' prefixes nothing (a dial string's is
        // dialled).
        for (text, digits) in [
            ("138+1234+5678", "13812345678"),
            ("95+588", "95588"),
            ("+95588", "95588"),
            ("13812345678 +8613912345678", "13812345678"),
            ("13812345678 +8613912345678", "+8613912345678"),
        ] {
            assert!(
                pieces(text, AnySeparator).contains(&digits.to_string()),
                "{text}: {:?}",
                pieces(text, AnySeparator)
            );
        }
        assert!(marked("138+1234+5678").is_empty());
        assert!(marked("95+588").contains(&"95588".to_string()));
        let mut dialled = vec![];
        embedded_numbers_in(b"+110", AnySeparator, false, |_, d, _| {
            dialled.push(String::from_utf8_lossy(d).into_owned())
        });
        assert_eq!(dialled, ["+110"]);
        // Two-digit glyphs are digits everywhere: ⑪⓪ is 110 on any trunk.
        assert!(pieces("⑪⓪", SpacedOnly).contains(&"110".to_string()));
        // A price shows no number where numbers are judged; a number after a word does.
        assert!(pieces("¥1,110", SpacedOnly).is_empty());
        assert!(pieces("$ 95 588", SpacedOnly).is_empty());
        assert!(pieces("Bank 95 588", SpacedOnly).contains(&"95588".to_string()));
        assert!(pieces("¥1,110", AnySeparator).contains(&"110".to_string()));
        // Padding before the text does not count against the reading bound.
        let padded = format!("{}110", "\\ ".repeat(100));
        assert!(pieces(&padded, SpacedOnly).contains(&"110".to_string()));
    }

    #[test]
    fn numbers_among_words() {
        // Numbers inside words, as display names show them: every piece, in order.
        let e = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), ShortCodes::SpacedOnly, |r, _, w| {
                if matches!(w, Worded::No | Worded::Count { marked: false, .. }) {
                    v.push(t[r].to_string())
                }
            });
            v
        };
        assert_eq!(e("Bank of China 95588"), ["95588"]);
        assert_eq!(e("中国银行９５５８８"), ["９５５８８"]);
        assert_eq!(
            e("Tel: +86 138-1234-5678 (mobile)"),
            [
                "138",
                "+86 138",
                "1234",
                "138-1234",
                "+86 138-1234",
                "5678",
                "1234-5678",
                "138-1234-5678",
                "+86 138-1234-5678"
            ]
        );
        assert!(e("Room 12, desk 4").is_empty());
        assert!(e("Alice").is_empty());
        assert!(e("ext 101 or (0755) 8888-1234").contains(&"0755) 8888-1234".to_string()));
        // Two numbers side by side are offered apart and together; a stray digit
        // beside a number does not hide it.
        assert_eq!(
            e("13812345678 13912345678"),
            ["13812345678", "13912345678", "13812345678 13912345678"]
        );
        assert_eq!(e("报警110 1"), ["110", "110 1"]);
        // Digits with a unit, a currency or an ordinal word around them, or inside a
        // decimal, a version or an amount, are no number where one shown is judged.
        assert_eq!(e("客服110 1号"), ["110"]);
        // Not where the police are named: the short code is theirs.
        assert_eq!(e("报警110 1号"), ["110", "110 1"]);
        for t in [
            "ACME 1,110元",
            "120 RMB",
            "110,000",
            "v2.10.110",
            "PBX 10.0.0.110",
            "110.5",
            "110,00元",
            "EUR 120,50",
            "人民路120号",
            "Room 110",
            "Office 120",
            "Order #110",
            "110人民币",
            "120周年庆",
            "第110",
            "RMB 110",
            "110th Street",
            "¥ 95 588",
            // QA 31.
            "120 Broadway",
            "ACME 120 Main St",
            "110 5th Ave",
            "120平米",
            "B座110",
            "120 minutes",
            "120ml",
            "110%",
            // Words that hold an emergency word's letters are none (`"copy"`, `"Firestone"`).
            "Copy Room 110",
            "Firestone 120 Main St",
        ] {
            let short = |p: &String| p.chars().filter(char::is_ascii_digit).count() < 7;
            assert!(!e(t).iter().any(short), "{t}: {:?}", e(t));
        }
        // Words mark what they make a count or a place (the reader keeps such a piece
        // only if it is an emergency number); marks, signs and currencies hide it.
        let worded = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), ShortCodes::SpacedOnly, |r, _, w| {
                v.push((t[r].to_string(), w))
            });
            v
        };
        for (t, piece) in [
            ("Room 110", "110"),
            ("110个", "110"),
            ("120 Broadway", "120"),
            ("110 pcs", "110"),
        ] {
            assert!(
                worded(t).contains(&(piece.to_string(), Worded::Yes)),
                "{t}: {:?}",
                worded(t)
            );
        }
        // A sign beside a lone group counts like a word (QA 36: `"¥110 经侦"`).
        for (t, piece) in [("¥110", "110"), ("110%", "110"), ("120℃", "120")] {
            assert!(
                worded(t).contains(&(piece.to_string(), Worded::Yes)),
                "{t}: {:?}",
                worded(t)
            );
        }
        for t in ["1,110元", "110.5", "110,00元", "10.0.0.110", "¥1,110"] {
            assert!(
                worded(t)
                    .iter()
                    .all(|(p, _)| p.chars().filter(char::is_ascii_digit).count() > 4),
                "{t}: {:?}",
                worded(t)
            );
        }
        assert_eq!(worded("Call 110"), [("110".to_string(), Worded::No)]);
        // Letters drawn like digits among digits are read as digits (QA 36 R3), in
        // every byte length (so that ranges into the text still hold).
        let digits = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), ShortCodes::SpacedOnly, |r, d, _| {
                v.push((t[r].to_string(), String::from_utf8_lossy(d).into_owned()))
            });
            v
        };
        for (t, shown, read) in [
            ("11O", "11O", "110"),
            ("报警1l0", "1l0", "110"),
            ("11〇", "11〇", "110"),
            ("1О086", "1О086", "10086"),
            ("Ｉ１Ｏ", "Ｉ１Ｏ", "110"),
        ] {
            assert!(
                digits(t).contains(&(shown.to_string(), read.to_string())),
                "{t}: {:?}",
                digits(t)
            );
        }
        for t in ["H2O", "Win10", "IO", "110kV"] {
            assert!(
                digits(t)
                    .iter()
                    .all(|(_, d)| !d.contains("10") || t == "110kV"),
                "{t}: {:?}",
                digits(t)
            );
        }
        assert_eq!(digits("110kV"), [("110".to_string(), "110".to_string())]);
        // An ordinal's digit starts no short code (the year alone is no number).
        assert_eq!(e("Page 1 2024"), ["2024"]);
        assert!(e("Chapter 1 10").is_empty());
        // A word after them is read afresh; a dial string's pause is no decimal.
        for (t, shown) in [
            ("¥12 95588", "95588"),
            ("Suite 110, 95588", "95588"),
            ("1.5 95588", "95588"),
            ("95588,1", "95588"),
            ("Tel: 110", "110"),
            ("Casino 110", "110"),
            ("110 yuanbao", "110"),
            // QA 28: an amount ends at a mark it is not written with, a unit pushed off
            // by spaces is none, a unit starting another word is none, and `No.` and
            // `Ext` introduce numbers.
            ("Room 110/95588", "95588"),
            ("No.1-95588", "95588"),
            ("95588    RMB", "95588"),
            ("95588个人业务", "95588"),
            ("110号码", "110"),
            ("Tel No. 95588", "95588"),
            ("Ext 95588", "95588"),
            ("Room 95588", "95588"),
            // QA 29: a short code whose first group is one digit.
            ("中国银行 9 5588", "9 5588"),
            ("报警 1 10", "1 10"),
            // QA 31: a decimal is no price, the police are named, a street word
            // without a street name is none.
            ("95588.1", "95588"),
            ("110人民警察", "110"),
            ("110个警察", "110"),
            // QA 33: the words as the callee reads them (through invisible characters,
            // spaces, width and look-alike letters), traditional ones, and more of them.
            ("110个公\u{200b}安", "110"),
            ("110个公 安", "110"),
            ("110个Pol\u{200b}ice", "110"),
            ("110个Ｐｏｌｉｃｅ", "110"),
            ("110个P\u{43e}lice", "110"),
            ("110个P.o.l.i.c.e", "110"),
            ("110个報案", "110"),
            ("120家急診", "120"),
            ("120个救護車", "120"),
            ("110个派出所", "110"),
            ("110 Broadway 派出所", "110"),
            ("110个国家反诈中心", "110"),
            ("110个法庭", "110"),
            ("110 Broadway Cops", "110"),
            ("110 pcs fire dept", "110"),
            ("120 pcs EMS", "120"),
            ("122个交通事故", "122"),
            ("110个国家安全局", "110"),
            ("Police 110 pcs", "110"),
            ("110 St", "110"),
            ("110 Main", "110"),
            ("Call 110 now", "110"),
        ] {
            assert!(e(t).contains(&shown.to_string()), "{t}: {:?}", e(t));
        }
        // At the gateways (where a misreading costs a display name) all are read.
        let any = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), ShortCodes::AnySeparator, |r, _, _| {
                v.push(t[r].to_string())
            });
            v
        };
        for (t, shown) in [("Room 110", "110"), ("120 RMB", "120"), ("1,110元", "110")] {
            assert!(any(t).contains(&shown.to_string()), "{t}: {:?}", any(t));
        }
        // A flood of groups costs a bounded number of pieces: the text is read as far
        // as a phone shows it.
        let flood = "1 ".repeat(50_000);
        assert!(e(&flood).len() < EMBEDDED_MAX_CANDIDATES);
        let after = |n: usize| format!("{}95588", "1 ".repeat(n));
        assert!(e(&after(25)).contains(&"95588".to_string()));
        assert!(!e(&after(40)).contains(&"95588".to_string()));
        // Invisible characters do not count against it.
        let hidden = format!("{}95588", "\u{200b}".repeat(500));
        assert_eq!(e(&hidden), ["95588"]);
        // What the text offers is read with the separators it wrote.
        assert_eq!(
            e("95588,1 / 13812345678_2"),
            [
                "95588",
                "13812345678",
                "1 / 13812345678",
                "95588,1 / 13812345678",
                "13812345678_2",
                "1 / 13812345678_2",
                "95588,1 / 13812345678_2"
            ]
        );
        // Each piece comes with its digits, whatever it was written with; a bracketed
        // trunk prefix after a country code (E.123) is none of them.
        let digits = |t: &str| {
            let mut v = vec![];
            embedded_numbers(t.as_bytes(), ShortCodes::SpacedOnly, |_, d, w| {
                if w == Worded::No {
                    v.push(String::from_utf8_lossy(d).into_owned())
                }
            });
            v
        };
        assert!(digits("x 138/1234_5678").contains(&"13812345678".to_string()));
        assert_eq!(n("138/1234_5678"), Err(NotANumber::NonNumeric));
        let uk = digits("Tel +44 (0)20 7123 4567");
        assert!(uk.contains(&"+442071234567".to_string()), "{uk:?}");
        assert!(!uk.iter().any(|d| d.starts_with("020")), "{uk:?}");
        assert!(digits("ext (0)20 7123 4567").contains(&"02071234567".to_string()));
        // A right-to-left override shows its run backwards.
        let mut buf = [0u8; 512];
        assert_eq!(
            as_displayed("Bank \u{202e}88559\u{202c} ok".as_bytes(), &mut buf),
            "Bank 95588 ok".as_bytes()
        );
        assert_eq!(as_displayed(b"plain", &mut buf), b"plain");
        for t in [
            "\u{202e}88\u{202c}\u{202e}559",
            "\u{202e}885\u{202d}\u{202c}59",
            "\u{202e}885\u{2069}59",
        ] {
            assert_eq!(as_displayed(t.as_bytes(), &mut buf), b"95588", "{t:?}");
        }
        // Numbers governed by a right-to-left character are drawn from the right.
        let mut rbuf = [0u8; 512];
        let rtl = |t: &str, rbuf: &mut [u8; 512]| {
            rtl_numbers(t.as_bytes(), rbuf).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(
            rtl("\u{200f}588 95 中国银行", &mut rbuf).as_deref(),
            Some("\u{200f}95 588 中国银行")
        );
        assert_eq!(
            rtl("中国银行\u{200f}588 95", &mut rbuf).as_deref(),
            Some("中国银行\u{200f}95 588")
        );
        assert_eq!(
            rtl("\u{200f}5678•1234•138", &mut rbuf).as_deref(),
            Some("\u{200f}138 1234 5678")
        );
        assert_eq!(rtl("\u{200f}中国银行 588 95", &mut rbuf), None);
        assert_eq!(rtl("Bank 95 588", &mut rbuf), None);
        assert_eq!(rtl("בנק 588 95", &mut rbuf).as_deref(), Some("בנק 95 588"));
        // What a screen shows as spaces, dashes and dots separates; what it does not
        // show at all is read through.
        for t in [
            "138\u{200b}1234\u{2060}5678",
            "\u{feff}138\u{00ad}12345678\u{200e}",
            "138\u{a0}1234\u{202f}5678",
            "138\u{2009}1234\u{2002}5678",
            "138\t1234\u{2010}5678",
            "138\u{2011}1234\u{2013}5678",
            "138\u{2212}1234\u{b7}5678",
            "𝟏𝟑𝟖𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖",
            "١٣٨١٢٣٤٥٦٧٨",
        ] {
            assert_eq!(n(t), Ok("+8613812345678".to_string()), "{t:?}");
            let mobile = Ok("+8613812345678".to_string());
            assert!(
                e(&format!("call {t} now")).iter().any(|p| n(p) == mobile),
                "{t:?}"
            );
        }
    }
}
