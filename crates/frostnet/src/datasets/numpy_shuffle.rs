//! `np.random.RandomState(seed).shuffle(list)`, bit for bit: Keras shuffles an image folder's file
//! list with it before splitting off the validation subset, so reproducing it is what makes
//! `validation_split` with `shuffle=True` put the same files on the same side as Keras.

/// MT19937 seeded as NumPy's legacy `RandomState(int)` seeds it (`init_genrand`).
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// NumPy's legacy `random_interval(max)`: rejection sampling under the smallest bit mask.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16] {
            mask |= mask >> s;
        }
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

/// Shuffles `items` in place as `np.random.RandomState(seed).shuffle(items)` does.
pub(crate) fn shuffle<T>(items: &mut [T], seed: u32) {
    let mut mt = Mt19937::new(seed);
    for i in (1..items.len()).rev() {
        let j = mt.interval(i as u32) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_mt19937() {
        // The first outputs of MT19937 seeded with 5489 (the reference implementation's default).
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        assert_eq!(mt.next_u32(), 581_869_302);
    }

    #[test]
    fn shuffles_as_numpy_random_state() {
        // `l = list(range(n)); np.random.RandomState(seed).shuffle(l)` printed by NumPy 2.4.
        for (seed, want) in [
            (0, [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]),
            (42, [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]),
            (1337, [6, 3, 0, 4, 5, 2, 1, 9, 8, 7]),
        ] {
            let mut l: Vec<usize> = (0..10).collect();
            shuffle(&mut l, seed);
            assert_eq!(l, want, "seed {seed}");
        }
        let mut l: Vec<usize> = (0..1000).collect();
        shuffle(&mut l, 7);
        assert_eq!(l[..8], [778, 334, 271, 802, 216, 408, 812, 94]);
    }
}
