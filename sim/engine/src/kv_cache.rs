//! The paged KV cache: a pool of fixed-size blocks and the leases that requests hold on them.
//!
//! A request's [`KvLease`] returns its blocks to the pool when it is dropped, so a finished, aborted
//! or preempted request frees its memory by being let go of; there is no separate cleanup to forget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The block pool. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct KvCache {
    block_size: u64,
    total_blocks: u64,
    free: Arc<AtomicU64>,
}

/// Blocks held by one request; dropping it frees them.
#[derive(Debug)]
pub struct KvLease {
    blocks: u64,
    free: Arc<AtomicU64>,
}

impl KvCache {
    /// A pool of `total_blocks` blocks of `block_size` tokens.
    pub fn new(total_blocks: u64, block_size: u32) -> KvCache {
        KvCache {
            block_size: u64::from(block_size.max(1)),
            total_blocks,
            free: Arc::new(AtomicU64::new(total_blocks)),
        }
    }

    /// An empty lease on this pool.
    pub fn lease(&self) -> KvLease {
        KvLease {
            blocks: 0,
            free: Arc::clone(&self.free),
        }
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.block_size)
    }

    /// Grow `lease` so it holds `tokens` tokens; false (and no change) when the pool is short.
    pub fn grow(&self, lease: &mut KvLease, tokens: u64) -> bool {
        let need = self.blocks_for(tokens).saturating_sub(lease.blocks);
        if need == 0 {
            return true;
        }
        let free = self.free.load(Ordering::Relaxed);
        if free < need {
            return false;
        }
        self.free.store(free - need, Ordering::Relaxed);
        lease.blocks += need;
        true
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    pub fn free_blocks(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn used_blocks(&self) -> u64 {
        self.total_blocks - self.free_blocks()
    }

    /// Fraction of blocks in use, as vLLM's `kv_cache_usage_perc` reports it (0..1).
    pub fn usage(&self) -> f64 {
        if self.total_blocks == 0 {
            0.0
        } else {
            self.used_blocks() as f64 / self.total_blocks as f64
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size as u32
    }
}

impl KvLease {
    /// Blocks this lease holds.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
}

impl Drop for KvLease {
    fn drop(&mut self) {
        self.free.fetch_add(self.blocks, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_up_and_return_on_drop() {
        let kv = KvCache::new(10, 16);
        let mut a = kv.lease();
        assert!(kv.grow(&mut a, 1));
        assert_eq!((a.blocks(), kv.free_blocks()), (1, 9));
        assert!(kv.grow(&mut a, 16));
        assert_eq!(a.blocks(), 1);
        assert!(kv.grow(&mut a, 17));
        assert_eq!(a.blocks(), 2);
        let mut b = kv.lease();
        assert!(!kv.grow(&mut b, 16 * 9), "only 8 blocks are left");
        assert_eq!((b.blocks(), kv.free_blocks()), (0, 8));
        assert!(kv.grow(&mut b, 16 * 8));
        assert_eq!(kv.free_blocks(), 0);
        drop(a);
        assert_eq!(kv.free_blocks(), 2);
        drop(b);
        assert_eq!((kv.free_blocks(), kv.usage()), (10, 0.0));
    }
}
