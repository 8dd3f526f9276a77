//! The held-out split used to validate adapter training: whole pairs, chosen by their content
//! hash, so a pair stays on its side of the split whatever else is added, edited or removed.

/// Percentage of pairs held out by default.
pub const DEFAULT_HELD_OUT_PERCENT: u32 = 10;

/// Whether the pair with this content hash is held out.
pub fn is_held_out(hash: &[u8; 16], percent: u32) -> bool {
    let x = u64::from_le_bytes(hash[..8].try_into().unwrap());
    (x % 100) < percent as u64
}

/// Marks the held-out pairs among `hashes`. With two pairs or more, at least one is held out and
/// at least one is kept for training, so validation always has something to look at.
pub fn held_out(hashes: &[[u8; 16]], percent: u32) -> Vec<bool> {
    let mut out: Vec<bool> = hashes.iter().map(|h| is_held_out(h, percent)).collect();
    if hashes.len() >= 2 && percent > 0 {
        let order = |i: &usize| hashes[*i];
        if !out.iter().any(|&b| b) {
            let i = (0..hashes.len()).min_by_key(order).unwrap();
            out[i] = true;
        }
        if out.iter().all(|&b| b) {
            let i = (0..hashes.len()).max_by_key(order).unwrap();
            out[i] = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u32) -> [u8; 16] {
        let d = blake3::hash(&i.to_le_bytes());
        d.as_bytes()[..16].try_into().unwrap()
    }

    #[test]
    fn split_is_deterministic_and_near_the_percentage() {
        let hashes: Vec<_> = (0..2000).map(h).collect();
        let a = held_out(&hashes, 10);
        assert_eq!(a, held_out(&hashes, 10));
        let n = a.iter().filter(|&&b| b).count();
        assert!((150..250).contains(&n), "held out {n} of 2000");
    }

    #[test]
    fn membership_does_not_depend_on_other_pairs() {
        let hashes: Vec<_> = (0..500).map(h).collect();
        let all = held_out(&hashes, 10);
        let half = held_out(&hashes[..250], 10);
        assert_eq!(&all[..250], &half[..]);
    }

    #[test]
    fn small_sets_get_both_sides() {
        for n in 2..20 {
            let hashes: Vec<_> = (100..100 + n).map(h).collect();
            let s = held_out(&hashes, 10);
            assert!(s.iter().any(|&b| b) && s.iter().any(|&b| !b), "n={n}");
        }
        assert_eq!(held_out(&[h(1)], 10).len(), 1);
    }
}
