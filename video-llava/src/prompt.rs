//! Tokenizer, USER/ASSISTANT template, placeholder expansion.
//!
//! transformers' `VideoLlavaProcessor` repeats each `<image>` / `<video>` placeholder in the
//! text (256 or 257 times per image, 257 per frame) and tokenizes the result. The placeholders
//! are special added tokens, so tokenizing the text with single placeholders and repeating their
//! ids gives the same ids, without tokenizing thousands of placeholder strings.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// The image placeholder as it appears in prompt text.
pub const IMAGE_PLACEHOLDER: &str = "<image>";
/// The video placeholder as it appears in prompt text.
pub const VIDEO_PLACEHOLDER: &str = "<video>";

/// How many positions each placeholder expands to, and their ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaceholderSpec {
    /// Id of `<image>` (32000 in the hub checkpoint).
    pub image_token_id: u32,
    /// Id of `<video>` (32001).
    pub video_token_id: u32,
    /// Positions per image: 256 (strategy `default`) or 257 (`full`).
    pub image_tokens: usize,
    /// Positions per video frame: 257 (the CLS token is always kept).
    pub video_tokens_per_frame: usize,
}

impl Default for PlaceholderSpec {
    /// The values of `LanguageBind/Video-LLaVA-7B-hf`.
    fn default() -> Self {
        Self {
            image_token_id: 32000,
            video_token_id: 32001,
            image_tokens: 256,
            video_tokens_per_frame: 257,
        }
    }
}

impl PlaceholderSpec {
    /// The spec a model configuration implies.
    pub fn from_config(config: &crate::VideoLlavaConfig) -> Self {
        Self {
            image_token_id: config.image_token_index,
            video_token_id: config.video_token_index,
            image_tokens: config.image_tokens(),
            video_tokens_per_frame: config.video_tokens_per_frame(),
        }
    }
}

/// Builds the conversation text of Video-LLaVA's template:
/// `USER: <image>\n...<video>\n{question} ASSISTANT:`, with earlier turns as
/// `USER: {q} ASSISTANT: {a}` before it.
///
/// The media placeholders (images first, then the video) go into the first user turn, unless
/// that turn's text (or any turn's) already contains `<image>` or `<video>`: then the text is
/// taken as written and [`PromptTokenizer::encode`] checks the counts.
pub fn format_prompt(
    question: &str,
    history: &[(String, String)],
    num_images: usize,
    has_video: bool,
) -> String {
    let as_written = has_placeholders(question) || history_has_placeholders(history);
    let mut text = format_prefix(history, num_images, has_video, as_written);
    text.push_str(question);
    text.push_str(" ASSISTANT:");
    text
}

/// The part of [`format_prompt`]'s text before the question: `USER: {media}` and the earlier
/// turns, each ending in ` USER: `. `as_written` means the turns carry their own placeholders.
pub(crate) fn format_prefix(
    history: &[(String, String)],
    num_images: usize,
    has_video: bool,
    as_written: bool,
) -> String {
    let mut text = String::from("USER: ");
    if !as_written {
        for _ in 0..num_images {
            text.push_str(IMAGE_PLACEHOLDER);
            text.push('\n');
        }
        if has_video {
            text.push_str(VIDEO_PLACEHOLDER);
            text.push('\n');
        }
    }
    for (q, a) in history {
        text.push_str(q);
        text.push_str(" ASSISTANT: ");
        text.push_str(a);
        text.push_str(" USER: ");
    }
    text
}

/// Whether a text holds an `<image>` or `<video>` placeholder.
pub(crate) fn has_placeholders(text: &str) -> bool {
    text.contains(IMAGE_PLACEHOLDER) || text.contains(VIDEO_PLACEHOLDER)
}

/// Whether any earlier turn holds a placeholder (then all are taken as written).
pub(crate) fn history_has_placeholders(history: &[(String, String)]) -> bool {
    history
        .iter()
        .any(|(q, a)| has_placeholders(q) || has_placeholders(a))
}

/// Counts of `<image>` and `<video>` placeholders in a prompt text.
pub fn count_placeholders(prompt: &str) -> (usize, usize) {
    (
        prompt.matches(IMAGE_PLACEHOLDER).count(),
        prompt.matches(VIDEO_PLACEHOLDER).count(),
    )
}

/// The checkpoint's tokenizer with Video-LLaVA's placeholder expansion.
#[derive(Clone, Debug)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    spec: PlaceholderSpec,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path, spec: PlaceholderSpec) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                dir: path.parent().unwrap_or(Path::new("")).to_path_buf(),
                what: "tokenizer.json (the checkpoint's tokenizer)".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(tokenizer, spec)
    }

    /// Wraps a loaded tokenizer; checks that it knows the placeholder tokens.
    pub fn new(tokenizer: Tokenizer, spec: PlaceholderSpec) -> Result<Self> {
        for (text, id) in [
            (IMAGE_PLACEHOLDER, spec.image_token_id),
            (VIDEO_PLACEHOLDER, spec.video_token_id),
        ] {
            match tokenizer.token_to_id(text) {
                Some(found) if found == id => {}
                Some(found) => {
                    return Err(Error::Tokenizer(format!(
                        "{text} has id {found} in tokenizer.json but {id} in the model config"
                    )))
                }
                None => {
                    return Err(Error::Tokenizer(format!(
                        "tokenizer.json has no {text} token (expected id {id})"
                    )))
                }
            }
        }
        let bos_token_id = tokenizer.token_to_id("<s>");
        let eos_token_id = tokenizer.token_to_id("</s>");
        Ok(Self {
            tokenizer,
            spec,
            bos_token_id,
            eos_token_id,
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Placeholder ids and counts.
    pub fn spec(&self) -> &PlaceholderSpec {
        &self.spec
    }

    /// `<s>`'s id, if the vocabulary has it.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// `</s>`'s id, if the vocabulary has it.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    /// Tokenizes `text` as the processor does (BOS first, exactly once), without expanding
    /// placeholders.
    pub fn encode_unexpanded(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        // A tokenizer.json without a BOS post-processor still gets the BOS the processor adds.
        if let Some(bos) = self.bos_token_id {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Tokenizes a full prompt text and expands its placeholders: each `<image>` to
    /// `image_tokens` ids and the `<video>` to `video_tokens_per_frame x num_frames` ids.
    ///
    /// `num_images` and `num_frames` (`None` = no video) are the media that go with the prompt;
    /// a mismatch with the placeholders in the text is an [`Error::InvalidRequest`].
    pub fn encode(
        &self,
        prompt: &str,
        num_images: usize,
        num_frames: Option<usize>,
    ) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let (images, videos) = count_placeholders(prompt);
        let given_videos = usize::from(num_frames.is_some());
        if images != num_images || videos != given_videos {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {images} <image> and {videos} <video> placeholders, but {num_images} images and {given_videos} videos were given"
            )));
        }
        if num_frames == Some(0) {
            return Err(Error::InvalidRequest("the video has no frames".into()));
        }
        let ids = self.encode_unexpanded(prompt)?;
        let per_video = num_frames.unwrap_or(0) * self.spec.video_tokens_per_frame;
        self.expand(&ids, (images, videos), per_video)
    }

    /// Repeats placeholder ids; checks that the tokenizer split out exactly the placeholders
    /// counted in the text, `(images, videos)` (it would not if `<image>` were not a special
    /// token, or if the config named other ids than the tokenizer gives them).
    fn expand(&self, ids: &[u32], counted: (usize, usize), per_video: usize) -> Result<Vec<u32>> {
        let (image_id, video_id) = (self.spec.image_token_id, self.spec.video_token_id);
        let found = (
            ids.iter().filter(|&&id| id == image_id).count(),
            ids.iter().filter(|&&id| id == video_id).count(),
        );
        if found != counted {
            return Err(Error::Tokenizer(format!(
                "the prompt has {} <image> and {} <video> placeholders, but the tokenizer gave \
                 {} image ids ({image_id}) and {} video ids ({video_id}): the placeholders must \
                 be special tokens with the ids config.json names",
                counted.0, counted.1, found.0, found.1
            )));
        }
        let extra: usize = ids
            .iter()
            .map(|&id| match id {
                id if id == image_id => self.spec.image_tokens.saturating_sub(1),
                id if id == video_id => per_video.saturating_sub(1),
                _ => 0,
            })
            .sum();
        let mut out = Vec::with_capacity(ids.len() + extra);
        for &id in ids {
            let n = match id {
                id if id == image_id => self.spec.image_tokens,
                id if id == video_id => per_video,
                _ => 1,
            };
            out.extend(std::iter::repeat_n(id, n));
        }
        Ok(out)
    }

    /// Decodes ids to text, skipping special tokens (BOS, EOS, placeholders).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> PromptTokenizer {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json");
        PromptTokenizer::from_file(&path, PlaceholderSpec::default()).unwrap()
    }

    #[test]
    fn template() {
        assert_eq!(
            format_prompt("Why?", &[], 0, true),
            "USER: <video>\nWhy? ASSISTANT:"
        );
        assert_eq!(
            format_prompt("Compare them.", &[], 1, true),
            "USER: <image>\n<video>\nCompare them. ASSISTANT:"
        );
        assert_eq!(
            format_prompt(
                "What colour is it?",
                &[("What happens?".into(), "A man rides a bike.".into())],
                0,
                true
            ),
            "USER: <video>\nWhat happens? ASSISTANT: A man rides a bike. USER: What colour is it? ASSISTANT:"
        );
        assert_eq!(
            format_prompt("Say hello.", &[], 0, false),
            "USER: Say hello. ASSISTANT:"
        );
        // Placeholders already written by the caller are kept where they are.
        assert_eq!(
            format_prompt("Look: <image> now", &[], 1, false),
            "USER: Look: <image> now ASSISTANT:"
        );
    }

    #[test]
    fn placeholders_the_tokenizer_does_not_split_out_are_an_error() {
        // `<image>` in the vocabulary with the right id, but not an added (special) token: the
        // tokenizer splits the text `<image>` into pieces and no image id comes out.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        json["added_tokens"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["content"] != "<image>");
        json["model"]["vocab"]["<image>"] = 32000.into();
        let tokenizer: Tokenizer = json.to_string().parse().unwrap();
        let t = PromptTokenizer::new(tokenizer, PlaceholderSpec::default()).unwrap();
        let err = t
            .encode("USER: <image>\nWhat? ASSISTANT:", 1, None)
            .unwrap_err();
        assert!(matches!(err, Error::Tokenizer(_)), "{err}");
        assert!(err.to_string().contains("0 image ids"), "{err}");
        // The fixture as it is expands as before.
        let ids = tokenizer_fixture_ids();
        assert_eq!(ids.iter().filter(|&&i| i == 32000).count(), 256);
    }

    fn tokenizer_fixture_ids() -> Vec<u32> {
        tokenizer()
            .encode("USER: <image>\nWhat? ASSISTANT:", 1, None)
            .unwrap()
    }

    #[test]
    fn known_llama_ids() {
        let t = tokenizer();
        assert_eq!(
            t.encode_unexpanded("Hello world").unwrap(),
            [1, 15043, 3186]
        );
        assert_eq!(
            t.encode_unexpanded("USER:").unwrap(),
            [1, 3148, 1001, 29901]
        );
    }

    #[test]
    fn expansion_equals_tokenizing_the_expanded_text() {
        let t = tokenizer();
        let prompt = "USER: <image>\n<video>\nCompare them. ASSISTANT:";
        let ids = t.encode(prompt, 1, Some(2)).unwrap();
        let expanded_text = prompt
            .replace("<image>", &"<image>".repeat(256))
            .replace("<video>", &"<video>".repeat(2 * 257));
        let reference = t.tokenizer().encode(expanded_text, true).unwrap();
        assert_eq!(ids, reference.get_ids());
        assert_eq!(ids.iter().filter(|&&i| i == 32000).count(), 256);
        assert_eq!(ids.iter().filter(|&&i| i == 32001).count(), 514);
        assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1);
    }

    #[test]
    fn placeholder_mismatch_is_invalid_request() {
        let t = tokenizer();
        let err = t
            .encode("USER: <video>\nHi ASSISTANT:", 0, None)
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains("0 <image> and 1 <video>")),
            "{err}"
        );
        assert!(matches!(
            t.encode("USER: Hi ASSISTANT:", 1, None),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            t.encode("USER: <video><video> ASSISTANT:", 0, Some(8)),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            t.encode("  ", 0, None),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn decode_skips_special_tokens() {
        let t = tokenizer();
        let ids = t
            .encode("USER: <image>\nHello world ASSISTANT:", 1, None)
            .unwrap();
        assert_eq!(t.decode(&ids).unwrap(), "USER: \nHello world ASSISTANT:");
    }

    #[test]
    fn missing_tokenizer_is_missing_file() {
        let err = PromptTokenizer::from_file(
            Path::new("/nonexistent/tokenizer.json"),
            PlaceholderSpec::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    }
}
