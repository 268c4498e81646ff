//! Safetensors and GGUF discovery, sharding, key layouts, dtype conversion and quantization.
//!
//! A model directory holds `config.json` and either `model.safetensors`,
//! `model.safetensors.index.json` plus its shards, or a `model.gguf` that
//! [`crate::quantize::save_quantized`] wrote (its embedded config must match `config.json`).
//! [`Weights::load_linear`] quantizes a linear weight as it is read, when the load asks for it
//! ([`crate::quantize`] has the policy). Files are memory-mapped and their headers
//! validated up front, so a truncated or corrupt file is reported before any math runs. Tensors
//! are then copied out one at a time into the dtype asked for (bf16, f16 or f32 on disk), and the
//! mapped pages of each are released right after, so loading a bf16 checkpoint into f32 peaks at
//! about the size of the f32 weights. Pickled `.bin` weights are refused, never unpickled.
//!
//! Key names differ between checkpoints: the hub's legacy names (`image_tower.vision_model.*`,
//! `language_model.model.*`, `language_model.lm_head.weight`), what transformers 5's
//! `save_pretrained` writes (`image_tower.embeddings.*`, no `vision_model.`) and the in-memory
//! names of transformers 5 (`model.image_tower.*`, `model.language_model.*`, `lm_head.weight`).
//! [`Weights::scope`] finds which one a checkpoint uses, per component.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::quantize::{meta, Fallback, Quantization, QuantizeOptions};
use crate::{Error, Result};

/// The single-file weights name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The sharded weights index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The quantized weights name ([`crate::quantize::save_quantized`] writes it).
pub const GGUF_FILE: &str = "model.gguf";

/// The files of a model directory this engine reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// The safetensors files: one, or the shards named by the index (sorted, deduplicated);
    /// empty when the directory holds a GGUF model.
    pub weights: Vec<PathBuf>,
    /// `model.gguf`, when the directory holds a quantized model (it wins over safetensors).
    pub gguf: Option<PathBuf>,
    /// `model.safetensors.index.json`, when sharded.
    pub index: Option<PathBuf>,
    /// `tokenizer.json`, when present (the model itself does not need it).
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// Finds the config and weights of a model directory.
    ///
    /// Errors: [`Error::MissingFile`] for a missing directory, config or weights (and for a shard
    /// the index names but the directory lacks), [`Error::PickleOnly`] when only
    /// `pytorch_model*.bin` files are there, [`Error::Weights`] for an unreadable index.
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: "the model directory itself (it does not exist or is not a directory)".into(),
            });
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: "config.json".into(),
            });
        }
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let gguf = dir.join(GGUF_FILE);
        if gguf.is_file() {
            return Ok(Self {
                dir: dir.to_path_buf(),
                config,
                weights: Vec::new(),
                gguf: Some(gguf),
                index: None,
                tokenizer,
            });
        }
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            let shards = read_index(&index)?;
            let mut weights = Vec::with_capacity(shards.len());
            for shard in shards {
                let path = dir.join(&shard);
                if !path.is_file() {
                    return Err(Error::MissingFile {
                        dir: dir.to_path_buf(),
                        what: format!("{shard} (a shard named by {INDEX_FILE})"),
                    });
                }
                weights.push(path);
            }
            return Ok(Self {
                dir: dir.to_path_buf(),
                config,
                weights,
                gguf: None,
                index: Some(index),
                tokenizer,
            });
        }
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Ok(Self {
                dir: dir.to_path_buf(),
                config,
                weights: vec![single],
                gguf: None,
                index: None,
                tokenizer,
            });
        }
        let has_pickle = std::fs::read_dir(dir)
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok())
            .any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("pytorch_model") && name.ends_with(".bin")
            });
        if has_pickle {
            return Err(Error::PickleOnly {
                dir: dir.to_path_buf(),
            });
        }
        Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: format!("weights: {SINGLE_FILE}, {INDEX_FILE} with its shards, or {GGUF_FILE}"),
        })
    }
}

/// The shard file names of an index, sorted and deduplicated; the hub download and the loader
/// both read an index through this one check (no empty map, no names outside the model directory).
pub(crate) fn read_index(index: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| Error::Weights {
        path: index.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut shards = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("`weight_map.{name}` is not a file name")))?;
        // A shard must sit in the model directory: refuse paths that climb out of it.
        if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
            return Err(bad(format!(
                "`weight_map.{name}` names {file:?}, not a file in the model directory"
            )));
        }
        shards.push(file.to_string());
    }
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok(shards)
}

/// Maps a weights file read-only.
fn map_file(path: &Path) -> Result<Mmap> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not being
    // truncated by another process while the model loads.
    unsafe { Mmap::map(&file) }.map_err(io)
}

/// One memory-mapped safetensors file with its validated header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let mmap = map_file(path)?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| Error::Weights {
                path: path.to_path_buf(),
                reason: format!("not a valid safetensors file (truncated or corrupt?): {e}"),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            metadata,
        })
    }
}

/// A checkpoint component whose key prefix varies between layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The image CLIP tower.
    ImageTower,
    /// The video CLIP tower.
    VideoTower,
    /// The Llama body (embeddings, layers, final norm).
    LanguageModel,
    /// The LM head.
    LmHead,
    /// The multimodal projector.
    Projector,
}

impl Component {
    /// Candidate prefixes, the hub's legacy one first; `marker` is a key every layout has.
    fn prefixes(self) -> (&'static [&'static str], &'static str) {
        match self {
            Component::ImageTower => (
                &[
                    "image_tower.vision_model.",
                    "image_tower.",
                    "model.image_tower.vision_model.",
                    "model.image_tower.",
                ],
                "embeddings.patch_embedding.weight",
            ),
            Component::VideoTower => (
                &[
                    "video_tower.vision_model.",
                    "video_tower.",
                    "model.video_tower.vision_model.",
                    "model.video_tower.",
                ],
                "embeddings.patch_embedding.weight",
            ),
            Component::LanguageModel => (
                &[
                    "language_model.model.",
                    "model.language_model.",
                    "language_model.",
                ],
                "embed_tokens.weight",
            ),
            Component::LmHead => (&["language_model.lm_head.", "lm_head."], "weight"),
            Component::Projector => (
                &["multi_modal_projector.", "model.multi_modal_projector."],
                "linear_1.weight",
            ),
        }
    }

    /// Every component, the LM head before the language model (whose legacy prefix
    /// `language_model.` also starts the head's keys).
    const ALL: [Component; 5] = [
        Component::LmHead,
        Component::ImageTower,
        Component::VideoTower,
        Component::Projector,
        Component::LanguageModel,
    ];

    /// The component a checkpoint key belongs to and the key's rest after the component's
    /// prefix, trying the longest matching prefix first.
    pub fn of_key(key: &str) -> Option<(Component, &str)> {
        let mut best: Option<(Component, &str, usize)> = None;
        for c in Self::ALL {
            for p in c.prefixes().0 {
                if let Some(rest) = key.strip_prefix(p) {
                    if best.is_none_or(|(_, _, len)| p.len() > len) {
                        best = Some((c, rest, p.len()));
                    }
                }
            }
        }
        best.map(|(c, rest, _)| (c, rest))
    }
}

/// A weight as it is loaded: a dense tensor in the compute dtype, or quantized blocks.
#[derive(Debug)]
pub enum WeightTensor {
    /// On the weights' device, in their dtype.
    Dense(Tensor),
    /// GGUF blocks, on the CPU (the layer moves them to the device once it has fused them).
    Quantized(QTensor),
}

/// One memory-mapped GGUF file with its parsed header and checked tensor ranges.
struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    content: gguf_file::Content,
}

impl GgufFile {
    fn open(path: &Path) -> Result<Self> {
        let mmap = map_file(path)?;
        let bad = |reason: String| Error::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let content =
            gguf_file::Content::read(&mut std::io::Cursor::new(&mmap[..])).map_err(|e| {
                bad(format!(
                    "not a valid GGUF file (truncated or corrupt?): {e}"
                ))
            })?;
        // Every tensor's bytes must lie inside the file: a truncated file is refused here, before
        // any tensor is read.
        for (name, info) in &content.tensor_infos {
            let (_, end) = Self::range_of(&content, info)
                .ok_or_else(|| bad(format!("tensor `{name}`: its size overflows")))?;
            if end > mmap.len() {
                return Err(bad(format!(
                    "tensor `{name}` ends at byte {end}, past the end of the file ({} bytes): the file is truncated",
                    mmap.len()
                )));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            content,
        })
    }

    fn range_of(
        content: &gguf_file::Content,
        info: &gguf_file::TensorInfo,
    ) -> Option<(usize, usize)> {
        // Checked: a hostile header's dimensions may multiply past usize (found by fuzzing).
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))?;
        let block = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(block) {
            return None;
        }
        let size = (elems / block).checked_mul(info.ggml_dtype.type_size())?;
        let start = usize::try_from(content.tensor_data_offset.checked_add(info.offset)?).ok()?;
        Some((start, start.checked_add(size)?))
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.content.metadata.get(key) {
            Some(gguf_file::Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

enum Backend {
    Safetensors {
        files: Vec<MappedFile>,
        /// Tensor name -> index into `files`.
        routing: HashMap<String, usize>,
        index: Option<PathBuf>,
    },
    Gguf(GgufFile),
}

/// The memory-mapped weights of a checkpoint (safetensors, or a GGUF file this engine wrote),
/// read into one device and dtype, with the Llama's linear weights quantized as asked.
pub struct Weights {
    backend: Backend,
    device: Device,
    dtype: DType,
    /// What [`Weights::load_linear`] quantizes (nothing for a GGUF file: it decides itself).
    quantize: QuantizeOptions,
    /// What the loaded weights hold: the options, or what a GGUF file was saved with.
    holds: QuantizeOptions,
    fallbacks: Mutex<Vec<Fallback>>,
}

impl Weights {
    /// Maps and validates every weights file of `files`, without quantizing.
    pub fn open(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self> {
        Self::open_quantized(files, device, dtype, QuantizeOptions::default())
    }

    /// Maps and validates every weights file of `files`; [`Weights::load_linear`] quantizes as
    /// `quantize` says. A GGUF model is loaded as it was saved: asking to quantize it to another
    /// type is an [`Error::InvalidRequest`], and a GGUF whose embedded config differs from the
    /// directory's `config.json` is an [`Error::Weights`].
    pub fn open_quantized(
        files: &ModelFiles,
        device: &Device,
        dtype: DType,
        quantize: QuantizeOptions,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::Device(format!(
                "dtype {dtype:?} is not supported; use f32, f16 or bf16"
            )));
        }
        let mut holds = quantize;
        let backend = match &files.gguf {
            Some(path) => {
                let gguf = GgufFile::open(path)?;
                holds = check_gguf(&gguf, files, quantize)?;
                Backend::Gguf(gguf)
            }
            None => {
                let mut mapped = Vec::with_capacity(files.weights.len());
                let mut routing = HashMap::new();
                for (i, path) in files.weights.iter().enumerate() {
                    let file = MappedFile::open(path)?;
                    for name in file.metadata.tensors().into_keys() {
                        routing.insert(name, i);
                    }
                    mapped.push(file);
                }
                Backend::Safetensors {
                    files: mapped,
                    routing,
                    index: files.index.clone(),
                }
            }
        };
        // A GGUF file decides its own types; the options only matter for safetensors.
        let quantize = match backend {
            Backend::Gguf(_) => QuantizeOptions::default(),
            Backend::Safetensors { .. } => quantize,
        };
        Ok(Self {
            backend,
            device: device.clone(),
            dtype,
            quantize,
            holds,
            fallbacks: Mutex::new(Vec::new()),
        })
    }

    /// What the loaded weights hold: the quantization asked for, or the one a GGUF file was
    /// saved with.
    pub fn quantization(&self) -> QuantizeOptions {
        self.holds
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the weights come from a GGUF file.
    pub fn is_gguf(&self) -> bool {
        matches!(self.backend, Backend::Gguf(_))
    }

    /// Whether the checkpoint has a tensor of this exact name.
    pub fn contains(&self, name: &str) -> bool {
        match &self.backend {
            Backend::Safetensors { routing, .. } => routing.contains_key(name),
            Backend::Gguf(g) => g.content.tensor_infos.contains_key(name),
        }
    }

    /// Every tensor name in the checkpoint, in no particular order.
    pub fn tensor_names(&self) -> Vec<String> {
        match &self.backend {
            Backend::Safetensors { routing, .. } => routing.keys().cloned().collect(),
            Backend::Gguf(g) => g.content.tensor_infos.keys().cloned().collect(),
        }
    }

    /// The weights [`Weights::load_linear`] kept in another type than asked, so far.
    pub fn fallbacks(&self) -> Vec<Fallback> {
        self.fallbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The file a missing tensor is reported against: the index when sharded, else the file.
    fn file_for_missing(&self) -> PathBuf {
        match &self.backend {
            Backend::Safetensors { files, index, .. } => index
                .clone()
                .or_else(|| files.first().map(|f| f.path.clone()))
                .unwrap_or_default(),
            Backend::Gguf(g) => g.path.clone(),
        }
    }

    fn missing(&self, name: &str, shape: &[usize]) -> Error {
        Error::Weights {
            path: self.file_for_missing(),
            reason: format!("tensor `{name}` is missing (expected shape {shape:?})"),
        }
    }

    /// The stored bytes of `name`, its on-disk type and its file, after checking it has `shape`.
    fn stored(&self, name: &str, shape: &[usize]) -> Result<Stored<'_>> {
        match &self.backend {
            Backend::Safetensors { files, routing, .. } => {
                let &file_idx = routing.get(name).ok_or_else(|| self.missing(name, shape))?;
                let file = &files[file_idx];
                let bad = |reason: String| Error::Weights {
                    path: file.path.clone(),
                    reason,
                };
                let info = file
                    .metadata
                    .info(name)
                    .ok_or_else(|| bad(format!("tensor `{name}` vanished from the header")))?;
                if info.shape != shape {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        info.shape
                    )));
                }
                let dtype = match info.dtype {
                    Dtype::F32 => StoredType::Dense(DType::F32),
                    Dtype::F16 => StoredType::Dense(DType::F16),
                    Dtype::BF16 => StoredType::Dense(DType::BF16),
                    Dtype::F64 => StoredType::Dense(DType::F64),
                    other => {
                        return Err(bad(format!(
                            "tensor `{name}` is stored as {other:?}; only float weights (f32, f16, bf16, f64) are supported"
                        )))
                    }
                };
                let (start, end) = info.data_offsets;
                let (start, end) = (file.data_start + start, file.data_start + end);
                let bytes = file
                    .mmap
                    .get(start..end)
                    .ok_or_else(|| bad(format!("tensor `{name}` lies outside the file")))?;
                Ok(Stored {
                    path: &file.path,
                    mmap: &file.mmap,
                    start,
                    bytes,
                    dtype,
                })
            }
            Backend::Gguf(g) => {
                let info = g
                    .content
                    .tensor_infos
                    .get(name)
                    .ok_or_else(|| self.missing(name, shape))?;
                let bad = |reason: String| Error::Weights {
                    path: g.path.clone(),
                    reason,
                };
                if info.shape.dims() != shape {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        info.shape.dims()
                    )));
                }
                // Ranges were checked when the file was opened.
                let (start, end) = GgufFile::range_of(&g.content, info)
                    .ok_or_else(|| bad(format!("tensor `{name}`: its size overflows")))?;
                let dtype = match info.ggml_dtype {
                    GgmlDType::F32 => StoredType::Dense(DType::F32),
                    GgmlDType::F16 => StoredType::Dense(DType::F16),
                    GgmlDType::BF16 => StoredType::Dense(DType::BF16),
                    q => StoredType::Quantized(q),
                };
                Ok(Stored {
                    path: &g.path,
                    mmap: &g.mmap,
                    start,
                    bytes: &g.mmap[start..end],
                    dtype,
                })
            }
        }
    }

    /// The shape of tensor `name` and the dtype it is stored in (f32 for quantized blocks).
    pub fn stored_shape_and_dtype(&self, name: &str) -> Result<(Vec<usize>, DType)> {
        let shape = match &self.backend {
            Backend::Safetensors { files, routing, .. } => routing
                .get(name)
                .and_then(|&i| files[i].metadata.info(name))
                .map(|info| info.shape.clone()),
            Backend::Gguf(g) => g
                .content
                .tensor_infos
                .get(name)
                .map(|info| info.shape.dims().to_vec()),
        }
        .ok_or_else(|| self.missing(name, &[]))?;
        let dtype = match self.stored(name, &shape)?.dtype {
            StoredType::Dense(d) => d,
            StoredType::Quantized(_) => DType::F32,
        };
        Ok((shape, dtype))
    }

    /// The bytes of tensor `name` in the full-precision GGUF type `as_type` (F32, F16 or BF16):
    /// the stored bytes when the types agree, else converted.
    pub(crate) fn stored_bytes_as(
        &self,
        name: &str,
        shape: &[usize],
        as_type: GgmlDType,
    ) -> Result<Vec<u8>> {
        let want = match as_type {
            GgmlDType::F32 => DType::F32,
            GgmlDType::F16 => DType::F16,
            GgmlDType::BF16 => DType::BF16,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "{other:?} is not a full-precision type"
                )))
            }
        };
        let stored = self.stored(name, shape)?;
        if stored.dtype == StoredType::Dense(want) {
            let bytes = stored.bytes.to_vec();
            stored.release();
            return Ok(bytes);
        }
        let tensor = self.read(&stored, name, shape, &Device::Cpu, want)?;
        let bytes = tensor_bytes(&tensor)?;
        Ok(bytes)
    }

    /// Reads stored bytes into a dense tensor on `device` in `dtype`, then releases their pages.
    fn read(
        &self,
        stored: &Stored<'_>,
        name: &str,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        let bad = |e: candle_core::Error| Error::Weights {
            path: stored.path.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        };
        let tensor = match stored.dtype {
            StoredType::Dense(src) => Tensor::from_raw_buffer(stored.bytes, src, shape, device)
                .and_then(|t| t.to_dtype(dtype)),
            StoredType::Quantized(q) => {
                qtensor_from_ggml(q, stored.bytes, shape.to_vec(), &Device::Cpu)
                    .and_then(|q| q.dequantize(device))
                    .and_then(|t| t.to_dtype(dtype))
            }
        }
        .map_err(bad)?;
        stored.release();
        Ok(tensor)
    }

    /// Loads tensor `name`, checking it has `shape`, converted to the weights' device and dtype
    /// (quantized blocks in a GGUF file are dequantized).
    pub fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let stored = self.stored(name, shape)?;
        self.read(&stored, name, shape, &self.device, self.dtype)
    }

    /// [`Weights::load`], except that an f16 or bf16 tensor stays in its stored dtype when the
    /// compute dtype is f32 (exact either way: every f16 and bf16 value is an f32). For tables
    /// read a few rows at a time, such as the token embeddings: half the memory.
    pub fn load_compact(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let stored = self.stored(name, shape)?;
        let dtype = match stored.dtype {
            StoredType::Dense(half @ (DType::F16 | DType::BF16)) if self.dtype == DType::F32 => {
                half
            }
            _ => self.dtype,
        };
        self.read(&stored, name, shape, &self.device, dtype)
    }

    /// Loads linear weight `name` `(out, in)`: quantized when the options (or the GGUF file) say
    /// so, else dense as [`Weights::load`] gives it. A weight kept in another type than asked is
    /// recorded in [`Weights::fallbacks`].
    pub fn load_linear(&self, name: &str, shape: &[usize]) -> Result<WeightTensor> {
        let stored = self.stored(name, shape)?;
        let quantized = match stored.dtype {
            StoredType::Quantized(q) => {
                qtensor_from_ggml(q, stored.bytes, shape.to_vec(), &Device::Cpu)
            }
            StoredType::Dense(_) => {
                let target = self.quantize.target(name, shape);
                if let Some(fallback) = target.fallback {
                    self.fallbacks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(fallback);
                }
                let Some(q) = target.dtype else {
                    return Ok(WeightTensor::Dense(self.read(
                        &stored,
                        name,
                        shape,
                        &self.device,
                        self.dtype,
                    )?));
                };
                let dense = self.read(&stored, name, shape, &Device::Cpu, DType::F32)?;
                crate::quantize::quantize_rows(&dense, q)
            }
        }
        .map_err(|e| Error::Weights {
            path: stored.path.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        stored.release();
        Ok(WeightTensor::Quantized(quantized))
    }

    /// A view that prefixes names with the key layout `component` uses in this checkpoint.
    pub fn scope(&self, component: Component) -> Scope<'_> {
        let (prefixes, marker) = component.prefixes();
        let prefix = prefixes
            .iter()
            .find(|p| self.contains(&format!("{p}{marker}")))
            .unwrap_or(&prefixes[0]);
        Scope {
            weights: self,
            prefix: prefix.to_string(),
        }
    }
}

/// How a tensor is stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoredType {
    Dense(DType),
    Quantized(GgmlDType),
}

/// A tensor's bytes in its mapped file.
struct Stored<'a> {
    path: &'a Path,
    mmap: &'a Mmap,
    start: usize,
    bytes: &'a [u8],
    dtype: StoredType,
}

impl Stored<'_> {
    /// Drops the mapped pages once the bytes are copied out.
    fn release(&self) {
        release_pages(self.mmap, self.start, self.bytes.len());
    }
}

/// The raw little-endian bytes of a contiguous CPU tensor.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        other => {
            return Err(Error::InvalidRequest(format!(
                "cannot store a {other:?} tensor"
            )))
        }
    })
}

/// Checks a GGUF file belongs to the directory it sits in and fits the load asked for; returns
/// the quantization it was saved with.
fn check_gguf(
    gguf: &GgufFile,
    files: &ModelFiles,
    asked: QuantizeOptions,
) -> Result<QuantizeOptions> {
    let bad = |reason: String| Error::Weights {
        path: gguf.path.clone(),
        reason,
    };
    if gguf.string(meta::ARCHITECTURE) != Some(meta::ARCHITECTURE_NAME) {
        return Err(bad(format!(
            "not a Video-LLaVA GGUF file (`{}` is {:?}, expected {:?}); this engine loads the GGUF files `video-llava quantize` writes",
            meta::ARCHITECTURE,
            gguf.string(meta::ARCHITECTURE),
            meta::ARCHITECTURE_NAME
        )));
    }
    let embedded = gguf
        .string(meta::CONFIG)
        .ok_or_else(|| bad(format!("no `{}` in the metadata", meta::CONFIG)))?;
    let embedded: serde_json::Value = serde_json::from_str(embedded)
        .map_err(|e| bad(format!("`{}` is not valid JSON: {e}", meta::CONFIG)))?;
    let on_disk = std::fs::read_to_string(&files.config).map_err(|source| Error::Io {
        path: files.config.clone(),
        source,
    })?;
    let on_disk: serde_json::Value = serde_json::from_str(&on_disk).map_err(|e| Error::Config {
        path: files.config.clone(),
        reason: format!("not valid JSON: {e}"),
    })?;
    if embedded != on_disk {
        return Err(bad(format!(
            "the config in the GGUF metadata does not match {}: the file was made from another checkpoint, or config.json was edited",
            files.config.display()
        )));
    }
    let stored: Quantization = gguf
        .string(meta::QUANTIZATION)
        .ok_or_else(|| bad(format!("no `{}` in the metadata", meta::QUANTIZATION)))?
        .parse()
        .map_err(|e: Error| bad(e.to_string()))?;
    if !asked.text.is_none() && asked.text != stored {
        return Err(Error::InvalidRequest(format!(
            "{} is already quantized ({stored}); it cannot be quantized again to {}: load it without a quantization, or quantize the original checkpoint",
            files.dir.display(),
            asked.text
        )));
    }
    let vision = matches!(
        gguf.content.metadata.get(meta::QUANTIZE_VISION),
        Some(gguf_file::Value::Bool(true))
    );
    Ok(QuantizeOptions {
        text: stored,
        vision,
    })
}

/// Drops the mapped pages of a tensor already copied out, so they stop counting as resident.
fn release_pages(mmap: &Mmap, offset: usize, len: usize) {
    #[cfg(unix)]
    {
        // SAFETY: the map is a read-only, file-backed private mapping: after MADV_DONTNEED a later
        // access faults the same bytes back in from the file, so no data is lost or changed.
        // Failure only means the pages stay resident, which is harmless.
        let _ =
            unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    }
    #[cfg(not(unix))]
    let _ = (mmap, offset, len);
}

/// A prefixed view of [`Weights`], like candle's `VarBuilder::pp`.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// A sub-scope: `self.prefix + name + "."`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Scope<'a> {
        Scope {
            weights: self.weights,
            prefix: format!("{}{name}.", self.prefix),
        }
    }

    /// The full key of `name` in this scope.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Loads `name` with the expected `shape`.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        self.weights.load(&self.key(name), shape)
    }

    /// Loads `name` as [`Weights::load_compact`] does.
    pub fn get_compact(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        self.weights.load_compact(&self.key(name), shape)
    }

    /// Loads linear weight `name` `(out, in)`, quantized where the load asks for it
    /// ([`Weights::load_linear`]).
    pub fn get_linear(&self, shape: &[usize], name: &str) -> Result<WeightTensor> {
        self.weights.load_linear(&self.key(name), shape)
    }

    /// Whether `name` exists in this scope.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.key(name))
    }

    /// The underlying weights.
    pub fn weights(&self) -> &'a Weights {
        self.weights
    }
}
