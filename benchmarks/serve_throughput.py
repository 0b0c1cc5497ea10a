"""Serving throughput: the Ray Serve application against the server a user would write instead.

Sides, all on the SAME model weights and the SAME requests:

* ``naive``: FastAPI (uvicorn, one worker, 127.0.0.1) holding four ``BartForConditionalGeneration``
  models (``MultiTaskKoBART.export_task``, same weights), one ``generate`` per request in a plain
  ``def`` endpoint (FastAPI's thread pool), in its own process.
* ``colocated`` / ``fanout``: ``build_app(ServeArgs(topology=...))`` + ``serve.run`` on a local Ray
  started in this process (never ``ray stop``), both applications deployed side by side on one
  HTTP proxy (route prefixes ``/colocated`` and ``/fanout``).
* ``ceiling``: the same requests through in-process ``MultiTaskKoBART.generate`` (no HTTP, no Ray):
  each wave of ``clients`` requests is grouped by task and generated one batch per task; a
  request's latency is its wave's time.

Every decoding argument is sent explicitly to every side: greedy (``num_beams=1``,
``do_sample=false``), ``max_new_tokens`` and ``min_new_tokens`` equal (every request generates
exactly that many tokens), ``no_repeat_ngram_size=0``, ``repetition_penalty=1.0``,
``length_penalty=1.0``. Load is closed-loop: ``clients`` asyncio tasks (aiohttp) each send their
next request when the previous one answers, ``requests_per_client`` each, stopped early by
``--cell-cap-s`` (the report says how many completed). Cells are interleaved: for each load
(mixed: request i goes to task i mod 4; single: every request to one task) and each client count,
the four sides run in turn before the next cell. Each side gets an untimed warm-up before the first
cell (every task, several batch sizes).

A further cell compares one request for all four tasks (``tasks: [...]``) against four
single-task requests for the same text (sequentially, and four at once), with the per-stage
timings the Serve responses carry.

Memory: PSS (``psutil``'s ``memory_full_info().pss``, shared pages counted once) of every serving
process, summed per side and named (naive server; Serve ingress, model replicas, Ray's controller
and proxy, other Ray processes), after the load.

    python benchmarks/serve_throughput.py            # KoBART-base dims, 1/8/32 clients
    python benchmarks/serve_throughput.py --quick    # tiny dims, 1-2 clients, few requests

Results (machine-specific) go to ``benchmarks/results/serve_throughput.json`` (git-ignored) with
the commit, date, CPU, cores and load average of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inputs import kobart_tokenizer_path, seed_rows
from run_info import RESULTS_DIR, finish_metadata, run_metadata

RESULTS = RESULTS_DIR / "serve_throughput.json"
SIDES = ("naive", "colocated", "fanout", "ceiling")
HTTP_SIDES = ("naive", "colocated", "fanout")
SINGLE_TASK = "style_transfer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def decoding(max_new_tokens: int) -> dict[str, Any]:
    """The decoding arguments every side gets, explicitly."""
    return {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, "num_beams": 1,
            "do_sample": False, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0, "length_penalty": 1.0}


# --------------------------------------------------------------------------- the naive server

try:
    from pydantic import BaseModel

    class NaiveRequest(BaseModel):
        """The naive server's request: every decoding argument required, so none is left to defaults."""

        task: str
        text: str
        max_new_tokens: int
        min_new_tokens: int
        num_beams: int
        do_sample: bool
        no_repeat_ngram_size: int
        repetition_penalty: float
        length_penalty: float
except ImportError:  # pragma: no cover
    pass


def naive_server(checkpoint: str, port: int, threads: int) -> None:
    """What a user writes: FastAPI + four exported BART models, one generate per request."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import BartForConditionalGeneration

    from multi_task_kobart.tokenizer import load_tokenizer

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(checkpoint)
    models = {path.name: BartForConditionalGeneration.from_pretrained(path).eval()
              for path in sorted((Path(checkpoint) / "export").iterdir())}
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/generate")
    def generate(req: NaiveRequest) -> dict[str, Any]:
        from multi_task_kobart.tokenizer import encode_sources

        started = time.monotonic()
        ids, _ = encode_sources(tokenizer, [req.text], max_length=258)
        input_ids = torch.tensor(ids)
        kwargs = req.model_dump(exclude={"task", "text"})
        with torch.inference_mode():
            out = models[req.task].generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                            **kwargs)
        return {"outputs": [{"task": req.task, "text": tokenizer.decode(out[0].tolist(), skip_special_tokens=True)}],
                "timings_ms": {"total": (time.monotonic() - started) * 1e3}}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- setup

def build_checkpoint(directory: Path, quick: bool, seed: int) -> dict[str, Any]:
    """A random MultiTaskKoBART (KoBART-base dims, or tiny) + tokenizer, and its four exports."""
    import torch

    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.model_config import MultiTaskKoBARTConfig
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(kobart_tokenizer_path())
    torch.manual_seed(seed)
    config = (MultiTaskKoBARTConfig.tiny(len(tokenizer)) if quick
              else MultiTaskKoBARTConfig(vocab_size=len(tokenizer)))
    model = MultiTaskKoBART(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for task in TASKS:
        model.export_task(task, directory / "export" / task)
    return {"d_model": config.d_model, "encoder_layers": config.encoder_layers,
            "decoder_layers": config.decoder_layers, "vocab_size": config.vocab_size,
            "tokenizer": "../shared/kobart-tokenizer" if kobart_tokenizer_path() else "bundled",
            "parameters": sum(p.numel() for p in model.parameters())}


def load_texts(tokenizer: Any, per_task: int, seed: int) -> tuple[dict[str, list[str]], str]:
    """``per_task`` inputs of each task (``../shared/realdata`` when present, else the bundled
    corpus), at most 200 tokens so no side truncates or refuses one."""
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.tokenizer import encode_sources

    rows, source = seed_rows(seed)
    texts: dict[str, list[str]] = {task: [] for task in TASKS}
    for row in rows:
        text = row["input"].strip()
        if len(texts[row["task"]]) < per_task and text and len(text) < 1500:
            ids, _ = encode_sources(tokenizer, [text], max_length=512)
            if len(ids[0]) <= 202:
                texts[row["task"]].append(text)
    return texts, source


def request_list(texts: dict[str, list[str]], load: str, count: int, offset: int) -> list[tuple[str, str]]:
    tasks = list(texts)
    out = []
    for i in range(count):
        task = tasks[i % len(tasks)] if load == "mixed" else SINGLE_TASK
        pool = texts[task]
        out.append((task, pool[(offset + i // (len(tasks) if load == "mixed" else 1)) % len(pool)]))
    return out


# --------------------------------------------------------------------------- load

async def closed_loop(url: str, requests: list[tuple[str, str]], clients: int, gen: dict[str, Any],
                      cap_s: float) -> dict[str, Any]:
    """``clients`` closed-loop clients; client k sends requests k, k+clients, ..."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + cap_s

    async def client(session: aiohttp.ClientSession, k: int) -> None:
        for task, text in requests[k::clients]:
            if time.monotonic() > stop_at:
                return
            sent = time.monotonic()
            async with session.post(f"{url}/v1/generate", json={"task": task, "text": text, **gen}) as resp:
                body = await resp.text()
                if resp.status != 200:
                    errors.append(f"{resp.status}: {body[:200]}")
                    continue
            latencies.append(time.monotonic() - sent)

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, k) for k in range(clients)))
        wall = time.monotonic() - started
    return summarize(latencies, wall, len(requests), errors)


def summarize(latencies: list[float], wall: float, asked: int, errors: list[str]) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1e3 if ordered else None

    return {"completed": len(latencies), "asked": asked, "errors": len(errors), "error_samples": errors[:3],
            "wall_s": wall, "rps": len(latencies) / wall if wall > 0 else 0.0,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "latency_ms": {"min": ordered[0] * 1e3, "median": statistics.median(ordered) * 1e3,
                           "max": ordered[-1] * 1e3} if ordered else None}


class Ceiling:
    """In-process batched ``generate``: waves of ``clients`` requests, one batch per task."""

    def __init__(self, checkpoint: Path) -> None:
        from multi_task_kobart.model import MultiTaskKoBART
        from multi_task_kobart.tokenizer import load_tokenizer

        self.model = MultiTaskKoBART.from_pretrained(checkpoint)
        self.tokenizer = load_tokenizer(checkpoint)

    def generate(self, task: str, texts: list[str], gen: dict[str, Any]) -> None:
        import torch

        from multi_task_kobart.data.batching import pad_sources
        from multi_task_kobart.tokenizer import PAD_ID, encode_sources

        ids, _ = encode_sources(self.tokenizer, texts, max_length=258)
        input_ids, mask = pad_sources(ids, PAD_ID)
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids, attention_mask=mask, task=task, **gen)

    def run(self, requests: list[tuple[str, str]], clients: int, gen: dict[str, Any], cap_s: float) -> dict[str, Any]:
        latencies: list[float] = []
        started = time.monotonic()
        for start in range(0, len(requests), clients):
            if time.monotonic() - started > cap_s:
                break
            wave = requests[start:start + clients]
            t0 = time.monotonic()
            by_task: dict[str, list[str]] = {}
            for task, text in wave:
                by_task.setdefault(task, []).append(text)
            for task, texts in by_task.items():
                self.generate(task, texts, gen)
            latencies += [time.monotonic() - t0] * len(wave)
        return summarize(latencies, time.monotonic() - started, len(requests), [])


# --------------------------------------------------------------------------- memory

def pss_by_role(root_pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """PSS in MiB of every serving process: the naive server, and this process's Ray children
    (by their ``ray::`` titles), per role. Returns {side: {role: MiB}}."""
    import psutil

    def pss(proc: psutil.Process) -> float:
        try:
            return proc.memory_full_info().pss / 2**20
        except (psutil.Error, AttributeError):
            return 0.0

    out: dict[str, dict[str, float]] = {"naive": {}, "ray": {}}
    naive = psutil.Process(root_pids["naive"])
    out["naive"]["server"] = pss(naive) + sum(pss(c) for c in naive.children(recursive=True))
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        if proc.pid == naive.pid or proc in naive.children(recursive=True):
            continue
        try:
            title = " ".join(proc.cmdline())[:200]
        except psutil.Error:
            continue
        if "ServeController" in title:
            role = "ray: ServeController"
        elif "ProxyActor" in title:
            role = "ray: ProxyActor"
        elif "ServeReplica:" in title:
            role = "replica " + title.split("ServeReplica:", 1)[1].split()[0]
        elif "gcs_server" in title:
            role = "ray: gcs_server"
        elif "raylet" in title:
            role = "ray: raylet"
        elif "ray::IDLE" in title or "default_worker" in title:
            role = "ray: idle workers"
        else:
            role = "ray: other (" + os.path.basename(title.split()[0]) + ")" if title else "ray: other"
        out["ray"][role] = out["ray"].get(role, 0.0) + pss(proc)
    return out


# --------------------------------------------------------------------------- main

def wait_healthy(url: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


def four_tasks(urls: dict[str, str], texts: dict[str, list[str]], gen: dict[str, Any], rounds: int) -> dict[str, Any]:
    """One request for all four tasks vs four single-task requests (one after another, and all four
    at once), one client, same text, per side; Serve sides keep the responses' per-stage timings."""
    import requests as http

    tasks = list(texts)
    result: dict[str, Any] = {}
    for side, url in urls.items():
        one, seq, par, stages = [], [], [], []
        for r in range(rounds):
            text = texts[tasks[r % 4]][r // 4 % len(texts[tasks[r % 4]])]
            if side != "naive":
                t0 = time.monotonic()
                resp = http.post(f"{url}/v1/generate", json={"tasks": tasks, "text": text, **gen}, timeout=600)
                resp.raise_for_status()
                one.append(time.monotonic() - t0)
                stages.append(resp.json()["timings_ms"])
            t0 = time.monotonic()
            for task in tasks:
                http.post(f"{url}/v1/generate", json={"task": task, "text": text, **gen}, timeout=600).raise_for_status()
            seq.append(time.monotonic() - t0)

            async def four() -> None:
                import aiohttp

                async with aiohttp.ClientSession() as session:
                    async def one_task(task: str) -> None:
                        async with session.post(f"{url}/v1/generate", json={"task": task, "text": text, **gen}) as resp:
                            assert resp.status == 200, await resp.text()
                            await resp.read()
                    await asyncio.gather(*(one_task(t) for t in tasks))

            t0 = time.monotonic()
            asyncio.run(four())
            par.append(time.monotonic() - t0)

        def spread(xs: list[float]) -> dict[str, float] | None:
            return {"min": min(xs) * 1e3, "median": statistics.median(xs) * 1e3, "max": max(xs) * 1e3} if xs else None

        entry: dict[str, Any] = {"four_sequential_ms": spread(seq), "four_concurrent_ms": spread(par)}
        if one:
            entry["one_request_ms"] = spread(one)
            keys = ("tokenize", "encode_queue", "encode", "decode_queue", "decode", "total")
            entry["one_request_stages_ms"] = {k: statistics.median(s[k] for s in stages) for k in keys
                                              if all(k in s for s in stages)}
            entry["ratio_one_vs_four_sequential"] = entry["one_request_ms"]["median"] / entry["four_sequential_ms"]["median"]
            entry["ratio_one_vs_four_concurrent"] = entry["one_request_ms"]["median"] / entry["four_concurrent_ms"]["median"]
        result[side] = entry
    return result


def serve_args(checkpoint: Path, topology: str, cores: int, batch: int) -> Any:
    from multi_task_kobart.serving.app import ServeArgs

    ongoing = max(64, 2 * batch + 1)
    # 50 ms, not serve/config.yaml's 10 (set for the small demo model, where generation takes
    # milliseconds): a closed-loop wave of requests trickles in through the proxy and ingress over
    # tens of milliseconds, and with seconds of generation one batch should take all of it.
    model = {"max_batch_size": batch, "max_ongoing_requests": ongoing, "max_queued_requests": 256,
             "batch_wait_timeout_s": 0.05}
    return ServeArgs(model=str(checkpoint), topology=topology, api_key_env=None,
                     ingress={"max_ongoing_requests": ongoing, "max_queued_requests": 256},
                     encoder={**model, "num_cpus": 0.2, "torch_threads": cores},
                     decoder={**model, "num_cpus": 0.15, "torch_threads": 1},
                     colocated={**model, "num_cpus": 0.8, "torch_threads": cores})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny dims, 1-2 clients, few requests")
    parser.add_argument("--clients", type=int, nargs="+", default=None, help="closed-loop client counts")
    parser.add_argument("--requests-per-client", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--cell-cap-s", type=float, default=None, help="time cap per side and cell")
    parser.add_argument("--four-task-rounds", type=int, default=None)
    parser.add_argument("--loads", nargs="+", default=["mixed", "single"], choices=["mixed", "single"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--naive-server", nargs=3, metavar=("CHECKPOINT", "PORT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server[0], int(args.naive_server[1]), int(args.naive_server[2]))
        return

    quick = args.quick
    clients = args.clients or ([1, 2] if quick else [1, 8, 32])
    per_client = args.requests_per_client or (2 if quick else 4)
    max_new = args.max_new_tokens or (4 if quick else 32)
    cap = args.cell_cap_s or (30.0 if quick else 90.0)
    rounds = args.four_task_rounds or (1 if quick else 4)
    gen = decoding(max_new)
    meta = run_metadata()
    cores = meta["cpu_cores"]

    import torch

    torch.set_num_threads(cores)
    tmp = tempfile.TemporaryDirectory(prefix="serve-bench-")
    checkpoint = Path(tmp.name) / "checkpoint"
    t0 = time.monotonic()
    dims = build_checkpoint(checkpoint, quick, args.seed)
    print(f"checkpoint: {dims} ({time.monotonic() - t0:.0f}s)", flush=True)
    ceiling = Ceiling(checkpoint)
    texts, source = load_texts(ceiling.tokenizer, max(8, max(clients) * per_client // 4 + 1), args.seed)

    # The naive server, in its own process.
    naive_port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    naive = subprocess.Popen([sys.executable, __file__, "--naive-server", str(checkpoint), str(naive_port), str(cores)],
                             env=env)
    import ray
    from ray import serve

    from multi_task_kobart.serving.app import build_app

    report: dict[str, Any] = {}
    try:
        ray.init(num_cpus=max(4, cores), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
        serve_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        batch = max(clients)
        for topology in ("colocated", "fanout"):
            serve.run(build_app(serve_args(checkpoint, topology, cores, batch)), name=topology,
                      route_prefix=f"/{topology}")
        urls = {"naive": f"http://127.0.0.1:{naive_port}",
                "colocated": f"http://127.0.0.1:{serve_port}/colocated",
                "fanout": f"http://127.0.0.1:{serve_port}/fanout"}
        for url in urls.values():
            wait_healthy(url, 600)
        print(f"servers up ({time.monotonic() - t0:.0f}s)", flush=True)

        # Warm-up: every side, every task, batch sizes up to 8.
        warm = request_list(texts, "mixed", 8 if not quick else 4, offset=10_000)
        for side, url in urls.items():
            for res in (asyncio.run(closed_loop(url, warm, min(8, len(warm)), gen, 300)),
                        asyncio.run(closed_loop(url, warm[:1], 1, gen, 300))):
                if res["errors"]:
                    raise RuntimeError(f"{side} warm-up failed: {res['error_samples']}")
        ceiling.run(warm, len(warm), gen, 300)
        ceiling.run(warm[:4], 1, gen, 300)
        print(f"warm ({time.monotonic() - t0:.0f}s)", flush=True)

        cells = []
        for load in args.loads:
            for n in clients:
                requests = request_list(texts, load, n * per_client, offset=0)
                cell: dict[str, Any] = {"load": load, "clients": n, "requests": len(requests), "sides": {}}
                order = list(SIDES[len(cells) % 4:] + SIDES[:len(cells) % 4])  # rotate who goes first
                for side in order:
                    if side == "ceiling":
                        res = ceiling.run(requests, n, gen, cap)
                    else:
                        res = asyncio.run(closed_loop(urls[side], requests, n, gen, cap))
                    cell["sides"][side] = res
                    print(f"{load:6s} clients={n:3d} {side:10s} {res['rps']:7.2f} req/s  p50 {res['p50_ms'] or 0:8.0f} ms"
                          f"  p99 {res['p99_ms'] or 0:8.0f} ms  ({res['completed']}/{res['asked']}, "
                          f"{res['errors']} errors)", flush=True)
                sides = cell["sides"]
                cell["ratios"] = {f"{s}_vs_{b}": sides[s]["rps"] / sides[b]["rps"]
                                  for s in ("colocated", "fanout", "ceiling") for b in ("naive", "ceiling")
                                  if s != b and sides[b]["rps"] > 0}
                cell["ratios"].update({f"{s}_p50_vs_naive": sides[s]["p50_ms"] / sides["naive"]["p50_ms"]
                                       for s in ("colocated", "fanout") if sides[s]["p50_ms"] and sides["naive"]["p50_ms"]})
                print("        ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in cell["ratios"].items()), flush=True)
                cells.append(cell)

        four = four_tasks(urls, texts, gen, rounds)
        for side, entry in four.items():
            print(f"four tasks {side:10s} " + json.dumps({k: (round(v["median"]) if isinstance(v, dict) and "median" in v
                                                               else v) for k, v in entry.items()}), flush=True)

        memory = pss_by_role({"naive": naive.pid})
        replicas = {k: v for k, v in memory["ray"].items() if k.startswith("replica ")}
        colocated_models = sum(v for k, v in replicas.items() if k.startswith("replica colocated:Colocated"))
        fanout_models = sum(v for k, v in replicas.items()
                            if k.startswith("replica fanout:") and "Ingress" not in k)
        naive_mib = memory["naive"]["server"]
        # A bare runtime's PSS (python + torch + transformers + Ray, no model), measured now, while the
        # servers share its library pages: the per-process cost that is not parameters.
        bare = subprocess.run([sys.executable, "-c", "import os, psutil, torch, transformers, ray, "
                               "multi_task_kobart.serving.runtime; print(psutil.Process().memory_full_info().pss)"],
                              capture_output=True, text=True, env=env, timeout=300)
        bare_mib = int(bare.stdout.split()[-1]) / 2**20
        n_fanout = sum(1 for k in replicas if k.startswith("replica fanout:") and "Ingress" not in k)
        n_colocated = sum(1 for k in replicas if k.startswith("replica colocated:Colocated"))
        mem = {"pss_mib": memory, "naive_server_mib": naive_mib, "colocated_model_replicas_mib": colocated_models,
               "fanout_model_replicas_mib": fanout_models,
               "colocated_vs_naive": colocated_models / naive_mib, "fanout_vs_naive": fanout_models / naive_mib,
               "bare_runtime_mib": bare_mib,
               "naive_params_mib": naive_mib - bare_mib,
               "colocated_params_mib": colocated_models - n_colocated * bare_mib,
               "fanout_params_mib": fanout_models - n_fanout * bare_mib,
               "note": "PSS after the load; the naive server is one process holding four models; the Serve "
                       "sides' model replicas are Colocated (colocated) or Encoder + 4 decoders (fanout); "
                       "ingress, controller, proxy and Ray's own processes listed separately in pss_mib.ray. "
                       "*_params_mib: the PSS above one bare runtime (python+torch+transformers+ray, no "
                       "model) per process, an estimate of parameter memory"}
        mem["colocated_params_vs_naive"] = mem["colocated_params_mib"] / mem["naive_params_mib"]
        mem["fanout_params_vs_naive"] = mem["fanout_params_mib"] / mem["naive_params_mib"]
        print("memory (PSS MiB): " + json.dumps({k: round(v) for k, v in {**memory['naive'], **memory['ray']}.items()}),
              flush=True)
        print(f"memory ratios: colocated models / naive {mem['colocated_vs_naive']:.2f}, "
              f"fanout models / naive {mem['fanout_vs_naive']:.2f}; above a bare runtime ({bare_mib:.0f} MiB "
              f"per process): naive {mem['naive_params_mib']:.0f}, colocated {mem['colocated_params_mib']:.0f} "
              f"({mem['colocated_params_vs_naive']:.2f}x), fanout {mem['fanout_params_mib']:.0f} "
              f"({mem['fanout_params_vs_naive']:.2f}x) MiB", flush=True)

        report = {"meta": finish_metadata(meta), "dims": "tiny" if quick else "kobart-base", "model": dims,
                  "inputs": source, "decoding": gen, "clients": clients, "requests_per_client": per_client,
                  "cell_cap_s": cap, "single_task": SINGLE_TASK, "torch_threads": cores,
                  "serve_settings": json.loads(serve_args(checkpoint, "fanout", cores, batch).model_dump_json(
                      include={"encoder", "decoder", "colocated", "ingress"})),
                  "cells": cells, "four_tasks": four, "memory": mem}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            naive.terminate()
            naive.wait(30)
            tmp.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
