//! lora-burn patch (vendor/PATCHES.md): copies into standard layout split over rayon's threads.
//!
//! A reshape of a transposed array (attention heads merged back), a slice along the last axis
//! (RoPE's halves) and a concatenation (RoPE's `rotate_half`) each copy every element; upstream
//! copies element by element on one thread, and concatenates into a non-standard layout that a
//! second copy then reorders. These produce the same values in the same standard layout, one
//! pass, split over threads for arrays of at least `par_elementwise::is_large` elements. Each
//! returns `None` where the caller should take upstream's path (small arrays, one-thread builds).
use crate::SharedArray;
use ndarray::{ArrayView, IxDyn};

#[cfg(feature = "multi-threads")]
use ndarray::{Array, Axis, Zip};

/// `view` copied into a new standard-layout (row-major) array; `None` for arrays below the split
/// size and in builds without `multi-threads`.
pub(crate) fn standard_copy<E>(view: ArrayView<'_, E, IxDyn>) -> Option<SharedArray<E>>
where
    E: Copy + Send + Sync,
{
    #[cfg(feature = "multi-threads")]
    if super::par_elementwise::is_large(view.len()) {
        let mut out = Array::<E, _>::uninit(view.raw_dim());
        Zip::from(&mut out)
            .and(&view)
            .par_for_each(|o, &a| _ = o.write(a));
        // SAFETY: the zip wrote every element of `out`, which has `view`'s shape.
        return Some(unsafe { out.assume_init() }.into_shared());
    }
    let _ = view;
    None
}

/// `arrays` joined along `dim` into a new standard-layout array; `None` for results below the
/// split size, in builds without `multi-threads`, and for an empty list, a `dim` out of range or
/// shapes that do not agree off `dim` (the caller's upstream path reports those as upstream
/// does).
pub(crate) fn concatenate<E>(
    arrays: &[ArrayView<'_, E, IxDyn>],
    dim: usize,
) -> Option<SharedArray<E>>
where
    E: Copy + Send + Sync,
{
    #[cfg(feature = "multi-threads")]
    {
        let first = arrays.first()?;
        if dim >= first.ndim() {
            return None;
        }
        let mut shape = first.shape().to_vec();
        let mut total = 0;
        for a in arrays {
            let same_rank = a.ndim() == shape.len();
            if !same_rank
                || a.shape()
                    .iter()
                    .enumerate()
                    .any(|(d, &n)| d != dim && n != shape[d])
            {
                return None;
            }
            total += a.shape()[dim];
        }
        shape[dim] = total;
        if !super::par_elementwise::is_large(shape.iter().product()) {
            return None;
        }
        let mut out = Array::<E, _>::uninit(IxDyn(&shape));
        let mut start = 0;
        for a in arrays {
            let end = start + a.shape()[dim];
            Zip::from(out.slice_axis_mut(Axis(dim), (start..end).into()))
                .and(a)
                .par_for_each(|o, &v| _ = o.write(v));
            start = end;
        }
        // SAFETY: the parts' ranges along `dim` cover 0..total, and each zip wrote its range.
        Some(unsafe { out.assume_init() }.into_shared())
    }
    #[cfg(not(feature = "multi-threads"))]
    {
        let _ = (arrays, dim);
        None
    }
}
