"""Video-LLaVA on Ray: batch analysis with Ray Data.

Install with ``pip install "video_llava[ray]"``; ``import video_llava`` alone never needs Ray.

- :func:`analyze_dataset` runs :class:`VideoLlavaPredictor` over a ``ray.data.Dataset`` whose
  rows name videos (a ``path`` column, or a ``bytes`` column such as
  ``ray.data.read_binary_files(..., include_paths=True)`` gives) and returns a dataset with one
  row per input: the video's facts, the frames the model saw, the answer, token counts,
  timings, the thumbnail as JPEG bytes, and ``error`` / ``error_kind`` for a video that failed.
- :class:`VideoLlavaPredictor` is the stateful actor class behind it, for pipelines of your own:
  it loads the model once, in its constructor, and answers a batch (a dict of columns) per call.

A bad video never fails a task or kills an actor: its row carries the error message,
``error_kind`` ("input" when the video itself is at fault, as the CLI's exit status 2 means,
else "internal") and the engine's finer ``error_code`` (``VideoLlavaError.kind``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import DEFAULT_QUESTION, VideoLlava, VideoLlavaError

if TYPE_CHECKING:
    import ray.data

__all__ = ["COLUMNS", "VideoLlavaPredictor", "VideoLlavaServer", "analyze_dataset", "serve_app"]

#: The columns of every output row, in order (``None`` where a failed video has no value).
COLUMNS = (
    "path",
    "info",
    "frame_indices",
    "frame_timestamps",
    "question",
    "answer",
    "prompt_tokens",
    "generated_tokens",
    "stop_reason",
    "timings",
    "thumbnail",
    "thumbnail_timestamp",
    "error",
    "error_kind",
    "error_code",
    "actor_id",
    "model_load_s",
)


def _threads_from_ray() -> int | None:
    """The CPUs Ray gave this worker, when it runs in one."""
    try:
        import ray
    except ImportError:  # pragma: no cover - the predictor also runs without Ray
        return None
    if not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # the driver, not a worker: Ray assigned it nothing
        return None
    return max(1, int(cpus)) if cpus else None


def _actor_id() -> str | None:
    try:
        import ray
    except ImportError:  # pragma: no cover
        return None
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_actor_id()


class VideoLlavaPredictor:
    """A Ray Data actor that analyzes videos with one loaded model.

    ``model`` is a checkpoint directory or a Hub repo id (``VideoLlava.from_pretrained``'s
    argument); ``device``, ``dtype``, ``quantize``, ``quantize_vision`` and ``kv_cache_dtype`` are
    passed to it. The
    other options are ``VideoLlava.analyze_many``'s. ``thumbnails=False`` makes no
    thumbnail (none is scored or encoded) and leaves the ``thumbnail`` columns empty.

    On the CPU the engine's kernels use as many threads as the CPUs Ray assigned the actor
    (``num_cpus``), unless ``RAYON_NUM_THREADS`` is already set: two actors with one CPU each
    then share two cores instead of fighting over them.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str | None = None,
        quantize: Literal["none", "q8_0", "q4k", "q6k"] | None = None,
        quantize_vision: bool = False,
        kv_cache_dtype: str | None = None,
        question: str = DEFAULT_QUESTION,
        frames: int = 8,
        sampling: str = "uniform",
        seek: str = "exact",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        thumbnails: bool = True,
        thumbnail_size: int = 320,
    ) -> None:
        threads = _threads_from_ray()
        if threads is not None and "RAYON_NUM_THREADS" not in os.environ:
            os.environ["RAYON_NUM_THREADS"] = str(threads)
        started = time.perf_counter()
        self.model = VideoLlava.from_pretrained(
            model,
            device=device,
            dtype=dtype,
            quantize=quantize,
            quantize_vision=quantize_vision,
            kv_cache_dtype=kv_cache_dtype,
        )
        #: Seconds the model took to load in this actor.
        self.load_seconds = time.perf_counter() - started
        self.options: dict[str, Any] = dict(
            question=question,
            num_frames=frames,
            sampling=sampling,
            seek=seek,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            seed=seed,
            stop=stop,
            thumbnail_size=thumbnail_size,
            thumbnail=thumbnails,
        )
        # A bad option fails here, once, rather than in every batch: the analyzer checks its
        # options before it looks at any video.
        self.model.analyze_many([], **self.options)
        self.actor_id = _actor_id()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Analyzes a batch (a dict of columns with ``path`` and/or ``bytes``); returns
        :data:`COLUMNS`, one row per input row, in order."""
        paths = _column(batch, "path")
        data = _column(batch, "bytes")
        if paths is None and data is None:
            raise ValueError(
                "the dataset needs a 'path' or a 'bytes' column (ray.data.read_binary_files "
                "gives 'bytes', and 'path' with include_paths=True)"
            )
        count = len(paths) if paths is not None else len(data)  # type: ignore[arg-type]
        sources: list[Any] = []
        for i in range(count):
            if data is not None and data[i] is not None:
                sources.append(bytes(data[i]))
            else:
                sources.append(str(paths[i]))  # type: ignore[index]
        results = self.model.analyze_many(sources, return_exceptions=True, **self.options)
        out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for i, result in enumerate(results):
            row = _row(result)
            row["path"] = None if paths is None else str(paths[i])
            row["actor_id"] = self.actor_id
            row["model_load_s"] = self.load_seconds
            for name in COLUMNS:
                out[name].append(row.get(name))
        return out


def _column(batch: Mapping[str, Any], name: str) -> list[Any] | None:
    if name not in batch:
        return None
    column = batch[name]
    if isinstance(column, np.ndarray):
        return list(column)
    if hasattr(column, "to_pylist"):  # a pyarrow array
        return column.to_pylist()
    return list(column)


def _row(result: Any) -> dict[str, Any]:
    if isinstance(result, VideoLlavaError):
        return {
            "error": str(result),
            "error_kind": "input" if result.is_input else "internal",
            "error_code": result.kind,
        }
    thumb = result.thumbnail
    return {
        "info": result.info.to_dict(),
        "frame_indices": list(result.frame_indices),
        "frame_timestamps": list(result.frame_timestamps),
        "question": result.question,
        "answer": result.answer,
        "prompt_tokens": result.prompt_tokens,
        "generated_tokens": result.generated_tokens,
        "stop_reason": result.stop_reason,
        "timings": result.timings,
        "thumbnail": None if thumb is None else thumb.data,
        "thumbnail_timestamp": None if thumb is None else thumb.timestamp,
    }


def analyze_dataset(
    ds: ray.data.Dataset,
    *,
    model: str | os.PathLike[str],
    question: str = DEFAULT_QUESTION,
    frames: int = 8,
    max_new_tokens: int = 256,
    thumbnails: bool = True,
    concurrency: int | tuple[int, int] = 1,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    batch_size: int = 4,
    device: str = "auto",
    dtype: str | None = None,
    quantize: Literal["none", "q8_0", "q4k", "q6k"] | None = None,
    seed: int | None = None,
    temperature: float = 0.0,
    **options: Any,
) -> ray.data.Dataset:
    """Analyzes every video ``ds`` names, lazily: one output row per input row.

    ``concurrency`` actors (an int, or ``(min, max)`` for an autoscaling pool) each load
    ``model`` once and take ``batch_size`` videos per call, decoding the next video while the
    model answers; ``num_cpus`` / ``num_gpus`` are each actor's resources (by default 1 CPU,
    or 1 GPU when ``device`` names one). Other keyword arguments go to
    :class:`VideoLlavaPredictor`.
    """
    import ray.data

    if num_gpus is None:
        num_gpus = 1 if device.startswith(("cuda", "gpu")) else 0
    if num_cpus is None:
        num_cpus = 1
    if isinstance(concurrency, tuple):
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    kwargs: dict[str, Any] = dict(
        model=str(model),
        device=device,
        dtype=dtype,
        quantize=quantize,
        question=question,
        frames=frames,
        max_new_tokens=max_new_tokens,
        thumbnails=thumbnails,
        seed=seed,
        temperature=temperature,
        **options,
    )
    return ds.map_batches(
        VideoLlavaPredictor,
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        compute=compute,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        batch_format="numpy",
        zero_copy_batch=True,
    )


class VideoLlavaServer:
    """The Ray Serve replica behind :func:`serve_app`: loads the model in its constructor (Serve
    counts a replica ready only once that returns) and answers ``POST /v1/chat/completions``
    (streaming too), ``GET /v1/models`` and ``GET /health`` through :class:`ChatCompletions`,
    as ``video-llava serve`` answers them."""

    def __init__(self, model: str, load: dict[str, Any], chat: dict[str, Any]) -> None:
        from . import ChatCompletions

        threads = _threads_from_ray()
        if threads is not None and "RAYON_NUM_THREADS" not in os.environ:
            os.environ["RAYON_NUM_THREADS"] = str(threads)
        started = time.perf_counter()
        loaded = VideoLlava.from_pretrained(model, **load)
        #: Seconds the model took to load in this replica.
        self.load_seconds = time.perf_counter() - started
        self.chat = ChatCompletions(loaded, **chat)
        self.created = int(time.time())

    async def __call__(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse, StreamingResponse

        from . import ChatCompletionError, ChatCompletions

        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = request.method
        try:
            if path == "/health":
                return JSONResponse({"status": "ok", "model": self.chat.model_id})
            if path == "/v1/models" and method == "GET":
                return JSONResponse(self.chat.models(self.created))
            if path != "/v1/chat/completions":
                raise ChatCompletions.no_route(method, path)
            body = await request.body()
            if self.chat.wants_stream(body):
                events = await run_in_threadpool(self.chat.stream, body)
                return StreamingResponse(
                    (f"data: {data}\n\n" for data in events),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache"},
                )
            answer = await run_in_threadpool(self.chat.create, body)
            return JSONResponse(answer)
        except ChatCompletionError as e:
            return JSONResponse(e.body, status_code=e.status)


def serve_app(
    model: str | os.PathLike[str],
    *,
    min_replicas: int = 0,
    max_replicas: int = 1,
    idle_timeout_s: float = 300.0,
    model_id: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    quantize: Literal["none", "q8_0", "q4k", "q6k"] | None = None,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    max_ongoing_requests: int = 4,
    autoscaling_config: Mapping[str, Any] | None = None,
    allowed_media_dir: str | os.PathLike[str] | None = None,
    allow_remote_media: bool = False,
    max_media_mb: int = 512,
    num_frames: int = 8,
    max_new_tokens: int = 256,
) -> Any:
    """A Ray Serve application answering OpenAI's ``POST /v1/chat/completions`` as
    ``video-llava serve`` does; run it with ``serve.run(serve_app(...))``.

    It autoscales between ``min_replicas`` (0 by default: no replica, no model in memory, until
    a request comes; that request waits while a replica loads) and ``max_replicas``, and
    goes back to zero after ``idle_timeout_s`` without traffic. ``autoscaling_config`` entries
    override the defaults (Ray's ``AutoscalingConfig`` fields).
    """
    from ray import serve

    if num_gpus is None:
        num_gpus = 1 if device.startswith(("cuda", "gpu")) else 0
    autoscaling: dict[str, Any] = dict(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=max(1, max_ongoing_requests // 2),
        downscale_delay_s=idle_timeout_s,
        downscale_to_zero_delay_s=idle_timeout_s,
        upscale_delay_s=10.0,
    )
    autoscaling.update(autoscaling_config or {})
    deployment = serve.deployment(
        name="VideoLlava",
        autoscaling_config=autoscaling,
        max_ongoing_requests=max_ongoing_requests,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
    )(VideoLlavaServer)
    load = dict(device=device, dtype=dtype, quantize=quantize)
    chat = dict(
        model_id=model_id if model_id is not None else str(model),
        allowed_media_dir=None if allowed_media_dir is None else str(allowed_media_dir),
        allow_remote_media=allow_remote_media,
        max_media_mb=max_media_mb,
        num_frames=num_frames,
        max_new_tokens=max_new_tokens,
    )
    return deployment.bind(str(model), load, chat)
