//! The f32 binary nodes of tract's optimised plan (add, subtract, multiply,
//! and tract's chains of them), run by `broadcast` instead of tract's eval.
//!
//! tract 0.23.9 falls back to a call through a function pointer per element
//! in two cases a transformer meets in every layer: a node whose sizes it
//! only knows symbolically (the residual add and the attention-mask add,
//! whose fast forms need concrete sizes), and an operand whose size-1 axis
//! has a stride other than the natural one (what its reshape from
//! `(batch*sequence, 768)` leaves), which sends the layer norm's
//! `OptSubByScalar` and `OptBinChain(Mul+Add)` back to that path too. Inside
//! the sandbox each of those calls also saves and reloads the fuel counter,
//! which made those paths a large part of what fuel added to a sequence
//! (docs/performance.md, "Plan nodes the plugin runs itself").
//!
//! A node keeps tract's op beside it, for inputs `broadcast` does not take
//! (not C-ordered, not plain f32 in memory).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, OptBinByScalar, OptBinChain, OptBinUnicast, TypedBinOp};
use tract_onnx::tract_core::ops::math::{Add, Mul, Sub, SubF};

use crate::broadcast::{apply, Kind};

fn kind(op: &dyn BinMiniOp) -> Option<Kind> {
    if op.is::<Add>() {
        Some(Kind::Add)
    } else if op.is::<Sub>() {
        Some(Kind::Sub)
    } else if op.is::<SubF>() {
        Some(Kind::SubF)
    } else if op.is::<Mul>() {
        Some(Kind::Mul)
    } else {
        None
    }
}

/// The steps of a node this module can run, in order, each on the running
/// value and the next input.
fn steps(op: &dyn TypedOp) -> Option<TVec<Kind>> {
    if let Some(op) = op.downcast_ref::<TypedBinOp>() {
        return kind(&*op.0).map(|k| tvec![k]);
    }
    if let Some(op) = op.downcast_ref::<OptBinByScalar>() {
        return kind(&*op.binop).map(|k| tvec![k]);
    }
    if let Some(op) = op.downcast_ref::<OptBinUnicast>() {
        return kind(&*op.binop).map(|k| tvec![k]);
    }
    if let Some(op) = op.downcast_ref::<OptBinChain>() {
        return op.steps.iter().map(|s| kind(&*s.binop)).collect();
    }
    None
}

/// Replaces the plan's binary nodes that fit (all f32, the output the first
/// input's shape, every other input broadcast over it); returns how many.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes.len() {
        let node = &model.nodes[id];
        let Some(steps) = steps(node.op.as_ref()) else { continue };
        let inputs = model.node_input_facts(id)?;
        let output = model.outlet_fact(OutletId::new(id, 0))?;
        let a = &inputs[0].shape;
        let fits = inputs.len() == steps.len() + 1
            && node.outputs.len() == 1
            && output.datum_type == f32::datum_type()
            && output.shape == *a
            && inputs.iter().all(|f| f.datum_type == f32::datum_type() && f.rank() == a.rank())
            && inputs[1..].iter().all(|b| b.shape.iter().zip(a.iter()).all(|(y, x)| y == x || y.is_one()));
        if !fits {
            continue;
        }
        let original = node.op.clone();
        drop(inputs);
        model.node_mut(id).op = Box::new(BroadcastF32 { steps, original });
        replaced += 1;
    }
    Ok(replaced)
}

#[derive(Debug, Clone)]
struct BroadcastF32 {
    steps: TVec<Kind>,
    /// What tract would run, for inputs `broadcast` does not take.
    original: Box<dyn TypedOp>,
}

impl PartialEq for BroadcastF32 {
    fn eq(&self, other: &Self) -> bool {
        self.steps == other.steps
    }
}
impl Eq for BroadcastF32 {}

impl Op for BroadcastF32 {
    fn name(&self) -> StaticName {
        "LlmaBroadcastF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, in place of {}", self.steps, self.original.name())])
    }

    op_as_typed_op!();
}

impl EvalOp for BroadcastF32 {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if inputs.len() != self.steps.len() + 1 || !inputs.iter().all(|t| super::c_order(t)) {
            return self.original.eval(ctx, inputs);
        }
        let mut inputs = inputs.into_iter();
        let mut a = inputs.next().context("no input")?.into_tensor();
        let a_shape: TVec<usize> = a.shape().into();
        {
            let mut view = a.try_as_plain_ram_mut()?;
            let a_data = view.as_slice_mut::<f32>()?;
            for (&kind, b) in self.steps.iter().zip(inputs) {
                let b_view = b.try_as_plain_ram()?;
                apply(kind, a_data, &a_shape, b_view.as_slice::<f32>()?, b.shape())?;
            }
        }
        Ok(tvec!(a.into_tvalue()))
    }
}

impl TypedOp for BroadcastF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}
