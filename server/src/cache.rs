//! Cached results of commands whose manifest has a `[cache]` table. Only runs that completed
//! with exit status 0 are kept, for the manifest's TTL; the cache is bounded in entries and in
//! bytes, least recently used first out.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use mcli_shared::runner::Chunk;

const MAX_ENTRIES: usize = 256;
const MAX_BYTES: usize = 64 * 1024 * 1024;
/// A result with more output than this is not kept.
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Entry {
    pub exit_code: Option<i32>,
    pub output: Vec<Chunk>,
    stored: Instant,
    ttl: Duration,
    bytes: usize,
}

pub struct ResultCache {
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<String, Entry>,
    bytes: usize,
}

impl Default for ResultCache {
    fn default() -> Self {
        let cap = NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        ResultCache { inner: Mutex::new(Inner { entries: LruCache::new(cap), bytes: 0 }) }
    }
}

impl ResultCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fresh entry under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let found = self.lookup(key);
        crate::metrics::cache_lookup(found.is_some());
        found
    }

    fn lookup(&self, key: &str) -> Option<Entry> {
        let mut inner = self.lock();
        let fresh = inner.entries.get(key).map(|e| e.stored.elapsed() < e.ttl)?;
        if fresh {
            return inner.entries.get(key).cloned();
        }
        if let Some(stale) = inner.entries.pop(key) {
            inner.bytes -= stale.bytes;
        }
        None
    }

    /// Forgets every entry (caching was turned off).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }

    pub fn put(&self, key: String, ttl: Duration, exit_code: Option<i32>, output: Vec<Chunk>) {
        let bytes = output.iter().map(|c| c.data.len()).sum::<usize>() + key.len();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        let mut inner = self.lock();
        let entry = Entry { exit_code, output, stored: Instant::now(), ttl, bytes };
        if let Some((_, old)) = inner.entries.push(key, entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > MAX_BYTES {
            match inner.entries.pop_lru() {
                Some((_, old)) => inner.bytes -= old.bytes,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mcli_protocol::Stream;

    fn chunk(text: &'static str) -> Chunk {
        Chunk { stream: Stream::Stdout, data: Bytes::from_static(text.as_bytes()) }
    }

    #[test]
    fn keeps_fresh_entries_and_drops_stale_ones() {
        let cache = ResultCache::default();
        cache.put("a".into(), Duration::from_secs(60), Some(0), vec![chunk("hi")]);
        assert_eq!(cache.get("a").unwrap().output, vec![chunk("hi")]);
        cache.put("b".into(), Duration::ZERO, Some(0), vec![chunk("x")]);
        assert!(cache.get("b").is_none());
        assert!(cache.get("c").is_none());
        assert_eq!(cache.lock().bytes, 3, "the stale entry's bytes were given back");
    }
}
