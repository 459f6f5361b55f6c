//! Product popularity: a Zipf distribution over ranks, sampled in O(1) with Walker's alias method.
//! (rand_distr's Zipf computes a `powf` per sample, which dominated the generator's profile.)

use rand::Rng;

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
pub struct ZipfTable {
    probability: Vec<f32>,
    alias: Vec<u32>,
}

impl ZipfTable {
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        // Vose's alias method: split scaled weights into under- and over-full columns.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut probability = vec![1.0f32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s_i), Some(&l_i)) = (small.pop(), large.last()) {
            probability[s_i] = scaled[s_i] as f32;
            alias[s_i] = l_i as u32;
            scaled[l_i] -= 1.0 - scaled[s_i];
            if scaled[l_i] < 1.0 {
                large.pop();
                small.push(l_i);
            }
        }
        Self { probability, alias }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let column = rng.random_range(0..self.probability.len());
        if rng.random::<f32>() < self.probability[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn frequencies_follow_zipf() {
        let n = 1000;
        let table = ZipfTable::new(n, 1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0u32; n];
        let draws = 400_000;
        for _ in 0..draws {
            counts[table.sample(&mut rng)] += 1;
        }
        let harmonic: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        for rank in [0usize, 1, 9, 99] {
            let expected = draws as f64 / ((rank + 1) as f64 * harmonic);
            let got = counts[rank] as f64;
            assert!(
                (got - expected).abs() < 0.1 * expected + 30.0,
                "rank {rank}: expected ~{expected:.0}, got {got}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
    }
}
