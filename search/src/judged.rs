//! The judged query set (issue 24, item 4): queries made from a catalog, each with the products
//! that are relevant to it, and the scores a ranking gets (success@3 and nDCG@10, binary
//! relevance). `search/tests/relevance.rs` holds ours to the targets over it;
//! `benches/search_relevance.rs` runs the same queries through tantivy-py's default BM25 beside
//! ours.
//!
//! The kinds, from every 40th product (titles) or every 400th (the rest):
//! - `exact title`; `one typo` and `two typos` in the title's words; `words reversed`;
//! - `brand+category`: every product of that brand in that category is relevant;
//! - `prefix`: a title's first word and the start of its second, as typed; every product whose
//!   title starts so is relevant;
//! - `one typo, no number` and `two typos, no number`: the title's words without the number
//!   that ends every generated title (which alone finds the product, typo or not), with typos;
//!   every product with those words is relevant.
//!
//! The typos are made deterministically from the title's words (a substitution, a transposition
//! of adjacent letters, a deletion or an insertion), never in the number that tells the products
//! apart, and only where Elasticsearch's `fuzziness: AUTO` allows them for the word as typed (one
//! edit in a typed word of 3–5 letters, up to two from 6; a deletion shortens it, so a word takes
//! one typo from 4 letters and two from 7).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::document::SearchDocument;

/// A query with the products relevant to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    pub kind: String,
    pub query: String,
    pub relevant: Vec<String>,
}

/// The kinds, in the order [`judged`] makes them.
pub const KINDS: [&str; 8] = [
    "exact title",
    "one typo",
    "two typos",
    "words reversed",
    "brand+category",
    "prefix",
    "one typo, no number",
    "two typos, no number",
];

/// One edit of `word`, the `n`-th kind (substitution, transposition, deletion, insertion).
pub fn typo(word: &str, n: usize) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() < 3 {
        return word.to_owned();
    }
    let at = 1 + n % (c.len() - 2).max(1);
    match n % 4 {
        0 => c[at] = if c[at] == 'x' { 'q' } else { 'x' },
        1 if at + 1 < c.len() => c.swap(at, at + 1),
        1 => c.swap(at - 1, at),
        2 => {
            c.remove(at);
        }
        _ => c.insert(at, 'z'),
    }
    c.into_iter().collect()
}

/// The title with `edits` typos in its words (not the number), or `None` when its words cannot
/// take them under fuzziness AUTO.
pub fn typoed(title: &str, edits: usize, n: usize) -> Option<String> {
    let mut words: Vec<String> = title.split(' ').map(str::to_owned).collect();
    let mut left = edits;
    // The longest words first.
    let mut order: Vec<usize> = (0..words.len())
        .filter(|i| words[*i].chars().all(char::is_alphabetic))
        .collect();
    order.sort_by_key(|i| std::cmp::Reverse(words[*i].chars().count()));
    for i in order {
        let len = words[i].chars().count();
        // What fuzziness AUTO allows the word *as typed* (a deletion shortens it by one).
        let can = match len {
            0..=3 => 0,
            4..=6 => 1,
            _ => 2,
        };
        let take = can.min(left);
        for k in 0..take {
            words[i] = typo(&words[i], n + k * 2);
        }
        left -= take;
        if left == 0 {
            return Some(words.join(" "));
        }
    }
    None
}

/// The judged queries of a catalog (see the module docs).
pub fn judged(docs: &[SearchDocument]) -> Vec<Judged> {
    let mut out = Vec::new();
    let one = |kind: &str, query: String, relevant: Vec<String>| Judged {
        kind: kind.to_owned(),
        query,
        relevant,
    };
    for (n, doc) in docs.iter().enumerate().step_by(40) {
        let id = vec![doc.product_id.clone()];
        out.push(one(KINDS[0], doc.title.clone(), id.clone()));
        if let Some(q) = typoed(&doc.title, 1, n) {
            out.push(one(KINDS[1], q, id.clone()));
        }
        if let Some(q) = typoed(&doc.title, 2, n) {
            out.push(one(KINDS[2], q, id.clone()));
        }
        let mut words: Vec<&str> = doc.title.split(' ').collect();
        words.reverse();
        out.push(one(KINDS[3], words.join(" "), id));
    }
    let words_only = |title: &str| -> String {
        title
            .split(' ')
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (n, doc) in docs.iter().enumerate().step_by(400) {
        let stem = words_only(&doc.title);
        let relevant: Vec<String> = docs
            .iter()
            .filter(|d| words_only(&d.title).eq_ignore_ascii_case(&stem))
            .map(|d| d.product_id.clone())
            .collect();
        if let Some(q) = typoed(&stem, 1, n) {
            out.push(one(KINDS[6], q, relevant.clone()));
        }
        if let Some(q) = typoed(&stem, 2, n) {
            out.push(one(KINDS[7], q, relevant));
        }
    }
    for doc in docs.iter().step_by(400) {
        let Some(category) = doc.category_path.last() else {
            continue;
        };
        let relevant = docs
            .iter()
            .filter(|d| d.brand == doc.brand && d.category_path.last() == Some(category))
            .map(|d| d.product_id.clone())
            .collect();
        out.push(one(
            KINDS[4],
            format!("{} {}", doc.brand, category.to_lowercase()),
            relevant,
        ));
        let words: Vec<&str> = doc.title.split(' ').collect();
        let Some(second) = words.get(1) else {
            continue;
        };
        let cut: String = second
            .chars()
            .take(second.chars().count().max(4) - 2)
            .collect();
        let relevant = docs
            .iter()
            .filter(|d| {
                let w: Vec<&str> = d.title.split(' ').collect();
                w[0].eq_ignore_ascii_case(words[0])
                    && w.get(1)
                        .is_some_and(|w| w.to_lowercase().starts_with(&cut.to_lowercase()))
            })
            .map(|d| d.product_id.clone())
            .collect();
        out.push(one(KINDS[5], format!("{} {cut}", words[0]), relevant));
    }
    out
}

/// The scores of one kind's queries.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub queries: usize,
    /// A relevant product first.
    pub first: usize,
    /// The top 3 all relevant (or every relevant product in them, when fewer than 3).
    pub top3: usize,
    pub ndcg_sum: f64,
}

impl Score {
    /// Adds a query's ranking (product ids, best first).
    pub fn add(&mut self, ranked: &[String], relevant: &[String]) {
        let relevant: HashSet<&String> = relevant.iter().collect();
        self.queries += 1;
        self.first += usize::from(ranked.first().is_some_and(|id| relevant.contains(id)));
        let in_top3 = ranked
            .iter()
            .take(3)
            .filter(|id| relevant.contains(*id))
            .count();
        self.top3 += usize::from(in_top3 == relevant.len().min(3));
        let dcg: f64 = ranked
            .iter()
            .take(10)
            .enumerate()
            .filter(|(_, id)| relevant.contains(*id))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        self.ndcg_sum += dcg / ideal.max(f64::MIN_POSITIVE);
    }

    pub fn first_rate(&self) -> f64 {
        self.first as f64 / self.queries.max(1) as f64
    }

    /// success@3.
    pub fn success3(&self) -> f64 {
        self.top3 as f64 / self.queries.max(1) as f64
    }

    /// nDCG@10, the mean over the queries.
    pub fn ndcg10(&self) -> f64 {
        self.ndcg_sum / self.queries.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_made_as_stated() {
        assert_eq!(typo("wireless", 0), "wxreless");
        assert_eq!(typo("wireless", 1), "wierless");
        assert_eq!(
            typoed("Wireless audio 123", 1, 0).as_deref(),
            Some("Wxreless audio 123")
        );
        assert!(typoed("Pro tv 7", 1, 0).is_none(), "no word takes a typo");
        let two = typoed("Wireless audio 123", 2, 0).expect("two");
        assert_ne!(two, "Wireless audio 123");
        assert!(two.ends_with(" 123"), "the number untouched: {two}");
    }

    #[test]
    fn scores_count_first_top3_and_ndcg() {
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut s = Score::default();
        s.add(&ids(&["a", "b"]), &ids(&["a"]));
        s.add(&ids(&["b", "a"]), &ids(&["a"]));
        s.add(&ids(&["x", "y", "z", "a"]), &ids(&["a"]));
        assert_eq!((s.queries, s.first, s.top3), (3, 1, 2));
        let want = (1.0 + 1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / 3.0;
        assert!((s.ndcg10() - want).abs() < 1e-12);
    }
}
