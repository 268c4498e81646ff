//! config.json in every form: the sparse hub config, transformers-4 and transformers-5 configs,
//! feature-layer lists, strategies, GQA; and typed errors for unknown or contradictory values.

use std::path::{Path, PathBuf};

use video_llava::config::{Activation, SelectStrategy, VideoLlavaConfig};
use video_llava::Error;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn parse(json: &str) -> Result<VideoLlavaConfig, Error> {
    VideoLlavaConfig::from_json_str(json, Path::new("inline/config.json"))
}

/// Parses `json` expecting an `Error::Config` whose reason mentions every one of `needles`.
fn config_error(json: &str, needles: &[&str]) {
    match parse(json) {
        Err(Error::Config { path, reason }) => {
            assert_eq!(path, Path::new("inline/config.json"));
            for needle in needles {
                assert!(
                    reason.contains(needle),
                    "{reason:?} should mention {needle:?}"
                );
            }
        }
        Err(other) => panic!("expected Error::Config, got {other}"),
        Ok(cfg) => panic!("expected Error::Config for {json}, parsed {cfg:?}"),
    }
}

/// A small full config in the transformers-5 style, with `{text}`/`{vision}`/`{top}` hooks.
fn t5_config(text_extra: &str, vision_extra: &str, top_extra: &str) -> String {
    format!(
        r#"{{
  "model_type": "video_llava",
  "text_config": {{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 32064, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
    "rope_parameters": {{"rope_type": "default", "rope_theta": 500000.0}}{text_extra}}},
  "vision_config": {{"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 224, "patch_size": 14,
    "hidden_act": "quick_gelu"{vision_extra}}},
  "vision_feature_layer": -2{top_extra}
}}"#
    )
}

#[test]
fn sparse_hub_config_fills_llama_7b_and_clip_l_defaults() {
    let cfg = VideoLlavaConfig::from_file(&fixtures().join("sparse-config.json")).unwrap();
    let t = &cfg.text;
    assert_eq!(
        (
            t.hidden_size,
            t.num_hidden_layers,
            t.num_attention_heads,
            t.num_key_value_heads
        ),
        (4096, 32, 32, 32)
    );
    assert_eq!(
        (t.intermediate_size, t.head_dim, t.vocab_size),
        (11008, 128, 32064)
    );
    assert_eq!((t.rms_norm_eps, t.rope_theta), (1e-5, 10000.0));
    assert_eq!(t.hidden_act, Activation::Silu);
    assert_eq!(cfg.max_position_embeddings(), 4096);
    assert_eq!(
        (cfg.bos_token_id(), cfg.eos_token_ids()),
        (Some(1), &[2u32][..])
    );
    let v = &cfg.vision;
    assert_eq!(
        (
            v.hidden_size,
            v.num_hidden_layers,
            v.num_attention_heads,
            v.intermediate_size
        ),
        (1024, 24, 16, 4096)
    );
    assert_eq!(
        (v.image_size, v.patch_size, v.hidden_act),
        (224, 14, Activation::QuickGelu)
    );
    assert_eq!(v.layer_norm_eps, 1e-5);
    assert_eq!(
        (cfg.image_token_index, cfg.video_token_index),
        (32000, 32001)
    );
    assert_eq!(cfg.pad_token_id, Some(32002));
    assert_eq!(cfg.vision_feature_layers, vec![-2]);
    assert_eq!(cfg.select_strategy, SelectStrategy::Default);
    assert_eq!(cfg.projector_hidden_act, Activation::Gelu);
    assert!(cfg.projector_bias && !cfg.tie_word_embeddings);
    assert_eq!(
        (cfg.image_tokens(), cfg.video_tokens_per_frame()),
        (256, 257)
    );
    // -2 of 24 layers is hidden state 23: the output of layer 23, so 23 layers run.
    assert_eq!(cfg.feature_hidden_state_indices(), vec![23]);
    assert_eq!(cfg.vision_layers_used(), 23);
    assert_eq!(cfg.vision_feature_dim(), 1024);
}

#[test]
fn transformers_4_fixture_config() {
    let cfg = VideoLlavaConfig::from_file(&fixtures().join("tiny-legacy/config.json")).unwrap();
    assert_eq!(
        (cfg.text.hidden_size, cfg.text.num_key_value_heads),
        (32, 4)
    );
    assert_eq!(cfg.text.rope_theta, 10000.0);
    assert_eq!(cfg.vision.hidden_act, Activation::QuickGelu);
    assert_eq!(cfg.vision_layers_used(), 2);
}

#[test]
fn transformers_5_fixture_config_with_layer_list_full_strategy_and_gqa() {
    let cfg = VideoLlavaConfig::from_file(&fixtures().join("tiny-t5/config.json")).unwrap();
    assert_eq!(cfg.vision_feature_layers, vec![-3, -1]);
    assert_eq!(cfg.feature_hidden_state_indices(), vec![1, 3]);
    assert_eq!(cfg.vision_layers_used(), 3);
    assert_eq!(cfg.vision_feature_dim(), 64);
    assert_eq!(cfg.select_strategy, SelectStrategy::Full);
    assert_eq!(
        (cfg.image_tokens(), cfg.video_tokens_per_frame()),
        (257, 257)
    );
    assert_eq!(
        (cfg.text.num_attention_heads, cfg.text.num_key_value_heads),
        (4, 2)
    );
    assert_eq!((cfg.text.head_dim, cfg.text.rope_theta), (6, 10000.0));
}

#[test]
fn rope_forms_agree() {
    let t5 = parse(&t5_config("", "", "")).unwrap();
    assert_eq!(t5.text.rope_theta, 500000.0);
    let t4 = parse(&t5_config("", "", "").replace(
        r#""rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}"#,
        r#""rope_theta": 500000.0, "rope_scaling": null"#,
    ))
    .unwrap();
    assert_eq!(t4.text, t5.text);
    // Both forms present and agreeing is fine.
    let both = parse(&t5_config(r#", "rope_theta": 500000.0"#, "", "")).unwrap();
    assert_eq!(both.text.rope_theta, 500000.0);
}

#[test]
fn feature_layer_int_or_list_and_strategies() {
    let cfg = parse(&t5_config(
        "",
        "",
        r#", "vision_feature_select_strategy": "full""#,
    ))
    .unwrap();
    assert_eq!(cfg.image_tokens(), 257);
    let cfg = parse(&t5_config("", "", "").replace(
        r#""vision_feature_layer": -2"#,
        r#""vision_feature_layer": [0, -1, 2]"#,
    ))
    .unwrap();
    assert_eq!(cfg.feature_hidden_state_indices(), vec![0, 3, 2]);
    assert_eq!(cfg.vision_layers_used(), 3);
    assert_eq!(cfg.vision_feature_dim(), 96);
    let cfg = parse(&t5_config("", "", "").replace(
        r#""vision_feature_layer": -2"#,
        r#""vision_feature_layer": 0"#,
    ))
    .unwrap();
    assert_eq!(cfg.vision_layers_used(), 0);
}

#[test]
fn missing_vision_config_is_clip_l_but_a_partial_one_takes_clip_defaults_as_transformers() {
    let cfg =
        parse(r#"{"model_type": "video_llava", "text_config": {"vocab_size": 32064}}"#).unwrap();
    assert_eq!(
        (
            cfg.vision.hidden_size,
            cfg.vision.num_hidden_layers,
            cfg.vision.patch_size
        ),
        (1024, 24, 14)
    );
    assert_eq!(cfg.text.hidden_size, 4096);
    let cfg =
        parse(r#"{"text_config": {"vocab_size": 32064}, "vision_config": {"patch_size": 14}}"#)
            .unwrap();
    assert_eq!(
        (cfg.vision.hidden_size, cfg.vision.num_hidden_layers),
        (768, 12)
    );
}

#[test]
fn activations_vocab_and_special_tokens() {
    let cfg = parse(&t5_config(
        r#", "vocab_size": 50000, "eos_token_id": [2, 7], "bos_token_id": null"#,
        r#", "hidden_act": "gelu""#,
        r#", "projector_hidden_act": "gelu_pytorch_tanh", "multimodal_projector_bias": false"#,
    ))
    .unwrap();
    assert_eq!(cfg.text.vocab_size, 50000);
    assert_eq!(cfg.eos_token_ids(), &[2, 7]);
    assert_eq!(cfg.bos_token_id(), None);
    assert_eq!(cfg.vision.hidden_act, Activation::Gelu);
    assert_eq!(cfg.projector_hidden_act, Activation::GeluTanh);
    assert!(!cfg.projector_bias);
}

#[test]
fn unsupported_rope_scaling_is_an_error() {
    config_error(
        &t5_config("", "", "").replace(r#""rope_type": "default""#, r#""rope_type": "llama3""#),
        &["llama3", "rope"],
    );
    config_error(
        &t5_config(
            r#", "rope_scaling": {"type": "dynamic", "factor": 2.0}"#,
            "",
            "",
        ),
        &["dynamic"],
    );
}

#[test]
fn contradictory_rope_theta_is_an_error() {
    config_error(
        &t5_config(r#", "rope_theta": 10000.0"#, "", ""),
        &["contradicts"],
    );
}

#[test]
fn shapes_that_do_not_divide_are_errors() {
    config_error(
        &t5_config("", "", "")
            .replace(r#""num_attention_heads": 4"#, r#""num_attention_heads": 5"#),
        &["text_config.hidden_size", "num_attention_heads"],
    );
    config_error(
        &t5_config("", "", "")
            .replace(r#""num_key_value_heads": 2"#, r#""num_key_value_heads": 3"#),
        &["num_key_value_heads"],
    );
    config_error(
        &t5_config("", r#", "image_size": 225"#, "").replace(r#""image_size": 224, "#, ""),
        &["image_size", "patch_size"],
    );
    config_error(
        &t5_config("", "", "")
            .replace(r#""num_attention_heads": 2"#, r#""num_attention_heads": 3"#),
        &["vision_config.hidden_size"],
    );
}

#[test]
fn feature_layer_out_of_range_is_an_error() {
    for bad in ["-5", "4", "[1, 9]", "[]", "\"last\""] {
        config_error(
            &t5_config("", "", "").replace(
                r#""vision_feature_layer": -2"#,
                &format!(r#""vision_feature_layer": {bad}"#),
            ),
            &["vision_feature_layer"],
        );
    }
}

#[test]
fn unknown_strategy_activation_or_model_type_is_an_error() {
    config_error(
        &t5_config("", "", r#", "vision_feature_select_strategy": "cls""#),
        &["cls"],
    );
    config_error(
        &t5_config("", r#", "hidden_act": "swiglu""#, "")
            .replace(r#", "hidden_act": "quick_gelu""#, ""),
        &["swiglu"],
    );
    config_error(
        &t5_config(r#", "hidden_act": "mish""#, "", ""),
        &["text_config.hidden_act", "mish"],
    );
    config_error(
        &t5_config("", "", r#", "projector_hidden_act": "tanh""#),
        &["projector_hidden_act"],
    );
    config_error(
        &t5_config("", "", "")
            .replace(r#""model_type": "video_llava""#, r#""model_type": "llava""#),
        &["llava"],
    );
    config_error(
        &t5_config("", "", "").replace(r#""model_type": "llama""#, r#""model_type": "mistral""#),
        &["mistral"],
    );
}

#[test]
fn wrong_types_and_bad_json_are_errors() {
    config_error(
        &t5_config("", "", "").replace(r#""hidden_size": 64"#, r#""hidden_size": "64""#),
        &["text_config.hidden_size"],
    );
    config_error(
        &t5_config("", "", "").replace(r#""hidden_size": 64"#, r#""hidden_size": 0"#),
        &["positive"],
    );
    config_error("{not json", &["JSON"]);
    config_error("[1, 2]", &["object"]);
    config_error(
        &t5_config("", "", r#", "image_token_index": 99999"#),
        &["image_token_index", "vocabulary"],
    );
}

#[test]
fn a_missing_config_file_is_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    match VideoLlavaConfig::from_file(&dir.path().join("config.json")) {
        Err(Error::MissingFile { dir: d, what }) => {
            assert_eq!(d, dir.path());
            assert_eq!(what, "config.json");
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}
