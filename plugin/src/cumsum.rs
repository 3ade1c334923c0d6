//! ONNX `CumSum` over any integer type.
//!
//! tract-onnx loads `Cast(to=INT64)` as a cast to its symbolic dimension type
//! (`TDim`), and tract's `CumSum` kernel only sums plain numbers, so the
//! position-id subgraph of a torch RoBERTa export (mask -> Cast(int64) ->
//! CumSum) fails at run time with "CumSum: TDim is not a number". This
//! replacement wires the same `CumSum`, but when its input is `TDim` it sums
//! over `i64` and casts back, so the graph runs exactly as exported.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::array::CumSum as CoreCumSum;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_hir::internal::*;

pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("CumSum", build);
}

fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let reverse = node.get_attr_opt::<i64>("reverse")? == Some(1);
    let exclusive = node.get_attr_opt::<i64>("exclusive")? == Some(1);
    Ok((expand(IntCumSum { reverse, exclusive }), vec![]))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct IntCumSum {
    reverse: bool,
    exclusive: bool,
}

impl Expansion for IntCumSum {
    fn name(&self) -> StaticName {
        "CumSum".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&inputs[1].rank, 0)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let axis = model.outlet_fact(inputs[1])?.konst.as_ref().context("CumSum axis must be a constant")?;
        let axis = axis.cast_to_scalar::<i64>()?;
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis < 0 || axis >= rank {
            bail!("CumSum axis {axis} out of range for rank {rank}");
        }
        let op = CoreCumSum { axis: axis as usize, exclusive: self.exclusive, reverse: self.reverse };
        if fact.datum_type != TDim::datum_type() {
            return model.wire_node(prefix, op, &[inputs[0]]);
        }
        let as_int = model.wire_node(format!("{prefix}.to_i64"), cast(i64::datum_type()), &[inputs[0]])?;
        let summed = model.wire_node(prefix, op, &as_int)?;
        model.wire_node(format!("{prefix}.to_tdim"), cast(TDim::datum_type()), &summed)
    }
}
