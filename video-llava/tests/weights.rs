//! Weights loading through the public API: key layouts, partial loading, and typed errors for
//! bad model directories (missing files, pickle-only, wrong shapes, truncated or missing shards).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use video_llava::model::VideoLlavaModel;
use video_llava::weights::ModelFiles;
use video_llava::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies the loadable files of a fixture model (not its golden outputs) into a fresh tempdir.
fn copy_model(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.starts_with("golden") {
            std::fs::copy(&path, tmp.path().join(&file)).unwrap();
        }
    }
    tmp
}

type Rewritten = (String, Dtype, Vec<usize>, Vec<u8>);

/// Rewrites the safetensors file `path` in place: `edit` maps each tensor to its replacement
/// (`None` drops it).
fn rewrite(path: &Path, edit: impl Fn(&str, &TensorView<'_>) -> Option<Rewritten>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<Rewritten> = st
        .tensors()
        .iter()
        .filter_map(|(name, view)| edit(name, view))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, TensorView<'_>)> = kept
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn same(name: &str, view: &TensorView<'_>) -> Rewritten {
    (
        name.to_string(),
        view.dtype(),
        view.shape().to_vec(),
        view.data().to_vec(),
    )
}

fn load(dir: &Path) -> Result<VideoLlavaModel, Error> {
    VideoLlavaModel::load(dir, &Device::Cpu, DType::F32)
}

/// Text-only logits of a short prompt: enough to compare two loads of the same weights.
fn text_logits(model: &VideoLlavaModel) -> Tensor {
    let ids = [1u32, 3148, 1001, 29901, 15043, 3186];
    let mut cache = model.new_cache(ids.len()).unwrap();
    model.forward_tokens(&ids, &mut cache).unwrap()
}

/// Image features of a fixed synthetic image, to compare vision towers across loads.
fn image_features(model: &VideoLlavaModel) -> Tensor {
    let ramp: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
        .collect();
    let pixels = Tensor::from_vec(ramp, (1, 3, 224, 224), &Device::Cpu).unwrap();
    model.encode_images(&pixels).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn expect_weights_error(err: Error, file: &str, needles: &[&str]) {
    match err {
        Error::Weights { path, reason } => {
            assert_eq!(
                path.file_name().unwrap(),
                file,
                "error names the file: {path:?} ({reason})"
            );
            for needle in needles {
                assert!(
                    reason.contains(needle),
                    "{reason:?} should mention {needle:?}"
                );
            }
        }
        other => panic!("expected Error::Weights, got {other}"),
    }
}

#[test]
fn every_layout_and_dtype_loads() {
    for name in ["tiny-legacy", "tiny-t5", "tiny-f16"] {
        let files = ModelFiles::locate(&fixture(name)).unwrap();
        assert!(files.tokenizer.is_some());
        let model = load(&fixture(name)).unwrap();
        assert_eq!(model.vocab_size(), 32064);
        let logits = text_logits(&model);
        assert_eq!(logits.dims(), &[32064]);
        assert_eq!(logits.dtype(), DType::F32);
    }
    let sharded = ModelFiles::locate(&fixture("tiny-t5")).unwrap();
    assert_eq!(sharded.weights.len(), 3);
    assert!(sharded.index.is_some());
}

#[test]
fn transformers_5_in_memory_key_names_load_the_same_weights() {
    let tmp = copy_model("tiny-legacy");
    let path = tmp.path().join("model.safetensors");
    rewrite(&path, |name, view| {
        let renamed = if let Some(rest) = name.strip_prefix("language_model.lm_head.") {
            format!("lm_head.{rest}")
        } else if let Some(rest) = name.strip_prefix("language_model.model.") {
            format!("model.language_model.{rest}")
        } else {
            format!("model.{}", name.replace(".vision_model.", "."))
        };
        Some(same(&renamed, view))
    });
    let renamed = load(tmp.path()).unwrap();
    let original = load(&fixture("tiny-legacy")).unwrap();
    assert_eq!(
        max_abs_diff(&text_logits(&renamed), &text_logits(&original)),
        0.0
    );
    assert_eq!(
        max_abs_diff(&image_features(&renamed), &image_features(&original)),
        0.0
    );
}

#[test]
fn unused_vision_layers_and_post_layernorm_are_not_read() {
    // tiny-legacy selects hidden state -2 of 3 layers: layer index 2 and post_layernorm are unused.
    let tmp = copy_model("tiny-legacy");
    rewrite(&tmp.path().join("model.safetensors"), |name, view| {
        (!(name.contains("encoder.layers.2.") || name.contains("post_layernorm")))
            .then(|| same(name, view))
    });
    let pruned = load(tmp.path()).unwrap();
    let original = load(&fixture("tiny-legacy")).unwrap();
    assert_eq!(
        max_abs_diff(&image_features(&pruned), &image_features(&original)),
        0.0
    );
}

#[test]
fn missing_directory_config_or_weights_are_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    match load(&tmp.path().join("nope")) {
        Err(Error::MissingFile { .. }) => {}
        other => panic!("expected MissingFile, got {:?}", other.err()),
    }
    match load(tmp.path()) {
        Err(Error::MissingFile { what, .. }) => assert_eq!(what, "config.json"),
        other => panic!("expected MissingFile, got {:?}", other.err()),
    }
    std::fs::copy(
        fixture("tiny-legacy/config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    match load(tmp.path()) {
        Err(Error::MissingFile { what, dir }) => {
            assert_eq!(dir, tmp.path());
            assert!(what.contains("model.safetensors"), "{what}");
        }
        other => panic!("expected MissingFile, got {:?}", other.err()),
    }
}

#[test]
fn pickle_only_directory_is_refused_without_unpickling() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-legacy/config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    // Not a real pickle: if anything tried to read it, it would fail differently.
    std::fs::write(tmp.path().join("pytorch_model.bin"), b"not a pickle").unwrap();
    match load(tmp.path()) {
        Err(err @ Error::PickleOnly { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains("safetensors") && msg.contains("save_pretrained"),
                "{msg}"
            );
        }
        other => panic!("expected PickleOnly, got {:?}", other.err()),
    }
}

#[test]
fn a_mis_shaped_tensor_names_the_tensor_and_the_file() {
    let tmp = copy_model("tiny-legacy");
    let target = "language_model.model.layers.1.mlp.up_proj.weight";
    rewrite(&tmp.path().join("model.safetensors"), |name, view| {
        if name == target {
            // (64, 32) -> (32, 64): same bytes, transposed shape.
            Some((
                name.to_string(),
                view.dtype(),
                vec![32, 64],
                view.data().to_vec(),
            ))
        } else {
            Some(same(name, view))
        }
    });
    let err = load(tmp.path()).err().expect("a shape error");
    expect_weights_error(err, "model.safetensors", &[target, "[32, 64]", "[64, 32]"]);
}

#[test]
fn a_missing_tensor_names_the_tensor_and_the_file() {
    let tmp = copy_model("tiny-legacy");
    let target = "multi_modal_projector.linear_2.bias";
    rewrite(&tmp.path().join("model.safetensors"), |name, view| {
        (name != target).then(|| same(name, view))
    });
    let err = load(tmp.path()).err().expect("a missing-tensor error");
    expect_weights_error(err, "model.safetensors", &[target, "missing"]);
}

#[test]
fn a_truncated_file_names_the_file() {
    let tmp = copy_model("tiny-f16");
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load(tmp.path()).err().expect("a truncation error");
    expect_weights_error(err, "model.safetensors", &["truncated"]);
    // A file cut inside its header, and one that is not safetensors at all.
    std::fs::write(&path, &bytes[..20]).unwrap();
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model.safetensors",
        &["safetensors"],
    );
    std::fs::write(&path, b"").unwrap();
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model.safetensors",
        &["safetensors"],
    );
}

#[test]
fn a_sharded_index_naming_a_missing_shard_is_missing_file() {
    let tmp = copy_model("tiny-t5");
    std::fs::remove_file(tmp.path().join("model-00002-of-00003.safetensors")).unwrap();
    match load(tmp.path()) {
        Err(Error::MissingFile { what, .. }) => {
            assert!(what.contains("model-00002-of-00003.safetensors"), "{what}")
        }
        other => panic!("expected MissingFile, got {:?}", other.err()),
    }
}

#[test]
fn sharded_errors_name_the_shard_or_the_index() {
    let tmp = copy_model("tiny-t5");
    let shard = tmp.path().join("model-00001-of-00003.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model-00001-of-00003.safetensors",
        &["truncated"],
    );

    // A tensor missing from every shard is reported against the index.
    let tmp = copy_model("tiny-t5");
    let target = "language_model.model.norm.weight";
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("model-")
        {
            rewrite(&path, |name, view| {
                (name != target).then(|| same(name, view))
            });
        }
    }
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model.safetensors.index.json",
        &[target],
    );

    // A corrupt index.
    let tmp = copy_model("tiny-t5");
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        "{\"weight_map\": 3}",
    )
    .unwrap();
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model.safetensors.index.json",
        &["weight_map"],
    );
}

#[test]
fn a_non_float_dtype_on_disk_is_a_weights_error() {
    let tmp = copy_model("tiny-f16");
    let target = "multi_modal_projector.linear_1.bias";
    rewrite(&tmp.path().join("model.safetensors"), |name, view| {
        if name == target {
            Some((
                name.to_string(),
                Dtype::I16,
                view.shape().to_vec(),
                view.data().to_vec(),
            ))
        } else {
            Some(same(name, view))
        }
    });
    expect_weights_error(
        load(tmp.path()).err().unwrap(),
        "model.safetensors",
        &[target, "I16"],
    );
}

#[test]
fn an_unsupported_compute_dtype_is_refused() {
    match VideoLlavaModel::load(&fixture("tiny-legacy"), &Device::Cpu, DType::U8) {
        Err(Error::Device(msg)) => assert!(msg.contains("U8"), "{msg}"),
        other => panic!("expected Error::Device, got {:?}", other.err()),
    }
}
