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

/// Work of at most this many output elements (a decode step's: attention heads, matrix-vector
/// products, the logits of a batch) runs on candle's barrier pool, larger work (prefill, vision)
/// on rayon's.
const BARRIER_POOL_MAX: usize = 1 << 18;

/// Runs `f(part_index, part)` on every `part_len`-element part of `dst` on the pool, and returns
/// when all are done. Callers size the parts (one per thread candle uses) and run small work on
/// their own thread instead.
///
/// Two pools, because candle runs on two: its f32 matmuls (gemm) on rayon's global pool, its
/// quantized matrix-vector products on its own barrier pool, whose workers spin for a while
/// after each job before they sleep. A decode step alternates our kernels with candle's
/// quantized products many times; on rayon's pool our kernels shared each core with a spinning
/// barrier worker (perf: 22% of a quantized decode's samples were that spin). Prefill and the
/// vision towers are mostly gemm: their kernels stay on rayon's pool, beside gemm.
pub(crate) fn for_each_part<T, F>(dst: &mut [T], part_len: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    if dst.len() > BARRIER_POOL_MAX {
        dst.par_chunks_mut(part_len.max(1))
            .enumerate()
            .for_each(|(i, part)| f(i, part));
        return;
    }
    // Each part is taken by exactly one claim of the pool's cursor; the locks are uncontended.
    let parts: Vec<std::sync::Mutex<Option<&mut [T]>>> = dst
        .chunks_mut(part_len.max(1))
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    // A panic must not unwind through the pool: its caller holds the pool's lock while it works,
    // and a panic there would poison it for every later quantized product of the process. It
    // is caught, and raised again once the pool is released.
    let panicked = std::sync::Mutex::new(None);
    candle_core::utils::barrier_pool().execute_chunked(parts.len(), |range| {
        for i in range {
            let part = parts[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(part) = part {
                let run = std::panic::AssertUnwindSafe(|| f(i, part));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    panicked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(payload);
                }
            }
        }
    });
    if let Some(payload) = panicked.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_part_leaves_the_pool_usable() {
        let mut data = vec![0u32; 64];
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each_part(&mut data, 16, |i, _| assert!(i != 2, "part 2 fails"))
        }));
        assert!(caught.is_err(), "the panic reaches the caller");
        // The pool (and candle's quantized products on it) still work.
        for_each_part(&mut data, 16, |i, part| part.fill(i as u32 + 1));
        let parts: Vec<u32> = data.chunks(16).map(|c| c[0]).collect();
        assert_eq!(parts, [1, 2, 3, 4]);
    }
}
