//! Safetensors discovery, sharding, key layouts and dtype conversion.
//!
//! A model directory holds `config.json` and either `model.safetensors` or
//! `model.safetensors.index.json` plus its shards. Files are memory-mapped and their headers
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

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::{Error, Result};

/// The single-file weights name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The sharded weights index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The files of a model directory this engine reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// The safetensors files: one, or the shards named by the index (sorted, deduplicated).
    pub weights: Vec<PathBuf>,
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
            what: format!("weights: {SINGLE_FILE} or {INDEX_FILE} with its shards"),
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

/// One memory-mapped safetensors file with its validated header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not
        // being truncated by another process while the model loads.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
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
}

/// The memory-mapped safetensors of a checkpoint, read into one device and dtype.
pub struct Weights {
    files: Vec<MappedFile>,
    /// Tensor name -> index into `files`.
    routing: HashMap<String, usize>,
    index: Option<PathBuf>,
    device: Device,
    dtype: DType,
}

impl Weights {
    /// Maps and validates every weights file of `files`.
    pub fn open(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::Device(format!(
                "dtype {dtype:?} is not supported; use f32, f16 or bf16"
            )));
        }
        let mut mapped = Vec::with_capacity(files.weights.len());
        let mut routing = HashMap::new();
        for (i, path) in files.weights.iter().enumerate() {
            let file = MappedFile::open(path)?;
            for name in file.metadata.tensors().into_keys() {
                routing.insert(name, i);
            }
            mapped.push(file);
        }
        Ok(Self {
            files: mapped,
            routing,
            index: files.index.clone(),
            device: device.clone(),
            dtype,
        })
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the checkpoint has a tensor of this exact name.
    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    /// The file a missing tensor is reported against: the index when sharded, else the file.
    fn file_for_missing(&self) -> PathBuf {
        self.index
            .clone()
            .or_else(|| self.files.first().map(|f| f.path.clone()))
            .unwrap_or_default()
    }

    /// Loads tensor `name`, checking it has `shape`, converted to the weights' device and dtype.
    pub fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let Some(&file_idx) = self.routing.get(name) else {
            return Err(Error::Weights {
                path: self.file_for_missing(),
                reason: format!("tensor `{name}` is missing (expected shape {shape:?})"),
            });
        };
        let file = &self.files[file_idx];
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
        let src_dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
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
        let tensor = Tensor::from_raw_buffer(bytes, src_dtype, shape, &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        release_pages(&file.mmap, start, end - start);
        Ok(tensor)
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

    /// Whether `name` exists in this scope.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.key(name))
    }

    /// The underlying weights.
    pub fn weights(&self) -> &'a Weights {
        self.weights
    }
}
