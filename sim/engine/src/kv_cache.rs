//! The paged KV cache as vLLM V1 keeps it: a pool of fixed-size blocks with reference counts, a
//! content-hash index of full blocks (automatic prefix caching) and an LRU queue of free blocks.
//!
//! - A block that fills gets a hash chaining its parent block's hash with its token ids
//!   ([`hash_block`]); [`KvCache::commit`] enters it into the index, where it stays after its owner
//!   lets it go.
//! - A request's [`KvLease`] returns its blocks to the pool when it is dropped (a finished, aborted
//!   or preempted request frees its memory by being let go of; there is no separate cleanup to
//!   forget). The blocks are freed tail first: cached ones go to the back of the free queue (evicted
//!   last, least recently used first), uncached ones to the front (reused first), as vLLM's
//!   `BlockPool.free_blocks` does.
//! - A new request's longest run of cached leading blocks ([`KvCache::lookup`]) is adopted instead of
//!   computed; a cached block that is free leaves the free queue when it is hit (`touch`).
//! - New blocks come from the front of the free queue; a cached one among them is evicted from the
//!   index then (`_maybe_evict_cached_block`), so the cache only shrinks when memory is needed.
//!
//! As in vLLM one block (the null block) is kept back from the pool: usage is
//! `1 - free / (total - 1)`, and free-but-cached blocks count as free.
//!
//! The free queue is an intrusive doubly linked list over block indices (vLLM's
//! `FreeKVCacheBlockQueue`), so removing a hit block from the middle is O(1); lookups and commits
//! cost one hash-map operation per block of the request, never a scan of the cache.
//!
//! Hashes are 64-bit and non-cryptographic; a collision (two different prefixes with one hash) would
//! let a request adopt the wrong blocks, which only matters for timing here, so collisions are
//! deliberately ignored (vLLM hashes with sha256 or Python's builtin hash, selectable).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// A full block's content hash: its parent's hash and its tokens.
pub type BlockHash = u64;

/// Marks the end of the free list.
const NIL: u32 = u32::MAX;

/// Hash of one full block given its parent block's hash (`None` for the first block).
///
/// A wyhash-style multiply-fold over pairs of token ids: every generated token's block is hashed,
/// so this runs once per token of every simulated request, and SipHash (the standard library's)
/// cost a fifth of a large fleet run. Only equality of hashes matters here, so any well-mixed
/// 64-bit function gives the same cache behaviour.
pub fn hash_block(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
    let mut h = parent.unwrap_or(0x5e47_e51a_a9c0_11d3) ^ P0;
    let mut pairs = tokens.chunks_exact(2);
    for pair in &mut pairs {
        let word = u64::from(pair[0]) | (u64::from(pair[1]) << 32);
        h = fold(h ^ word, P1);
    }
    if let [last] = pairs.remainder() {
        h = fold(h ^ u64::from(*last), P2);
    }
    fold(h ^ tokens.len() as u64, P0 ^ P2)
}

/// Hash of block `index` of a request whose tokens there are all made up from its `salt`: unique to
/// the request and the place, like the tokens it stands for.
pub fn hash_made_up_block(parent: Option<BlockHash>, salt: u64, index: u64) -> BlockHash {
    let h = fold(
        parent.unwrap_or(0x5e47_e51a_a9c0_11d3) ^ salt,
        0x2d35_8dcc_aa6c_78a5,
    );
    fold(h ^ index, 0x8bb8_4b93_962e_acc9)
}

/// The 128-bit product's halves folded together (wyhash's `mum`).
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b ^ 0x5851_f42d_4c95_7f2d);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The block hashes are already uniform: index by them directly.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashIndex = HashMap<BlockHash, Cached, BuildHasherDefault<Identity>>;

/// The blocks cached under one hash: usually one; two requests that computed the same block at the
/// same time leave two (vLLM keeps both, and hands out either).
#[derive(Debug, Clone)]
enum Cached {
    One(u32),
    Many(Vec<u32>),
}

impl Cached {
    fn first(&self) -> Option<u32> {
        match self {
            Cached::One(b) => Some(*b),
            Cached::Many(v) => v.first().copied(),
        }
    }
}

/// The pool's state, shared by the [`KvCache`] handle and every lease.
#[derive(Debug)]
struct Pool {
    caching: bool,
    ref_cnt: Vec<u32>,
    /// The hash under which a block is in the index, if it is.
    hash: Vec<Option<BlockHash>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    num_free: u64,
    index: HashIndex,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl Pool {
    fn new(total_blocks: u64, caching: bool) -> Pool {
        let n = usize::try_from(total_blocks).unwrap_or(usize::MAX >> 8);
        let n = n.min(NIL as usize - 1);
        let mut pool = Pool {
            caching,
            ref_cnt: vec![0; n],
            hash: vec![None; n],
            prev: (0..n as u32).map(|i| i.wrapping_sub(1)).collect(),
            next: (1..=n as u32).collect(),
            head: if n == 0 { NIL } else { 0 },
            tail: if n == 0 { NIL } else { n as u32 - 1 },
            num_free: n as u64,
            // Every block can be cached at once: sized for all of them, the index never rehashes
            // in the middle of a run.
            index: HashIndex::with_capacity_and_hasher(
                if caching { n } else { 0 },
                BuildHasherDefault::default(),
            ),
        };
        if n > 0 {
            pool.prev[0] = NIL;
            pool.next[n - 1] = NIL;
            // The null block (block 0) is never handed out.
            pool.unlink(0);
            pool.ref_cnt[0] = 1;
        }
        pool
    }

    fn unlink(&mut self, b: u32) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[b as usize] = NIL;
        self.next[b as usize] = NIL;
        self.num_free -= 1;
    }

    fn push_back(&mut self, b: u32) {
        self.prev[b as usize] = self.tail;
        self.next[b as usize] = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.next[self.tail as usize] = b;
        }
        self.tail = b;
        self.num_free += 1;
    }

    fn push_front(&mut self, b: u32) {
        self.next[b as usize] = self.head;
        self.prev[b as usize] = NIL;
        if self.head == NIL {
            self.tail = b;
        } else {
            self.prev[self.head as usize] = b;
        }
        self.head = b;
        self.num_free += 1;
    }

    fn lookup(&self, h: BlockHash) -> Option<u32> {
        self.index.get(&h).and_then(Cached::first)
    }

    fn evict(&mut self, b: u32) {
        let Some(h) = self.hash[b as usize].take() else {
            return;
        };
        if let Some(entry) = self.index.get_mut(&h) {
            match entry {
                Cached::One(_) => {
                    self.index.remove(&h);
                }
                Cached::Many(v) => {
                    v.retain(|&x| x != b);
                    if v.len() == 1 {
                        *entry = Cached::One(v[0]);
                    }
                }
            }
        }
    }

    fn insert(&mut self, b: u32, h: BlockHash) {
        self.hash[b as usize] = Some(h);
        match self.index.entry(h) {
            Entry::Vacant(e) => {
                e.insert(Cached::One(b));
            }
            Entry::Occupied(mut e) => {
                let entry = e.get_mut();
                match entry {
                    Cached::One(first) => *entry = Cached::Many(vec![*first, b]),
                    Cached::Many(v) => v.push(b),
                }
            }
        }
    }

    /// Take `n` blocks from the front of the free queue (evicting cached ones); caller checked room.
    fn take_new(&mut self, n: usize, into: &mut Vec<u32>) {
        for _ in 0..n {
            let b = self.head;
            debug_assert_ne!(b, NIL, "caller checked the free count");
            if b == NIL {
                return;
            }
            self.unlink(b);
            self.evict(b);
            self.ref_cnt[b as usize] = 1;
            into.push(b);
        }
    }

    fn touch(&mut self, b: u32) {
        if self.ref_cnt[b as usize] == 0 {
            self.unlink(b);
        }
        self.ref_cnt[b as usize] += 1;
    }

    /// Release blocks, the tail first.
    fn free(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            let r = &mut self.ref_cnt[b as usize];
            *r -= 1;
            if *r == 0 {
                if self.hash[b as usize].is_some() && self.caching {
                    self.push_back(b);
                } else {
                    self.push_front(b);
                }
            }
        }
    }
}

fn lock(pool: &Mutex<Pool>) -> MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

/// The block pool. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct KvCache {
    block_size: u32,
    total_blocks: u64,
    caching: bool,
    pool: Arc<Mutex<Pool>>,
}

/// Blocks held by one request, in order; dropping it frees them.
#[derive(Debug)]
pub struct KvLease {
    blocks: Vec<u32>,
    /// Leading blocks already in the hash index (adopted from it or committed to it).
    committed: usize,
    pool: Arc<Mutex<Pool>>,
}

impl KvCache {
    /// A pool of `total_blocks` blocks (vLLM's `num_gpu_blocks`, the null block included) of
    /// `block_size` tokens; `caching` turns automatic prefix caching on.
    pub fn new(total_blocks: u64, block_size: u32, caching: bool) -> KvCache {
        KvCache {
            block_size: block_size.max(1),
            total_blocks,
            caching,
            pool: Arc::new(Mutex::new(Pool::new(total_blocks, caching))),
        }
    }

    /// An empty lease on this pool.
    pub fn lease(&self) -> KvLease {
        KvLease {
            blocks: Vec::new(),
            committed: 0,
            pool: Arc::clone(&self.pool),
        }
    }

    /// Whether prefix caching is on.
    pub fn caching(&self) -> bool {
        self.caching
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(u64::from(self.block_size))
    }

    /// The cached blocks of the longest run of leading `hashes` in the index, at most `max_blocks`
    /// of them (written to `hit`, cleared first). Nothing is taken yet: [`grow`](Self::grow) adopts
    /// them. Empty when caching is off.
    pub fn lookup(&self, hashes: &[BlockHash], max_blocks: usize, hit: &mut Vec<u32>) {
        hit.clear();
        if !self.caching {
            return;
        }
        let pool = lock(&self.pool);
        for &h in hashes.iter().take(max_blocks) {
            match pool.lookup(h) {
                Some(b) => hit.push(b),
                None => break,
            }
        }
    }

    /// Grow `lease` so it holds `tokens` tokens, adopting the cached blocks `hit` first (only on an
    /// empty lease; from [`lookup`](Self::lookup) in the same scheduling pass). False, and no change,
    /// when the pool is short: hit blocks that are free count against the free blocks, as vLLM's
    /// `get_num_blocks_to_allocate` counts them.
    pub fn grow(&self, lease: &mut KvLease, hit: &[u32], tokens: u64) -> bool {
        debug_assert!(hit.is_empty() || lease.blocks.is_empty());
        let need = usize::try_from(self.blocks_for(tokens)).unwrap_or(usize::MAX);
        let held = lease.blocks.len() + hit.len();
        let new = need.saturating_sub(held);
        if new == 0 && hit.is_empty() {
            return true;
        }
        let mut pool = lock(&self.pool);
        let evictable_hits = hit
            .iter()
            .filter(|&&b| pool.ref_cnt[b as usize] == 0)
            .count() as u64;
        if new as u64 + evictable_hits > pool.num_free {
            return false;
        }
        for &b in hit {
            pool.touch(b);
        }
        lease.blocks.extend_from_slice(hit);
        lease.committed = lease.committed.max(hit.len());
        pool.take_new(new, &mut lease.blocks);
        true
    }

    /// Enter the lease's full blocks into the hash index: block `i` under `hashes[i]`, for the
    /// blocks the lease holds that `hashes` covers. No-op when caching is off.
    pub fn commit(&self, lease: &mut KvLease, hashes: &[BlockHash]) {
        let upto = hashes.len().min(lease.blocks.len());
        if !self.caching || upto <= lease.committed {
            return;
        }
        let mut pool = lock(&self.pool);
        for (&b, &h) in lease.blocks[lease.committed..upto]
            .iter()
            .zip(&hashes[lease.committed..upto])
        {
            if pool.hash[b as usize].is_none() {
                pool.insert(b, h);
            }
        }
        lease.committed = upto;
    }

    /// [`commit`](Self::commit) the blocks that the first `tokens` tokens fill.
    pub fn commit_upto(&self, lease: &mut KvLease, hashes: &[BlockHash], tokens: u64) {
        let full = usize::try_from(tokens / u64::from(self.block_size)).unwrap_or(usize::MAX);
        self.commit(lease, &hashes[..full.min(hashes.len())]);
    }

    /// Blocks in the pool, the null block included (vLLM's `num_gpu_blocks`).
    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    /// Blocks a request can be given: all but the null block.
    pub fn usable_blocks(&self) -> u64 {
        self.total_blocks.saturating_sub(1)
    }

    /// Blocks in the free queue, cached ones included.
    pub fn free_blocks(&self) -> u64 {
        lock(&self.pool).num_free
    }

    /// Blocks some request holds.
    pub fn used_blocks(&self) -> u64 {
        self.usable_blocks() - self.free_blocks()
    }

    /// Blocks in the hash index (held or free).
    pub fn cached_blocks(&self) -> u64 {
        lock(&self.pool).hash.iter().filter(|h| h.is_some()).count() as u64
    }

    /// Fraction of blocks in use, as vLLM's `BlockPool.get_usage` and `kv_cache_usage_perc`
    /// report it (0..1): free blocks, cached or not, are not in use.
    pub fn usage(&self) -> f64 {
        let usable = self.usable_blocks();
        if usable == 0 {
            0.0
        } else {
            1.0 - self.free_blocks() as f64 / usable as f64
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Check the pool's invariants (for tests): every block is free exactly when nobody holds it,
    /// the free queue links up and counts right, and the index and the blocks' hashes agree.
    pub fn check(&self) -> Result<(), String> {
        let pool = lock(&self.pool);
        let n = pool.ref_cnt.len();
        let mut in_queue = vec![false; n];
        let mut count = 0u64;
        let mut prev = NIL;
        let mut b = pool.head;
        while b != NIL {
            if in_queue[b as usize] {
                return Err(format!("block {b} twice in the free queue"));
            }
            if pool.prev[b as usize] != prev {
                return Err(format!("block {b}: broken back link"));
            }
            in_queue[b as usize] = true;
            count += 1;
            prev = b;
            b = pool.next[b as usize];
        }
        if pool.tail != prev {
            return Err("tail is not the last block".into());
        }
        if count != pool.num_free {
            return Err(format!("{count} blocks queued, {} counted", pool.num_free));
        }
        for (i, (&queued, &refs)) in in_queue.iter().zip(&pool.ref_cnt).enumerate() {
            if queued != (refs == 0) {
                return Err(format!("block {i}: ref {refs} but queued {queued}"));
            }
        }
        let mut indexed = 0usize;
        for (h, entry) in &pool.index {
            let blocks = match entry {
                Cached::One(b) => std::slice::from_ref(b),
                Cached::Many(v) => v.as_slice(),
            };
            for &b in blocks {
                indexed += 1;
                if pool.hash[b as usize] != Some(*h) {
                    return Err(format!(
                        "index maps {h:x} to block {b}, which has another hash"
                    ));
                }
            }
        }
        let hashed = pool.hash.iter().filter(|h| h.is_some()).count();
        if indexed != hashed {
            return Err(format!("{indexed} blocks indexed, {hashed} hashed"));
        }
        Ok(())
    }

    /// Reference count of a block (for tests).
    pub fn ref_count(&self, block: u32) -> u32 {
        lock(&self.pool).ref_cnt[block as usize]
    }
}

impl KvLease {
    /// Blocks this lease holds.
    pub fn blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// The ids of the blocks this lease holds, in order.
    pub fn block_ids(&self) -> &[u32] {
        &self.blocks
    }
}

impl Drop for KvLease {
    fn drop(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        lock(&self.pool).free(&self.blocks);
    }
}

/// The hashes of the full blocks of a token sequence, extending `hashes` (which holds those of
/// the first `hashes.len()` blocks) up to `full_blocks` blocks; `token` gives the id at a position.
pub fn extend_hashes(
    hashes: &mut Vec<BlockHash>,
    block_size: u32,
    full_blocks: usize,
    mut token: impl FnMut(usize) -> u32,
    scratch: &mut Vec<u32>,
) {
    let bs = block_size as usize;
    while hashes.len() < full_blocks {
        let b = hashes.len();
        scratch.clear();
        scratch.extend((b * bs..(b + 1) * bs).map(&mut token));
        let parent = hashes.last().copied();
        hashes.push(hash_block(parent, scratch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(tokens: &[u32], bs: u32) -> Vec<BlockHash> {
        let mut h = Vec::new();
        extend_hashes(
            &mut h,
            bs,
            tokens.len() / bs as usize,
            |i| tokens[i],
            &mut Vec::new(),
        );
        h
    }

    #[test]
    fn blocks_round_up_and_return_on_drop() {
        // 11 blocks: one is the null block.
        let kv = KvCache::new(11, 16, false);
        let mut a = kv.lease();
        assert!(kv.grow(&mut a, &[], 1));
        assert_eq!((a.blocks(), kv.free_blocks()), (1, 9));
        assert!(kv.grow(&mut a, &[], 16));
        assert_eq!(a.blocks(), 1);
        assert!(kv.grow(&mut a, &[], 17));
        assert_eq!(a.blocks(), 2);
        let mut b = kv.lease();
        assert!(!kv.grow(&mut b, &[], 16 * 9), "only 8 blocks are left");
        assert_eq!((b.blocks(), kv.free_blocks()), (0, 8));
        assert!(kv.grow(&mut b, &[], 16 * 8));
        assert_eq!(kv.free_blocks(), 0);
        drop(a);
        assert_eq!(kv.free_blocks(), 2);
        drop(b);
        assert_eq!((kv.free_blocks(), kv.usage()), (10, 0.0));
        kv.check().expect("consistent");
    }

    #[test]
    fn a_freed_prefix_is_found_again_and_evicted_last_in_lru_order() {
        let kv = KvCache::new(9, 4, true);
        let prompt: Vec<u32> = (0..16).collect();
        let h = hashes(&prompt, 4);
        let mut a = kv.lease();
        assert!(kv.grow(&mut a, &[], 16));
        kv.commit(&mut a, &h);
        let a_blocks = a.block_ids().to_vec();
        drop(a);
        assert_eq!((kv.free_blocks(), kv.cached_blocks()), (8, 4));
        // A hit on free cached blocks takes them out of the free queue.
        let mut hit = Vec::new();
        kv.lookup(&h, 3, &mut hit);
        assert_eq!(hit, a_blocks[..3]);
        let mut b = kv.lease();
        assert!(kv.grow(&mut b, &hit, 16));
        kv.check().expect("consistent");
        assert_eq!(b.block_ids()[..3], a_blocks[..3]);
        assert_eq!(kv.free_blocks(), 4);
        // The fourth block was recomputed in a fresh block; the old copy is still cached and free.
        assert_eq!(kv.ref_count(a_blocks[3]), 0);
        drop(b);
        // Uncached blocks are reused first; then the LRU cached ones, the tail of a prompt first.
        let mut c = kv.lease();
        assert!(kv.grow(&mut c, &[], 4 * 8));
        assert_eq!(kv.cached_blocks(), 0, "everything was evicted to make room");
        kv.check().expect("consistent");
    }

    #[test]
    fn a_hit_on_free_blocks_counts_against_the_free_pool() {
        let kv = KvCache::new(5, 4, true);
        let prompt: Vec<u32> = (100..116).collect();
        let h = hashes(&prompt, 4);
        let mut a = kv.lease();
        assert!(kv.grow(&mut a, &[], 16));
        kv.commit(&mut a, &h);
        drop(a);
        let mut hit = Vec::new();
        kv.lookup(&h, 4, &mut hit);
        assert_eq!(hit.len(), 4);
        let mut b = kv.lease();
        // Four free hit blocks plus one new: five > four free.
        assert!(!kv.grow(&mut b, &hit, 20));
        assert_eq!((b.blocks(), kv.free_blocks()), (0, 4));
        assert!(kv.grow(&mut b, &hit, 16));
        assert_eq!(kv.usage(), 1.0);
    }

    #[test]
    fn chained_hashes_tell_prefixes_apart() {
        let a = hashes(&[1, 2, 3, 4, 5, 6, 7, 8], 4);
        let b = hashes(&[9, 2, 3, 4, 5, 6, 7, 8], 4);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1], "same tokens, different parent");
    }
}
