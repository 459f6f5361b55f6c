use std::io::BufRead;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let ctx = emporium_schemas::ValidationContext::now();
    let mut bad = std::collections::BTreeMap::<String, usize>::new();
    for line in std::io::BufReader::new(std::fs::File::open(path).unwrap()).lines() {
        let line = line.unwrap();
        if let Err(e) = emporium_schemas::Event::parse(line.as_bytes(), &ctx) {
            let k = e.to_string();
            if !bad.contains_key(&k) {
                println!("{k}\n   {}", &line[..line.len().min(300)]);
            }
            *bad.entry(k).or_default() += 1;
        }
    }
    println!(
        "{} distinct errors, {} total",
        bad.len(),
        bad.values().sum::<usize>()
    );
}
