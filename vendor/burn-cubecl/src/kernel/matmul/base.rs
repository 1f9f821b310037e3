use super::init_matmul_output;
use crate::{CubeRuntime, kernel::quantization::dequantize, tensor::CubeTensor};
use burn_backend::{DType, QTensorPrimitive};
use burn_std::QuantLevel;
use cubek::{
    matmul::{
        definition::{MatmulElems, MatmulGlobalElems, MatmulSetupError},
        launch::Strategy,
    },
    std::InputBinding,
};

#[cfg(feature = "autotune")]
use super::matmul_autotune;

/// The strategy to be used when launching a matmul kernel.
pub enum MatmulStrategy {
    #[cfg(feature = "autotune")]
    /// Using autotune to choose the best kernel based on runtime information.
    Autotune,
    /// Cube implementation of matmul.
    Cube,
}

impl Default for MatmulStrategy {
    fn default() -> Self {
        // if autotune is enabled, default to autotune
        #[cfg(feature = "autotune")]
        return MatmulStrategy::Autotune;

        #[cfg(not(feature = "autotune"))]
        MatmulStrategy::Cube
    }
}

/// Launch a matmul kernel using the given strategy.
pub fn matmul<R: CubeRuntime>(
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
    out: Option<CubeTensor<R>>,
    strategy: MatmulStrategy,
    out_dtype: DType,
) -> Result<CubeTensor<R>, MatmulSetupError> {
    // lora-burn patch (vendor/PATCHES.md): cuBLASLt first on CUDA (cublaslt.rs), with or
    // without autotune; CubeCL for what it cannot take.
    #[cfg(feature = "cublaslt")]
    let out = {
        let out = out.unwrap_or_else(|| init_matmul_output(&lhs, &rhs, out_dtype));
        if super::cublaslt::try_matmul(&lhs, &rhs, &out) {
            return Ok(out);
        }
        Some(out)
    };
    match strategy {
        MatmulStrategy::Cube => {
            let out = out.unwrap_or_else(|| init_matmul_output(&lhs, &rhs, out_dtype));
            // lora-burn patch (vendor/PATCHES.md): was `launch_matmul(&Default::default(), ..)`.
            launch_matmul_static(lhs, rhs, out.clone())?;
            Ok(out)
        }
        #[cfg(feature = "autotune")]
        MatmulStrategy::Autotune => Ok(matmul_autotune(lhs, rhs, out, out_dtype)),
    }
}

/// lora-burn patch (vendor/PATCHES.md): the kernel choice without autotune. Upstream launches
/// `Strategy::Auto` (`SimpleCyclicCmma`, single row), which ran GPT-2's products at 36–50 TFLOP/s
/// (f32 inputs) on an H200. burn's own autotune log of a GPT-2 step there ranks
/// `SpecializedTmaMma` lowest in summed time over all 28 keys (1.09× the per-key best), then
/// `SimpleTmaMma` multi-row (1.16×); upstream's choice 2.05×. For a general matmul where the
/// autotuner would allow TMA (both stride factors ≥ 4) this tries the first, then the second,
/// then `SimpleCyclicCmma` multi-row; any setup error falls through to the next and finally to
/// upstream's `Strategy::Auto`. LORA_BURN_MATMUL (read once) overrides the first choice:
/// `specialized_tma_mma` (default), `simple_tma_mma_multi_rows`, or `upstream` (only
/// `Strategy::Auto`); any other value panics with the list.
fn launch_matmul_static<R: CubeRuntime>(
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    use cubek::matmul::{
        components::tile::TileMatmulKind,
        definition::MatmulKind,
        launch::MatmulAutotuneKey,
        routines::{BlueprintStrategy, simple::SimpleArgs},
    };
    static CHOICE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    // The examples check the value first (crates/lora-recipes/src/switches.rs): keep both in step.
    let choice = *CHOICE.get_or_init(|| match std::env::var("LORA_BURN_MATMUL").as_deref() {
        Err(_) | Ok("specialized_tma_mma") => 0,
        Ok("simple_tma_mma_multi_rows") => 1,
        Ok("upstream") => 2,
        Ok(other) => panic!(
            "LORA_BURN_MATMUL={other:?}: expected specialized_tma_mma, \
             simple_tma_mma_multi_rows or upstream"
        ),
    });
    let quantized = lhs.qparams.is_some() || rhs.qparams.is_some();
    if !quantized && choice != 2 {
        let key = MatmulAutotuneKey::generate(
            &lhs.client,
            lhs.meta.shape(),
            rhs.meta.shape(),
            lhs.meta.strides(),
            rhs.meta.strides(),
            lhs.dtype.into(),
            rhs.dtype.into(),
            out.dtype.into(),
            lhs.try_scheme(),
            rhs.try_scheme(),
        );
        if matches!(key.analysis.kind, MatmulKind::General) {
            let tma =
                key.definition.lhs_stride_factor >= 4 && key.definition.rhs_stride_factor >= 4;
            let simple_tma = Strategy::SimpleTmaMma(BlueprintStrategy::Inferred(SimpleArgs {
                multi_rows: true,
                tile_matmul: TileMatmulKind::Mma,
            }));
            let mut candidates = alloc::vec::Vec::new();
            if tma {
                if choice == 0 {
                    candidates.push(Strategy::SpecializedTmaMma(BlueprintStrategy::Inferred(
                        ().into(),
                    )));
                }
                candidates.push(simple_tma);
            }
            candidates.push(Strategy::SimpleCyclicCmma(BlueprintStrategy::Inferred(
                SimpleArgs {
                    multi_rows: true,
                    tile_matmul: TileMatmulKind::Cmma,
                },
            )));
            for strategy in candidates {
                if launch_matmul(&strategy, lhs.clone(), rhs.clone(), out.clone()).is_ok() {
                    return Ok(());
                }
            }
        }
    }
    launch_matmul(&Default::default(), lhs, rhs, out)
}

pub(crate) fn launch_matmul_naive<R: CubeRuntime>(
    strategy: &Strategy,
    mut lhs: CubeTensor<R>,
    mut rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    // Naive has very specific layout requirements for block scaled tensors, so we need to manually
    // dequantize if it fails to launch normally. This is because naive is assumed to always work.
    if lhs.qparams.is_some() || rhs.qparams.is_some() {
        match launch_matmul(strategy, lhs.clone(), rhs.clone(), out.clone()) {
            Err(_) => {
                if lhs.qparams.is_some() {
                    lhs = dequantize(lhs, out.dtype);
                }
                if rhs.qparams.is_some() {
                    rhs = dequantize(rhs, out.dtype);
                }
                launch_matmul(strategy, lhs, rhs, out)
            }
            Ok(_) => Ok(()),
        }
    } else {
        launch_matmul(strategy, lhs, rhs, out)
    }
}

pub(crate) fn launch_matmul<R: CubeRuntime>(
    strategy: &Strategy,
    lhs: CubeTensor<R>,
    mut rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    let client = &out.client;

    let lhs_quant_handles = lhs.quantized_handles();
    let out_dtype: DType = out.dtype;

    let (lhs_dtype, lhs_handle) = match lhs_quant_handles {
        None => {
            let lhs_dtype = lhs.dtype;
            (
                lhs_dtype,
                InputBinding::new(lhs.binding(), lhs_dtype.into()),
            )
        }
        Some((data, scale)) => {
            let scheme = *lhs.scheme();
            let data_dtype = data.dtype;
            let scale_dtype = scale.dtype;
            (
                out_dtype,
                InputBinding::quantized(
                    data.binding(),
                    scale.binding(),
                    lhs.meta.shape().clone(),
                    scheme,
                    data_dtype.into(),
                    scale_dtype.into(),
                ),
            )
        }
    };

    let rhs_quant_handles = rhs.quantized_handles();

    let (rhs_dtype, rhs_handle) = match rhs_quant_handles {
        None => (
            lhs_dtype,
            InputBinding::new(rhs.binding(), lhs_dtype.into()),
        ),
        Some((data, scale)) => {
            // Extremely hacky fix to ensure naive can run in every case
            if matches!(strategy, Strategy::Naive)
                && matches!(rhs.scheme().level, QuantLevel::Block(_))
            {
                rhs = dequantize(rhs.clone(), lhs_dtype);
                let rhs_dtype = rhs.dtype;
                (
                    lhs_dtype,
                    InputBinding::new(rhs.binding(), rhs_dtype.into()),
                )
            } else {
                let scheme = *rhs.scheme();
                let data_dtype = data.dtype;
                let scale_dtype = scale.dtype;
                (
                    out_dtype,
                    InputBinding::quantized(
                        data.binding(),
                        scale.binding(),
                        rhs.meta.shape().clone(),
                        scheme,
                        data_dtype.into(),
                        scale_dtype.into(),
                    ),
                )
            }
        }
    };

    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: lhs_dtype.into(),
        rhs: rhs_dtype.into(),
        out: out_dtype.into(),
    });

    cubek::matmul::launch::launch_ref(
        strategy,
        client,
        lhs_handle,
        rhs_handle,
        out.clone().binding(),
        &mut dtypes,
    )?;

    Ok(())
}
