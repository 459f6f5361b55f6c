"""The peer of benches/search_relevance.rs: the same documents and queries through tantivy-py
(PyPI `tantivy`: tantivy 0.27 under Python) with its defaults: BM25 over title, brand, category
and description as one query parser makes it (the terms OR-ed, no field boosts, no typo
tolerance, no prefix), top 10.

Usage: python tantivy_py.py DOCS.jsonl QUERIES.jsonl OUT.json
Writes {"build_s": …, "results": [{"ranked": [ids…], "ns": latency}, …]} in the queries' order.
"""

import json
import sys
import time

import tantivy

FIELDS = ["title", "brand", "category", "description"]


def main(docs_path, queries_path, out_path):
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("product_id", stored=True, tokenizer_name="raw")
    for field in FIELDS:
        builder.add_text_field(field)
    index = tantivy.Index(builder.build())
    began = time.perf_counter()
    writer = index.writer()
    with open(docs_path) as docs:
        for line in docs:
            d = json.loads(line)
            writer.add_document(tantivy.Document(**{k: d[k] for k in ["product_id", *FIELDS]}))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    build_s = time.perf_counter() - began
    searcher = index.searcher()
    with open(queries_path) as queries:
        queries = [json.loads(line)["query"] for line in queries]
    # Warm-up, as the Rust side does.
    for q in queries[:100]:
        searcher.search(index.parse_query_lenient(q, FIELDS)[0], 10)
    results = []
    for q in queries:
        t = time.perf_counter_ns()
        query = index.parse_query_lenient(q, FIELDS)[0]
        hits = searcher.search(query, 10).hits
        ranked = [searcher.doc(address)["product_id"][0] for _, address in hits]
        results.append({"ranked": ranked, "ns": time.perf_counter_ns() - t})
    with open(out_path, "w") as out:
        json.dump({"build_s": build_s, "results": results}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
