//! Choosing where the model runs and in which precision: the core's policy
//! (`video_llava::device`), with its errors as the CLI reports them.

use video_llava::{DType, Device, DeviceRequest};

use crate::failure::Failure;

/// Opens `request` and picks `dtype` or the device's default one; a backend this build lacks or
/// a GPU that does not open is an input error naming `--device`.
pub fn select(request: DeviceRequest, dtype: Option<DType>) -> Result<(Device, DType), Failure> {
    request
        .open_with_dtype(dtype)
        .map_err(|e| Failure::from_model("--device", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_defaults_to_f32_and_explicit_choices_win() {
        assert_eq!(select(DeviceRequest::Cpu, None).unwrap().1, DType::F32);
        assert_eq!(
            select(DeviceRequest::Cpu, Some(DType::BF16)).unwrap().1,
            DType::BF16
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_is_an_input_error_and_auto_falls_back() {
        let err = select(DeviceRequest::Cuda(0), None).unwrap_err();
        assert_eq!(err.kind.exit_code(), 2);
        assert!(err.to_string().contains("--device"), "{err}");
        if !cfg!(feature = "metal") {
            assert!(select(DeviceRequest::Auto, None).unwrap().0.is_cpu());
        }
    }
}
