//! The PCI guard: no event may carry a primary account number (a payment card number), and no
//! rejected line keeps one readable in the dead-letter log.
//!
//! A card number is 13 to 19 digits passing the Luhn check, written however a person or an
//! attacker writes it: digits of any script or compatibility form (`４`, `٤`, `¹`, `𝟜` read as 4),
//! grouped by any run of characters that are neither letters nor digits (spaces, dashes, dots,
//! slashes, tabs, invisible format characters such as U+200B). A run of such groups ends at a
//! letter. Within a run, any sequence of whole groups holding 13–19 digits is a candidate, so a
//! neighbouring expiry date, CVV or quantity cannot hide a number; a single group of more than 19
//! digits is not a card (it is some other identifier). Raw lines are also read through their JSON
//! escapes (`\u0034` is a 4), and bytes that are not UTF-8 count as separators.
//!
//! The scan is linear: each group starts at most one candidate per following group while the
//! candidate holds at most 19 digits, and its Luhn sum is kept incrementally, so adversarial text
//! (thousands of one-digit groups) costs the same per byte as ordinary text. See
//! `specs/adr/0004-ingest-durability-and-idempotency.md` ("the PCI guard") and `benches/card_scan.rs`.

mod digits;

use std::borrow::Cow;

/// Most digits a card number has.
const MAX_DIGITS: usize = 19;
/// Fewest digits a card number has.
const MIN_DIGITS: usize = 13;
/// Digits of a card number left readable when it is masked (PCI DSS allows the last four).
const KEEP_DIGITS: usize = 4;

/// True when `s` contains a card number (see the module docs for what counts as one).
pub fn contains_card_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    if cannot_hold_a_card(bytes, Reading::Text) {
        return false;
    }
    let scan = Scan::of(bytes, Reading::Text, None);
    let mut found = false;
    scan.candidates(|_, _| {
        found = true;
        false
    });
    found
}

/// `s` with every digit of each card number replaced by `*`, except the last four, as PCI DSS
/// allows to be shown. Paths and messages that echo input are masked with it.
pub fn mask_card_numbers(s: &str) -> Cow<'_, str> {
    mask_str(s, Reading::Text)
}

/// Like [`mask_card_numbers`], for text that quotes input with escapes: an error message from
/// serde (`invalid type: string "4111\u{200b}1111…"`) or a JSON text. Escaped digits are
/// masked as a whole escape.
pub fn mask_card_numbers_in_quoted(s: &str) -> Cow<'_, str> {
    mask_str(s, Reading::Json)
}

fn mask_str(s: &str, reading: Reading) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    if cannot_hold_a_card(bytes, reading) {
        return Cow::Borrowed(s);
    }
    match Scan::of(bytes, reading, None).masked(bytes) {
        None => Cow::Borrowed(s),
        // Whole characters or whole escapes were replaced by `*`: still UTF-8.
        Some(out) => Cow::Owned(String::from_utf8(out).expect("whole characters replaced")),
    }
}

/// A raw input line as the dead-letter log keeps it: card numbers masked — read through JSON
/// escapes, and across bytes that are not UTF-8 — and only then cut to at most `max` bytes (on a
/// character boundary when the line is UTF-8), so a number straddling the cut keeps no more than
/// its last four digits.
pub fn mask_raw_line(raw: &[u8], max: usize) -> Vec<u8> {
    let masked = if cannot_hold_a_card(raw, Reading::Json) {
        None
    } else {
        // The masked line is never longer than the raw one, and an escape that a masked digit
        // replaces is at most 12 bytes long: the kept prefix comes from the first `12 * max`
        // bytes (the scan goes on past them only to finish a number that starts before them).
        Scan::of(raw, Reading::Json, Some(max.saturating_mul(12))).masked(raw)
    };
    let full: Cow<'_, [u8]> = masked.map_or(Cow::Borrowed(raw), Cow::Owned);
    let mut end = full.len().min(max);
    if end < full.len() && std::str::from_utf8(&full).is_ok() {
        while !is_char_boundary(&full, end) {
            end -= 1;
        }
    }
    match full {
        Cow::Borrowed(raw) => raw[..end].to_vec(),
        Cow::Owned(mut out) => {
            out.truncate(end);
            out
        }
    }
}

fn is_char_boundary(bytes: &[u8], i: usize) -> bool {
    i >= bytes.len() || (bytes[i] as i8) >= -0x40
}

/// The Luhn (mod 10) checksum over decimal digits, rightmost being the check digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { doubled(d) } else { u32::from(d) })
        .sum();
    sum.is_multiple_of(10)
}

/// A digit's contribution to the Luhn sum where it is doubled.
fn doubled(d: u8) -> u32 {
    let dd = u32::from(d) * 2;
    if dd > 9 { dd - 9 } else { dd }
}

/// How the bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Decoded text: a field's value, a path, a message.
    Text,
    /// A raw JSON line, or a message quoting input: backslash escapes read as the characters
    /// they stand for.
    Json,
}

/// Plain ASCII with fewer than 13 digits and no escape cannot hold a card number: most strings.
fn cannot_hold_a_card(bytes: &[u8], reading: Reading) -> bool {
    let mut digits = 0;
    for &b in bytes {
        if b >= 0x80 || (b == b'\\' && reading == Reading::Json) {
            return false;
        }
        digits += usize::from(b.is_ascii_digit());
    }
    digits < MIN_DIGITS
}

/// What one character is to the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Digit(u8),
    /// Joins the digits around it into one run: anything that is neither a letter nor a digit.
    Separator,
    /// Ends a run: a letter (or a number that is not a decimal digit, such as `½`).
    Breaker,
}

fn classify(c: char) -> Class {
    if c.is_ascii_digit() {
        Class::Digit(c as u8 - b'0')
    } else if c.is_ascii() {
        if c.is_ascii_alphabetic() {
            Class::Breaker
        } else {
            Class::Separator
        }
    } else if let Some(d) = unicode_digit(c) {
        Class::Digit(d)
    } else if INVISIBLE_LETTERS.contains(&c) {
        Class::Separator
    } else if c.is_alphanumeric() {
        Class::Breaker
    } else {
        Class::Separator
    }
}

/// Letters that show as blank space (Hangul fillers, default-ignorable): they separate, like the
/// spaces they look like, rather than end a run.
const INVISIBLE_LETTERS: [char; 4] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}'];

/// The value of a non-ASCII character that reads as a decimal digit.
fn unicode_digit(c: char) -> Option<u8> {
    let cp = u32::from(c);
    let i = digits::DIGIT_RANGES.partition_point(|&(_, last, _)| last < cp);
    let &(first, _, value) = digits::DIGIT_RANGES.get(i)?;
    // `cp - first` is at most 9: a range counts up one digit per code point.
    (cp >= first).then(|| value + (cp - first) as u8)
}

/// The character at `bytes[i]` and how many bytes it takes.
fn read_char(bytes: &[u8], i: usize, reading: Reading) -> (Class, usize) {
    let b = bytes[i];
    if b == b'\\' && reading == Reading::Json {
        return read_escape(bytes, i);
    }
    if b < 0x80 {
        return (classify(char::from(b)), 1);
    }
    let width = match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    };
    match bytes
        .get(i..i + width)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.chars().next())
    {
        Some(c) if width > 0 => (classify(c), width),
        // A byte that is not UTF-8 separates (it must not hide the digits around it).
        _ => (Class::Separator, 1),
    }
}

/// An escape at `bytes[i] == b'\\'`: JSON's `\uXXXX` (a surrogate pair as one character), Rust's
/// `\u{X…}` (which serde's messages use when they quote input), or a one-letter escape, which
/// always stands for punctuation or whitespace.
fn read_escape(bytes: &[u8], i: usize) -> (Class, usize) {
    let hex4 = |at: usize| -> Option<u32> {
        let s = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    if bytes.get(i + 1..i + 3) == Some(b"u{") {
        let digits = bytes[i + 3..]
            .iter()
            .take(7)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if (1..=6).contains(&digits) && bytes.get(i + 3 + digits) == Some(&b'}') {
            let hex = std::str::from_utf8(&bytes[i + 3..i + 3 + digits]).unwrap_or("");
            let c = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
            return (c.map_or(Class::Separator, classify), 4 + digits);
        }
    }
    match bytes.get(i + 1) {
        // A JSON escape of one letter stands for punctuation or whitespace.
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => (Class::Separator, 2),
        Some(b'u') => match hex4(i + 2) {
            Some(high @ 0xD800..=0xDBFF) => {
                let low = (bytes.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex4(i + 8))
                    .flatten()
                    .filter(|low| (0xDC00..=0xDFFF).contains(low));
                match low.and_then(|low| {
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                }) {
                    Some(c) => (classify(c), 12),
                    None => (Class::Separator, 6),
                }
            }
            Some(cp) => (char::from_u32(cp).map_or(Class::Separator, classify), 6),
            None => (Class::Separator, 1),
        },
        // Not an escape: the backslash alone separates, and what follows is read as itself
        // (`4\1\1…` must not hide its digits).
        _ => (Class::Separator, 1),
    }
}

/// One digit read from the input, and the bytes it was read from.
#[derive(Debug, Clone, Copy)]
struct DigitAt {
    start: usize,
    len: u8,
    value: u8,
}

/// Digits between two separators.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Index of its first digit in [`Scan::digits`].
    first: usize,
    count: usize,
    /// Continues the previous group's run (only separators between them).
    joined: bool,
}

/// The digits of some bytes, grouped.
struct Scan {
    digits: Vec<DigitAt>,
    groups: Vec<Group>,
}

impl Scan {
    /// Reads `bytes`; with `stop_at`, reads on past that many bytes only while a run that started
    /// before it goes on and holds fewer than 19 digits past it (no candidate that includes a
    /// digit before `stop_at` can reach further).
    fn of(bytes: &[u8], reading: Reading, stop_at: Option<usize>) -> Self {
        let mut scan = Scan {
            digits: Vec::new(),
            groups: Vec::new(),
        };
        let mut in_group = false;
        // A run is open after a group until a letter ends it.
        let mut run_open = false;
        let mut digits_past_stop = 0;
        let mut i = 0;
        while i < bytes.len() {
            if stop_at.is_some_and(|stop| i >= stop)
                && (!run_open || digits_past_stop >= MAX_DIGITS)
            {
                break;
            }
            let (class, width) = read_char(bytes, i, reading);
            match class {
                Class::Digit(value) => {
                    if !in_group {
                        scan.groups.push(Group {
                            first: scan.digits.len(),
                            count: 0,
                            joined: run_open,
                        });
                        in_group = true;
                        run_open = true;
                    }
                    scan.digits.push(DigitAt {
                        start: i,
                        len: width as u8,
                        value,
                    });
                    if let Some(group) = scan.groups.last_mut() {
                        group.count += 1;
                    }
                    if stop_at.is_some_and(|stop| i >= stop) {
                        digits_past_stop += 1;
                    }
                }
                Class::Separator => in_group = false,
                Class::Breaker => {
                    in_group = false;
                    run_open = false;
                }
            }
            i += width;
        }
        scan
    }

    /// Calls `found(first digit, digit count)` for every card number, in order of its first
    /// group, until `found` returns false.
    fn candidates(&self, mut found: impl FnMut(usize, usize) -> bool) {
        for (s, start) in self.groups.iter().enumerate() {
            // Luhn sums of the candidate so far, doubling the digits at even / odd positions
            // from its left: which one applies depends on the final length.
            let (mut even_doubled, mut odd_doubled) = (0u32, 0u32);
            let mut len = 0;
            for (e, group) in self.groups[s..].iter().enumerate() {
                if e > 0 && !group.joined {
                    break;
                }
                if len + group.count > MAX_DIGITS {
                    break;
                }
                for d in &self.digits[group.first..group.first + group.count] {
                    if len % 2 == 0 {
                        even_doubled += doubled(d.value);
                        odd_doubled += u32::from(d.value);
                    } else {
                        even_doubled += u32::from(d.value);
                        odd_doubled += doubled(d.value);
                    }
                    len += 1;
                }
                // The check digit is the last; the doubled ones are an odd distance from it.
                let sum = if (len - 1) % 2 == 0 {
                    odd_doubled
                } else {
                    even_doubled
                };
                if len >= MIN_DIGITS && sum.is_multiple_of(10) && !found(start.first, len) {
                    return;
                }
            }
        }
    }

    /// `bytes` with each masked digit's bytes replaced by one `*`; `None` when nothing is masked.
    fn masked(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        // +1 where a candidate's masked digits start, -1 where they end: a digit is masked when
        // any candidate covers it (all but each candidate's last four).
        let mut edges = vec![0i32; self.digits.len() + 1];
        let mut any = false;
        self.candidates(|first, len| {
            edges[first] += 1;
            edges[first + len - KEEP_DIGITS] -= 1;
            any = true;
            true
        });
        if !any {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut copied = 0;
        let mut depth = 0;
        for (digit, edge) in self.digits.iter().zip(&edges) {
            depth += edge;
            if depth > 0 {
                out.extend_from_slice(&bytes[copied..digit.start]);
                out.push(b'*');
                copied = digit.start + usize::from(digit.len);
            }
        }
        out.extend_from_slice(&bytes[copied..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_test_card_numbers_are_caught_in_any_grouping() {
        for s in [
            "4111111111111111",
            "my card is 4111 1111 1111 1111!",
            "5500-0000-0000-0004",
            "amex 378282246310005 exp 12/29",
            "6011000990139424",
            "4222222222222",             // 13 digits
            "4111 1111 1111 1111 12/29", // an expiry date joins the run
            "qty 2 4111 1111 1111 1111", // a quantity joins the run
            "4111 1111 1111 1111 123",   // a CVV joins the run
            "4111  1111 1111 1111",      // any run of separators
            "4111.1111.1111.1111",
            "4111_1111/1111\t1111",
            "4111\u{200b}1111\u{200b}1111\u{200b}1111", // zero-width spaces
            "4111\u{ad}1111\u{2060}1111\u{feff}1111",   // soft hyphen, word joiner, BOM
            "４１１１１１１１１１１１１１１１",         // fullwidth
            "٤١١١١١١١١١١١١١١١",                         // Arabic-Indic
            "𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏",                      // mathematical bold
            "⁴¹¹¹¹¹¹¹¹¹¹¹¹¹¹¹",                         // superscripts
        ] {
            assert!(contains_card_number(s), "{s:?} should be caught");
        }
    }

    #[test]
    fn numbers_that_are_not_cards_pass() {
        for s in [
            "4111111111111112",          // Luhn fails
            "order 123456789012",        // 12 digits
            "41111111111111111111",      // 20 digits in one group
            "call 555 1234 or 555 9876", // runs too short
            "sku-000123-blue",
            "4111 1111 x 1111 1111", // a letter ends the run
        ] {
            assert!(!contains_card_number(s), "{s:?} should pass");
        }
    }

    #[test]
    fn masking_keeps_only_the_last_four_digits() {
        assert_eq!(
            mask_card_numbers("paid 4111-1111-1111-1111 ok, order 123"),
            "paid ****-****-****-1111 ok, order 123"
        );
        assert_eq!(
            mask_card_numbers("nothing here 12345"),
            "nothing here 12345"
        );
        // Every number of a run is masked, not only the first.
        assert_eq!(
            mask_card_numbers("4111 1111 1111 1111 / 5500 0000 0000 0004"),
            "**** **** **** 1111 / **** **** **** 0004"
        );
        assert_eq!(
            mask_card_numbers("４１１１１１１１１１１１１１１１"),
            "************１１１１"
        );
    }

    #[test]
    fn raw_lines_are_read_through_json_escapes() {
        let raw = br#"{"note":"\u0034\u0031\u0031\u0031 1111 1111 1111"}"#;
        let masked = String::from_utf8(mask_raw_line(raw, 1024)).expect("utf8");
        assert_eq!(masked, r#"{"note":"**** **** **** 1111"}"#);
        // A surrogate pair: U+1D7D2 MATHEMATICAL BOLD DIGIT FOUR.
        let raw = br#""\ud835\udfd2111111111111111""#;
        let masked = String::from_utf8(mask_raw_line(raw, 1024)).expect("utf8");
        assert_eq!(masked, r#""************1111""#);
        // Rust's escapes, as serde quotes input in its messages.
        assert_eq!(
            mask_card_numbers_in_quoted(
                r#"invalid type: string "4111\u{200b}1111\u{200b}1111\u{200b}1111""#
            ),
            r#"invalid type: string "****\u{200b}****\u{200b}****\u{200b}1111""#
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_separate_digits() {
        let raw = b"\xff4111\xfe1111\xfd1111\xfc1111";
        assert_eq!(
            mask_raw_line(raw, 1024),
            b"\xff****\xfe****\xfd****\xfc1111"
        );
    }

    #[test]
    fn a_number_straddling_the_cut_keeps_none_of_its_digits_before_it() {
        let mut raw = "x".repeat(100).into_bytes();
        raw.extend_from_slice(b"4111 1111 1111 1111");
        for cut in 100..raw.len() {
            let kept = mask_raw_line(&raw, cut);
            assert_eq!(kept.len(), cut);
            let readable = kept.iter().filter(|b| b.is_ascii_digit()).count();
            assert!(
                readable <= 4,
                "cut {cut}: {:?}",
                String::from_utf8_lossy(&kept)
            );
        }
        // Far past the cut, with a long run of separators in between.
        let mut raw = b"1234 5678 9012".to_vec();
        raw.extend(std::iter::repeat_n(b' ', 100_000));
        raw.extend_from_slice(b"3456 7890 1234");
        let whole = mask_card_numbers(std::str::from_utf8(&raw).expect("ascii")).into_owned();
        let kept = mask_raw_line(&raw, 20);
        assert_eq!(&kept[..], &whole.as_bytes()[..20]);
    }

    #[test]
    fn the_cut_of_a_utf8_line_is_on_a_character_boundary() {
        let raw = "é".repeat(10);
        let kept = mask_raw_line(raw.as_bytes(), 5);
        assert_eq!(kept, "éé".as_bytes());
    }

    #[test]
    fn the_digit_table_is_as_new_as_rusts_unicode() {
        let (major, minor, _) = digits::UNICODE_VERSION;
        let (std_major, std_minor, _) = char::UNICODE_VERSION;
        assert!(
            (major, minor) >= (std_major, std_minor),
            "the digit table is Unicode {major}.{minor}, Rust's char {std_major}.{std_minor}: \
             regenerate it with scripts/unicode_digits.py (pip install unicodedata2)"
        );
    }

    #[test]
    fn newer_scripts_dingbats_and_fillers_cannot_hide_a_number() {
        for s in [
            "\u{11F54}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}\u{11F51}", // Kawi
            "❹❶❶❶ ❶❶❶❶ ❶❶❶❶ ❶❶❶❶",
            "⒋⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈⒈",
            "⑷⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴⑴",
            "4111\u{3164}1111\u{3164}1111\u{3164}1111",
            "4111\u{FFA0}1111\u{115F}1111\u{1160}1111",
        ] {
            assert!(contains_card_number(s), "{s:?} should be caught");
        }
        // A backslash that is not a JSON escape hides nothing in a raw line.
        let raw = br#"{"n":"4\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1"}"#;
        let masked = String::from_utf8(mask_raw_line(raw, 1024)).expect("utf8");
        assert_eq!(
            masked.matches(|c: char| c.is_ascii_digit()).count(),
            4,
            "{masked}"
        );
    }

    #[test]
    fn digit_table_reads_known_digits() {
        assert_eq!(unicode_digit('٣'), Some(3));
        assert_eq!(unicode_digit('９'), Some(9));
        assert_eq!(unicode_digit('²'), Some(2));
        assert_eq!(unicode_digit('①'), Some(1));
        assert_eq!(unicode_digit('a'), None);
        assert_eq!(unicode_digit('é'), None);
        // Ranges are sorted and never overlap, or the binary search would miss digits.
        for pair in digits::DIGIT_RANGES.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
        for &(first, last, value) in &digits::DIGIT_RANGES {
            assert!(u32::from(value) + (last - first) <= 9);
        }
    }

    /// Luhn over a plain digit string, written independently of the incremental sums.
    fn reference_luhn(digits: &[u8]) -> bool {
        let mut sum = 0;
        for (i, &d) in digits.iter().rev().enumerate() {
            let mut v = u32::from(d);
            if i % 2 == 1 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        sum % 10 == 0
    }

    proptest::proptest! {
        #[test]
        fn luhn_check_digit_always_validates(prefix in proptest::collection::vec(0u8..10, 12..18)) {
            // Append the digit that makes the checksum valid; the result must be caught.
            let mut digits = prefix.clone();
            digits.push(0);
            let check = (0..10u8).find(|c| { *digits.last_mut().expect("non-empty") = *c; luhn_valid(&digits) })
                .expect("one check digit always exists");
            digits.pop();
            digits.push(check);
            let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            let text = format!("x {s} y");
            proptest::prop_assert!(contains_card_number(&text), "{}", text);
        }

        /// Groups of ASCII digits joined by spaces: the scan finds a number exactly when some
        /// sequence of whole groups of 13–19 digits passes Luhn (the quadratic rule it replaced).
        #[test]
        fn the_linear_scan_agrees_with_trying_every_pair_of_groups(
            groups in proptest::collection::vec(proptest::collection::vec(0u8..10, 1..8), 1..12)
        ) {
            let text = groups.iter()
                .map(|g| g.iter().map(|d| char::from(b'0' + d)).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ");
            let mut expected = false;
            for from in 0..groups.len() {
                for to in from..groups.len() {
                    let digits: Vec<u8> = groups[from..=to].concat();
                    if (13..=19).contains(&digits.len()) && reference_luhn(&digits) {
                        expected = true;
                    }
                }
            }
            proptest::prop_assert_eq!(contains_card_number(&text), expected, "{}", text);
        }
    }
}
