//! Typo tolerance, as Elasticsearch's `fuzziness: AUTO` (`AUTO:3,6`): a term of 0–2 characters
//! must match exactly, one of 3–5 within one edit, one of 6 or more within two; an edit is an
//! insertion, a deletion, a substitution or a transposition of two adjacent characters
//! (Damerau–Levenshtein, as tantivy's `FuzzyTermQuery` with `transposition_cost_one`).

/// The edits a query term of this many characters may differ by.
pub fn allowed_edits(term: &str) -> u8 {
    match term.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// The optimal-string-alignment distance between `a` and `b` (adjacent transpositions cost
/// one), or `None` once it is sure to exceed `limit`.
pub fn distance_within(a: &str, b: &str, limit: u8) -> Option<u8> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let limit = usize::from(limit);
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    // Three rows: the one before the previous (for transpositions), the previous, the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let d = previous[b.len()];
    (d <= limit).then_some(d as u8)
}

/// Whether `token` (from a document) matches the query `term`: within the term's allowed edits,
/// or, for the query's last term, a token that starts with it as typed; a term of digits only,
/// exactly.
pub fn matches(term: &str, token: &str, prefix: bool) -> bool {
    if term.chars().all(|c| c.is_ascii_digit()) {
        // Numbers match exactly (see `crate::query`).
        return term == token;
    }
    let edits = allowed_edits(term);
    if distance_within(term, token, edits).is_some() {
        return true;
    }
    prefix && token.starts_with(term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_follow_fuzziness_auto() {
        assert_eq!(allowed_edits("tv"), 0);
        assert_eq!(allowed_edits("cam"), 1);
        assert_eq!(allowed_edits("phone"), 1);
        assert_eq!(allowed_edits("laptop"), 2);
        assert_eq!(allowed_edits("écran"), 1, "characters, not bytes");
    }

    #[test]
    fn distances_count_adjacent_transpositions_as_one() {
        assert_eq!(distance_within("wireless", "wireless", 2), Some(0));
        assert_eq!(distance_within("wireless", "wirelss", 2), Some(1));
        assert_eq!(distance_within("wireless", "wrieless", 2), Some(1), "swap");
        assert_eq!(distance_within("wireless", "wrielss", 2), Some(2));
        assert_eq!(distance_within("wireless", "wrlss", 2), None);
        assert_eq!(distance_within("kitchen", "", 2), None);
    }

    #[test]
    fn the_last_term_matches_a_prefix() {
        assert!(matches("wirel", "wireless", true));
        assert!(!matches("wirel", "wireless", false));
        assert!(
            !matches("wirle", "wireless", true),
            "a prefix as typed: no typo in it (Elasticsearch's match_bool_prefix)"
        );
        assert!(
            matches("wirelss", "wireless", true),
            "a whole word with a typo"
        );
        assert!(!matches("tv", "tvs", false));
        assert!(matches("123", "123", true) && !matches("123", "124", true));
        assert!(!matches("12", "123", true), "no prefix on numbers");
    }
}
