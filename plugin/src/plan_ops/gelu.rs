//! tract's exact-GELU nodes (`GeluExact`, which its decluttering makes of
//! the ONNX `Erf` chain) run by `crate::gelu` in one pass, same bits.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::nn::GeluExact;

/// Swaps the mini op of every f32 `GeluExact` node; returns how many.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes.len() {
        let Some(op) = model.nodes[id].op_as::<ElementWiseOp>() else { continue };
        if !op.0.is::<GeluExact>() || op.1.is_some() || model.outlet_fact(OutletId::new(id, 0))?.datum_type != f32::datum_type() {
            continue;
        }
        let original = op.0.clone();
        model.node_mut(id).op = Box::new(ElementWiseOp(Box::new(GeluF32 { original }), None));
        replaced += 1;
    }
    Ok(replaced)
}

#[derive(Debug, Clone)]
struct GeluF32 {
    /// tract's op, for a tensor that is not plain f32 in memory.
    original: Box<dyn ElementWiseMiniOp>,
}

impl PartialEq for GeluF32 {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for GeluF32 {}

impl ElementWiseMiniOp for GeluF32 {
    fn name(&self) -> String {
        "LlmaGeluF32".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        if t.datum_type() != f32::datum_type() || out_dt.is_some_and(|dt| dt != f32::datum_type()) {
            return self.original.eval_in_place(t, out_dt);
        }
        let Ok(mut plain) = t.try_as_plain_ram_mut() else { return self.original.eval_in_place(t, out_dt) };
        crate::gelu::gelu_in_place(plain.as_slice_mut::<f32>()?);
        Ok(())
    }

    fn cost_per_element(&self, dt: DatumType) -> TVec<(Cost, usize)> {
        self.original.cost_per_element(dt)
    }
}
