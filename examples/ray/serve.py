"""Deploy Video-LLaVA on Ray Serve, ask it about a video with the `openai` client, and watch
the deployment scale back to zero replicas once it is idle.

    pip install "./bindings-python[ray]" openai
    python examples/ray/serve.py test-data/videos/h264_opengop.mp4 --model DIR [--address auto]

The first request finds no replica: it waits while Serve starts one and the model loads (a
cold start), then answers. After --idle seconds without traffic the replica is stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ray
from ray import serve
from video_llava.ray import serve_app


def replicas(app: str) -> int:
    status = serve.status().applications[app].deployments["VideoLlava"]
    return int(status.replica_states.get("RUNNING", 0))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("video", type=Path)
    p.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    p.add_argument(
        "--address", default=None, help="a running cluster ('auto'); default: local"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--idle", type=float, default=30.0, help="seconds idle before scaling to zero"
    )
    p.add_argument("--question", default="What happens in this video?")
    args = p.parse_args()

    from openai import OpenAI  # the official client, as any user would call it

    ray.init(address=args.address)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    video = args.video.resolve()
    serve.run(
        serve_app(
            args.model,
            model_id="video-llava",
            allowed_media_dir=video.parent,
            idle_timeout_s=args.idle,
        ),
        name="video-llava",
        route_prefix="/",
    )
    print(f"deployed; replicas running: {replicas('video-llava')}")
    client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="unused")
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="video-llava",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": video.as_uri()}},  # type: ignore[misc,list-item]
                    {"type": "text", "text": args.question},
                ],
            }
        ],
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print(f"\n(answered in {time.perf_counter() - started:.1f} s, cold start included)")
    while replicas("video-llava") > 0:
        print(
            f"replicas running: {replicas('video-llava')}; waiting for the idle scale-down"
        )
        time.sleep(5)
    print("scaled to zero: no replica, no model in memory")
    serve.shutdown()


if __name__ == "__main__":
    main()
