//! The query semantics on a small catalog whose answers are known: filters, in-stock first and
//! `in_stock=true` from the live table (no commit), sorts, facets over every hit, highlights,
//! the parameters refused, and an index reopened from its directory at its last commit.

use emporium_search::{SearchDocument, SearchError, SearchIndex, SearchRequest};

fn doc(
    id: &str,
    title: &str,
    brand: &str,
    category: &[&str],
    price: i64,
    rating: f64,
) -> SearchDocument {
    SearchDocument {
        product_id: id.into(),
        title: title.into(),
        brand: brand.into(),
        category_path: category.iter().map(|c| (*c).to_owned()).collect(),
        description: format!("{brand} {title}"),
        price_minor: price,
        currency: "USD".into(),
        reviews: u64::from(rating > 0.0),
        mean_rating: rating,
        popularity: price as f64 / 100.0,
        listed_ms: price,
    }
}

/// The shop's first product (`p-1`).
fn headphones() -> SearchDocument {
    doc(
        "p-1",
        "Wireless headphones",
        "Acme",
        &["Electronics", "Audio"],
        5_999,
        4.5,
    )
}

fn shop(index: &SearchIndex) {
    for d in [
        headphones(),
        doc(
            "p-2",
            "Wired headphones",
            "Globex",
            &["Electronics", "Audio"],
            1_999,
            3.2,
        ),
        doc(
            "p-3",
            "Wireless speaker",
            "Acme",
            &["Electronics", "Audio"],
            12_999,
            4.1,
        ),
        doc(
            "p-4",
            "Kitchen scale",
            "Initech",
            &["Home", "Kitchen"],
            2_499,
            0.0,
        ),
        doc(
            "p-5",
            "Wireless charger",
            "Globex",
            &["Electronics", "Phones"],
            2_999,
            2.0,
        ),
    ] {
        index.upsert(&d).expect("upsert");
        index.set_in_stock(&d.product_id, d.product_id != "p-3");
    }
    index.commit("log@42").expect("commit");
}

fn ids(index: &SearchIndex, r: SearchRequest) -> Vec<String> {
    index
        .search(&r)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.product_id)
        .collect()
}

fn q(text: &str) -> SearchRequest {
    SearchRequest {
        q: Some(text.into()),
        ..SearchRequest::default()
    }
}

#[test]
fn filters_sorts_stock_and_facets() {
    let index = SearchIndex::in_memory().expect("index");
    shop(&index);
    // Out of stock last (p-3), whatever its score.
    let wireless = ids(&index, q("wireless"));
    assert_eq!(wireless.len(), 3);
    assert_eq!(wireless.last().map(String::as_str), Some("p-3"));
    // A sell-out is visible at once, without a commit.
    let in_stock = |index: &SearchIndex| {
        ids(
            index,
            SearchRequest {
                in_stock: Some(true),
                ..q("wireless")
            },
        )
    };
    assert_eq!(in_stock(&index).len(), 2);
    index.set_in_stock("p-1", false);
    assert_eq!(in_stock(&index), ["p-5"]);
    index.set_in_stock("p-1", true);
    // Filters.
    let r = SearchRequest {
        category: Some("Electronics/Audio".into()),
        brand: Some("Acme".into()),
        ..SearchRequest::default()
    };
    let mut found = ids(&index, r);
    found.sort();
    assert_eq!(found, ["p-1", "p-3"]);
    let r = SearchRequest {
        price_min: Some(2_000),
        price_max: Some(6_000),
        ..q("wireless")
    };
    let mut found = ids(&index, r);
    found.sort();
    assert_eq!(found, ["p-1", "p-5"]);
    let r = SearchRequest {
        rating_min: Some(4.0),
        category: Some("Electronics".into()),
        ..SearchRequest::default()
    };
    let mut found = ids(&index, r);
    found.sort();
    assert_eq!(found, ["p-1", "p-3"]);
    // Sorts, in stock first.
    let sorted = |sort: &str| {
        ids(
            &index,
            SearchRequest {
                sort: Some(sort.into()),
                category: Some("Electronics".into()),
                ..SearchRequest::default()
            },
        )
    };
    assert_eq!(sorted("price_asc"), ["p-2", "p-5", "p-1", "p-3"]);
    assert_eq!(sorted("price_desc"), ["p-1", "p-5", "p-2", "p-3"]);
    assert_eq!(sorted("rating"), ["p-1", "p-2", "p-5", "p-3"]);
    // Facets count every hit, not the page.
    let answer = index
        .search(&SearchRequest {
            per_page: Some(1),
            ..q("wireless")
        })
        .expect("search");
    assert_eq!((answer.total, answer.hits.len()), (3, 1));
    let acme = answer
        .facets
        .brand
        .iter()
        .find(|b| b.value == "Acme")
        .expect("Acme");
    assert_eq!(acme.count, 2);
    let audio = answer
        .facets
        .category
        .iter()
        .find(|b| b.value == "Electronics/Audio")
        .expect("Audio");
    assert_eq!(audio.count, 2);
    let four = answer
        .facets
        .rating
        .iter()
        .find(|b| b.value == "4 and up")
        .expect("4+");
    assert_eq!(four.count, 2);
    assert_eq!(answer.facets.price.iter().map(|b| b.count).sum::<u64>(), 3);
    assert_eq!(answer.as_of.as_deref(), Some("log@42"));
}

#[test]
fn typos_prefixes_and_highlights() {
    let index = SearchIndex::in_memory().expect("index");
    shop(&index);
    // One typo in a 5-letter word, two in a 10-letter one, a prefix as typed.
    assert_eq!(ids(&index, q("kitchn scale")), ["p-4"]);
    assert_eq!(ids(&index, q("hedphoens wired"))[0], "p-2");
    assert_eq!(ids(&index, q("kitchen sc")), ["p-4"]);
    // Exact beats a typo: "wired" is within one edit of "wire" words, but p-2 matches exactly.
    assert_eq!(ids(&index, q("wired"))[0], "p-2");
    let hit = index.search(&q("wirless headphones")).expect("search").hits;
    assert_eq!(hit[0].product_id, "p-1");
    assert_eq!(hit[0].highlight, "<em>Wireless</em> <em>headphones</em>");
    assert!(hit[0].score.is_some_and(|s| s > 0.0));
}

#[test]
fn bad_parameters_are_refused_naming_them() {
    let index = SearchIndex::in_memory().expect("index");
    shop(&index);
    let refused = |r: SearchRequest| match index.search(&r) {
        Err(SearchError::BadParameter {
            parameter,
            expected,
        }) => format!("{parameter}: {expected}"),
        other => panic!("{r:?} gave {other:?}"),
    };
    assert!(refused(SearchRequest::default()).starts_with("q: a query of 1 to 256"));
    assert!(refused(q(&"a".repeat(257))).starts_with("q: at most 256 characters"));
    assert!(
        refused(SearchRequest {
            sort: Some("cheapest".into()),
            ..q("x")
        })
        .starts_with("sort: one of")
    );
    assert!(
        refused(SearchRequest {
            per_page: Some(101),
            ..q("x")
        })
        .starts_with("per_page: 1 to 100")
    );
    assert!(
        refused(SearchRequest {
            page: Some(501),
            per_page: Some(20),
            ..q("x")
        })
        .starts_with("page: ")
    );
    assert!(
        refused(SearchRequest {
            price_min: Some(10),
            price_max: Some(5),
            ..q("x")
        })
        .starts_with("price_min: at most price_max")
    );
    assert!(
        refused(SearchRequest {
            rating_min: Some(6.0),
            ..q("x")
        })
        .starts_with("rating_min: 0 to 5")
    );
    // Punctuation alone is no query, but a filter is enough.
    assert!(refused(q("?!")).starts_with("q: "));
    assert!(
        index
            .search(&SearchRequest {
                brand: Some("Acme".into()),
                ..q("?!")
            })
            .is_ok()
    );
}

#[test]
fn an_index_reopens_at_its_last_commit_with_its_products() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = SearchIndex::open(dir.path()).expect("open");
        assert_eq!(index.position(), None);
        shop(&index);
        index.remove("p-2").expect("remove");
        index
            .upsert(&doc("p-9", "Uncommitted", "Acme", &["Home"], 1, 0.0))
            .expect("upsert");
        index.commit("log@43").expect("commit");
        index
            .upsert(&doc("p-10", "Lost", "Acme", &["Home"], 1, 0.0))
            .expect("upsert");
        // Dropped without a commit: p-10 is not in the index.
    }
    let index = SearchIndex::open(dir.path()).expect("reopen");
    assert_eq!(index.position().as_deref(), Some("log@43"));
    assert_eq!(index.stats().documents, 5, "p-1, p-3, p-4, p-5, p-9");
    assert!(ids(&index, q("lost")).is_empty());
    assert!(
        ids(&index, q("wired")).iter().all(|id| id != "p-2"),
        "removed"
    );
    // Availability is fed again at start (not persisted); the ordinals read back agree.
    assert_eq!(index.availability().products(), 5);
    index.set_in_stock("p-9", true);
    assert_eq!(
        ids(
            &index,
            SearchRequest {
                in_stock: Some(true),
                ..q("uncommitted")
            }
        ),
        ["p-9"]
    );
}

#[test]
fn values_are_live_and_only_a_text_change_re_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = SearchIndex::open(dir.path()).expect("open");
        shop(&index);
        // A price, rating and popularity change: no re-index, seen by the next query, no commit.
        let cheaper = SearchDocument {
            price_minor: 999,
            mean_rating: 4.9,
            reviews: 7,
            popularity: 1_000.0,
            ..headphones()
        };
        assert!(!index.upsert(&cheaper).expect("upsert"), "same text");
        let under_1000 = SearchRequest {
            price_max: Some(1_000),
            ..q("headphones")
        };
        assert_eq!(ids(&index, under_1000.clone()), ["p-1"]);
        let answer = index.search(&under_1000).expect("search");
        assert_eq!(answer.hits[0].price_minor, 999);
        assert_eq!(answer.hits[0].reviews, 7);
        assert_eq!(answer.facets.price[0].count, 1, "under 10: the live price");
        let sorted = |sort: &str| {
            ids(
                &index,
                SearchRequest {
                    sort: Some(sort.into()),
                    ..q("wireless")
                },
            )
        };
        assert_eq!(sorted("price_asc"), ["p-1", "p-5", "p-3"]);
        assert_eq!(sorted("popularity"), ["p-1", "p-5", "p-3"]);
        assert_eq!(
            ids(
                &index,
                SearchRequest {
                    rating_min: Some(4.9),
                    ..q("wireless")
                }
            ),
            ["p-1"]
        );
        assert_eq!(
            index.get("p-1").expect("get").map(|d| d.mean_rating),
            Some(4.9)
        );
        // A text change re-indexes: the new title is searchable after the commit.
        let renamed = SearchDocument {
            title: "Wireless earmuffs".into(),
            ..cheaper.clone()
        };
        assert!(index.upsert(&renamed).expect("upsert"), "new text");
        assert!(ids(&index, q("earmuffs")).is_empty(), "not committed yet");
        index.commit("log@44").expect("commit");
        assert_eq!(ids(&index, q("earmuffs")), ["p-1"]);
        // Removed, then listed again with the same text: indexed again.
        index.remove("p-1").expect("remove");
        assert!(
            index.upsert(&renamed).expect("upsert"),
            "removed: re-indexed"
        );
        index.commit("log@45").expect("commit");
        assert_eq!(ids(&index, q("earmuffs")), ["p-1"]);
        // A value change after the last re-index: live, not in the indexed document.
        index.set_values(&SearchDocument {
            price_minor: 555,
            ..renamed.clone()
        });
        assert_eq!(index.values("p-1").map(|v| v.price_minor), Some(555));
        index.commit("log@46").expect("commit");
    }
    // Reopened: the values are the indexed documents' (the feeder sets newer ones at start),
    // and the fingerprints are read back: the same text is not indexed again.
    let index = SearchIndex::open(dir.path()).expect("reopen");
    assert_eq!(index.values("p-1").map(|v| v.price_minor), Some(999));
    let renamed = SearchDocument {
        title: "Wireless earmuffs".into(),
        price_minor: 555,
        ..headphones()
    };
    assert!(!index.upsert(&renamed).expect("upsert"), "text as indexed");
    assert_eq!(index.values("p-1").map(|v| v.price_minor), Some(555));
    index.clear().expect("clear");
    assert!(
        index.upsert(&renamed).expect("upsert"),
        "cleared: re-indexed"
    );
}

#[test]
fn suggestions_complete_titles_brands_and_categories_as_you_type() {
    use emporium_search::SuggestionKind::{Brand, Category, Title};
    let index = SearchIndex::in_memory().expect("index");
    shop(&index);
    let suggest = |q: &str| -> Vec<(emporium_search::SuggestionKind, String)> {
        index
            .suggest(q)
            .expect("suggest")
            .suggestions
            .into_iter()
            .map(|s| (s.kind, s.text))
            .collect()
    };
    // In-stock titles first (p-3, the speaker, is out of stock, though the most popular), then
    // the most popular (here the dearest).
    assert_eq!(
        suggest("wirel"),
        [
            (Title, "Wireless headphones".to_owned()),
            (Title, "Wireless charger".to_owned()),
            (Title, "Wireless speaker".to_owned()),
        ]
    );
    // A whole word (with a typo) then the start of the next.
    assert_eq!(
        suggest("wireles head"),
        [(Title, "Wireless headphones".to_owned())]
    );
    // Brands and category levels, most products first.
    assert_eq!(
        suggest("glo"),
        [(Brand, "Globex".to_owned())],
        "no title says Globex"
    );
    assert_eq!(suggest("aud"), [(Category, "Electronics/Audio".to_owned())]);
    assert_eq!(
        suggest("el"),
        [(Category, "Electronics".to_owned())],
        "a path suggested by its own level's words"
    );
    // The product a title suggestion is of, and its stock.
    let first = &index.suggest("kitchen").expect("suggest").suggestions;
    assert_eq!(first[0].product_id.as_deref(), Some("p-4"));
    assert_eq!(first[0].products, 1);
    assert!(
        first
            .iter()
            .any(|s| s.kind == Category && s.text == "Home/Kitchen"),
        "{first:?}"
    );
    // A removed product is no longer suggested once committed.
    index.remove("p-4").expect("remove");
    index.commit("log@43").expect("commit");
    assert!(!suggest("kitch").contains(&(Title, "Kitchen scale".to_owned())));
    for bad in ["", "   ", &"x".repeat(101)] {
        assert!(matches!(
            index.suggest(bad),
            Err(SearchError::BadParameter { parameter: "q", .. })
        ));
    }
}

/// The hit loop's answers agree with each other on a generated catalog: for every sort, the
/// pages put together are the whole order (in stock first, keys in order, no hit twice); the
/// total is the number of hits; the price and rating bands count every hit; a filtered query
/// gives exactly the unfiltered hits that pass the filter, in the same order.
#[test]
fn pages_totals_facets_and_filters_agree_on_a_generated_catalog() {
    let index = SearchIndex::in_memory().expect("index");
    let (brands, words) = (
        ["Acme", "Globex", "Initech", "Umbrella"],
        [
            "lamp", "desk", "brass", "chair", "oak", "stool", "shelf", "rug",
        ],
    );
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    for i in 0..250u64 {
        let title = format!(
            "{} {} {}",
            words[next(8) as usize],
            words[next(8) as usize],
            i
        );
        let d = SearchDocument {
            popularity: next(50) as f64,
            listed_ms: next(1_000) as i64,
            ..doc(
                &format!("p-{i}"),
                &title,
                brands[next(4) as usize],
                &[
                    ["Home", "Office"][next(2) as usize],
                    "Lighting",
                    "Lamps",
                    "Desk",
                    "Brass",
                ][..if i % 10 == 0 { 5 } else { 2 }],
                100 * next(700) as i64,
                next(50) as f64 / 10.0,
            )
        };
        index.upsert(&d).expect("upsert");
        index.set_in_stock(&d.product_id, next(3) > 0);
        if i % 97 == 0 {
            index.commit(&format!("log@{i}")).expect("commit");
        }
    }
    index.commit("log@250").expect("commit");
    assert!(index.stats().segments > 1, "several segments");
    for sort in [
        "relevance",
        "price_asc",
        "price_desc",
        "popularity",
        "rating",
        "newest",
    ] {
        for text in ["lamp", "brass oak", "acme"] {
            let base = SearchRequest {
                sort: Some(sort.into()),
                per_page: Some(100),
                ..q(text)
            };
            let all = index.search(&base).expect("search");
            assert!(all.total > 0 && all.total <= 100, "{text}: {}", all.total);
            assert_eq!(all.hits.len() as u64, all.total, "{sort} {text}");
            let key = |h: &emporium_search::Hit| -> f64 {
                match sort {
                    "price_asc" => -(h.price_minor as f64),
                    "price_desc" => h.price_minor as f64,
                    "rating" => h.mean_rating,
                    "relevance" => f64::from(h.score.unwrap_or(0.0)),
                    _ => 0.0,
                }
            };
            for pair in all.hits.windows(2) {
                assert!(pair[0].in_stock >= pair[1].in_stock, "in stock first");
                if pair[0].in_stock == pair[1].in_stock {
                    assert!(key(&pair[0]) >= key(&pair[1]), "{sort}: in order");
                }
            }
            let ids: Vec<&str> = all.hits.iter().map(|h| h.product_id.as_str()).collect();
            let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
            assert_eq!(distinct.len(), ids.len(), "no hit twice");
            let bands = |b: &[emporium_search::Bucket]| b.iter().map(|b| b.count).sum::<u64>();
            assert_eq!(bands(&all.facets.price), all.total);
            let rated_1 = all.hits.iter().filter(|h| h.mean_rating >= 1.0).count() as u64;
            assert_eq!(all.facets.rating.last().map(|b| b.count), Some(rated_1));
            // Category facets: every prefix of every hit's path (deep ones too), counted.
            let mut by_prefix = std::collections::BTreeMap::<String, u64>::new();
            for h in &all.hits {
                for n in 1..=h.category_path.len() {
                    *by_prefix.entry(h.category_path[..n].join("/")).or_default() += 1;
                }
            }
            let facets: std::collections::BTreeMap<String, u64> = all
                .facets
                .category
                .iter()
                .map(|b| (b.value.clone(), b.count))
                .collect();
            assert_eq!(facets, by_prefix, "{sort} {text}: category facets");
            // Pages of 7 put together: the same order.
            let mut paged = Vec::new();
            for page in 1.. {
                let p = index
                    .search(&SearchRequest {
                        page: Some(page),
                        per_page: Some(7),
                        ..base.clone()
                    })
                    .expect("page");
                assert_eq!(p.total, all.total);
                if p.hits.is_empty() {
                    break;
                }
                paged.extend(p.hits.into_iter().map(|h| h.product_id));
            }
            assert_eq!(paged, ids, "{sort} {text}: pages");
            // Filtered: the unfiltered hits that pass, in the same order.
            let filtered = SearchRequest {
                in_stock: Some(true),
                price_min: Some(10_000),
                price_max: Some(50_000),
                rating_min: Some(2.5),
                ..base.clone()
            };
            let expected: Vec<&str> = all
                .hits
                .iter()
                .filter(|h| {
                    h.in_stock && (10_000..=50_000).contains(&h.price_minor) && h.mean_rating >= 2.5
                })
                .map(|h| h.product_id.as_str())
                .collect();
            let got = index.search(&filtered).expect("filtered");
            assert_eq!(
                got.hits
                    .iter()
                    .map(|h| h.product_id.as_str())
                    .collect::<Vec<_>>(),
                expected,
                "{sort} {text}: filtered"
            );
            assert_eq!(got.total, expected.len() as u64);
        }
    }
}

#[test]
fn an_index_of_another_schema_is_refused_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut b = tantivy::schema::Schema::builder();
        b.add_text_field("title", tantivy::schema::TEXT);
        let directory = tantivy::directory::MmapDirectory::open(dir.path()).expect("directory");
        tantivy::Index::create(directory, b.build(), tantivy::IndexSettings::default())
            .expect("another index");
    }
    match SearchIndex::open(dir.path()) {
        Err(SearchError::OtherSchema { path }) => assert!(
            path.contains(
                dir.path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("?")
            )
        ),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("opened an index of another schema"),
    }
}
