//! The checkpoint's `config.json` in every form it comes in.
//!
//! Three shapes are seen in the wild and all parse to the same [`VideoLlavaConfig`]:
//! - the sparse hub config of `LanguageBind/Video-LLaVA-7B-hf`, whose `text_config` lists only a
//!   few keys (Llama-7B defaults fill the rest, as transformers' `LlamaConfig` does);
//! - full transformers-4 configs, with `rope_theta` (and `rope_scaling`) in `text_config`;
//! - transformers-5 configs, with `rope_parameters: {rope_type, rope_theta}`.
//!
//! Defaults follow transformers exactly: a missing `vision_config` is CLIP ViT-L/14 (the defaults
//! `VideoLlavaConfig` passes to `CLIPVisionConfig`), while keys missing from a present
//! `vision_config` take `CLIPVisionConfig`'s own defaults. Values the engine cannot honour
//! (an unknown activation, a RoPE scaling type other than `default`, shapes that do not divide)
//! are an [`Error::Config`], never a silent fallback.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{Error, Result};

/// An activation function named in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (`quick_gelu`, CLIP's default).
    QuickGelu,
    /// Exact erf GELU (`gelu`).
    Gelu,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// `x * sigmoid(x)` (`silu`, `swish`; Llama's).
    Silu,
    /// `max(x, 0)` (`relu`).
    Relu,
}

impl Activation {
    /// Parses transformers' `ACT2FN` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            _ => return None,
        })
    }
}

/// How image features are taken from the vision tower's hidden states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectStrategy {
    /// Drop the CLS token (256 tokens per 224 px image).
    Default,
    /// Keep the CLS token (257 tokens per image).
    Full,
}

/// The Llama language model's configuration (`text_config`).
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    /// Rows of the embedding table and of the LM head.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP activation (`silu` for Llama).
    pub hidden_act: Activation,
    /// Context length; RoPE tables are precomputed for this many positions.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Whether q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    pub eos_token_ids: Vec<u32>,
    /// Padding token of the language model.
    pub pad_token_id: Option<u32>,
}

/// A CLIP vision tower's configuration (`vision_config`); both towers share it.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Encoder layers in the checkpoint.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Input side length in pixels.
    pub image_size: usize,
    /// Patch side length in pixels.
    pub patch_size: usize,
    /// MLP activation (`quick_gelu` by default).
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per image: `(image_size / patch_size)^2`.
    pub fn num_patches(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side
    }
}

/// The parsed, validated model configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoLlavaConfig {
    /// The language model.
    pub text: TextConfig,
    /// The vision towers.
    pub vision: VisionConfig,
    /// The `<image>` placeholder id (32000).
    pub image_token_index: u32,
    /// The `<video>` placeholder id (32001).
    pub video_token_index: u32,
    /// The checkpoint's padding token (top-level, else the text config's).
    pub pad_token_id: Option<u32>,
    /// `vision_feature_layer` as written: `[-2]` or a list of hidden-state indices.
    pub vision_feature_layers: Vec<i64>,
    /// `vision_feature_select_strategy` (images only; videos always keep CLS).
    pub select_strategy: SelectStrategy,
    /// The projector's activation (exact GELU by default).
    pub projector_hidden_act: Activation,
    /// Whether the projector's linears have biases.
    pub projector_bias: bool,
    /// Whether the LM head shares the embedding table.
    pub tie_word_embeddings: bool,
}

/// Reads typed values out of one JSON object, naming the key in errors.
struct Fields<'a> {
    obj: Option<&'a Map<String, Value>>,
    section: &'static str,
    path: &'a Path,
}

impl<'a> Fields<'a> {
    fn err(&self, key: &str, what: impl std::fmt::Display) -> Error {
        let key = if self.section.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.section)
        };
        Error::Config {
            path: self.path.to_path_buf(),
            reason: format!("`{key}` {what}"),
        }
    }

    /// The value of `key`, treating JSON `null` as absent (transformers writes `null` for unset).
    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.obj?.get(key).filter(|v| !v.is_null())
    }

    fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("must be a non-negative integer, got {v}"))),
        }
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.u64_opt(key)?.map(|v| v as usize).unwrap_or(default))
    }

    fn positive_or(&self, key: &str, default: usize) -> Result<usize> {
        let v = self.usize_or(key, default)?;
        if v == 0 {
            return Err(self.err(key, "must be positive"));
        }
        Ok(v)
    }

    fn u32_opt(&self, key: &str) -> Result<Option<u32>> {
        match self.u64_opt(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| self.err(key, format!("is out of range: {v}"))),
        }
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("must be a number, got {v}"))),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, format!("must be a boolean, got {v}"))),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("must be a string, got {v}"))),
        }
    }

    fn activation_or(&self, key: &str, default: Activation) -> Result<Activation> {
        match self.str_opt(key)? {
            None => Ok(default),
            Some(name) => Activation::from_name(name).ok_or_else(|| {
                self.err(
                    key,
                    format!("names an unsupported activation {name:?} (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, relu)"),
                )
            }),
        }
    }

    /// An image or patch size given as an int or a square `[h, w]` pair.
    fn side_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.raw(key) {
            Some(Value::Array(items)) => {
                let sides: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
                match sides.as_slice() {
                    [h, w] if h == w && *h > 0 && items.len() == 2 => Ok(*h as usize),
                    _ => Err(self.err(
                        key,
                        format!("must be a positive int or a square [h, w] pair, got {items:?}"),
                    )),
                }
            }
            _ => self.positive_or(key, default),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(self.err(key, format!("must be an object, got {v}"))),
        }
    }
}

impl VideoLlavaConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::MissingFile {
                    dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    what: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "config.json".into()),
                }
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses and validates config JSON; `path_for_errors` names the file in errors.
    pub fn from_json_str(s: &str, path_for_errors: &Path) -> Result<Self> {
        let path = path_for_errors;
        let root: Value = serde_json::from_str(s).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("not valid JSON: {e}"),
        })?;
        let Value::Object(root) = root else {
            return Err(Error::Config {
                path: path.to_path_buf(),
                reason: "the top level must be a JSON object".into(),
            });
        };
        let top = Fields {
            obj: Some(&root),
            section: "",
            path,
        };
        if let Some(model_type) = top.str_opt("model_type")? {
            if model_type != "video_llava" {
                return Err(top.err(
                    "model_type",
                    format!("is {model_type:?}; this engine runs \"video_llava\" checkpoints"),
                ));
            }
        }
        let text = parse_text(top.object("text_config")?, path)?;
        let vision = parse_vision(top.object("vision_config")?, path)?;

        let image_token_index = top
            .u32_opt("image_token_index")?
            .or(top.u32_opt("image_token_id")?)
            .unwrap_or(32000);
        let video_token_index = top
            .u32_opt("video_token_index")?
            .or(top.u32_opt("video_token_id")?)
            .unwrap_or(32001);
        if image_token_index == video_token_index {
            return Err(top.err(
                "video_token_index",
                format!("equals image_token_index ({image_token_index})"),
            ));
        }
        for (key, id) in [
            ("image_token_index", image_token_index),
            ("video_token_index", video_token_index),
        ] {
            if id as usize >= text.vocab_size {
                return Err(top.err(
                    key,
                    format!(
                        "({id}) is outside the vocabulary of {} tokens",
                        text.vocab_size
                    ),
                ));
            }
        }
        let pad_token_id = top.u32_opt("pad_token_id")?.or(text.pad_token_id);

        let vision_feature_layers = match top.raw("vision_feature_layer") {
            None => vec![-2],
            Some(Value::Number(n)) => vec![n.as_i64().ok_or_else(|| {
                top.err(
                    "vision_feature_layer",
                    format!("must be an integer, got {n}"),
                )
            })?],
            Some(Value::Array(items)) => {
                let layers = items
                    .iter()
                    .map(|v| v.as_i64())
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| {
                        top.err(
                            "vision_feature_layer",
                            format!("must be integers, got {items:?}"),
                        )
                    })?;
                if layers.is_empty() {
                    return Err(top.err("vision_feature_layer", "is an empty list"));
                }
                layers
            }
            Some(v) => {
                return Err(top.err(
                    "vision_feature_layer",
                    format!("must be an integer or a list of integers, got {v}"),
                ))
            }
        };
        let hidden_states = vision.num_hidden_layers as i64 + 1;
        for &layer in &vision_feature_layers {
            if layer < -hidden_states || layer >= hidden_states {
                return Err(top.err(
                    "vision_feature_layer",
                    format!(
                        "{layer} is out of range: the vision tower has {hidden_states} hidden states (embeddings + {} layers)",
                        vision.num_hidden_layers
                    ),
                ));
            }
        }
        let select_strategy = match top.str_opt("vision_feature_select_strategy")? {
            None | Some("default") => SelectStrategy::Default,
            Some("full") => SelectStrategy::Full,
            Some(other) => {
                return Err(top.err(
                    "vision_feature_select_strategy",
                    format!("is {other:?}; expected \"default\" or \"full\""),
                ))
            }
        };
        let projector_hidden_act = top.activation_or("projector_hidden_act", Activation::Gelu)?;
        let projector_bias = top.bool_or("multimodal_projector_bias", true)?;
        // transformers 5 reads the composite config's flag; older configs only set it in text_config.
        let tie_word_embeddings = match top.raw("tie_word_embeddings") {
            Some(_) => top.bool_or("tie_word_embeddings", false)?,
            None => Fields {
                obj: top.object("text_config")?,
                section: "text_config",
                path,
            }
            .bool_or("tie_word_embeddings", false)?,
        };

        Ok(Self {
            text,
            vision,
            image_token_index,
            video_token_index,
            pad_token_id,
            vision_feature_layers,
            select_strategy,
            projector_hidden_act,
            projector_bias,
            tie_word_embeddings,
        })
    }

    /// Placeholder tokens per image: 256 (`default`, CLS dropped) or 257 (`full`) for 224/14.
    pub fn image_tokens(&self) -> usize {
        match self.select_strategy {
            SelectStrategy::Default => self.vision.num_patches(),
            SelectStrategy::Full => self.vision.num_patches() + 1,
        }
    }

    /// Placeholder tokens per video frame: 257 for 224/14 (videos always keep CLS).
    pub fn video_tokens_per_frame(&self) -> usize {
        self.vision.num_patches() + 1
    }

    /// The language model's context length.
    pub fn max_position_embeddings(&self) -> usize {
        self.text.max_position_embeddings
    }

    /// The beginning-of-sequence token, if the config names one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.text.bos_token_id
    }

    /// The end-of-sequence token(s).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.text.eos_token_ids
    }

    /// The first end-of-sequence token, if any.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.text.eos_token_ids.first().copied()
    }

    /// The selected feature layers as indices into the tower's hidden states
    /// (`0` = embeddings after `pre_layrnorm`, `i` = output of encoder layer `i`, 1-based).
    pub fn feature_hidden_state_indices(&self) -> Vec<usize> {
        let n = self.vision.num_hidden_layers as i64 + 1;
        self.vision_feature_layers
            .iter()
            .map(|&l| l.rem_euclid(n) as usize)
            .collect()
    }

    /// Encoder layers the forward pass runs: up to the deepest selected hidden state.
    pub fn vision_layers_used(&self) -> usize {
        self.feature_hidden_state_indices()
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// Width of the features fed to the projector (`vision hidden x feature layers`).
    pub fn vision_feature_dim(&self) -> usize {
        self.vision.hidden_size * self.vision_feature_layers.len()
    }
}

fn parse_text(obj: Option<&Map<String, Value>>, path: &Path) -> Result<TextConfig> {
    let f = Fields {
        obj,
        section: "text_config",
        path,
    };
    if let Some(model_type) = f.str_opt("model_type")? {
        if model_type != "llama" {
            return Err(f.err(
                "model_type",
                format!("is {model_type:?}; only \"llama\" language models are supported"),
            ));
        }
    }
    // LlamaConfig's defaults: Llama-7B.
    let vocab_size = f.positive_or("vocab_size", 32000)?;
    let hidden_size = f.positive_or("hidden_size", 4096)?;
    let intermediate_size = f.positive_or("intermediate_size", 11008)?;
    let num_hidden_layers = f.positive_or("num_hidden_layers", 32)?;
    let num_attention_heads = f.positive_or("num_attention_heads", 32)?;
    let num_key_value_heads = f.positive_or("num_key_value_heads", num_attention_heads)?;
    if hidden_size % num_attention_heads != 0 {
        return Err(f.err(
            "hidden_size",
            format!(
                "({hidden_size}) is not divisible by num_attention_heads ({num_attention_heads})"
            ),
        ));
    }
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(f.err(
            "num_attention_heads",
            format!("({num_attention_heads}) is not divisible by num_key_value_heads ({num_key_value_heads})"),
        ));
    }
    let head_dim = f.positive_or("head_dim", hidden_size / num_attention_heads)?;
    if head_dim % 2 != 0 {
        return Err(f.err("head_dim", format!("({head_dim}) must be even for RoPE")));
    }
    let hidden_act = f.activation_or("hidden_act", Activation::Silu)?;
    let max_position_embeddings = f.positive_or("max_position_embeddings", 2048)?;
    let rms_norm_eps = f.f64_opt("rms_norm_eps")?.unwrap_or(1e-6);
    if rms_norm_eps.is_nan() || rms_norm_eps < 0.0 {
        return Err(f.err(
            "rms_norm_eps",
            format!("must be non-negative, got {rms_norm_eps}"),
        ));
    }
    let rope_theta = parse_rope(&f)?;
    let attention_bias = f.bool_or("attention_bias", false)?;
    let mlp_bias = f.bool_or("mlp_bias", false)?;
    // Absent means LlamaConfig's default; an explicit `null` means none.
    let has_key = |key: &str| f.obj.is_some_and(|o| o.contains_key(key));
    let bos_token_id = if has_key("bos_token_id") {
        f.u32_opt("bos_token_id")?
    } else {
        Some(1)
    };
    let eos_token_ids = match f.raw("eos_token_id") {
        None if has_key("eos_token_id") => Vec::new(),
        None => vec![2],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| f.err("eos_token_id", format!("must be token ids, got {items:?}")))?,
        Some(_) => vec![f.u32_opt("eos_token_id")?.unwrap_or(2)],
    };
    let pad_token_id = f.u32_opt("pad_token_id")?;
    Ok(TextConfig {
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        hidden_act,
        max_position_embeddings,
        rms_norm_eps,
        rope_theta,
        attention_bias,
        mlp_bias,
        bos_token_id,
        eos_token_ids,
        pad_token_id,
    })
}

/// The RoPE base from `rope_parameters` (transformers 5), `rope_theta` / `rope_scaling`
/// (transformers 4) or the default 10000; only unscaled (`default`) RoPE is supported.
fn parse_rope(f: &Fields<'_>) -> Result<f64> {
    let legacy_theta = f.f64_opt("rope_theta")?;
    let mut theta = legacy_theta;
    for key in ["rope_parameters", "rope_scaling"] {
        let Some(params) = f.object(key)? else {
            continue;
        };
        let p = Fields {
            obj: Some(params),
            section: f.section,
            path: f.path,
        };
        let kind = p.str_opt("rope_type")?.or(p.str_opt("type")?);
        if let Some(kind) = kind {
            if kind != "default" {
                return Err(f.err(
                    key,
                    format!(
                        "has rope type {kind:?}; only \"default\" (unscaled) RoPE is supported"
                    ),
                ));
            }
        }
        if let Some(t) = p.f64_opt("rope_theta")? {
            if let Some(prev) = theta {
                if prev != t {
                    return Err(f.err(
                        key,
                        format!("rope_theta {t} contradicts rope_theta {prev} given elsewhere"),
                    ));
                }
            }
            theta = Some(t);
        }
    }
    let theta = theta.unwrap_or(10000.0);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(f.err("rope_theta", format!("must be positive, got {theta}")));
    }
    Ok(theta)
}

fn parse_vision(obj: Option<&Map<String, Value>>, path: &Path) -> Result<VisionConfig> {
    let f = Fields {
        obj,
        section: "vision_config",
        path,
    };
    if let Some(model_type) = f.str_opt("model_type")? {
        if model_type != "clip_vision_model" {
            return Err(f.err(
                "model_type",
                format!("is {model_type:?}; only \"clip_vision_model\" towers are supported"),
            ));
        }
    }
    // VideoLlavaConfig builds CLIP-L/14 when vision_config is absent; a given dict falls back
    // to CLIPVisionConfig's own (ViT-B/32) defaults key by key, as transformers does.
    let (hidden, inter, layers, heads, patch) = if obj.is_none() {
        (1024, 4096, 24, 16, 14)
    } else {
        (768, 3072, 12, 12, 32)
    };
    let hidden_size = f.positive_or("hidden_size", hidden)?;
    let intermediate_size = f.positive_or("intermediate_size", inter)?;
    let num_hidden_layers = f.positive_or("num_hidden_layers", layers)?;
    let num_attention_heads = f.positive_or("num_attention_heads", heads)?;
    let num_channels = f.positive_or("num_channels", 3)?;
    let image_size = f.side_or("image_size", 224)?;
    let patch_size = f.side_or("patch_size", patch)?;
    let hidden_act = f.activation_or("hidden_act", Activation::QuickGelu)?;
    let layer_norm_eps = f.f64_opt("layer_norm_eps")?.unwrap_or(1e-5);
    if hidden_size % num_attention_heads != 0 {
        return Err(f.err(
            "hidden_size",
            format!(
                "({hidden_size}) is not divisible by num_attention_heads ({num_attention_heads})"
            ),
        ));
    }
    if image_size % patch_size != 0 {
        return Err(f.err(
            "image_size",
            format!("({image_size}) is not divisible by patch_size ({patch_size})"),
        ));
    }
    Ok(VisionConfig {
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_channels,
        image_size,
        patch_size,
        hidden_act,
        layer_norm_eps,
    })
}

/// The path of `config.json` inside a model directory.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
