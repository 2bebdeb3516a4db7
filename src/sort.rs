//! Stable sorting by a `u64` key, with one sort routine in the binary for every type sorted.
//!
//! std's `sort_by_key` is generic over the element and the key: each of the handful of places that sort
//! brought its own copy of the sort routines, about 5 KB each in the static binary. Here the keys are sorted
//! (paired with their positions, which keeps equal keys in order) by one small heapsort, and the elements
//! are then moved into that order.

/// Sorts `items` by `key`, keeping items of equal keys in their order.
pub fn by_key<T>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let keys: Vec<u128> = items
        .iter()
        .enumerate()
        .map(|(position, item)| u128::from(key(item)) << 64 | position as u128)
        .collect();
    let order = sorted(keys);
    let mut taken: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(order.into_iter().filter_map(|position| {
        usize::try_from(position)
            .ok()
            .and_then(|position| taken.get_mut(position))
            .and_then(Option::take)
    }));
}

/// The positions (the low 64 bits) of `keys` in the order of their keys (the high 64 bits). A heapsort:
/// O(n log n) at worst, in a few hundred bytes of code where std's sort_unstable takes 3 KB.
fn sorted(mut keys: Vec<u128>) -> Vec<u64> {
    let len = keys.len();
    for root in (0..len / 2).rev() {
        sift_down(&mut keys, root, len);
    }
    for end in (1..len).rev() {
        keys.swap(0, end);
        sift_down(&mut keys, 0, end);
    }
    keys.into_iter().map(|key| key as u64).collect()
}

/// Moves `keys[root]` down the max-heap `keys[..end]` until both its children are smaller.
fn sift_down(keys: &mut [u128], mut root: usize, end: usize) {
    loop {
        let left = 2 * root + 1;
        let child = match (keys.get(left), keys.get(left + 1)) {
            (Some(left_key), Some(right_key)) if left + 1 < end && right_key > left_key => left + 1,
            (Some(_), _) if left < end => left,
            _ => return,
        };
        if keys.get(child) <= keys.get(root) {
            return;
        }
        keys.swap(root, child);
        root = child;
    }
}

/// A pid as a sort key: pids are positive, and order as their numbers.
pub fn pid_key(pid: i32) -> u64 {
    u64::try_from(pid).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_the_key_and_keeps_equal_keys_in_order() {
        let mut items = vec![
            (3, 'a'),
            (1, 'b'),
            (3, 'c'),
            (0, 'd'),
            (1, 'e'),
            (u64::MAX, 'f'),
        ];
        by_key(&mut items, |(key, _)| *key);
        assert_eq!(
            items,
            [
                (0, 'd'),
                (1, 'b'),
                (1, 'e'),
                (3, 'a'),
                (3, 'c'),
                (u64::MAX, 'f')
            ]
        );
        let mut empty: Vec<u8> = Vec::new();
        by_key(&mut empty, |_| 0);
        assert!(empty.is_empty());
    }

    #[test]
    fn agrees_with_std_stable_sort() {
        let mut state = 12345u64;
        for (count, modulus) in [(2000, 50), (5000, u64::MAX), (1, 1), (2, 2), (3, 2), (7, 3)] {
            let mut items: Vec<(u64, usize)> = (0..count)
                .map(|position| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state % modulus, position)
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_by_key(|(key, _)| *key);
            by_key(&mut items, |(key, _)| *key);
            assert_eq!(items, expected, "{count} keys modulo {modulus}");
        }
    }
}
