//! Writes a random Video-LLaVA checkpoint in bfloat16, straight to sharded safetensors, for
//! benchmarks that need a model's shapes but not its knowledge (not a test fixture).
//!
//! ```text
//! cargo run --release -p video-llava-benches --example random_checkpoint -- \
//!     --shapes mid|tinyllama|7b [--out DIR] [--seed N]
//! ```
//!
//! `--shapes 7b` uses the hub config of `LanguageBind/Video-LLaVA-7B-hf` itself
//! (`video-llava/tests/fixtures/sparse-config.json`: two CLIP ViT-L/14 towers, Vicuna-7B; 7.5 B
//! parameters, 15 GB); `--shapes mid` the mid-size bench model of `benches/make_bench_model.py`
//! (about 400 M parameters); `--shapes tinyllama` the mid-size model's vision towers in front of
//! a Llama with TinyLlama-1.1B's shapes (22 layers, hidden 2048, 32 query and 4 key/value heads:
//! grouped-query attention), the second Llama of the llama.cpp comparison
//! (`benches/compare.py --only quantized`). Unlike that script, nothing is built in memory first: every tensor
//! is generated in chunks while it is written, so the 7B shapes need a few MB of RAM, not 30 GB
//! of float32 (the reason this exists). Keys use the hub's legacy layout; the project's Llama-2
//! tokenizer fixture is copied beside the weights. Weights are uniform with std 1/sqrt(fan_in),
//! norms 1, biases +-0.02, from a xorshift generator seeded by `--seed`: values do not change
//! the work, only keep activations in range.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use video_llava::config::VideoLlavaConfig;

/// Bytes per shard before the next tensor starts a new one (the hub uses about 5 GB).
const SHARD_BYTES: usize = 4 << 30;

struct Spec {
    name: String,
    shape: Vec<usize>,
}

fn spec(name: impl Into<String>, shape: &[usize]) -> Spec {
    Spec {
        name: name.into(),
        shape: shape.to_vec(),
    }
}

/// The mid-size bench model's config.json (the one make_bench_model.py writes, trimmed).
fn mid_config() -> Value {
    json!({
        "architectures": ["VideoLlavaForConditionalGeneration"],
        "model_type": "video_llava",
        "image_token_index": 32000,
        "video_token_index": 32001,
        "pad_token_id": 32002,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "vocab_size": 32064,
        "text_config": {
            "model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816,
            "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16,
            "vocab_size": 32064, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "pad_token_id": 0
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": 768, "intermediate_size": 3072,
            "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 224,
            "patch_size": 14, "hidden_act": "quick_gelu", "projection_dim": 512
        }
    })
}

/// The mid-size model with TinyLlama-1.1B-Chat-v1.0's Llama (its hub config.json's text fields;
/// the vocabulary is Video-LLaVA's 32,064 and the context 4,096, which the video prompt needs).
fn tinyllama_config() -> Value {
    let mut config = mid_config();
    config["text_config"] = json!({
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
        "vocab_size": 32064, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "pad_token_id": 0
    });
    config
}

/// Every tensor of a checkpoint with `cfg`'s shapes, in the hub's legacy key layout.
fn tensors(cfg: &VideoLlavaConfig) -> Vec<Spec> {
    let v = &cfg.vision;
    let (d, i) = (v.hidden_size, v.intermediate_size);
    let mut out = Vec::new();
    for tower in ["image_tower", "video_tower"] {
        let p = format!("{tower}.vision_model");
        out.push(spec(format!("{p}.embeddings.class_embedding"), &[d]));
        out.push(spec(
            format!("{p}.embeddings.patch_embedding.weight"),
            &[d, v.num_channels, v.patch_size, v.patch_size],
        ));
        out.push(spec(
            format!("{p}.embeddings.position_embedding.weight"),
            &[v.num_patches() + 1, d],
        ));
        for norm in ["pre_layrnorm", "post_layernorm"] {
            out.push(spec(format!("{p}.{norm}.weight"), &[d]));
            out.push(spec(format!("{p}.{norm}.bias"), &[d]));
        }
        for l in 0..v.num_hidden_layers {
            let p = format!("{p}.encoder.layers.{l}");
            for norm in ["layer_norm1", "layer_norm2"] {
                out.push(spec(format!("{p}.{norm}.weight"), &[d]));
                out.push(spec(format!("{p}.{norm}.bias"), &[d]));
            }
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push(spec(format!("{p}.self_attn.{proj}.weight"), &[d, d]));
                out.push(spec(format!("{p}.self_attn.{proj}.bias"), &[d]));
            }
            out.push(spec(format!("{p}.mlp.fc1.weight"), &[i, d]));
            out.push(spec(format!("{p}.mlp.fc1.bias"), &[i]));
            out.push(spec(format!("{p}.mlp.fc2.weight"), &[d, i]));
            out.push(spec(format!("{p}.mlp.fc2.bias"), &[d]));
        }
    }
    let t = &cfg.text;
    let h = t.hidden_size;
    out.push(spec(
        "multi_modal_projector.linear_1.weight",
        &[h, cfg.vision_feature_dim()],
    ));
    out.push(spec("multi_modal_projector.linear_1.bias", &[h]));
    out.push(spec("multi_modal_projector.linear_2.weight", &[h, h]));
    out.push(spec("multi_modal_projector.linear_2.bias", &[h]));
    out.push(spec(
        "language_model.model.embed_tokens.weight",
        &[t.vocab_size, h],
    ));
    let (q, kv) = (
        t.num_attention_heads * t.head_dim,
        t.num_key_value_heads * t.head_dim,
    );
    for l in 0..t.num_hidden_layers {
        let p = format!("language_model.model.layers.{l}");
        out.push(spec(format!("{p}.input_layernorm.weight"), &[h]));
        out.push(spec(format!("{p}.post_attention_layernorm.weight"), &[h]));
        out.push(spec(format!("{p}.self_attn.q_proj.weight"), &[q, h]));
        out.push(spec(format!("{p}.self_attn.k_proj.weight"), &[kv, h]));
        out.push(spec(format!("{p}.self_attn.v_proj.weight"), &[kv, h]));
        out.push(spec(format!("{p}.self_attn.o_proj.weight"), &[h, q]));
        let m = t.intermediate_size;
        out.push(spec(format!("{p}.mlp.gate_proj.weight"), &[m, h]));
        out.push(spec(format!("{p}.mlp.up_proj.weight"), &[m, h]));
        out.push(spec(format!("{p}.mlp.down_proj.weight"), &[h, m]));
    }
    out.push(spec("language_model.model.norm.weight", &[h]));
    out.push(spec("language_model.lm_head.weight", &[t.vocab_size, h]));
    out
}

/// xorshift64*: fast, and the same stream for the same seed on every machine.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Writes `specs` as bf16 data through `w`, generating each in 1 MiB chunks.
fn write_data(w: &mut impl Write, specs: &[&Spec], rng: &mut Rng) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 20);
    for s in specs {
        let n: usize = s.shape.iter().product();
        let (centre, spread) = if s.shape.len() >= 2 {
            let fan_in: usize = s.shape[1..].iter().product();
            (0.0, (3.0 / fan_in as f32).sqrt())
        } else if s.name.ends_with("norm.weight")
            || s.name.contains("norm1.weight")
            || s.name.contains("norm2.weight")
            || s.name.ends_with("layrnorm.weight")
        {
            (1.0, 0.0)
        } else {
            (0.0, 0.02)
        };
        let mut left = n;
        while left > 0 {
            let take = left.min(1 << 19);
            buf.clear();
            for _ in 0..take {
                let v = half::bf16::from_f32(centre + spread * rng.next());
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
            left -= take;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut shapes = "mid".to_string();
    let mut out: Option<PathBuf> = None;
    let mut seed = 0x5eed_u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--shapes" => shapes = value()?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--seed" => seed = value()?.parse()?,
            "-h" | "--help" => {
                println!("random_checkpoint --shapes mid|tinyllama|7b [--out DIR] [--seed N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other} (see --help)").into()),
        }
    }
    let config: Value = match shapes.as_str() {
        "mid" => mid_config(),
        "tinyllama" => tinyllama_config(),
        "7b" => serde_json::from_str(&std::fs::read_to_string(
            root.join("video-llava/tests/fixtures/sparse-config.json"),
        )?)?,
        other => return Err(format!("--shapes {other}: expected mid, tinyllama or 7b").into()),
    };
    let out = out.unwrap_or_else(|| root.join(format!(".cache/bench-model-{shapes}-bf16")));
    std::fs::create_dir_all(&out)?;
    let config_path = out.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    let cfg = VideoLlavaConfig::from_file(&config_path)?;
    let specs = tensors(&cfg);

    // Shards of about SHARD_BYTES, in key order.
    let mut shards: Vec<Vec<&Spec>> = vec![vec![]];
    let mut size = 0;
    for s in &specs {
        let bytes = 2 * s.shape.iter().product::<usize>();
        if size + bytes > SHARD_BYTES && !shards.last().is_some_and(|v| v.is_empty()) {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().expect("a shard").push(s);
        size += bytes;
    }
    let count = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut rng = Rng(seed | 1);
    let mut total = 0usize;
    for (k, shard) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{count:05}.safetensors", k + 1);
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for s in shard {
            let bytes = 2 * s.shape.iter().product::<usize>();
            header.insert(
                s.name.clone(),
                json!({"dtype": "BF16", "shape": s.shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
            weight_map.insert(s.name.clone(), Value::String(name.clone()));
        }
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut header = serde_json::to_vec(&Value::Object(header))?;
        // The data starts 8-byte aligned, as the safetensors writer pads it.
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut w = BufWriter::with_capacity(1 << 22, File::create(out.join(&name))?);
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        write_data(&mut w, shard, &mut rng)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        total += offset;
        eprintln!("wrote {name} ({:.2} GB)", offset as f64 / 1e9);
    }
    std::fs::write(
        out.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        }))?,
    )?;
    copy_tokenizer(&root.join("video-llava/tests/fixtures/tokenizer"), &out)?;
    let params: usize = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    println!(
        "{}: {} tensors, {:.2} B parameters, {:.2} GB bf16",
        out.display(),
        specs.len(),
        params as f64 / 1e9,
        total as f64 / 1e9
    );
    Ok(())
}

fn copy_tokenizer(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
