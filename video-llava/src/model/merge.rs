//! The placeholder merge: image and video features scattered into the positions of their
//! placeholder tokens, in order (transformers' `masked_scatter`).

use candle_core::Tensor;

use crate::{Error, Result};

/// What fills a run of consecutive positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Text,
    Image,
    Video,
}

/// Consecutive positions with the same source: `(source, start, len)`.
fn runs(ids: &[u32], image_token: u32, video_token: u32) -> Vec<(Source, usize, usize)> {
    let mut runs: Vec<(Source, usize, usize)> = Vec::new();
    for (pos, &id) in ids.iter().enumerate() {
        let source = if id == image_token {
            Source::Image
        } else if id == video_token {
            Source::Video
        } else {
            Source::Text
        };
        match runs.last_mut() {
            Some((s, _, len)) if *s == source => *len += 1,
            _ => runs.push((source, pos, 1)),
        }
    }
    runs
}

/// Flattens `(N, T, D)` or `(T, D)` features to `(N * T, D)` rows.
fn rows(features: &Tensor, hidden: usize, what: &str) -> Result<Tensor> {
    let dims = features.dims();
    let ok = match dims {
        [_, d] | [_, _, d] => *d == hidden,
        _ => false,
    };
    if !ok {
        return Err(Error::InvalidRequest(format!(
            "{what} features must be (N, tokens, {hidden}) or (tokens, {hidden}), got {dims:?}"
        )));
    }
    Ok(features.reshape(((), hidden))?)
}

/// Token embeddings `text` `(L, D)` with the placeholder positions of `ids` replaced by the
/// feature rows, in order. Placeholder and feature counts must agree.
pub(crate) fn merge(
    text: &Tensor,
    ids: &[u32],
    image_token: u32,
    video_token: u32,
    image_features: Option<&Tensor>,
    video_features: Option<&Tensor>,
) -> Result<Tensor> {
    let hidden = text.dim(1)?;
    let dtype = text.dtype();
    let device = text.device();
    let prepare = |f: Option<&Tensor>, what: &str| -> Result<Option<Tensor>> {
        f.map(|f| rows(&f.to_device(device)?.to_dtype(dtype)?, hidden, what))
            .transpose()
    };
    let image = prepare(image_features, "image")?;
    let video = prepare(video_features, "video")?;
    for (what, token, feats) in [
        ("image", image_token, &image),
        ("video", video_token, &video),
    ] {
        let placeholders = ids.iter().filter(|&&id| id == token).count();
        let provided = match feats {
            Some(f) => f.dim(0)?,
            None => 0,
        };
        if placeholders != provided {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {placeholders} {what} placeholder tokens (id {token}) but {provided} {what} feature rows were given"
            )));
        }
    }
    let runs = runs(ids, image_token, video_token);
    if runs.iter().all(|(s, _, _)| *s == Source::Text) {
        return Ok(text.clone());
    }
    let (mut image_at, mut video_at) = (0, 0);
    let mut parts = Vec::with_capacity(runs.len());
    for (source, start, len) in runs {
        parts.push(match source {
            Source::Text => text.narrow(0, start, len)?,
            Source::Image => {
                let part = image
                    .as_ref()
                    .expect("counted above")
                    .narrow(0, image_at, len)?;
                image_at += len;
                part
            }
            Source::Video => {
                let part = video
                    .as_ref()
                    .expect("counted above")
                    .narrow(0, video_at, len)?;
                video_at += len;
                part
            }
        });
    }
    Ok(Tensor::cat(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn runs_group_consecutive_sources() {
        let r = runs(&[1, 9, 9, 5, 8, 8, 8, 9], 9, 8);
        assert_eq!(
            r,
            vec![
                (Source::Text, 0, 1),
                (Source::Image, 1, 2),
                (Source::Text, 3, 1),
                (Source::Video, 4, 3),
                (Source::Image, 7, 1),
            ]
        );
    }

    #[test]
    fn features_fill_placeholders_in_order() -> Result<()> {
        let dev = Device::Cpu;
        // Text rows are 100 + position, image rows 200 + k, video rows 300 + k.
        let text = Tensor::from_vec((0..6).map(|p| 100.0 + p as f32).collect(), (6, 1), &dev)?;
        let image = Tensor::from_vec(vec![200f32, 201., 202.], (3, 1, 1), &dev)?;
        let video = Tensor::from_vec(vec![300f32, 301.], (1, 2, 1), &dev)?;
        let ids = [1, 9, 8, 8, 9, 9];
        let merged = merge(&text, &ids, 9, 8, Some(&image), Some(&video))?;
        assert_eq!(
            merged.flatten_all()?.to_vec1::<f32>()?,
            vec![100., 200., 300., 301., 201., 202.]
        );
        Ok(())
    }

    #[test]
    fn count_mismatch_is_invalid_request() -> Result<()> {
        let dev = Device::Cpu;
        let text = Tensor::zeros((3, 4), DType::F32, &dev)?;
        let image = Tensor::zeros((1, 1, 4), DType::F32, &dev)?;
        let err = merge(&text, &[1, 9, 9], 9, 8, Some(&image), None).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRequest(ref m) if m.contains("2 image placeholder")),
            "{err}"
        );
        let err = merge(&text, &[1, 8, 2], 9, 8, None, None).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        let wrong_width = Tensor::zeros((2, 3), DType::F32, &dev)?;
        let err = merge(&text, &[1, 9, 9], 9, 8, Some(&wrong_width), None).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        Ok(())
    }
}
