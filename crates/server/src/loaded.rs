//! The functions loaded on this node: least recently used first out, past a
//! count (`--max-loaded-functions`) or past the bytes of loaded artifacts they
//! keep mapped (`--max-loaded-code`). The count bounds the small ones; the
//! bytes bound the big ones: a Python function's snapshot keeps ~36 MiB mapped
//! in a private copy the kernel cannot drop, so 1,024 of them would want
//! 36 GiB.

use kiln_api::Digest;
use kiln_runtime::Function;
use lru::LruCache;
use std::num::NonZeroUsize;

/// The loaded functions and the artifact bytes they hold.
pub(crate) struct Loaded {
    lru: LruCache<Digest, Function>,
    bytes: u64,
    max_bytes: u64,
}

/// What a [`Loaded::put`] pushed out, to be dropped outside the lock
/// (unmapping is a system call).
#[derive(Default)]
pub(crate) struct PushedOut {
    /// The function the new one replaced (the same digest, another tier).
    pub(crate) replaced: Option<Function>,
    /// Functions unloaded to make room, least recently used first.
    pub(crate) evicted: Vec<Function>,
}

impl Loaded {
    pub(crate) fn new(max_functions: NonZeroUsize, max_bytes: u64) -> Loaded {
        Loaded {
            lru: LruCache::new(max_functions),
            bytes: 0,
            max_bytes,
        }
    }

    /// The function of `digest`, now the most recently used.
    pub(crate) fn get(&mut self, digest: &Digest) -> Option<&Function> {
        self.lru.get(digest)
    }

    /// The function of `digest`, its place unchanged.
    pub(crate) fn peek(&self, digest: &Digest) -> Option<&Function> {
        self.lru.peek(digest)
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.lru.contains(digest)
    }

    /// The digests of the loaded functions, the most recently used first.
    pub(crate) fn digests(&self) -> Vec<Digest> {
        self.lru.iter().map(|(digest, _)| *digest).collect()
    }

    /// Functions loaded.
    pub(crate) fn len(&self) -> usize {
        self.lru.len()
    }

    /// Bytes of artifacts the loaded functions keep mapped.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Puts `function` in as the most recently used, replacing the one of its
    /// digest, then unloads the least recently used until both bounds hold. The
    /// function just put stays, even alone past the bytes: it is about to run.
    pub(crate) fn put(&mut self, function: Function) -> PushedOut {
        let digest = function.digest();
        self.bytes += function.code_bytes();
        let mut out = PushedOut::default();
        if let Some((key, old)) = self.lru.push(digest, function) {
            self.bytes = self.bytes.saturating_sub(old.code_bytes());
            match key == digest {
                true => out.replaced = Some(old),
                false => out.evicted.push(old),
            }
        }
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            let Some((_, old)) = self.lru.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.code_bytes());
            out.evicted.push(old);
        }
        out
    }
}
