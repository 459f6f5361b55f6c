//! Relevance and latency beside a peer, in one run (issue 24, item 4 and "Numbers"): the judged
//! query set (`emporium_search::judged`, the one `search/tests/relevance.rs` holds to the
//! issue's targets) over 20,000 generated products, through ours and through tantivy-py (PyPI
//! `tantivy`: tantivy 0.27 under Python) with its defaults: BM25 over the same four fields as
//! one query parser makes it (the terms OR-ed, no field boosts, no typo tolerance, no prefix;
//! `benches/search_peer/tantivy_py.py`). Lucene's BM25 through pyserini needs Java 21 and a
//! PyTorch install; this machine has Java 17, so tantivy-py is the fallback.
//!
//! Per kind of query: success@3 and nDCG@10 of both. Per query: the latency of both (ours with
//! the facets over every hit, the total and highlights; the peer ranks and counts, and reads the
//! ids of its top 10), p50/p99 and the ratio. Target: ours at least as good as the peer on every
//! kind, by both scores.
//!
//! The peer runs from `~/.cache/emporium/bench-venv` (`EMPORIUM_BENCH_VENV`), where
//! `scripts/test` installs `tantivy` with DuckDB; without it the comparison is reported as
//! skipped and the target missed.
//!
//! Run: `cargo bench --bench search_relevance` (`-- --quick`: 5,000 products). Writes
//! `<target dir>/bench-results/search_relevance.json` (see `support::Report`).

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use emporium_search::judged::{Judged, KINDS, Score, judged};
use emporium_search::{SearchDocument, SearchIndex, SearchRequest};
use support::*;

fn venv() -> PathBuf {
    std::env::var_os("EMPORIUM_BENCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/emporium/bench-venv")
        })
}

/// A query's ranking (product ids, best first) and how long it took.
type Ranked = (Vec<String>, Duration);

/// The peer's build time and rankings, or why it could not run.
fn peer(docs: &[SearchDocument], queries: &[Judged]) -> Result<(f64, Vec<Ranked>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let write = |name: &str, lines: Vec<serde_json::Value>| -> Result<PathBuf, String> {
        let path = dir.path().join(name);
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        for line in lines {
            writeln!(f, "{line}").map_err(|e| e.to_string())?;
        }
        f.flush().map_err(|e| e.to_string())?;
        Ok(path)
    };
    let docs_path = write(
        "docs.jsonl",
        docs.iter()
            .map(|d| {
                serde_json::json!({
                    "product_id": d.product_id,
                    "title": d.title,
                    "brand": d.brand,
                    "category": d.category_path.join(" "),
                    "description": d.description,
                })
            })
            .collect(),
    )?;
    let queries_path = write(
        "queries.jsonl",
        queries
            .iter()
            .map(|q| serde_json::json!({"query": q.query}))
            .collect(),
    )?;
    let out = dir.path().join("out.json");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/search_peer/tantivy_py.py");
    let python = venv().join("bin/python");
    let status = std::process::Command::new(&python)
        .arg(script)
        .args([&docs_path, &queries_path, &out])
        .status()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !status.success() {
        return Err(format!(
            "tantivy-py exited with {status} (pip install tantivy into {})",
            venv().display()
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let results = json["results"]
        .as_array()
        .ok_or("no results")?
        .iter()
        .map(|r| {
            let ranked = r["ranked"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (ranked, Duration::from_nanos(r["ns"].as_u64().unwrap_or(0)))
        })
        .collect();
    Ok((json["build_s"].as_f64().unwrap_or(f64::NAN), results))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let products = if quick() { 5_000 } else { 20_000 };
    let mut report = Report::start(
        "search relevance beside tantivy-py",
        &format!(
            "{products} generated products; the judged query set (exact titles, one and two \
             typos, words reversed, brand + category, prefixes) through ours and tantivy-py's \
             default BM25, top 10"
        ),
    );
    let docs = search_catalog(products);
    let queries = judged(&docs);

    let began = Instant::now();
    let index = SearchIndex::in_memory().expect("index");
    for d in &docs {
        index.upsert(d).expect("upsert");
        index.set_in_stock(&d.product_id, true);
    }
    index.commit("judged").expect("commit");
    let ours_build = began.elapsed().as_secs_f64();
    let rank = |q: &str| -> Vec<String> {
        index
            .search(&SearchRequest {
                q: Some(q.to_owned()),
                per_page: Some(10),
                ..SearchRequest::default()
            })
            .map(|r| r.hits.into_iter().map(|h| h.product_id).collect())
            .unwrap_or_default()
    };
    for q in queries.iter().take(100) {
        rank(&q.query);
    }
    let ours: Vec<Ranked> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            let ranked = rank(&q.query);
            (ranked, t.elapsed())
        })
        .collect();
    let theirs = peer(&docs, &queries);

    let score = |results: &[Ranked]| {
        let mut by_kind: HashMap<&str, Score> = HashMap::new();
        for (q, (ranked, _)) in queries.iter().zip(results) {
            by_kind
                .entry(q.kind.as_str())
                .or_default()
                .add(ranked, &q.relevant);
        }
        by_kind
    };
    let mine = score(&ours);
    row(&[
        "kind".into(),
        "queries".into(),
        "ours success@3".into(),
        "ours nDCG@10".into(),
        "tantivy-py success@3".into(),
        "tantivy-py nDCG@10".into(),
    ]);
    let (peer_scores, peer_build) = match &theirs {
        Ok((build, results)) => (Some(score(results)), *build),
        Err(why) => {
            println!("   peer: skipped ({why})");
            (None, f64::NAN)
        }
    };
    let mut as_good = 0usize;
    for kind in KINDS {
        let m = mine.get(kind).cloned().unwrap_or_default();
        let p = peer_scores.as_ref().and_then(|s| s.get(kind)).cloned();
        let cell = |v: Option<f64>| v.map_or("skipped".to_owned(), |v| format!("{v:.3}"));
        row(&[
            kind.into(),
            m.queries.to_string(),
            format!("{:.3}", m.success3()),
            format!("{:.3}", m.ndcg10()),
            cell(p.as_ref().map(Score::success3)),
            cell(p.as_ref().map(Score::ndcg10)),
        ]);
        let key = kind.replace([' ', '+'], "_");
        report.figure(format!("{key}.ours_success3"), m.success3(), "share");
        report.figure(format!("{key}.ours_ndcg10"), m.ndcg10(), "share");
        if let Some(p) = &p {
            report.figure(format!("{key}.peer_success3"), p.success3(), "share");
            report.figure(format!("{key}.peer_ndcg10"), p.ndcg10(), "share");
            as_good += usize::from(m.success3() >= p.success3() && m.ndcg10() >= p.ndcg10());
        }
    }
    let mut ours_times: Vec<Duration> = ours.iter().map(|(_, t)| *t).collect();
    ours_times.sort();
    let (o50, o99) = (percentile(&ours_times, 0.5), percentile(&ours_times, 0.99));
    println!(
        "   ours: built in {ours_build:.2} s; p50 {:.3} ms, p99 {:.3} ms (with facets over every hit, the total and highlights)",
        o50.as_secs_f64() * 1e3,
        o99.as_secs_f64() * 1e3
    );
    report.figure("ours_p50_ms", o50.as_secs_f64() * 1e3, "ms");
    report.figure("ours_p99_ms", o99.as_secs_f64() * 1e3, "ms");
    if let Ok((_, results)) = &theirs {
        let mut times: Vec<Duration> = results.iter().map(|(_, t)| *t).collect();
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!(
            "   tantivy-py: built in {peer_build:.2} s; p50 {:.3} ms, p99 {:.3} ms (top 10 and the count, from Python); ours ÷ peer: p50 {:.2}×, p99 {:.2}×",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            o50.as_secs_f64() / p50.as_secs_f64().max(1e-9),
            o99.as_secs_f64() / p99.as_secs_f64().max(1e-9)
        );
        report.figure("peer_p50_ms", p50.as_secs_f64() * 1e3, "ms");
        report.figure("peer_p99_ms", p99.as_secs_f64() * 1e3, "ms");
        report.figure(
            "latency_ratio_p50",
            o50.as_secs_f64() / p50.as_secs_f64().max(1e-9),
            "x",
        );
    }
    report.target(
        "kinds_at_least_as_good_as_the_peer",
        if theirs.is_ok() { as_good as f64 } else { f64::NAN },
        "kinds",
        Op::AtLeast,
        KINDS.len() as f64,
        "issue 24, item 4: run the same documents and queries through Lucene's BM25 or tantivy-py; ours must be at least as good",
    );
    report.finish();
}
