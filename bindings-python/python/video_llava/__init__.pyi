"""Type stubs for video_llava (the native module ``video_llava._native``, re-exported)."""

import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TypedDict, final, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Required, TypeAlias

__version__: str
DEFAULT_QUESTION: str
"""The question ``analyze`` asks when given none (the CLI's too)."""

_Source: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview
_Resize: TypeAlias = int | tuple[int, int] | dict[str, int]
_U8Array: TypeAlias = npt.NDArray[np.uint8]
_F32Array: TypeAlias = npt.NDArray[np.float32]
_IntArray: TypeAlias = npt.NDArray[np.integer[Any]] | Sequence[int]
_Image: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | _U8Array

class _GenerateRequest(TypedDict, total=False):
    """One request of ``VideoLlava.generate_batch``: ``generate``'s arguments."""

    question: Required[str]
    video: _Source | FrameBatch | _U8Array | None
    image: _Image | Sequence[_Image] | None
    frames: _U8Array | None
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int | None
    repetition_penalty: float
    seed: int | None
    stop: str | Sequence[str] | None
    history: Sequence[tuple[str, str]] | None
    num_frames: int
    sampling: Literal["uniform", "linspace", "keyframes"]

class VideoLlavaError(Exception):
    """Base class of every error the video_llava engine raises."""

    kind: str
    """The engine's classification, finer than the class: "not_found", "video_decode",
    "no_video_stream", "image_decode", "image_encode", "invalid_request", "prompt_too_long",
    "too_large", "model_not_found", "model_load", "tokenizer", "download", "device",
    "generation", "io" or "other" (Node's ``err.kind``, the CLI's JSON records)."""
    is_input: bool
    """Whether the caller's input caused it (a bad video, request or model directory) rather
    than the machine or the network: the CLI's exit status 2, the server's 4xx."""

class VideoDecodeError(VideoLlavaError):
    """A video could not be opened, demuxed or decoded."""

class NoVideoStreamError(VideoDecodeError):
    """The container holds no video stream (an audio-only file, for instance)."""

class NotFoundError(VideoLlavaError, FileNotFoundError):
    """A video or image file does not exist. Also a FileNotFoundError."""

class ImageError(VideoLlavaError):
    """An image could not be decoded, or a thumbnail could not be encoded."""

class InvalidRequestError(VideoLlavaError, ValueError):
    """A request or argument is invalid. Also a ValueError."""

class PromptTooLongError(InvalidRequestError):
    """The prompt, with placeholders expanded, plus max_new_tokens exceeds the model's context."""

class TooLargeError(VideoLlavaError):
    """The decoded frames would exceed the memory budget or the frame size limit."""

class VideoTimeoutError(VideoDecodeError, TimeoutError):
    """Decoding a video ran past its time budget (call_timeout). Also a VideoDecodeError and a
    TimeoutError."""

class ModelLoadError(VideoLlavaError):
    """A checkpoint could not be loaded (config, weights, tokenizer)."""

class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model directory or a required file in it is missing. Also a FileNotFoundError."""

class DownloadError(ModelLoadError):
    """Downloading a checkpoint from the Hugging Face Hub failed."""

class TokenizerError(VideoLlavaError):
    """The tokenizer failed to load or encode."""

class DeviceError(VideoLlavaError):
    """The device or dtype is not available in this build or on this machine."""

class GenerationError(VideoLlavaError):
    """The model failed while computing (a tensor operation failed)."""

@final
class VideoInfo:
    """Facts about a video's best video stream and its container."""

    @property
    def width(self) -> int:
        """Width as displayed (rotation applied)."""
    @property
    def height(self) -> int:
        """Height as displayed (rotation applied)."""
    @property
    def coded_width(self) -> int:
        """Width as stored in the stream."""
    @property
    def coded_height(self) -> int:
        """Height as stored in the stream."""
    @property
    def rotation(self) -> int:
        """Clockwise rotation in degrees (0, 90, 180, 270) that displaying applies."""
    @property
    def fps(self) -> float:
        """Average frame rate."""
    @property
    def avg_fps(self) -> float:
        """Average frame rate (frames / duration), same as ``fps``."""
    @property
    def real_fps(self) -> float:
        """The stream's base frame rate (``r_frame_rate``)."""
    @property
    def duration(self) -> float:
        """Duration in seconds."""
    @property
    def frame_count(self) -> int:
        """Number of frames."""
    @property
    def frame_count_source(self) -> Literal["index", "counted", "header", "estimated"]:
        """How ``frame_count`` was obtained."""
    @property
    def codec(self) -> str:
        """Codec name (``h264``, ``hevc``, ``vp9``, ...)."""
    @property
    def container(self) -> str:
        """Container format name as FFmpeg names it."""
    @property
    def has_audio(self) -> bool:
        """Whether the container has at least one audio stream."""
    def to_dict(self) -> dict[str, Any]:
        """All the facts as a dict."""

@final
class FrameBatch:
    """Sampled frames: ``frames`` is a uint8 array ``(N, H, W, 3)`` owning the decoded buffer."""

    @property
    def frames(self) -> _U8Array:
        """uint8 array ``(N, H, W, 3)``, RGB."""
    @property
    def indices(self) -> list[int]:
        """Each frame's index in presentation order."""
    @property
    def timestamps(self) -> list[float]:
        """Each frame's presentation time in seconds."""
    @property
    def width(self) -> int:
        """Frame width in pixels."""
    @property
    def height(self) -> int:
        """Frame height in pixels."""
    @property
    def clamped(self) -> bool:
        """Whether targets were clamped because the container's frame count was wrong."""
    def __len__(self) -> int: ...
    def __getitem__(self, key: Any, /) -> Any: ...
    def __array__(
        self, dtype: npt.DTypeLike | None = None, copy: bool | None = None
    ) -> npt.NDArray[Any]: ...

@final
class Thumbnail:
    """An encoded thumbnail."""

    @property
    def data(self) -> bytes:
        """The encoded image."""
    @property
    def format(self) -> Literal["jpeg", "png", "webp"]:
        """The image format."""
    @property
    def timestamp(self) -> float:
        """Presentation time of the chosen frame, in seconds."""
    @property
    def width(self) -> int:
        """Width of the encoded image."""
    @property
    def height(self) -> int:
        """Height of the encoded image."""

@final
class Timings:
    """Seconds spent per stage of a generation."""

    @property
    def preprocess(self) -> float:
        """Frame decoding and preprocessing."""
    @property
    def vision(self) -> float:
        """Vision towers and projector."""
    @property
    def prefill(self) -> float:
        """The prompt's forward pass."""
    @property
    def decode(self) -> float:
        """All decode steps."""
    @property
    def total(self) -> float:
        """Sum of all stages."""
    def to_dict(self) -> dict[str, float]:
        """The stages as a dict of seconds."""

@final
class Generation:
    """The result of a generation."""

    @property
    def text(self) -> str:
        """The generated text (stop string and EOS excluded)."""
    @property
    def token_ids(self) -> list[int]:
        """The generated token ids (EOS excluded)."""
    @property
    def prompt_tokens(self) -> int:
        """Prompt length in tokens after placeholder expansion."""
    @property
    def cached_tokens(self) -> int:
        """Of those, how many came from a conversation's cached prefix (0 for ``generate``)."""
    @property
    def stop_reason(self) -> Literal["eos", "stop_string", "max_tokens", "cancelled"]:
        """Why generation ended."""
    @property
    def timings(self) -> Timings:
        """Per-stage timings."""

@final
class TextStream(Iterator[str]):
    """Iterator over the text pieces of a running generation."""

    def __iter__(self) -> TextStream: ...
    def __next__(self) -> str: ...
    @property
    def generation(self) -> Generation | None:
        """The finished generation; ``None`` until the iterator is exhausted."""
    def close(self) -> None:
        """Stops the generation at the next token; the iterator then ends."""

@final
class Conversation:
    """A video (and/or images, earlier turns) whose prefix is computed once: the vision towers
    and the prefill of everything before the question. Each question starts from a copy of
    that cache and gets the answer ``VideoLlava.generate`` gives for the same full prompt.
    ``generate`` and ``stream`` may run from several threads at once; ``chat`` turns apply one
    at a time. Usable as a context manager (``close()`` on exit)."""

    def generate(
        self,
        question: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Generation:
        """Answers ``question`` from the cached prefix; the conversation is unchanged."""
    def stream(
        self,
        question: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> TextStream:
        """Like ``generate``, but yields text pieces as they are decoded."""
    def chat(
        self,
        question: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Generation:
        """Answers ``question`` and appends the turn, so the next question sees it (a cancelled
        answer is not appended)."""
    @property
    def history(self) -> list[tuple[str, str]]:
        """The earlier ``(question, answer)`` turns, oldest first."""
    @property
    def prefix_tokens(self) -> int:
        """Tokens in the cached prefix."""
    @property
    def prefix_bytes(self) -> int:
        """Bytes the cached prefix holds (its keys and values)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def close(self) -> None:
        """Frees the cached prefix; later calls raise ``InvalidRequestError``."""
    def __enter__(self) -> Conversation: ...
    def __exit__(self, *exc: object) -> bool: ...

class ChatCompletionError(VideoLlavaError):
    """A chat completion request failed. ``status`` is the HTTP status to answer with,
    ``body`` the OpenAI-shaped error body (``{"error": {...}}``), ``code``, ``type`` and
    ``param`` its fields."""

    status: int
    code: str
    type: str
    param: str | None
    body: dict[str, Any]

_Body: TypeAlias = bytes | str | dict[str, Any]

@final
class ChatCompletions:
    """OpenAI's ``POST /v1/chat/completions`` answered by a loaded model as ``video-llava
    serve`` answers it: text, ``image_url`` and ``video_url`` parts (``data:`` always,
    ``file://`` under ``allowed_media_dir``, ``http(s)://`` with ``allow_remote_media``), the
    same errors and chunks. For Python servers (``video_llava.ray.serve_app``)."""

    def __new__(
        cls,
        model: VideoLlava,
        *,
        model_id: str | None = None,
        allowed_media_dir: str | os.PathLike[str] | None = None,
        allow_remote_media: bool = False,
        max_media_mb: int = 512,
        remote_media_timeout: float = 30.0,
        num_frames: int = 8,
        max_new_tokens: int = 256,
    ) -> ChatCompletions: ...
    @property
    def model_id(self) -> str:
        """The id requests must name in ``model`` (or leave out)."""
    def models(self, created: int) -> dict[str, Any]:
        """``GET /v1/models``'s answer, for a server started at ``created`` (Unix seconds)."""
    @staticmethod
    def no_route(method: str, path: str) -> ChatCompletionError:
        """The 404 error for a route that does not exist (returned, not raised)."""
    def wants_stream(self, body: _Body) -> bool:
        """Whether ``body`` asks for a streamed answer."""
    def create(self, body: _Body) -> dict[str, Any]:
        """Answers ``body`` whole: the ``chat.completion`` object. Raises
        ``ChatCompletionError``."""
    def stream(self, body: _Body) -> ChatCompletionStream:
        """Starts a streamed answer; a failure before the first event raises
        ``ChatCompletionError`` here."""

@final
class ChatCompletionStream:
    """The data of a streamed completion's server-sent events: ``chat.completion.chunk``
    JSON text (or an error event's body), ``"[DONE]"`` last."""

    def __iter__(self) -> ChatCompletionStream: ...
    def __next__(self) -> str: ...
    def close(self) -> None:
        """Stops the generation at its next token; the iterator then ends."""

@final
class Analysis:
    """One video's analysis (``VideoLlava.analyze``): its facts, the frames the model saw, a
    thumbnail and the answer."""

    @property
    def info(self) -> VideoInfo:
        """The video's facts."""
    @property
    def thumbnail(self) -> Thumbnail | None:
        """A representative frame of the whole video, encoded; ``None`` with
        ``thumbnail=False``."""
    @property
    def frame_indices(self) -> list[int]:
        """Index (presentation order) of each frame given to the model."""
    @property
    def frame_timestamps(self) -> list[float]:
        """Presentation time of each frame given to the model, in seconds."""
    @property
    def question(self) -> str:
        """The question asked."""
    @property
    def answer(self) -> str:
        """The model's answer."""
    @property
    def prompt_tokens(self) -> int:
        """Prompt length in tokens, placeholders expanded."""
    @property
    def cached_tokens(self) -> int:
        """Prompt tokens taken from a cached prefix instead of computed."""
    @property
    def generated_tokens(self) -> int:
        """Tokens generated (EOS excluded)."""
    @property
    def stop_reason(self) -> Literal["eos", "stop_string", "max_tokens", "cancelled"]:
        """Why generation ended."""
    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage: probe, sampling, thumbnail, preprocess, vision, prefill, decode,
        and their total."""

@final
class VideoLlava:
    """A loaded Video-LLaVA checkpoint; one object may be used from several threads at once."""

    @staticmethod
    def from_pretrained(
        path_or_repo_id: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str | None = None,
        quantize: Literal["none", "q8_0", "q4k", "q6k"] | None = None,
        quantize_vision: bool = False,
        kv_cache_dtype: str | None = None,
    ) -> VideoLlava:
        """Loads a checkpoint from a directory or a Hub repo id.

        ``device``: "auto" (CUDA, then Metal, when built in and present, else the CPU), "cpu",
        "cuda[:N]" (or "gpu"), "metal[:N]" (or "mps"). ``dtype``: "float32", "float16" or
        "bfloat16" (aliases f32, fp16, bf16, ...); by default float32 on the CPU, bfloat16 on
        CUDA, float16 on Metal, as the CLI and Node choose. ``quantize`` quantizes the
        language model's linear weights while they are read (``q8_0``, ``q4k``, ``q6k``);
        ``quantize_vision`` also quantizes the vision towers and projector to q8_0. A directory
        written by ``save_quantized`` loads as saved. ``kv_cache_dtype`` ("float32", "float16"
        or "bfloat16"; by default the compute dtype) is what the KV cache holds keys and values
        in: "float16" beside float32 compute halves the cache's memory and what each decode step
        reads, rounding keys and values as llama.cpp's default cache does.
        """
    @property
    def device(self) -> str:
        """The device the model runs on ("cpu", "cuda:0", "metal:0")."""
    @property
    def dtype(self) -> str:
        """The compute dtype ("float32", "float16", "bfloat16")."""
    @property
    def kv_cache_dtype(self) -> str:
        """The dtype the KV cache holds keys and values in ("float32", "float16", "bfloat16")."""
    @property
    def quantization(self) -> Literal["none", "q8_0", "q4k", "q6k"]:
        """The language model's quantization."""
    @property
    def vision_quantized(self) -> bool:
        """Whether the vision towers and projector are quantized (to q8_0)."""
    @property
    def quantization_fallbacks(self) -> list[str]:
        """The weights kept in another type than asked: one line each, naming the tensor."""
    def save_quantized(self, dir: str | os.PathLike[str]) -> pathlib.Path:
        """Writes this quantized model to a new or empty directory as ``model.gguf`` plus
        ``config.json`` and ``tokenizer.json``; returns the GGUF file's path."""
    def tokenize(self, prompt: str, num_frames: int = 8) -> list[int]:
        """Expands the placeholders of a full prompt text and tokenizes it (BOS included)."""
    def generate(
        self,
        question: str,
        *,
        video: _Source | FrameBatch | _U8Array | None = None,
        image: _Image | Sequence[_Image] | None = None,
        frames: _U8Array | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace", "keyframes"] = "uniform",
    ) -> Generation:
        """Answers ``question`` about a video and/or images."""
    @overload
    def generate_batch(
        self,
        requests: Iterable[_GenerateRequest],
        *,
        max_batch: int = 8,
        max_kv_bytes: int | None = None,
        return_exceptions: Literal[True],
    ) -> list[Generation | VideoLlavaError]: ...
    @overload
    def generate_batch(
        self,
        requests: Iterable[_GenerateRequest],
        *,
        max_batch: int = 8,
        max_kv_bytes: int | None = None,
        return_exceptions: Literal[False] = False,
    ) -> list[Generation]:
        """Answers several requests (dicts of ``generate``'s arguments) together, decoding up
        to ``max_batch`` in one forward pass per token; each answer is the one ``generate``
        gives it alone. ``max_kv_bytes`` bounds the running requests' KV caches together
        (others wait; one that cannot fit alone fails with ``TooLargeError``). A failed request
        raises once all have finished, or with ``return_exceptions=True`` stands in the list as
        its exception."""
    def analyze(
        self,
        video: _Source,
        *,
        question: str | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace"] = "uniform",
        seek: Literal["exact", "fast"] = "exact",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        thumbnail_size: int = 320,
        thumbnail_format: Literal["jpeg", "png", "webp"] = "jpeg",
        thumbnail: bool = True,
    ) -> Analysis:
        """Analyzes one video: opens it once for its facts, the sampled frames and a thumbnail
        (none with ``thumbnail=False``: no frame is scored or encoded for it), and answers
        ``question`` (by default "Describe what happens in this video.")."""
    @overload
    def analyze_many(
        self,
        videos: Iterable[_Source],
        *,
        question: str | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace"] = "uniform",
        seek: Literal["exact", "fast"] = "exact",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        thumbnail_size: int = 320,
        thumbnail_format: Literal["jpeg", "png", "webp"] = "jpeg",
        thumbnail: bool = True,
        return_exceptions: Literal[True],
    ) -> list[Analysis | VideoLlavaError]: ...
    @overload
    def analyze_many(
        self,
        videos: Iterable[_Source],
        *,
        question: str | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace"] = "uniform",
        seek: Literal["exact", "fast"] = "exact",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        thumbnail_size: int = 320,
        thumbnail_format: Literal["jpeg", "png", "webp"] = "jpeg",
        thumbnail: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> list[Analysis]:
        """Analyzes each video in order, decoding the next one while the model answers for the
        current one; ``analyze``'s options apply to all. A video that fails raises once all
        are done, or with ``return_exceptions=True`` stands in the list as its exception."""
    def stream(
        self,
        question: str,
        *,
        video: _Source | FrameBatch | _U8Array | None = None,
        image: _Image | Sequence[_Image] | None = None,
        frames: _U8Array | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace", "keyframes"] = "uniform",
    ) -> TextStream:
        """Like ``generate``, but yields text pieces as they are decoded."""
    def conversation(
        self,
        *,
        video: _Source | FrameBatch | _U8Array | None = None,
        image: _Image | Sequence[_Image] | None = None,
        frames: _U8Array | None = None,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int = 8,
        sampling: Literal["uniform", "linspace", "keyframes"] = "uniform",
    ) -> Conversation:
        """Starts a conversation about a video and/or images: the vision towers and the prefill
        of everything before the question run once, here."""
    def logits(
        self,
        input_ids: _IntArray,
        *,
        pixel_values_videos: _F32Array | None = None,
        pixel_values_images: _F32Array | None = None,
    ) -> _F32Array:
        """Last-position logits, float32 ``(vocab,)``, for already-expanded ``input_ids``."""
    def generate_ids(
        self,
        input_ids: _IntArray,
        *,
        pixel_values_videos: _F32Array | None = None,
        pixel_values_images: _F32Array | None = None,
        max_new_tokens: int = 16,
    ) -> list[int]:
        """Greedy generation from already-expanded ids and pixels; the new token ids."""

@final
class Video:
    """An opened video: the container, its packet index and the decoder are kept between calls.

    ``Video(source)`` opens the file (or bytes) once; the methods take the arguments of
    ``sample_frames``, ``thumbnail`` and ``storyboard`` after the source and return the same
    types. Usable as a context manager (``close()`` on exit).

    Every call on the handle keeps to its limits (a refusal names the limit):
    ``max_input_bytes`` (default 16 GiB; ``TooLargeError`` for a larger input),
    ``call_timeout`` (seconds one call may take, ``None`` for no limit; ``VideoTimeoutError``
    past it: a file that would decode forever stops there) and ``max_decoder_threads``
    (``InvalidRequestError`` for a request of more; ``threads=0`` gets all cores up to it).
    """

    def __new__(
        cls,
        source: _Source,
        *,
        max_input_bytes: int = ...,  # 16 GiB
        call_timeout: float | None = 600.0,
        max_decoder_threads: int = 16,
    ) -> Video: ...
    @property
    def info(self) -> VideoInfo:
        """The facts of the video stream (what ``probe`` returns), computed on first access."""
    def sample(
        self,
        num_frames: int = 8,
        *,
        sampling: Literal["uniform", "linspace", "keyframes"] = "uniform",
        seek: Literal["exact", "fast"] = "exact",
        indices: Sequence[int] | None = None,
        timestamps: Sequence[float] | None = None,
        every: float | None = None,
        resize: _Resize | None = None,
        rotate: bool = True,
        threads: int = 0,
        max_bytes: int | None = None,
    ) -> FrameBatch:
        """Decodes the frames asked for, as ``sample_frames(source, ...)`` does."""
    def thumbnail(
        self,
        *,
        max_size: int = 320,
        format: Literal["jpeg", "png", "webp"] = "jpeg",
        quality: int = 85,
        rotate: bool = True,
    ) -> Thumbnail:
        """One representative frame, as ``thumbnail(source, ...)`` makes it."""
    def storyboard(
        self,
        n: int,
        *,
        max_size: int = 320,
        format: Literal["jpeg", "png", "webp"] = "jpeg",
        quality: int = 85,
        rotate: bool = True,
    ) -> list[Thumbnail]:
        """``n`` representative frames in time order, as ``storyboard(source, n, ...)``."""
    @property
    def stats(self) -> dict[str, int]:
        """Work done by every call so far (``packets_indexed``: the index pass, at most once)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def close(self) -> None:
        """Releases the container and the decoder; later calls raise ``InvalidRequestError``."""
    def __enter__(self) -> Video: ...
    def __exit__(self, *exc: object) -> bool: ...

def probe(source: _Source) -> VideoInfo:
    """Opens ``source`` and reports the facts of its best video stream."""

def sample_frames(
    source: _Source,
    num_frames: int = 8,
    *,
    sampling: Literal["uniform", "linspace", "keyframes"] = "uniform",
    seek: Literal["exact", "fast"] = "exact",
    indices: Sequence[int] | None = None,
    timestamps: Sequence[float] | None = None,
    every: float | None = None,
    resize: _Resize | None = None,
    rotate: bool = True,
    threads: int = 0,
    max_bytes: int | None = None,
) -> FrameBatch:
    """Decodes the frames asked for into one uint8 ``(N, H, W, 3)`` batch.

    ``resize``: an int (shortest side), ``(width, height)``, or a dict with ``shortest_side``,
    ``max_side``, or ``width`` and ``height``.
    """

def thumbnail(
    source: _Source,
    *,
    max_size: int = 320,
    format: Literal["jpeg", "png", "webp"] = "jpeg",
    quality: int = 85,
    rotate: bool = True,
) -> Thumbnail:
    """One representative frame of the whole video, encoded."""

def storyboard(
    source: _Source,
    n: int,
    *,
    max_size: int = 320,
    format: Literal["jpeg", "png", "webp"] = "jpeg",
    quality: int = 85,
    rotate: bool = True,
) -> list[Thumbnail]:
    """``n`` distinct representative frames in time order, each encoded."""

def preprocess_frames(frames: _U8Array | FrameBatch) -> _F32Array:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, 224, 224)``, CLIP-normalized."""

def preprocess_image(image: _U8Array) -> _F32Array:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, 224, 224)``, CLIP-normalized."""
