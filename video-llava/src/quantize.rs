//! Quantized weights: which tensors become which GGUF block type, and the GGUF files that keep
//! them.
//!
//! [`Quantization`] names the block type of the Llama's linear weights (q, k, v, o, gate, up,
//! down and the LM head); embeddings and norms are never quantized. The vision towers
//! and the projector stay in full precision unless [`QuantizeOptions::vision`] is set, which
//! quantizes their linear weights to Q8_0. Blocks run along a weight's rows (its input
//! dimension), so a weight whose input dimension is not a multiple of the type's block size (256
//! for the K types, 32 for Q8_0) falls back to Q8_0, or to full precision, as llama.cpp's
//! quantizer does; each fallback is reported ([`Fallback`]).
//!
//! The policy is one function of the tensor's key and shape ([`QuantizeOptions::target`]), used
//! both when a checkpoint is quantized while it loads and when [`save_quantized`] writes it to a
//! GGUF file, so a saved file holds exactly the blocks an in-situ load computes.
//!
//! [`save_quantized`] writes `model.gguf` (GGUF v3) next to copies of `config.json`,
//! `tokenizer.json` and the other small JSON files of the source directory. Its metadata carries
//! the config and the tokenizer (`video_llava.config`, `tokenizer.huggingface.json`), the
//! quantization, and the tensors keep the checkpoint's own key names. Tensors are read,
//! quantized and written one at a time, so converting never holds the model in memory.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use crate::weights::{Component, ModelFiles, WeightTensor, Weights, GGUF_FILE};
use crate::{Error, Result};

/// The block type of the Llama's linear weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// Full precision: every weight in the compute dtype.
    #[default]
    None,
    /// 8-bit blocks of 32 weights with one f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit K-quant: super-blocks of 256 with 6-bit scales and minimums (4.5 bits per weight).
    Q4K,
    /// 6-bit K-quant: super-blocks of 256 (6.56 bits per weight).
    Q6K,
}

impl Quantization {
    /// Every choice, in the order the CLI lists them.
    pub const ALL: [Quantization; 4] = [
        Quantization::None,
        Quantization::Q8_0,
        Quantization::Q4K,
        Quantization::Q6K,
    ];

    /// The name users type: `none`, `q8_0`, `q4k` or `q6k`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4K => "q4k",
            Quantization::Q6K => "q6k",
        }
    }

    /// The GGUF block type, `None` for full precision.
    pub fn ggml_dtype(self) -> Option<GgmlDType> {
        match self {
            Quantization::None => None,
            Quantization::Q8_0 => Some(GgmlDType::Q8_0),
            Quantization::Q4K => Some(GgmlDType::Q4K),
            Quantization::Q6K => Some(GgmlDType::Q6K),
        }
    }

    /// Whether this is [`Quantization::None`].
    pub fn is_none(self) -> bool {
        self == Quantization::None
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantization {
    type Err = Error;

    /// Parses `none`, `q8_0`, `q4k` or `q6k`, case-insensitively; llama.cpp's spellings
    /// `q4_k` and `q6_k`, and `q8` for `q8_0`, are accepted too.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Quantization::None,
            "q8_0" | "q8" => Quantization::Q8_0,
            "q4k" | "q4_k" => Quantization::Q4K,
            "q6k" | "q6_k" => Quantization::Q6K,
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "unknown quantization {s:?}; expected one of {}",
                    Quantization::ALL.map(Quantization::as_str).join(", ")
                )))
            }
        })
    }
}

/// What a load or a conversion quantizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// The Llama's linear weights.
    pub text: Quantization,
    /// Also quantize the vision towers' and the projector's linear weights, to Q8_0.
    pub vision: bool,
}

/// A weight stored in another type than the one asked for, because its rows do not divide into
/// the asked type's blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The tensor's key in the checkpoint.
    pub tensor: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The type asked for.
    pub requested: GgmlDType,
    /// The type used: Q8_0, or `None` for full precision.
    pub used: Option<GgmlDType>,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = match self.used {
            Some(t) => format!("{t:?}"),
            None => "full precision".into(),
        };
        write!(
            f,
            "{} {:?}: rows of {} do not divide into {:?} blocks of {}; kept as {used}",
            self.tensor,
            self.shape,
            self.shape.last().copied().unwrap_or(0),
            self.requested,
            self.requested.block_size()
        )
    }
}

/// Which part of the model a checkpoint key belongs to, as far as quantization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A linear weight of the Llama (q, k, v, o, gate, up, down, LM head).
    TextLinear,
    /// A linear weight of a vision tower or the projector.
    VisionLinear,
    /// Anything else: embeddings, norms, biases, the patch convolution.
    Other,
}

fn role(key: &str) -> Role {
    const TEXT: [&str; 7] = [
        ".self_attn.q_proj.weight",
        ".self_attn.k_proj.weight",
        ".self_attn.v_proj.weight",
        ".self_attn.o_proj.weight",
        ".mlp.gate_proj.weight",
        ".mlp.up_proj.weight",
        ".mlp.down_proj.weight",
    ];
    const VISION: [&str; 6] = [
        ".self_attn.q_proj.weight",
        ".self_attn.k_proj.weight",
        ".self_attn.v_proj.weight",
        ".self_attn.out_proj.weight",
        ".mlp.fc1.weight",
        ".mlp.fc2.weight",
    ];
    match Component::of_key(key) {
        Some((Component::LmHead, "weight")) => Role::TextLinear,
        Some((Component::LanguageModel, rest))
            if rest.starts_with("layers.") && TEXT.iter().any(|s| rest.ends_with(s)) =>
        {
            Role::TextLinear
        }
        Some((Component::ImageTower | Component::VideoTower, rest))
            if rest.starts_with("encoder.layers.") && VISION.iter().any(|s| rest.ends_with(s)) =>
        {
            Role::VisionLinear
        }
        Some((Component::Projector, "linear_1.weight" | "linear_2.weight")) => Role::VisionLinear,
        _ => Role::Other,
    }
}

/// Where one tensor goes: quantized to a block type, or kept in full precision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The block type, `None` for full precision.
    pub dtype: Option<GgmlDType>,
    /// Set when the asked type did not fit the tensor's rows.
    pub fallback: Option<Fallback>,
}

impl QuantizeOptions {
    /// Whether nothing is quantized.
    pub fn is_none(&self) -> bool {
        self.text.is_none() && !self.vision
    }

    /// The block type asked for a tensor by its key, before fitting it to the shape.
    fn requested(&self, key: &str) -> Option<GgmlDType> {
        match role(key) {
            Role::TextLinear => self.text.ggml_dtype(),
            Role::VisionLinear if self.vision => Some(GgmlDType::Q8_0),
            _ => None,
        }
    }

    /// The type tensor `key` of `shape` is stored in: the asked type when its rows divide into
    /// the type's blocks, else Q8_0 when they divide into 32, else full precision.
    pub(crate) fn target(&self, key: &str, shape: &[usize]) -> Target {
        let Some(requested) = self.requested(key) else {
            return Target {
                dtype: None,
                fallback: None,
            };
        };
        let row = match shape {
            [_, row] => *row,
            _ => 0,
        };
        let fits = |t: GgmlDType| row > 0 && row.is_multiple_of(t.block_size());
        let used = [requested, GgmlDType::Q8_0].into_iter().find(|&t| fits(t));
        let fallback = (used != Some(requested)).then(|| Fallback {
            tensor: key.to_string(),
            shape: shape.to_vec(),
            requested,
            used,
        });
        Target {
            dtype: used,
            fallback,
        }
    }
}

/// Below this many weights a tensor is quantized on the calling thread.
const PARALLEL_MIN: usize = 1 << 20;

/// Quantizes a 2-D f32 CPU tensor to `dtype`, its rows split across the CPU threads candle uses.
/// Blocks never cross a row, so the result is exactly [`QTensor::quantize`]'s, in a fraction of
/// the time (quantizing is most of loading a checkpoint in-situ).
pub(crate) fn quantize_rows(dense: &Tensor, dtype: GgmlDType) -> candle_core::Result<QTensor> {
    let (rows, cols) = dense.dims2()?;
    let threads = crate::model::pool::threads().clamp(1, rows.max(1));
    if threads == 1 || rows * cols < PARALLEL_MIN || !cols.is_multiple_of(dtype.block_size()) {
        return QTensor::quantize(dense, dtype);
    }
    let (storage, layout) = dense.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        drop(storage);
        return QTensor::quantize(dense, dtype);
    };
    let data = &data[start..end];
    let per = rows.div_ceil(threads) * cols;
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut blocks = dtype.cpu_zeros(chunk.len());
                    blocks.from_float(chunk);
                    // SAFETY: the pointer and size are the block vector's own storage, alive
                    // for this borrow.
                    unsafe {
                        std::slice::from_raw_parts(blocks.as_ptr(), blocks.storage_size_in_bytes())
                    }
                    .to_vec()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<std::thread::Result<Vec<_>>>()
    })
    .map_err(|_| candle_core::Error::Msg("a quantizing thread panicked".into()))?;
    drop(storage);
    qtensor_from_ggml(dtype, &parts.concat(), vec![rows, cols], &Device::Cpu)
}

/// The GGUF metadata keys this engine writes and reads.
pub(crate) mod meta {
    /// `general.architecture`.
    pub const ARCHITECTURE: &str = "general.architecture";
    /// The architecture name written there.
    pub const ARCHITECTURE_NAME: &str = "video-llava";
    /// The text quantization's name ([`super::Quantization::as_str`]).
    pub const QUANTIZATION: &str = "video_llava.quantization";
    /// Whether the vision towers and projector are quantized.
    pub const QUANTIZE_VISION: &str = "video_llava.quantize_vision";
    /// The checkpoint's `config.json`, verbatim.
    pub const CONFIG: &str = "video_llava.config";
    /// The checkpoint's `tokenizer.json`, verbatim (llama.cpp's key for it).
    pub const TOKENIZER: &str = "tokenizer.huggingface.json";
}

/// The small files copied next to `model.gguf`, when the source has them.
const SIDE_FILES: [&str; 7] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
];

/// GGUF's default alignment of tensor data (`general.alignment` is written with it).
const ALIGNMENT: usize = 32;

/// What [`save_quantized`] wrote.
#[derive(Clone, Debug)]
pub struct SaveReport {
    /// The GGUF file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors stored quantized.
    pub quantized: usize,
    /// Weights kept in another type than asked.
    pub fallbacks: Vec<Fallback>,
}

/// Quantizes the checkpoint in `src` (a model directory of safetensors) and writes it to the
/// new or empty directory `dst` as `model.gguf` plus `config.json`, `tokenizer.json` and the
/// source's other small JSON files. [`crate::VideoLlava::from_pretrained`] then loads `dst`
/// without quantizing again.
///
/// `progress(done, total)` is called after each tensor. The GGUF file is written under a
/// temporary name and renamed when complete, so an interrupted run never leaves a file that
/// looks finished.
///
/// Errors: [`Error::InvalidRequest`] when `options` quantize nothing, when `src` already holds
/// a GGUF model, or when `dst` is not empty; the loading errors of [`ModelFiles::locate`] and
/// [`Weights::open`] for `src`; [`Error::Io`] for `dst`.
pub fn save_quantized(
    src: &Path,
    dst: &Path,
    options: QuantizeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SaveReport> {
    if options.is_none() {
        return Err(Error::InvalidRequest(
            "nothing to quantize: choose q8_0, q4k or q6k (or quantize the vision towers)".into(),
        ));
    }
    let files = ModelFiles::locate(src)?;
    if files.gguf.is_some() {
        return Err(Error::InvalidRequest(format!(
            "{} already holds a quantized model ({GGUF_FILE}); quantize the original safetensors checkpoint instead",
            src.display()
        )));
    }
    // The in-situ load's own reader: the blocks written are those a quantized load computes.
    let weights = Weights::open_quantized(&files, &Device::Cpu, DType::F32, options)?;
    prepare_dst(dst)?;
    let mut names = weights.tensor_names();
    names.sort();

    // Plan every tensor first: the header lists each one's type, shape and offset.
    let mut planned = Vec::with_capacity(names.len());
    let mut fallbacks = Vec::new();
    for name in &names {
        let (shape, stored) = weights.stored_shape_and_dtype(name)?;
        let target = options.target(name, &shape);
        fallbacks.extend(target.fallback.clone());
        let dtype = match target.dtype {
            Some(t) => t,
            None => match stored {
                DType::F16 => GgmlDType::F16,
                DType::BF16 => GgmlDType::BF16,
                _ => GgmlDType::F32,
            },
        };
        planned.push((name.clone(), shape, dtype));
    }

    let config_text = std::fs::read_to_string(&files.config).map_err(io_at(&files.config))?;
    let mut metadata = vec![
        (
            meta::ARCHITECTURE.to_string(),
            MetaValue::String(meta::ARCHITECTURE_NAME.into()),
        ),
        (
            "general.name".to_string(),
            MetaValue::String(
                src.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ),
        (
            "general.alignment".to_string(),
            MetaValue::U32(ALIGNMENT as u32),
        ),
        (
            "general.quantization_version".to_string(),
            MetaValue::U32(2),
        ),
        (
            meta::QUANTIZATION.to_string(),
            MetaValue::String(options.text.as_str().into()),
        ),
        (
            meta::QUANTIZE_VISION.to_string(),
            MetaValue::Bool(options.vision),
        ),
        (meta::CONFIG.to_string(), MetaValue::String(config_text)),
    ];
    if let Some(tok) = &files.tokenizer {
        let text = std::fs::read_to_string(tok).map_err(io_at(tok))?;
        metadata.push((meta::TOKENIZER.to_string(), MetaValue::String(text)));
    }

    let final_path = dst.join(GGUF_FILE);
    let tmp_path = dst.join(format!("{GGUF_FILE}.partial"));
    let total = planned.len();
    let mut quantized = 0;
    let written = (|| -> Result<()> {
        let file = File::create(&tmp_path).map_err(io_at(&tmp_path))?;
        let mut w = GgufWriter::new(BufWriter::with_capacity(1 << 20, file));
        w.header(&metadata, &planned).map_err(io_at(&tmp_path))?;
        for (i, (name, shape, dtype)) in planned.iter().enumerate() {
            let bytes = match dtype {
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                    weights.stored_bytes_as(name, shape, *dtype)?
                }
                _ => {
                    quantized += 1;
                    match weights.load_linear(name, shape)? {
                        WeightTensor::Quantized(q) if q.dtype() == *dtype => q.data()?.into_owned(),
                        _ => {
                            return Err(Error::Weights {
                                path: src.to_path_buf(),
                                reason: format!(
                                    "`{name}` was not quantized to the planned {dtype:?}"
                                ),
                            })
                        }
                    }
                }
            };
            w.tensor_data(&bytes).map_err(io_at(&tmp_path))?;
            progress(i + 1, total);
        }
        let file = w.finish().map_err(io_at(&tmp_path))?;
        file.sync_all().map_err(io_at(&tmp_path))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    copy_side_files(src, dst)?;
    std::fs::rename(&tmp_path, &final_path).map_err(io_at(&final_path))?;
    let bytes = std::fs::metadata(&final_path)
        .map_err(io_at(&final_path))?
        .len();
    Ok(SaveReport {
        path: final_path,
        bytes,
        tensors: total,
        quantized,
        fallbacks,
    })
}

/// Copies a GGUF model directory (`model.gguf` and the small files beside it) to the new or
/// empty directory `dst`.
pub(crate) fn copy_model_dir(src: &Path, dst: &Path) -> Result<SaveReport> {
    let from = src.join(GGUF_FILE);
    let weights = Weights::open(&ModelFiles::locate(src)?, &Device::Cpu, DType::F32)?;
    let tensors = weights.tensor_names().len();
    prepare_dst(dst)?;
    copy_side_files(src, dst)?;
    let path = dst.join(GGUF_FILE);
    let tmp_path = dst.join(format!("{GGUF_FILE}.partial"));
    let bytes = std::fs::copy(&from, &tmp_path).map_err(io_at(&from))?;
    std::fs::rename(&tmp_path, &path).map_err(io_at(&path))?;
    Ok(SaveReport {
        path,
        bytes,
        tensors,
        quantized: 0,
        fallbacks: Vec::new(),
    })
}

/// Makes `dst` if needed; refuses one that is not empty (a quantized model is never written
/// over files it could mix with).
fn prepare_dst(dst: &Path) -> Result<()> {
    if dst.exists() {
        let mut entries = std::fs::read_dir(dst).map_err(io_at(dst))?;
        if entries.next().is_some() {
            return Err(Error::InvalidRequest(format!(
                "{} is not empty; quantized models are written to a new or empty directory",
                dst.display()
            )));
        }
    }
    std::fs::create_dir_all(dst).map_err(io_at(dst))
}

fn copy_side_files(src: &Path, dst: &Path) -> Result<()> {
    for name in SIDE_FILES {
        let from = src.join(name);
        if from.is_file() {
            std::fs::copy(&from, dst.join(name)).map_err(io_at(&from))?;
        }
    }
    Ok(())
}

/// Maps an I/O error to [`Error::Io`] at `path`.
fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        path: path.clone(),
        source,
    }
}

/// The metadata value types this engine writes.
enum MetaValue {
    U32(u32),
    Bool(bool),
    String(String),
}

/// A GGUF v3 writer that takes the tensor data one tensor at a time, after a header planned from
/// shapes and types alone (candle's writer wants every tensor in memory at once).
struct GgufWriter<W: Write> {
    w: W,
    sizes: Vec<usize>,
    next: usize,
}

impl<W: Write> GgufWriter<W> {
    fn new(w: W) -> Self {
        Self {
            w,
            sizes: Vec::new(),
            next: 0,
        }
    }

    fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.w.write_all(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.w.write_all(&v.to_le_bytes())
    }

    fn string(&mut self, s: &str) -> std::io::Result<()> {
        self.u64(s.len() as u64)?;
        self.w.write_all(s.as_bytes())
    }

    fn header(
        &mut self,
        metadata: &[(String, MetaValue)],
        tensors: &[(String, Vec<usize>, GgmlDType)],
    ) -> std::io::Result<()> {
        // "GGUF", version 3, tensor count, metadata count.
        self.u32(0x4655_4747)?;
        self.u32(3)?;
        self.u64(tensors.len() as u64)?;
        self.u64(metadata.len() as u64)?;
        let mut written = 24;
        for (key, value) in metadata {
            self.string(key)?;
            written += 8 + key.len();
            match value {
                MetaValue::U32(v) => {
                    self.u32(4)?;
                    self.u32(*v)?;
                    written += 8;
                }
                MetaValue::Bool(v) => {
                    self.u32(7)?;
                    self.w.write_all(&[u8::from(*v)])?;
                    written += 5;
                }
                MetaValue::String(s) => {
                    self.u32(8)?;
                    self.string(s)?;
                    written += 12 + s.len();
                }
            }
        }
        let mut offset = 0usize;
        for (name, shape, dtype) in tensors {
            self.string(name)?;
            self.u32(shape.len() as u32)?;
            // GGUF lists dimensions innermost first.
            for &d in shape.iter().rev() {
                self.u64(d as u64)?;
            }
            self.u32(ggml_type_id(*dtype))?;
            self.u64(offset as u64)?;
            written += 8 + name.len() + 4 + 8 * shape.len() + 4 + 8;
            let size = shape.iter().product::<usize>() / dtype.block_size() * dtype.type_size();
            self.sizes.push(size);
            offset += size.next_multiple_of(ALIGNMENT);
        }
        self.pad(written)
    }

    fn pad(&mut self, written: usize) -> std::io::Result<()> {
        let padding = written.next_multiple_of(ALIGNMENT) - written;
        self.w.write_all(&[0u8; ALIGNMENT][..padding])
    }

    /// Writes the next tensor's data, which must have the size its header entry announced.
    fn tensor_data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let want = self.sizes.get(self.next).copied();
        if want != Some(bytes.len()) {
            return Err(std::io::Error::other(format!(
                "tensor {} has {} bytes, its header announced {want:?}",
                self.next,
                bytes.len()
            )));
        }
        self.next += 1;
        self.w.write_all(bytes)?;
        self.pad(bytes.len())
    }
}

impl GgufWriter<BufWriter<File>> {
    fn finish(mut self) -> std::io::Result<File> {
        if self.next != self.sizes.len() {
            return Err(std::io::Error::other(format!(
                "{} of {} tensors written",
                self.next,
                self.sizes.len()
            )));
        }
        self.w.flush()?;
        self.w.into_inner().map_err(|e| e.into_error())
    }
}

/// GGML's type ids (ggml.h), as GGUF stores them.
fn ggml_type_id(t: GgmlDType) -> u32 {
    match t {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizing_rows_in_parallel_gives_the_same_blocks() -> candle_core::Result<()> {
        // 1030 rows: chunks that do not split evenly; above PARALLEL_MIN.
        let dense = Tensor::randn(0f32, 1.0, (1030, 1024), &Device::Cpu)?;
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let parallel = quantize_rows(&dense, dtype)?;
            let whole = QTensor::quantize(&dense, dtype)?;
            assert_eq!(parallel.shape().dims(), &[1030, 1024]);
            assert_eq!(*parallel.data()?, *whole.data()?, "{dtype:?}");
        }
        Ok(())
    }

    #[test]
    fn names_parse_and_print() {
        for q in Quantization::ALL {
            assert_eq!(q.as_str().parse::<Quantization>().unwrap(), q);
            assert_eq!(q.to_string(), q.as_str());
        }
        assert_eq!("Q4_K".parse::<Quantization>().unwrap(), Quantization::Q4K);
        assert_eq!("q8".parse::<Quantization>().unwrap(), Quantization::Q8_0);
        let err = "q3k".parse::<Quantization>().unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        assert!(err.to_string().contains("none, q8_0, q4k, q6k"), "{err}");
    }

    #[test]
    fn only_linear_weights_are_quantized_with_the_fallbacks_llama_cpp_uses() {
        let q4k = QuantizeOptions {
            text: Quantization::Q4K,
            vision: false,
        };
        let t = |o: &QuantizeOptions, k: &str, s: &[usize]| o.target(k, s).dtype;
        // Every Llama linear, in every key layout.
        for key in [
            "language_model.model.layers.0.self_attn.q_proj.weight",
            "model.language_model.layers.3.mlp.down_proj.weight",
            "language_model.lm_head.weight",
            "lm_head.weight",
        ] {
            assert_eq!(t(&q4k, key, &[512, 4096]), Some(GgmlDType::Q4K), "{key}");
        }
        // Rows of 32 (not 256): Q8_0; rows of 24: full precision; both reported.
        let key = "language_model.model.layers.0.mlp.up_proj.weight";
        let small = q4k.target(key, &[64, 32]);
        assert_eq!(small.dtype, Some(GgmlDType::Q8_0));
        assert_eq!(small.fallback.as_ref().unwrap().used, Some(GgmlDType::Q8_0));
        let odd = q4k.target(key, &[56, 24]);
        assert_eq!(odd.dtype, None);
        assert!(odd.fallback.unwrap().to_string().contains("full precision"));
        // Embeddings, norms, biases and the vision towers stay.
        for key in [
            "language_model.model.embed_tokens.weight",
            "language_model.model.layers.0.input_layernorm.weight",
            "language_model.model.norm.weight",
            "image_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
            "multi_modal_projector.linear_1.weight",
            "image_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias",
        ] {
            assert_eq!(t(&q4k, key, &[512, 4096]), None, "{key}");
        }
        // With vision on, the towers' and projector's linears go to Q8_0, not their norms.
        let vision = QuantizeOptions {
            text: Quantization::None,
            vision: true,
        };
        for key in [
            "image_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
            "video_tower.encoder.layers.11.mlp.fc2.weight",
            "model.multi_modal_projector.linear_2.weight",
        ] {
            assert_eq!(t(&vision, key, &[64, 1024]), Some(GgmlDType::Q8_0), "{key}");
        }
        for key in [
            "language_model.model.layers.0.self_attn.q_proj.weight",
            "image_tower.vision_model.embeddings.patch_embedding.weight",
            "image_tower.vision_model.encoder.layers.0.layer_norm1.weight",
        ] {
            assert_eq!(t(&vision, key, &[64, 1024]), None, "{key}");
        }
    }
}
