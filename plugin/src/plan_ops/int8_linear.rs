//! The matrix products with constant weights of a bundle marked int8
//! (`"llma_precision": "int8"` in its config.json), run by `crate::int8`:
//! the projections and feed-forward layers, `EinSum` nodes of the form
//! `…k,kn->…n` (or `…bk,bkn->…n`, attention's output over its heads). The
//! products of two activations (attention) and a transposed weight (the
//! classifier's `Gemm`) stay f32.
//!
//! Unlike the other plan ops this one is installed on the decluttered
//! model, before tract's optimiser packs the weights for its own kernels:
//! the node's f32 weights go with it, and the bundle keeps only the
//! quantised ones in memory.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use crate::int8::{linear_form, PackedWeights};

/// Replaces every f32 einsum of the linear form whose weights are a
/// constant; returns how many.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut patches = Vec::new();
    for node in &model.nodes {
        let Some(op) = node.op_as::<EinSum>() else { continue };
        if op.q_params.is_some() || op.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
            continue;
        }
        let Some((prefix, summed)) = linear_form(&op.axes.to_string()) else { continue };
        let facts = model.node_input_facts(node.id)?;
        let (x, w) = (facts[0], facts[1]);
        let Some(weights) = w.konst.as_ref() else { continue };
        if x.datum_type != f32::datum_type() || weights.datum_type() != f32::datum_type() || x.rank() != prefix + summed {
            continue;
        }
        let dims = weights.shape();
        let same_k = x.shape[prefix..].iter().zip(&dims[..summed]).all(|(d, w)| d.to_usize().ok() == Some(*w));
        if !same_k {
            continue;
        }
        let k: usize = dims[..summed].iter().product();
        let n: usize = dims[summed..].iter().product();
        let packed = PackedWeights::quantize(&super::f32_values(weights)?, k, n).map_err(|e| format_err!("{}: {e}", node.name))?;
        let op = Int8Linear { weights: Arc::new(packed), prefix, out: dims[summed..].into() };
        patches.push(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?);
    }
    let replaced = patches.len();
    for patch in patches {
        patch.apply(model)?;
    }
    model.compact()?;
    Ok(replaced)
}

#[derive(Debug, Clone)]
struct Int8Linear {
    weights: Arc<PackedWeights>,
    /// The input's leading axes that the output keeps.
    prefix: usize,
    /// The output's trailing axes (the weights' free ones).
    out: TVec<usize>,
}

impl PartialEq for Int8Linear {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
    }
}
impl Eq for Int8Linear {}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "LlmaInt8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{}x{} int8, {} bytes", self.weights.k, self.weights.n, self.weights.size())])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = inputs.first().context("no input")?;
        let mut shape: TVec<usize> = x.shape()[..self.prefix].into();
        shape.extend(self.out.iter().copied());
        let out = self.weights.matmul(&super::f32_values(x)?).map_err(|e| format_err!("{e}"))?;
        // The product's own buffer becomes the tensor (`from_shape` would copy it).
        Ok(tvec!(tract_ndarray::ArrayD::from_shape_vec(&*shape, out)?.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().take(self.prefix).cloned().collect();
        shape.extend(self.out.iter().map(|d| d.to_dim()));
        Ok(tvec!(f32::fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let rows: TDim = inputs[0].shape.iter().take(self.prefix).product();
        Ok(tvec!((Cost::FMA(i8::datum_type()), rows * (self.weights.k * self.weights.n))))
    }

    as_op!();
}
