//! lora-burn patch (vendor/PATCHES.md): reductions along one axis, lanes split over threads.
//!
//! Softmax (its max and its sum), RMSNorm's mean and the attention's row sums reduce the last
//! axis of standard-layout arrays; upstream reduces on one thread, and takes a max (along any
//! axis) as an argmax followed by a gather. Each lane's value is computed by the expression upstream uses, so the
//! values are the same.
use crate::SharedArray;
use ndarray::{ArrayView1, Axis};

#[cfg(feature = "multi-threads")]
use ndarray::Zip;

/// `f(lane)` for every lane of `array` along its last axis, that axis kept with length 1; `None`
/// (the caller takes upstream's path) in builds without `multi-threads` and unless the array is
/// large, in standard layout, `dim` is its last axis and longer than 1 (the lanes are then
/// contiguous, which is the case upstream's `sum_axis` sums with `lane.sum()`).
pub(crate) fn last_axis<E, F>(array: &SharedArray<E>, dim: usize, f: F) -> Option<SharedArray<E>>
where
    E: Copy + Send + Sync,
    F: Fn(ArrayView1<'_, E>) -> E + Send + Sync,
{
    #[cfg(feature = "multi-threads")]
    if super::par_elementwise::is_large(array.len())
        && dim + 1 == array.ndim()
        && array.shape()[dim] > 1
        && array.is_standard_layout()
    {
        let out = Zip::from(array.lanes(Axis(dim))).par_map_collect(|lane| f(lane));
        return Some(out.insert_axis(Axis(dim)).into_shared());
    }
    let _ = (array, dim, f);
    None
}

/// The largest element of every lane along `dim`, that axis kept with length 1: the first
/// element, replaced by each later one that compares greater (upstream's argmax, so a NaN first
/// element is kept and later NaNs are skipped). Lanes split over threads where the array is
/// large. Panics where `dim` is not an axis of `array`, or where it has length 0 and the other
/// axes do not, as upstream's argmax does.
pub(crate) fn max_dim<E>(array: &SharedArray<E>, dim: usize) -> SharedArray<E>
where
    E: Copy + PartialOrd + Send + Sync,
{
    let lane_max = |lane: ArrayView1<'_, E>| {
        lane.iter()
            .fold(lane[0], |acc, &e| if e > acc { e } else { acc })
    };
    #[cfg(feature = "multi-threads")]
    if super::par_elementwise::is_large(array.len()) {
        let out = Zip::from(array.lanes(Axis(dim))).par_map_collect(lane_max);
        return out.insert_axis(Axis(dim)).into_shared();
    }
    array
        .map_axis(Axis(dim), lane_max)
        .insert_axis(Axis(dim))
        .into_shared()
}
