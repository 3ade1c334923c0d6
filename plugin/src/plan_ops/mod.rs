//! Nodes of tract's plan that the plugin runs itself: where tract 0.23.9's
//! own eval takes a slow generic path inside the sandbox (`binary`, `gelu`:
//! swapped in place after optimisation, tract's op kept beside each for
//! inputs it does not take), and the int8 products of a bundle marked int8
//! (`int8_linear`, before optimisation).

use std::borrow::Cow;

use tract_onnx::prelude::*;

pub mod binary;
pub mod gelu;
pub mod int8_linear;

/// A tensor's elements in C order: its storage is exactly its shape's, and
/// every axis of more than one element has the natural stride (a size-1
/// axis can carry any stride: it is never stepped along).
pub(crate) fn c_order(t: &Tensor) -> bool {
    let shape = t.shape();
    if t.datum_type() != f32::datum_type() || t.len() != shape.iter().product::<usize>() {
        return false;
    }
    let mut natural = 1isize;
    for (&dim, &stride) in shape.iter().zip(t.strides()).rev() {
        if dim != 1 && stride != natural {
            return false;
        }
        natural *= dim as isize;
    }
    true
}

/// A tensor's f32 values in C order: its own memory when it is laid out so,
/// else a copy.
pub(crate) fn f32_values(t: &Tensor) -> TractResult<Cow<'_, [f32]>> {
    match t.as_plain_ram().filter(|_| c_order(t)) {
        Some(view) => Ok(Cow::Borrowed(view.as_slice::<f32>()?)),
        None => Ok(Cow::Owned(t.to_plain_array_view::<f32>()?.iter().copied().collect())),
    }
}
