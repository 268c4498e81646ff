#!/usr/bin/env python3
"""Load test of `video-llava serve` on loopback, bounded in clients, requests and time.

Starts the server (the binary given, the model given, a fresh data dir), then measures:

1. time to first token (TTFT) of a streamed chat completion with a video, idle server;
2. requests per second of GET /v1/videos/{id}/thumbnail.jpg from N clients, first on an idle
   server, then while a long generation runs (the ratio says how much a generation slows the
   GET routes);
3. a burst of chat requests from N clients against --max-queue Q: every one must end in 200 or
   429 (no 5xx, no transport error), and TTFT under that load;
4. U concurrent uploads: every one 201 and listed afterwards (no lost upload).

Prints one table and exits non-zero when a request ended otherwise. Stdlib only.

    python3 benches/serve_load.py --bin target/release/video-llava \
        --model video-llava/tests/fixtures/tiny-legacy --video test-data/videos/vp9.webm
"""

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def request(host, port, method, path, body=None, headers=None, timeout=120):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data
    finally:
        conn.close()


def stream_ttft(host, port, body, timeout=300):
    """(status, seconds to the first content chunk or None, seconds to the end)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, None, time.perf_counter() - started
        first = None
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return 500, None, time.perf_counter() - started
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
        return 200, first, time.perf_counter() - started
    finally:
        conn.close()


def hammer(host, port, path, clients, seconds):
    """GETs `path` from `clients` threads for `seconds`; (requests/s, statuses)."""
    stop = time.perf_counter() + seconds
    statuses = {}
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while time.perf_counter() < stop:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            with lock:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return sum(statuses.values()) / elapsed, statuses


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--video", required=True)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (N)")
    p.add_argument("--burst", type=int, default=24, help="chat requests in the burst (M)")
    p.add_argument("--max-queue", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=8, help="generations decoded together (1: one at a time)")
    p.add_argument("--uploads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each GET phase")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--long-tokens", type=int, default=3000, help="the generation GETs run beside")
    args = p.parse_args()

    data_dir = tempfile.mkdtemp(prefix="video-llava-load-")
    proc = subprocess.Popen(
        [args.bin, "serve", "--model", args.model, "--port", "0", "--data-dir", data_dir,
         "--max-queue", str(args.max_queue), "--max-batch", str(args.max_batch),
         "--max-new-tokens", str(args.max_tokens)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    failures = []
    try:
        url = proc.stdout.readline().decode().strip().removeprefix("listening on ")
        parsed = urllib.parse.urlparse(url)
        host, port = parsed.hostname, parsed.port
        deadline = time.time() + 300
        while True:
            try:
                if request(host, port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the model did not load")
            time.sleep(0.05)
        model = json.loads(request(host, port, "GET", "/v1/models")[1])["data"][0]["id"]
        with open(args.video, "rb") as f:
            video = f.read()
        data_url = "data:video/mp4;base64," + base64.b64encode(video).decode()

        def chat(max_tokens, stream=True, with_video=True):
            content = [{"type": "text", "text": "What happens in this video?"}]
            if with_video:
                content.insert(0, {"type": "video_url", "video_url": {"url": data_url}})
            return {"model": model, "stream": stream, "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": content}]}

        status, body = request(host, port, "POST", "/v1/videos?filename=clip" + os.path.splitext(args.video)[1],
                               body=video, headers={"Content-Type": "application/octet-stream"})
        assert status == 201, body
        vid = json.loads(body)["id"]
        thumb = f"/v1/videos/{vid}/thumbnail.jpg"

        # 1. TTFT, idle.
        ttfts = []
        for _ in range(5):
            status, first, _ = stream_ttft(host, port, chat(args.max_tokens))
            assert status == 200 and first is not None
            ttfts.append(first)

        # 2. GET rps idle, then beside a long generation.
        idle_rps, idle_statuses = hammer(host, port, thumb, args.clients, args.seconds)
        long_result = {}

        def long_generation():
            long_result["r"] = stream_ttft(host, port, chat(args.long_tokens, with_video=False))

        gen = threading.Thread(target=long_generation)
        gen.start()
        time.sleep(0.5)
        busy_rps, busy_statuses = hammer(host, port, thumb, args.clients, args.seconds)
        gen.join()
        for s in (idle_statuses, busy_statuses):
            if set(s) != {200}:
                failures.append(f"thumbnail statuses {s}")

        # 3. A burst of chats from N clients.
        outcomes = []
        lock = threading.Lock()
        todo = list(range(args.burst))

        def chatter():
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                try:
                    status, first, total = stream_ttft(host, port, chat(args.max_tokens))
                except OSError as e:
                    status, first, total = f"transport: {e}", None, 0
                with lock:
                    outcomes.append((status, first, total))

        threads = [threading.Thread(target=chatter) for _ in range(args.clients)]
        burst_started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst_secs = time.perf_counter() - burst_started
        ok = [o for o in outcomes if o[0] == 200]
        limited = [o for o in outcomes if o[0] == 429]
        other = [o for o in outcomes if o[0] not in (200, 429)]
        if other:
            failures.append(f"burst: {len(other)} requests ended otherwise: {sorted({str(o[0]) for o in other})}")
        loaded_ttft = [o[1] for o in ok if o[1] is not None]

        # 4. Concurrent uploads, all kept.
        up_status = []

        def uploader(i):
            s, b = request(host, port, "POST", f"/v1/videos?filename=up{i}.webm", body=video,
                           headers={"Content-Type": "application/octet-stream"})
            with lock:
                up_status.append((s, json.loads(b).get("id")))

        threads = [threading.Thread(target=uploader, args=(i,)) for i in range(args.uploads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listed = {v["id"] for v in json.loads(request(host, port, "GET", "/v1/videos")[1])["data"]}
        lost = [i for s, i in up_status if s != 201 or i not in listed]
        if lost:
            failures.append(f"uploads lost or refused: {lost}")

        metrics = request(host, port, "GET", "/metrics")[1].decode()
        five_xx = [line for line in metrics.splitlines()
                   if line.startswith("video_llava_http_requests_total") and 'status="5' in line
                   # 503 from /health while the model loaded is the readiness check working.
                   and 'route="/health"' not in line]
        if five_xx:
            failures.append("5xx in /metrics: " + "; ".join(five_xx))

        def ms(xs):
            p90 = sorted(xs)[round(0.9 * (len(xs) - 1))]
            return f"{statistics.median(xs) * 1000:.0f} ms (p90 {p90 * 1000:.0f} ms)"

        print(f"server: {args.bin}, model: {args.model}, video: {args.video}")
        print(f"clients {args.clients}, burst {args.burst}, max-queue {args.max_queue}, max-batch {args.max_batch}, max-tokens {args.max_tokens}")
        print(f"TTFT, idle server (5 streamed chats with the video):  {ms(ttfts)}")
        print(f"GET thumbnail.jpg, idle:                    {idle_rps:8.0f} req/s")
        print(f"GET thumbnail.jpg, during a generation:     {busy_rps:8.0f} req/s  ({busy_rps / idle_rps:.2f}x idle)")
        print(f"burst of {args.burst} chats: {len(ok)} x 200, {len(limited)} x 429, {len(other)} other, in {burst_secs:.1f} s")
        if loaded_ttft:
            print(f"TTFT under the burst (answered ones):       {ms(loaded_ttft)}")
        print(f"uploads: {sum(1 for s, _ in up_status if s == 201)}/{args.uploads} stored and listed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("every request ended in a success or a 429")


if __name__ == "__main__":
    main()
