//! The PCI guard: no event may carry a primary account number (a payment card number).
//!
//! A card number is a run of 13 to 19 digits, optionally grouped by single spaces or dashes, whose
//! Luhn checksum is valid. Any string field that contains one is rejected: payment events carry an
//! opaque token from the payment provider, never card data. Runs of other lengths, and runs that
//! fail the Luhn check (order numbers, phone numbers), pass.

/// True when `s` contains a 13–19 digit run (spaces/dashes allowed between digits) passing Luhn.
pub fn contains_card_number(s: &str) -> bool {
    !card_number_spans(s, true).is_empty()
}

/// `s` with the digits of every card number replaced by `*` except the last four, as PCI DSS
/// allows to be shown. Used before a rejected line is kept in the dead-letter log.
pub fn mask_card_numbers(s: &str) -> std::borrow::Cow<'_, str> {
    let spans = card_number_spans(s, false);
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut bytes = s.as_bytes().to_vec();
    mask_spans(&mut bytes, &spans);
    // Only ASCII digits were replaced by an ASCII character: still UTF-8.
    std::borrow::Cow::Owned(String::from_utf8(bytes).expect("ASCII-for-ASCII replacement"))
}

/// Masks card numbers in bytes that are not valid UTF-8, in place (same rules as
/// [`mask_card_numbers`], applied to the ASCII digits, spaces and dashes of the bytes).
pub fn mask_card_digits_in_bytes(bytes: &mut [u8]) {
    // Map every non-ASCII byte to one ASCII letter: positions stay aligned, runs stay the same.
    let ascii: String = bytes
        .iter()
        .map(|&b| if b.is_ascii() { b as char } else { 'x' })
        .collect();
    let spans = card_number_spans(&ascii, false);
    mask_spans(bytes, &spans);
}

/// Replaces every digit of each span but the last four with `*`.
fn mask_spans(bytes: &mut [u8], spans: &[(usize, usize)]) {
    for &(start, end) in spans {
        let digits: Vec<usize> = (start..end)
            .filter(|&i| bytes[i].is_ascii_digit())
            .collect();
        let keep = digits.len().saturating_sub(4);
        for &i in &digits[..keep] {
            bytes[i] = b'*';
        }
    }
}

/// Byte ranges of card-number runs in `s`; with `first_only`, stops at the first.
fn card_number_spans(s: &str, first_only: bool) -> Vec<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut spans = Vec::new();
    // Fast path: most strings have too few digits to hold a card number at all.
    if bytes.iter().filter(|b| b.is_ascii_digit()).count() < 13 {
        return spans;
    }
    // Groups of digits of the current run: (first byte, byte after the last).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run starts here: groups of digits joined by single separators.
        groups.clear();
        let mut group_start = i;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_digit() {
                i += 1;
            } else if (b == b' ' || b == b'-')
                && i + 1 < bytes.len()
                && bytes[i + 1].is_ascii_digit()
            {
                groups.push((group_start, i));
                i += 1;
                group_start = i;
            } else {
                break;
            }
        }
        groups.push((group_start, i));
        if let Some(span) = card_in_run(bytes, &groups) {
            spans.push(span);
            if first_only {
                break;
            }
        }
    }
    spans
}

/// A card number in one run: the whole run, or — when neighbouring numbers joined it (an expiry
/// date, a CVV, a quantity) — any sequence of whole groups of 13–19 digits that passes Luhn.
fn card_in_run(bytes: &[u8], groups: &[(usize, usize)]) -> Option<(usize, usize)> {
    let digits_of = |from: usize, to: usize| -> Vec<u8> {
        groups[from..=to]
            .iter()
            .flat_map(|&(a, b)| bytes[a..b].iter().map(|d| d - b'0'))
            .collect()
    };
    let n = groups.len();
    for from in 0..n {
        for to in (from..n).rev() {
            let digits = digits_of(from, to);
            if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
                return Some((groups[from].0, groups[to].1));
            }
        }
    }
    None
}

/// The Luhn (mod 10) checksum over decimal digits, rightmost being the check digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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
        ] {
            assert!(contains_card_number(s), "{s} should be caught");
        }
    }

    #[test]
    fn numbers_that_are_not_cards_pass() {
        for s in [
            "4111111111111112",          // Luhn fails
            "order 123456789012",        // 12 digits
            "41111111111111111111",      // 20 digits
            "call 555 1234 or 555 9876", // runs too short
            "sku-000123-blue",
            "4111  1111 1111 1111", // a double space breaks the run
        ] {
            assert!(!contains_card_number(s), "{s} should pass");
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
    }
}
