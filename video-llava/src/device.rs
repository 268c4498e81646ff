//! One policy for where the model runs and in which precision, read by the CLI, Python and
//! Node alike: the names each accepts, what `auto` picks, the default dtype of each device,
//! and what a build without a backend says.
//!
//! - Devices: `auto` (default), `cpu`, `cuda` / `gpu` / `cuda:N`, `metal` / `mps` / `metal:N`,
//!   case-insensitive. `auto` takes CUDA GPU 0 when this build has CUDA and a GPU answers, then
//!   Metal likewise, else the CPU.
//! - Dtypes: `float32` / `f32` / `fp32`, `float16` / `f16` / `fp16` / `half`, `bfloat16` / `bf16`.
//!   Without one, the device's: float32 on the CPU (candle's half-precision CPU kernels are
//!   slow), bfloat16 on CUDA (as the checkpoint is stored), float16 on Metal.
//! - A backend this build lacks, or a GPU that does not open, is [`Error::Device`]; a name none
//!   of the above is [`Error::InvalidRequest`].

use std::str::FromStr;

use candle_core::{DType, Device, DeviceLocation};

use crate::{Error, Result};

/// A device as a user names it, before it is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA, then Metal, when built in and present; else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU N.
    Cuda(usize),
    /// Metal GPU N.
    Metal(usize),
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (kind, ordinal) = match lower.split_once(':') {
            Some((kind, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    Error::InvalidRequest(format!("bad device ordinal in {name:?}"))
                })?;
                (kind, Some(n))
            }
            None => (lower.as_str(), None),
        };
        Ok(match (kind, ordinal) {
            ("auto", None) => DeviceRequest::Auto,
            ("cpu", None) => DeviceRequest::Cpu,
            ("cuda" | "gpu", n) => DeviceRequest::Cuda(n.unwrap_or(0)),
            ("metal" | "mps", n) => DeviceRequest::Metal(n.unwrap_or(0)),
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "device must be auto, cpu, cuda, cuda:N, metal or metal:N, got {name:?}"
                )))
            }
        })
    }
}

impl DeviceRequest {
    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceRequest::Cpu => Ok(Device::Cpu),
            DeviceRequest::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::Device(
                        "this build has no CUDA support; rebuild with the `cuda` feature".into(),
                    ));
                }
                Device::new_cuda(n).map_err(|e| Error::Device(format!("cuda:{n}: {e}")))
            }
            DeviceRequest::Metal(n) => {
                if !cfg!(feature = "metal") {
                    return Err(Error::Device(
                        "this build has no Metal support; rebuild with the `metal` feature".into(),
                    ));
                }
                Device::new_metal(n).map_err(|e| Error::Device(format!("metal:{n}: {e}")))
            }
            DeviceRequest::Auto => {
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

    /// Opens the device and picks `dtype`, or the device's default one without it.
    pub fn open_with_dtype(self, dtype: Option<DType>) -> Result<(Device, DType)> {
        let device = self.open()?;
        let dtype = dtype.unwrap_or_else(|| default_dtype(&device));
        Ok((device, dtype))
    }
}

/// Reads a dtype name (see the module docs for the aliases).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "float32" | "f32" | "fp32" => Ok(DType::F32),
        "float16" | "f16" | "fp16" | "half" => Ok(DType::F16),
        "bfloat16" | "bf16" => Ok(DType::BF16),
        _ => Err(Error::InvalidRequest(format!(
            "dtype must be float32, float16 or bfloat16, got {name:?}"
        ))),
    }
}

/// The dtype a model runs in on `device` when none is asked for.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else if device.is_metal() {
        DType::F16
    } else {
        DType::F32
    }
}

/// Opens the device named `device` (`None`: `auto`) and picks the dtype named `dtype` (`None`:
/// the device's default): what every front end's device and dtype options go through.
pub fn select(device: Option<&str>, dtype: Option<&str>) -> Result<(Device, DType)> {
    let request: DeviceRequest = device.map(str::parse).transpose()?.unwrap_or_default();
    // A bad dtype is reported before a GPU is opened.
    let dtype = dtype.map(parse_dtype).transpose()?;
    request.open_with_dtype(dtype)
}

/// `cpu`, `cuda:N`, `metal:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// `float32`, `float16`, `bfloat16` (other dtypes, which no model option names, read float32).
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
    fn names_and_aliases() {
        for (name, want) in [
            ("auto", DeviceRequest::Auto),
            (" CPU ", DeviceRequest::Cpu),
            ("cuda", DeviceRequest::Cuda(0)),
            ("gpu", DeviceRequest::Cuda(0)),
            ("cuda:3", DeviceRequest::Cuda(3)),
            ("mps", DeviceRequest::Metal(0)),
            ("metal:1", DeviceRequest::Metal(1)),
        ] {
            assert_eq!(name.parse::<DeviceRequest>().unwrap(), want, "{name}");
        }
        for bad in ["tpu", "cuda:x", "cpu:1", "auto:0", ""] {
            assert!(
                matches!(bad.parse::<DeviceRequest>(), Err(Error::InvalidRequest(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_dtype("fp16").unwrap(), DType::F16);
        assert_eq!(parse_dtype("BF16").unwrap(), DType::BF16);
        assert!(matches!(parse_dtype("int8"), Err(Error::InvalidRequest(_))));
    }

    #[test]
    fn defaults_follow_the_device() {
        let (device, dtype) = select(Some("cpu"), None).unwrap();
        assert!(device.is_cpu());
        assert_eq!(dtype, DType::F32);
        assert_eq!(select(Some("cpu"), Some("bf16")).unwrap().1, DType::BF16);
        // A bad dtype is refused before any device is opened.
        assert!(matches!(
            select(Some("cuda"), Some("int8")),
            Err(Error::InvalidRequest(_))
        ));
        assert_eq!(device_name(&Device::Cpu), "cpu");
        assert_eq!(dtype_name(DType::BF16), "bfloat16");
    }

    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    #[test]
    fn a_backend_this_build_lacks_is_a_device_error_and_auto_is_the_cpu() {
        assert!(matches!(
            select(Some("cuda:0"), None),
            Err(Error::Device(_))
        ));
        assert!(matches!(select(Some("metal"), None), Err(Error::Device(_))));
        let (device, dtype) = select(None, None).unwrap();
        assert!(device.is_cpu());
        assert_eq!(dtype, DType::F32);
    }
}
