use emporium_ingest::generator::{Generator, GeneratorConfig};
fn main() {
    let n = 3_000_000;
    let cfg = GeneratorConfig { products: 100_000, users: 1_000_000, ..GeneratorConfig::default() };
    let mut g = Generator::new(cfg).unwrap();
    let t = std::time::Instant::now();
    let mut x = 0usize;
    for _ in 0..n { let e = g.next_event(); x += e.partition_key().len(); }
    let g_t = t.elapsed();
    println!("gen only {:?} ({:.0}/s) {}", g_t, n as f64/g_t.as_secs_f64(), x);
}
