//! Shared by the golden and pipeline tests: the fixture models made by
//! tests/fixtures/make_fixtures.py, their golden outputs from transformers, and the shared pixels.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture model directory (one with a golden.json), sorted by name.
pub fn fixture_models() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// One golden case: its prompt and which of the shared pixel inputs it uses.
pub struct Case {
    pub name: String,
    pub prompt: String,
    pub video: bool,
    pub images: usize,
}

/// A fixture model's golden.json cases and golden.safetensors tensors (`{case}.{what}`).
pub struct Golden {
    pub cases: Vec<Case>,
    pub tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load(dir: &Path) -> Result<Self> {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json"))?)?;
        let cases = json["cases"]
            .as_array()
            .context("golden.json has cases")?
            .iter()
            .map(|c| {
                Ok(Case {
                    name: c["name"].as_str().context("case name")?.to_string(),
                    prompt: c["prompt"].as_str().context("case prompt")?.to_string(),
                    video: c["video"].as_bool().context("case video")?,
                    images: c["images"].as_u64().context("case images")? as usize,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!cases.is_empty(), "{}: no cases", dir.display());
        let tensors = candle_core::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
        Ok(Self { cases, tensors })
    }

    /// The golden tensor `{case}.{what}`.
    pub fn tensor(&self, case: &str, what: &str) -> Result<&Tensor> {
        self.tensors
            .get(&format!("{case}.{what}"))
            .with_context(|| format!("golden tensor {case}.{what}"))
    }

    /// The golden token ids `{case}.{what}` (input_ids, greedy).
    pub fn ids(&self, case: &str, what: &str) -> Result<Vec<u32>> {
        let t = self.tensor(case, what)?;
        Ok(t.to_vec1::<i64>()?.into_iter().map(|v| v as u32).collect())
    }

    pub fn case(&self, name: &str) -> Result<&Case> {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("golden case {name}"))
    }
}

/// The shared pixel inputs (f16 on disk) as f32, what the reference saw:
/// video `(1, 8, 3, 224, 224)`, images `(2, 3, 224, 224)`.
pub fn inputs() -> Result<(Tensor, Tensor)> {
    let t = candle_core::safetensors::load(fixtures().join("inputs.safetensors"), &Device::Cpu)?;
    Ok((
        t["video"].to_dtype(DType::F32)?,
        t["images"].to_dtype(DType::F32)?,
    ))
}

/// The video and the first `case.images` images, as the case uses them.
pub fn case_pixels(
    case: &Case,
    video: &Tensor,
    images: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let v = case.video.then(|| video.clone());
    let i = (case.images > 0)
        .then(|| images.narrow(0, 0, case.images))
        .transpose()?;
    Ok((v, i))
}

/// max |a - b| / max |b|.
pub fn relative_error(ours: &Tensor, reference: &Tensor) -> Result<f32> {
    let diff = (ours - reference)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let scale = reference.abs()?.max(0)?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

/// Prompt logits and then the logits after each of `tokens[..n-1]`, teacher-forced: the f32
/// and quantized models see the same sequence, so their logits compare position by position.
pub fn step_logits(
    model: &video_llava::model::VideoLlavaModel,
    ids: &[u32],
    video: Option<&Tensor>,
    images: Option<&Tensor>,
    tokens: &[u32],
) -> Result<Vec<Tensor>> {
    let video_features = video.map(|v| model.encode_videos(v)).transpose()?;
    let image_features = images.map(|i| model.encode_images(i)).transpose()?;
    let embeds = model.embed(ids, image_features.as_ref(), video_features.as_ref())?;
    let mut cache = model.new_cache(ids.len() + tokens.len())?;
    let mut out = vec![model.forward_embeds(&embeds, &mut cache)?];
    for &t in &tokens[..tokens.len().saturating_sub(1)] {
        out.push(model.forward_tokens(&[t], &mut cache)?);
    }
    Ok(out)
}

pub fn max_abs(t: &Tensor) -> Result<f32> {
    Ok(t.abs()?.max(0)?.to_scalar::<f32>()?)
}

pub fn argmax(t: &Tensor) -> Result<u32> {
    Ok(t.argmax(0)?.to_scalar::<u32>()?)
}

/// The gap between the largest and second-largest logit.
pub fn top2_margin(t: &Tensor) -> Result<f32> {
    let mut v = t.to_vec1::<f32>()?;
    v.sort_by(|a, b| b.total_cmp(a));
    Ok(v[0] - v[1])
}

/// KL(softmax(reference) || softmax(ours)), in nats.
pub fn kl_divergence(reference: &Tensor, ours: &Tensor) -> Result<f32> {
    let lp = candle_nn::ops::log_softmax(reference, 0)?;
    let lq = candle_nn::ops::log_softmax(ours, 0)?;
    Ok((lp.exp()? * (lp - lq)?)?.sum_all()?.to_scalar::<f32>()?)
}

/// Two generations agree token for token: ids, text, stop reason and prompt length.
pub fn same_answer(
    got: &video_llava::Generation,
    want: &video_llava::Generation,
    what: &str,
) -> Result<()> {
    ensure!(
        got.token_ids == want.token_ids
            && got.text == want.text
            && got.stop_reason == want.stop_reason
            && got.prompt_tokens == want.prompt_tokens,
        "{what}: {:?} ({:?}) vs {:?} ({:?})",
        got.token_ids,
        got.stop_reason,
        want.token_ids,
        want.stop_reason
    );
    Ok(())
}

/// One golden case of [`along_greedy_path`]: the worst logits error over its steps and the KL of
/// the prompt logits.
pub struct CaseError {
    pub name: String,
    pub worst: f32,
    pub prompt_kl: f32,
}

/// `model` against `reference`, teacher-forced along each golden case's greedy tokens of the
/// fixture in `dir`: the reference must stay on the golden path, and wherever its top-2 margin
/// exceeds `2 * max_error` (no pair of logits can swap when none moves by more than `max_error`)
/// `model` must pick the golden token too. Returns each case's errors and how many steps were
/// checked and skipped (margin within `2 * max_error`).
pub fn along_greedy_path(
    reference: &video_llava::model::VideoLlavaModel,
    model: &video_llava::model::VideoLlavaModel,
    dir: &Path,
    max_error: f32,
    what: &str,
) -> Result<(Vec<CaseError>, usize, usize)> {
    let golden = Golden::load(dir)?;
    let (video, images) = inputs()?;
    let (mut cases, mut checked, mut skipped) = (Vec::new(), 0, 0);
    for case in &golden.cases {
        let ids = golden.ids(&case.name, "input_ids")?;
        let tokens = golden.ids(&case.name, "greedy")?;
        let (v, i) = case_pixels(case, &video, &images)?;
        let want = step_logits(reference, &ids, v.as_ref(), i.as_ref(), &tokens)?;
        let got = step_logits(model, &ids, v.as_ref(), i.as_ref(), &tokens)?;
        let mut worst = 0f32;
        for (step, (w, g)) in want.iter().zip(&got).enumerate() {
            ensure!(argmax(w)? == tokens[step], "f32 run left the golden path");
            worst = worst.max(max_abs(&(g - w)?)?);
            if top2_margin(w)? > 2.0 * max_error {
                ensure!(
                    argmax(g)? == tokens[step],
                    "{}: step {step}: {what} picked {} instead of {} (margin {})",
                    case.name,
                    argmax(g)?,
                    tokens[step],
                    top2_margin(w)?
                );
                checked += 1;
            } else {
                skipped += 1;
            }
        }
        cases.push(CaseError {
            name: case.name.clone(),
            worst,
            prompt_kl: kl_divergence(&want[0], &got[0])?,
        });
    }
    Ok((cases, checked, skipped))
}
