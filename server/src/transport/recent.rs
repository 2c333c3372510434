//! A small set of keys that forgets its oldest entries: bounded memory of request ids that
//! ended, or whose cancel came early.

use std::collections::{HashSet, VecDeque};

/// How many keys a set keeps.
const CAPACITY: usize = 64;

#[derive(Debug, Default)]
pub struct RecentKeys {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentKeys {
    pub fn insert(&mut self, key: &str) {
        if self.set.insert(key.to_owned()) {
            self.order.push_back(key.to_owned());
            if self.order.len() > CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.set.remove(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest() {
        let mut keys = RecentKeys::default();
        for i in 0..=CAPACITY {
            keys.insert(&i.to_string());
        }
        assert!(!keys.contains("0"));
        assert!(keys.contains("1") && keys.contains(&CAPACITY.to_string()));
        assert!(keys.remove("1") && !keys.contains("1"));
    }
}
