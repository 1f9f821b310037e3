//! The kernel on the CUDA backends (feature `cuda-base`): under fusion
//! ([`Nf4DequantBackend`] for `burn::backend::Cuda`), and the bridge from code generic over
//! plain `B: Backend` to the trait ([`kernel_for`]; see the trade-off in `backend.rs`).

use std::any::Any;

use burn::backend::Autodiff;
use burn::module::{Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorMetadata, TensorPrimitive};
use burn_fusion::stream::OperationStreams;
use burn_fusion::{Fusion, NoOp};
use burn_ir::{BackendIr, InitOperationIr, OperationIr, OperationOutput};
use cubecl::cuda::CudaRuntime;

use super::backend::Nf4DequantBackend;
use super::weight::dequantize_weight_cube;
use crate::linear::{NestedAbsmax, Nf4Scales, QuantLinear};
use crate::QuantError;

/// `burn::backend::Cuda` without fusion.
type CudaCube = burn_cubecl::CubeBackend<CudaRuntime, f32, i32, u8>;
/// `burn::backend::Cuda` (fusion on).
type CudaFusion = Fusion<CudaCube>;

/// The same layer with every tensor mapped to another backend (`int` for the code words, `float`
/// for the f32 tensors); the parameters are transient (fresh ids).
fn map_backend<B1: Backend, B2: Backend>(
    q: &QuantLinear<B1>,
    int: impl Fn(Tensor<B1, 1, Int>) -> Tensor<B2, 1, Int>,
    float: impl Fn(Tensor<B1, 1>) -> Tensor<B2, 1>,
) -> QuantLinear<B2> {
    let scales = match &q.scales {
        Nf4Scales::F32(a) => Nf4Scales::F32(Param::initialized(ParamId::new(), float(a.val()))),
        Nf4Scales::Double(d) => Nf4Scales::Double(NestedAbsmax {
            words: Param::initialized(ParamId::new(), int(d.words.val())),
            absmax2: Param::initialized(ParamId::new(), float(d.absmax2.val())),
            code2: float(d.code2.clone()),
            offset: d.offset,
            n_blocks: d.n_blocks,
            blocksize2: d.blocksize2,
        }),
    };
    QuantLinear {
        words: Param::initialized(ParamId::new(), int(q.words.val())),
        scales,
        code: float(q.code.clone()),
        d_in: q.d_in,
        d_out: q.d_out,
        blocksize: q.blocksize,
    }
}

/// The kernel under fusion: the layer's tensors are resolved to CubeCL tensors (this drains
/// their fusion stream), the kernel runs eagerly, and its output is registered back as a new
/// fusion tensor (an `Init` operation, as `Fusion::float_from_data` does).
impl Nf4DequantBackend for CudaFusion {
    fn nf4_dequantize_weight(q: &QuantLinear<Self>) -> Result<Tensor<Self, 2>, QuantError> {
        let client = q.words.val().into_primitive().client.clone();
        let qc: QuantLinear<CudaCube> = map_backend(
            q,
            |t| Tensor::from_primitive(client.resolve_tensor_int::<CudaCube>(t.into_primitive())),
            |t| {
                Tensor::from_primitive(TensorPrimitive::Float(
                    client.resolve_tensor_float::<CudaCube>(t.into_primitive().tensor()),
                ))
            },
        );
        let w = dequantize_weight_cube(&qc)?;
        let prim = w.into_primitive().tensor();
        let shape = prim.shape();
        let handle = <CudaCube as BackendIr>::float_tensor_handle(prim);
        let desc =
            InitOperationIr::create(shape, DType::F32, || client.register_tensor_handle(handle));
        let out = client
            .register(
                OperationStreams::default(),
                OperationIr::Init(desc),
                NoOp::<CudaCube>::new(),
            )
            .output();
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}

/// A backend's [`Nf4DequantBackend::nf4_dequantize_weight`].
pub(super) type DequantFn<B> = fn(&QuantLinear<B>) -> Result<Tensor<B, 2>, QuantError>;

/// `K`'s implementation, typed for `B`, when `B` is `K`.
fn implementation_of<B: Backend, K: Nf4DequantBackend>() -> Option<DequantFn<B>> {
    let f: DequantFn<K> = K::nf4_dequantize_weight;
    (&f as &dyn Any).downcast_ref::<DequantFn<B>>().copied()
}

/// The kernel implementation for `B` when `B` is one of the four CUDA backend types of this
/// build, `None` otherwise (the caller uses the burn-ops path).
pub(super) fn kernel_for<B: Backend>() -> Option<DequantFn<B>> {
    implementation_of::<B, CudaFusion>()
        .or_else(implementation_of::<B, Autodiff<CudaFusion>>)
        .or_else(implementation_of::<B, CudaCube>)
        .or_else(implementation_of::<B, Autodiff<CudaCube>>)
}
