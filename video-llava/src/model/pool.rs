//! The one thread pool of the custom CPU kernels: rayon's global pool, the pool candle's matmuls
//! (gemm) already run on. The kernels used to spawn a set of scoped threads per operation (about
//! 130 times per token on the 7B), and several generations at once each spawned their own.

use std::sync::OnceLock;

use rayon::prelude::*;

/// How many threads the kernels split their work for: candle's count (`RAYON_NUM_THREADS`, else
/// the physical cores), read once. candle computes it afresh on every call, which on Linux reads
/// `/proc/cpuinfo`: about 150 calls per batched decode step of the mid bench model, 3-4% of its
/// perf samples plus the system time of the reads.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// Runs `f(part_index, part)` on every `part_len`-element part of `dst` on the pool, and returns
/// when all are done. Callers size the parts (one per thread candle uses) and run small work on
/// their own thread instead.
pub(crate) fn for_each_part<T, F>(dst: &mut [T], part_len: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    dst.par_chunks_mut(part_len.max(1))
        .enumerate()
        .for_each(|(i, part)| f(i, part));
}
