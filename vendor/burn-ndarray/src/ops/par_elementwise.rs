//! lora-burn patch (vendor/PATCHES.md): element-wise operations split over rayon's threads.
//!
//! Upstream runs every element-wise operation on one thread; on a CPU LoRA step they were most
//! of the time left outside the matrix products. Large arrays (at least [`PAR_MIN`] elements)
//! are split over the pool; smaller ones, and builds without `multi-threads`, take upstream's
//! path. Each element's value is computed by the same expression either way.
use crate::SharedArray;
#[cfg(feature = "multi-threads")]
use ndarray::{IxDyn, Zip};

/// Arrays below this many elements stay on one thread (the split costs more than it saves).
#[cfg(feature = "multi-threads")]
const PAR_MIN: usize = 1 << 16;

/// Whether an array of `len` elements is split over threads (never in single-thread builds).
pub(crate) fn is_large(len: usize) -> bool {
    #[cfg(feature = "multi-threads")]
    return len >= PAR_MIN;
    #[cfg(not(feature = "multi-threads"))]
    return {
        let _ = len;
        false
    };
}

/// `f(a, b)` element by element over `lhs` and `rhs` broadcast to one shape, or `None` where
/// the arrays are small, the shapes do not broadcast, or the build has one thread (the caller
/// then takes upstream's path, which also reports shape errors as upstream does).
pub(crate) fn par_binary<E, F>(
    lhs: &SharedArray<E>,
    rhs: &SharedArray<E>,
    f: F,
) -> Option<SharedArray<E>>
where
    E: Copy + Send + Sync,
    F: Fn(E, E) -> E + Send + Sync,
{
    #[cfg(feature = "multi-threads")]
    {
        if !is_large(lhs.len().max(rhs.len())) || lhs.ndim() != rhs.ndim() {
            return None;
        }
        let mut shape = alloc::vec::Vec::with_capacity(lhs.ndim());
        for (&a, &b) in lhs.shape().iter().zip(rhs.shape()) {
            shape.push(match (a, b) {
                _ if a == b => a,
                (1, _) => b,
                (_, 1) => a,
                _ => return None,
            });
        }
        let shape = IxDyn(&shape);
        let (l, r) = (lhs.broadcast(shape.clone())?, rhs.broadcast(shape)?);
        Some(
            Zip::from(&l)
                .and(&r)
                .par_map_collect(|&a, &b| f(a, b))
                .into_shared(),
        )
    }
    #[cfg(not(feature = "multi-threads"))]
    {
        let _ = (lhs, rhs, f);
        None
    }
}

/// `f(a)` for every element of `array`, in place where the buffer is not shared, else into a
/// new array in one pass (making a shared buffer unique first would copy it, then map the copy).
pub(crate) fn par_map<E, F>(array: SharedArray<E>, f: F) -> SharedArray<E>
where
    E: Copy + Send + Sync,
    F: Fn(E) -> E + Send + Sync,
{
    #[cfg(feature = "multi-threads")]
    if is_large(array.len()) {
        let mut array = array;
        if !array.is_unique() {
            return Zip::from(&array).par_map_collect(|&a| f(a)).into_shared();
        }
        array.par_mapv_inplace(f);
        return array;
    }
    array.mapv_into(f)
}
