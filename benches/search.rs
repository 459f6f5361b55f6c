//! Product search at 1M products (issue 24, "Numbers"): the index built from scratch, queries as
//! shoppers type them, and a steady stream of updates (ADR 0013).
//!
//! Workload: the generator's catalog of 1M products (titles `"<adjective> <subcategory> <n>"`,
//! 16 brands, 40 subcategories), as search documents, into an index on disk (`emporium-search`,
//! tantivy 0.27, one indexing thread, 64 MiB buffer), every product in stock but one in five.
//! - build: every document upserted, one commit; documents/s, the index's size on disk, the
//!   process's memory growth;
//! - queries: 2,000 of 1–3 terms (a title's words, with and without a typo, a prefix as typed,
//!   brand + category), one in three with a filter (category, price range or `in_stock=true`),
//!   every one with the facets over all its hits and the first page of 20 with highlights; one
//!   thread, then two at once (queries/s);
//! - suggest: 2,000 starts of titles (one to three words, the last cut), brands and categories;
//! - updates: 200 rounds of 1,000 documents upserted (description changes: re-indexed) and a
//!   commit, the index reloaded after each (a commit a second for 200 s of a stream of 1,000
//!   changes a second): the commit's latency and the segments searchable after each round;
//!   before them, 1M availability flips (a sell-out or a restock) and 1M price and popularity
//!   changes (live values): the cost of one, with no commit and no re-index.
//!
//! Targets (issue 24): build ≥ 30k documents/s; query p99 ≤ 20 ms and ≥ 1,000 queries/s;
//! suggest p99 ≤ 5 ms;
//! segments bounded under the stream: the most over the last 100 rounds at most 1.5× the most
//! over the first 100 (the log merge policy merges 8 segments of a size into one; a count that
//! grew with the commits would double).
//!
//! Run: `cargo bench --bench search` (`-- --quick`: 100k products, a smoke run;
//! `EMPORIUM_BENCH_PRODUCTS=N` for another size). Writes
//! `<target dir>/bench-results/search.json` (see `support::Report`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_search::{SearchDocument, SearchIndex, SearchRequest};
use support::*;

/// Rounds of 1,000 upserts and a commit.
const ROUNDS: usize = 200;

/// The catalog with reviews, ratings and popularity spread over it.
fn catalog(n: usize) -> Vec<SearchDocument> {
    search_catalog(n)
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let i = i as u64;
            SearchDocument {
                reviews: i % 50,
                mean_rating: (i % 41) as f64 / 10.0 + 1.0,
                popularity: ((i * 7_919) % 10_000) as f64,
                ..d
            }
        })
        .collect()
}

/// The kinds of [`queries`], in the order they take turns.
const KINDS: [&str; 5] = [
    "whole title",
    "typo + word",
    "word + prefix",
    "brand + category",
    "one word",
];

/// The queries: what a shopper types, drawn from the catalog.
fn queries(docs: &[SearchDocument], n: usize) -> Vec<SearchRequest> {
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let d = &docs[(k * 7_717) % docs.len()];
        let words: Vec<&str> = d.title.split(' ').collect();
        let q = match k % 5 {
            // The whole title.
            0 => d.title.clone(),
            // A typo in the first word.
            1 => {
                let mut w: Vec<char> = words[0].chars().collect();
                if w.len() > 3 {
                    w.swap(1, 2);
                }
                format!("{} {}", w.into_iter().collect::<String>(), words[1])
            }
            // Two words, the second as typed so far.
            2 => {
                let cut: String = words[1].chars().take(3).collect();
                format!("{} {cut}", words[0])
            }
            // Brand and category.
            3 => format!("{} {}", d.brand, words[1]),
            // One word.
            _ => words[1].to_owned(),
        };
        let mut r = SearchRequest {
            q: Some(q),
            ..SearchRequest::default()
        };
        match k % 9 {
            0 => r.category = Some(d.category_path[0].clone()),
            3 => {
                r.price_min = Some(1_000);
                r.price_max = Some(20_000);
            }
            6 => r.in_stock = Some(true),
            _ => {}
        }
        out.push(r);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    // As the `emporium` binary runs: freed pages kept a while, not zeroed again per query.
    support::alloc::keep_freed_memory_a_while();
    let products: usize = if quick() {
        100_000
    } else {
        std::env::var("EMPORIUM_BENCH_PRODUCTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let query_count = if quick() { 500 } else { 2_000 };
    let mut report = Report::start(
        "product search",
        &format!(
            "{products} generated products into an on-disk tantivy index (1 thread, 64 MiB); \
             {query_count} queries of 1-3 terms with facets, a third filtered; 200 rounds of \
             1,000 upserts + commit; 1M availability flips"
        ),
    );
    let docs = catalog(products);
    let dir = tempfile::tempdir().expect("tempdir");
    let rss_before = rss_bytes();

    // Build.
    let index = SearchIndex::open(dir.path()).expect("open");
    let began = Instant::now();
    for (i, d) in docs.iter().enumerate() {
        index.upsert(d).expect("upsert");
        index.set_in_stock(&d.product_id, i % 5 != 4);
    }
    index.commit("build").expect("commit");
    let build = began.elapsed();
    let build_rate = products as f64 / build.as_secs_f64();
    let disk_mib = dir_bytes(dir.path()) as f64 / (1 << 20) as f64;
    let rss_mib = rss_bytes().saturating_sub(rss_before) as f64 / (1 << 20) as f64;
    println!(
        "   build: {products} documents in {:.1} s ({}), {disk_mib:.0} MiB on disk, RSS +{rss_mib:.0} MiB, {} segments",
        build.as_secs_f64(),
        fmt_rate(build_rate),
        index.stats().segments
    );

    // Queries, one thread.
    let requests = queries(&docs, query_count);
    let mut hits_total = 0u64;
    for r in requests.iter().take(100) {
        index.search(r).expect("warm-up");
    }
    let mut latencies = Vec::with_capacity(requests.len());
    let mut by_kind: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
    let began = Instant::now();
    for (k, r) in requests.iter().enumerate() {
        let t = Instant::now();
        let answer = index.search(r).expect("search");
        latencies.push(t.elapsed());
        by_kind[k % KINDS.len()].push(t.elapsed());
        hits_total += answer.total;
    }
    let one_thread = requests.len() as f64 / began.elapsed().as_secs_f64();
    for (kind, mut times) in KINDS.iter().zip(by_kind) {
        times.sort();
        println!(
            "   {kind:>20}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    // Two threads at once.
    let index = Arc::new(index);
    let began = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (index, requests) = (Arc::clone(&index), &requests);
            s.spawn(move || {
                for r in requests.iter().skip(t).step_by(2) {
                    index.search(r).expect("search");
                }
            });
        }
    });
    let two_threads = requests.len() as f64 / began.elapsed().as_secs_f64();
    println!(
        "   queries: p50 {:.2} ms, p99 {:.2} ms, {} one thread, {} two threads, {:.0} hits on average",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        fmt_rate(one_thread),
        fmt_rate(two_threads),
        hits_total as f64 / requests.len() as f64
    );

    // Suggestions as shoppers type: the start of a title (one, two and three words, the last
    // cut), of a brand, of a category.
    let typed: Vec<String> = (0..query_count)
        .map(|k| {
            let d = &docs[(k * 4_409) % docs.len()];
            let words: Vec<&str> = d.title.split(' ').collect();
            let cut = |w: &str, n: usize| w.chars().take(n).collect::<String>();
            match k % 5 {
                0 => cut(words[0], 2 + k % 3),
                1 => format!("{} {}", words[0], cut(words[1], 1 + k % 4)),
                2 => format!("{} {} {}", words[0], words[1], cut(words[2], 1)),
                3 => cut(&d.brand, 2 + k % 3),
                _ => cut(&d.category_path[d.category_path.len() - 1], 3),
            }
        })
        .collect();
    for q in typed.iter().take(100) {
        index.suggest(q).expect("warm-up");
    }
    let mut suggest_times = Vec::with_capacity(typed.len());
    let mut suggested = 0usize;
    for q in &typed {
        let t = Instant::now();
        suggested += index.suggest(q).expect("suggest").suggestions.len();
        suggest_times.push(t.elapsed());
    }
    suggest_times.sort();
    let (suggest_p50, suggest_p99) = (
        percentile(&suggest_times, 0.5),
        percentile(&suggest_times, 0.99),
    );
    println!(
        "   suggest: p50 {:.2} ms, p99 {:.2} ms, {:.1} suggestions on average",
        suggest_p50.as_secs_f64() * 1e3,
        suggest_p99.as_secs_f64() * 1e3,
        suggested as f64 / typed.len() as f64
    );

    // A steady stream of updates.
    let began = Instant::now();
    let flips = 1_000_000usize;
    for k in 0..flips {
        let d = &docs[(k * 13) % docs.len()];
        index.set_in_stock(&d.product_id, k % 2 == 0);
    }
    let flip_ns = began.elapsed().as_nanos() as f64 / flips as f64;
    println!("   availability: {flip_ns:.0} ns per flip, visible to the next query, no commit");
    let began = Instant::now();
    let mut reindexed = 0usize;
    for k in 0..flips {
        let mut d = docs[(k * 13) % docs.len()].clone();
        d.price_minor += 1 + (k % 7) as i64;
        d.popularity += 1.0;
        reindexed += usize::from(index.upsert(&d).expect("upsert"));
    }
    let value_ns = began.elapsed().as_nanos() as f64 / flips as f64;
    println!(
        "   values: {value_ns:.0} ns per price and popularity change (the document cloned and upserted), {reindexed} re-indexed, visible to the next query, no commit"
    );

    let mut commits = Vec::new();
    let mut segments = Vec::new();
    for round in 0..ROUNDS {
        for k in 0..1_000usize {
            // A text change (a value change re-indexes nothing: measured below).
            let mut d = docs[(round * 1_000 + k) * 37 % docs.len()].clone();
            d.description = format!("{} revised {round}", d.description);
            index.upsert(&d).expect("upsert");
        }
        let t = Instant::now();
        index.commit(&format!("round {round}")).expect("commit");
        commits.push(t.elapsed());
        segments.push(index.stats().segments);
    }
    let (first, last) = segments.split_at(ROUNDS / 2);
    let most_first = first.iter().copied().max().unwrap_or(0);
    let most_last = last.iter().copied().max().unwrap_or(0);
    commits.sort();
    let (commit_p50, commit_p99) = (percentile(&commits, 0.5), percentile(&commits, 0.99));
    println!(
        "   updates: {ROUNDS} commits of 1,000 upserts: commit + reload p50 {:.0} ms, p99 {:.0} ms; segments at most {most_first} over the first half, {most_last} over the second, {} at the end",
        commit_p50.as_secs_f64() * 1e3,
        commit_p99.as_secs_f64() * 1e3,
        segments.last().copied().unwrap_or(0)
    );
    report.row(serde_json::json!({
        "products": products,
        "build_s": build.as_secs_f64(),
        "disk_mib": disk_mib,
        "rss_growth_mib": rss_mib,
        "query_p50_ms": p50.as_secs_f64() * 1e3,
        "query_p99_ms": p99.as_secs_f64() * 1e3,
        "segments": segments,
    }));
    report.figure("disk_mib", disk_mib, "MiB");
    report.figure("rss_growth_mib", rss_mib, "MiB");
    report.figure("query_p50_ms", p50.as_secs_f64() * 1e3, "ms");
    report.figure("queries_per_s_two_threads", two_threads, "queries/s");
    report.figure("suggest_p50_ms", suggest_p50.as_secs_f64() * 1e3, "ms");
    report.target(
        "suggest_p99_ms",
        suggest_p99.as_secs_f64() * 1e3,
        "ms",
        Op::AtMost,
        5.0,
        "issue 24: suggest p99 <= 5 ms",
    );
    report.figure("commit_p50_ms", commit_p50.as_secs_f64() * 1e3, "ms");
    report.figure("commit_p99_ms", commit_p99.as_secs_f64() * 1e3, "ms");
    report.figure("availability_flip_ns", flip_ns, "ns");
    report.figure("value_change_ns", value_ns, "ns");
    report.target(
        "build_documents_per_s",
        build_rate,
        "documents/s",
        Op::AtLeast,
        30_000.0,
        "issue 24: full index build >= 30k documents/s",
    );
    report.target(
        "query_p99_ms",
        p99.as_secs_f64() * 1e3,
        "ms",
        Op::AtMost,
        20.0,
        "issue 24: query p99 <= 20 ms for 1-3-term fuzzy queries with facets and filters",
    );
    report.target(
        "queries_per_s",
        one_thread.max(two_threads),
        "queries/s",
        Op::AtLeast,
        1_000.0,
        "issue 24: >= 1,000 queries/s",
    );
    report.figure("segments_most", most_last as f64, "segments");
    report.target(
        "segments_growth",
        most_last as f64 / most_first.max(1) as f64,
        "x",
        Op::AtMost,
        1.5,
        "issue 24: segment counts bounded under a steady stream of updates",
    );
    report.finish();
}
