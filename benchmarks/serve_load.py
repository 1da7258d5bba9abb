"""Load on `ias serve` over loopback: many concurrent clients against the zoo policy, against
the same questions sampled in one batched call in process. Prints one JSON line.

    python benchmarks/serve_load.py [--requests 256] [--clients 64] [--n 8] [--max-tokens 64]
    python benchmarks/serve_load.py --strategy ias-adaptive [--calibrator CAL] [--tuning T] [--n-max 16]

Figures: answered / failed requests (any non-200), p50 / p99 latency, questions per
second through the server and in one in-process batch (same prompts, n, seeds), and their
ratio (the batching ratio: what concurrent requests keep of one batch's throughput), the
429s of a burst past a small queue, and how long a departed client's work takes to be
dropped. Bounded: every request has a timeout, the loops a fixed count.

With `--strategy`, the server answers each question with that method (`ias serve
--strategy`): the same figures against the engine solving the same questions in process, in
one batch and in batches of `--clients` questions (`ias solve --batch-problems CLIENTS`: the
most questions the server ever has at once), the served answers' accuracy, and generated
tokens per question against fixed Best-of-N at the smallest N as accurate (in process).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ias.policy.base import load_policy
from ias.serve import make_server
from ias.serve.limits import ServeLimits
from ias.tasks.base import get_task


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, float]:
    """(status, seconds) of one completion request."""
    started = time.monotonic()
    request = urllib.request.Request(
        url + "/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError:
        status = -1  # reset, refused, timed out
    return status, time.monotonic() - started


def run_server(policy, limits: ServeLimits):
    server = make_server(policy, "arith-weak", port=0, limits=limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--strategy", help="serve this method (ias serve --strategy) instead of plain sampling")
    parser.add_argument("--calibrator", help="with --strategy: the PRM's calibrator folder")
    parser.add_argument("--tuning", help="with --strategy ias-adaptive: tuning.json of `ias eval --tune-split`")
    parser.add_argument("--n-max", type=int, default=16, help="with --strategy: the method's n_max")
    args = parser.parse_args()
    if args.strategy:
        print(json.dumps(strategy_load(args)))
        return
    policy = load_policy("arith-weak")
    params = dataclasses.replace(policy.defaults, max_tokens=args.max_tokens)
    prompts = [p.question + "\n\n" for p in get_task("arith").problems("test")[: args.requests]]
    bodies = [{"prompt": q, "n": args.n, "seed": k, "max_tokens": args.max_tokens} for k, q in enumerate(prompts)]
    policy.sample(prompts[:8], 2, params, list(range(8)))  # warm-up

    started = time.monotonic()
    policy.sample(prompts, args.n, params, list(range(len(prompts))))
    one_batch_s = time.monotonic() - started

    server = run_server(policy, ServeLimits(access_log=False))
    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(lambda body: post(server.url, body), bodies))
    served_s = time.monotonic() - started
    latencies = sorted(t for status, t in results if status == 200)

    # A client that leaves: how long until its work is gone from the queue.
    big = {"prompt": prompts[:8], "n": 256, "seed": 1, "max_tokens": args.max_tokens}
    raw = json.dumps(big).encode()
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    conn = socket.create_connection((host, int(port)))
    conn.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(raw)).encode()
        + b"\r\n\r\n"
        + raw
    )
    time.sleep(0.3)
    left = time.monotonic()
    conn.close()
    while server.state.scheduler.depth > 0 and time.monotonic() - left < 120:
        time.sleep(0.02)
    dropped_after_s = time.monotonic() - left
    server.shutdown()
    server.server_close()

    # A burst past a small queue: the excess is answered 429 at once, nothing hangs.
    server = run_server(policy, ServeLimits(access_log=False, max_queue=4))
    with ThreadPoolExecutor(32) as pool:
        burst = list(pool.map(lambda body: post(server.url, {**body, "n": 64}, timeout=120), bodies[:32]))
    server.shutdown()
    server.server_close()

    print(
        json.dumps(
            {
                "requests": len(bodies),
                "clients": args.clients,
                "n": args.n,
                "max_tokens": args.max_tokens,
                "answered": sum(status == 200 for status, _ in results),
                "failed": sum(status != 200 for status, _ in results),
                "p50_s": round(statistics.median(latencies), 3) if latencies else None,
                "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3)
                if latencies
                else None,
                "served_questions_per_s": round(len(bodies) / served_s, 2),
                "one_batch_questions_per_s": round(len(bodies) / one_batch_s, 2),
                "batching_ratio": round(one_batch_s / served_s, 3),
                "burst": {
                    "sent": len(burst),
                    "ok": sum(s == 200 for s, _ in burst),
                    "429": sum(s == 429 for s, _ in burst),
                    "other": sum(s not in (200, 429) for s, _ in burst),
                    "slowest_s": round(max(t for _, t in burst), 2),
                },
                "departed_client_dropped_after_s": round(dropped_after_s, 2),
            }
        )
    )


def strategy_load(args) -> dict:
    """The load figures of a server answering with a method, against one in-process batch."""
    from ias.calibration.calibrate import calibrated_prm
    from ias.loaders import live_method, sampling_params
    from ias.methods.base import Question
    from ias.methods.engine import run_method
    from ias.methods.sources import LiveSource
    from ias.prm.base import load_prm
    from ias.specs import MethodSpec
    from ias.types import Problem

    task, policy = get_task("arith"), load_policy("arith-weak")
    prm = load_prm("arith-prm")
    if args.calibrator:
        prm = calibrated_prm(prm, args.calibrator)
    method = live_method(MethodSpec(args.strategy, {"n_max": args.n_max}, args.tuning))
    problems = task.problems("test")[: args.requests]
    params = sampling_params(policy)
    questions = [Question(Problem(f"seed-{k}", p.question, ""), task.extract) for k, p in enumerate(problems)]

    def batch(chosen, size: int | None = None) -> tuple[list, float]:
        """`chosen` on every question in process, `size` questions at a time (all at once: None)."""
        started, answers = time.monotonic(), []
        size = size or len(questions)
        for start in range(0, len(questions), size):
            answers += run_method(
                chosen, questions[start : start + size], LiveSource(task, policy, prm, params, 0, grade=False)
            )
        return answers, time.monotonic() - started

    run_method(method, questions[:4], LiveSource(task, policy, prm, params, 0, grade=False))  # warm-up
    in_process, one_batch_s = batch(method)
    _, client_batches_s = batch(method, args.clients)  # `ias solve --batch-problems CLIENTS`
    # The server as operators run it: `ias serve` in a process of its own (the clients' threads
    # here do not share its interpreter).
    command = [
        sys.executable,
        "-m",
        "ias.cli",
        "serve",
        "--policy",
        "arith-weak",
        "--prm",
        "arith-prm",
        "--strategy",
        args.strategy,
        "--n-max",
        str(args.n_max),
        "--port",
        "0",
        "--no-access-log",
        "--threads",
        os.environ.get("OMP_NUM_THREADS", "1"),
        *(["--calibrator", args.calibrator] if args.calibrator else []),
        *(["--tuning", args.tuning] if args.tuning else []),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = process.stdout.readline().split()[-1]
    replies: list = [None] * len(problems)

    def ask(k: int) -> tuple[int, float]:
        started = time.monotonic()
        request = urllib.request.Request(
            url + "/completions",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"prompt": problems[k].question, "seed": k}).encode(),
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                replies[k] = json.loads(response.read())
                return response.status, time.monotonic() - started
        except urllib.error.HTTPError as err:
            return err.code, time.monotonic() - started
        except OSError:
            return -1, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(ask, range(len(problems))))
    served_s = time.monotonic() - started
    process.terminate()
    process.wait(timeout=60)
    latencies = sorted(t for status, t in results if status == 200)
    answered = [(p, r) for p, r in zip(problems, replies) if r is not None]
    accuracy = sum(task.grade(p, r["choices"][0]["text"]) for p, r in answered) / len(problems)
    tokens = sum(r["usage"]["completion_tokens"] for _, r in answered) / len(problems)
    same = sum(r["choices"][0]["text"] == a.text for (_, r), a in zip(answered, in_process))
    n = 1
    while True:  # fixed Best-of-N at the smallest N as accurate as the served answers
        fixed, _ = batch(live_method(MethodSpec("bon", {"n": n})))
        fixed_accuracy = sum(task.grade(p, a.text or "") for p, a in zip(problems, fixed)) / len(problems)
        if fixed_accuracy >= accuracy or n >= args.n_max:
            break
        n = min(2 * n, args.n_max)
    fixed_tokens = sum(a.generated_tokens for a in fixed) / len(problems)
    return {
        "strategy": args.strategy,
        "requests": len(problems),
        "clients": args.clients,
        "n_max": args.n_max,
        "answered": sum(status == 200 for status, _ in results),
        "failed": sum(status != 200 for status, _ in results),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None,
        "served_questions_per_s": round(len(problems) / served_s, 2),
        "one_batch_questions_per_s": round(len(problems) / one_batch_s, 2),
        "batching_ratio": round(one_batch_s / served_s, 3),
        "solve_in_client_batches_questions_per_s": round(len(problems) / client_batches_s, 2),
        "batching_ratio_vs_client_batches": round(client_batches_s / served_s, 3),
        "same_answer_as_one_batch": same,
        "accuracy": round(accuracy, 4),
        "tokens_per_question": round(tokens, 1),
        "fixed_bon": {"n": n, "accuracy": round(fixed_accuracy, 4), "tokens_per_question": round(fixed_tokens, 1)},
        "token_ratio_vs_fixed": round(tokens / fixed_tokens, 3),
    }


if __name__ == "__main__":
    main()
