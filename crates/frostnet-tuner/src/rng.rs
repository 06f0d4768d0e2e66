//! A tiny, dependency-free deterministic random generator and hash.
//!
//! Trial parameters must be reproducible from `(seed, trial key, parameter
//! name)` alone, on any machine and across crate versions, so that several
//! workers generate exactly the trials a single worker would. Relying on an
//! external RNG crate would tie stored studies to that crate's stream
//! stability; SplitMix64 and FNV-1a are a few lines and never change.

/// FNV-1a 64-bit hash; stable across platforms and versions.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for one decision: derived from the study seed, a per-trial
    /// key and the hyperparameter name, so decisions are independent of the
    /// order in which workers run trials.
    pub(crate) fn for_decision(seed: u64, key: u64, name: &str, salt: u64) -> Self {
        let mut r = Rng {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        };
        let a = r.next_u64();
        let mut r = Rng {
            state: a ^ key.wrapping_mul(0xbf58_476d_1ce4_e5b9),
        };
        let b = r.next_u64();
        let mut r = Rng {
            state: b ^ fnv1a(name.as_bytes()) ^ salt.wrapping_mul(0x94d0_49bb_1331_11eb),
        };
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Rejection sampling keeps it unbiased.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_reproducible_and_distinct() {
        let a = Rng::for_decision(7, 3, "lr", 0).next_u64();
        let b = Rng::for_decision(7, 3, "lr", 0).next_u64();
        let c = Rng::for_decision(7, 4, "lr", 0).next_u64();
        let d = Rng::for_decision(7, 3, "units", 0).next_u64();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let mut r = Rng::for_decision(1, 1, "x", 0);
        for _ in 0..1000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(5) < 5);
        }
    }
}
