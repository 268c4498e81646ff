//! Choosing where the model runs and in which precision.

use video_llava::{DType, Device};

use crate::cli::{DTypeChoice, DeviceChoice};
use crate::failure::Failure;

/// The device for `choice`: `auto` takes CUDA when this build has it and a GPU answers, then
/// Metal likewise, else the CPU. Asking for a backend this build lacks is an input error.
pub fn select(choice: DeviceChoice) -> Result<Device, Failure> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err(Failure::input(
                    "--device cuda",
                    "this build has no CUDA support; rebuild with `--features cuda`",
                ));
            }
            Device::new_cuda(0).map_err(|e| Failure::input("--device cuda", e.to_string()))
        }
        DeviceChoice::Metal => {
            if !cfg!(feature = "metal") {
                return Err(Failure::input(
                    "--device metal",
                    "this build has no Metal support; rebuild with `--features metal`",
                ));
            }
            Device::new_metal(0).map_err(|e| Failure::input("--device metal", e.to_string()))
        }
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") {
                if let Ok(device) = Device::new_cuda(0) {
                    return Ok(device);
                }
            }
            if cfg!(feature = "metal") {
                if let Ok(device) = Device::new_metal(0) {
                    return Ok(device);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

/// The dtype asked for, or the device's natural one: f32 on the CPU (candle's half-precision CPU
/// kernels are slow), bf16 on CUDA (as the checkpoint is stored), f16 on Metal.
pub fn dtype(choice: Option<DTypeChoice>, device: &Device) -> DType {
    match choice {
        Some(DTypeChoice::Float32) => DType::F32,
        Some(DTypeChoice::Float16) => DType::F16,
        Some(DTypeChoice::Bfloat16) => DType::BF16,
        None if device.is_cuda() => DType::BF16,
        None if device.is_metal() => DType::F16,
        None => DType::F32,
    }
}

/// `cpu`, `cuda:0`, `metal:0`, for messages.
pub fn name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda:0"
    } else if device.is_metal() {
        "metal:0"
    } else {
        "cpu"
    }
}

/// `float32`, `float16`, `bfloat16`, as `--dtype` spells them.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_defaults_to_f32_and_explicit_choices_win() {
        assert_eq!(dtype(None, &Device::Cpu), DType::F32);
        assert_eq!(
            dtype(Some(DTypeChoice::Bfloat16), &Device::Cpu),
            DType::BF16
        );
        assert!(select(DeviceChoice::Cpu).unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_is_an_input_error_and_auto_falls_back() {
        let err = select(DeviceChoice::Cuda).unwrap_err();
        assert_eq!(err.kind.exit_code(), 2);
        if !cfg!(feature = "metal") {
            assert!(select(DeviceChoice::Auto).unwrap().is_cpu());
        }
    }
}
