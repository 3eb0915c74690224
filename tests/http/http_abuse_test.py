"""Hostile and heavy HTTP traffic against a real cluster's HTTP endpoint.

Run by CTest under `flover up --exec` (FLOVER_HTTP_ENDPOINT, FLOVER_COORDINATOR_PID set):
  1. 10,000 malformed requests, at most 64 at a time: broken JSON, wrong types, bodies
     over the limit, invalid UTF-8, broken request lines and headers, half-closed
     connections, slow trickles. Each must get a well-formed HTTP error with an OpenAI
     error body, or a closed connection; never a 2xx, never a hang.
  2. The coordinator still answers /health and a completion, and its resident memory
     comes back to within a bound of its baseline.
  3. 1,000 concurrent SSE streams on loopback: every one ends with [DONE] and no error.
Prints the figures it measured (counts, memory, stream time) for docs/http.md.
"""

import asyncio
import json
import os
import random
import resource
import sys
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["FLOVER_HTTP_ENDPOINT"])
HOST, PORT = URL.hostname, URL.port
PID = int(os.environ["FLOVER_COORDINATOR_PID"])
MODEL = "stories260K"
MALFORMED = int(os.environ.get("FLOVER_TEST_MALFORMED", "10000"))
STREAMS = int(os.environ.get("FLOVER_TEST_STREAMS", "1000"))
# Growth of the coordinator's VmRSS over the baseline after the flood (CTest sets it: 64,
# or 256 under AddressSanitizer).
MEMORY_BOUND_MIB = int(os.environ.get("FLOVER_TEST_MEMORY_BOUND_MIB", "64"))
WAIT = 300  # seconds: a generous bound for anything the server must do, never a measurement


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def request(method, path, body=b"", headers=None, content_length=None):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{PORT}", "Content-Type: application/json"]
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def completion(**fields):
    return request("POST", "/v1/completions", json.dumps(fields).encode())


# Each case: (name, bytes to send, how: "send" | "half-close" | "trickle"). The bytes of a
# case are what a hostile client sends; the expected answer is a 4xx/5xx or a close.
def cases():
    wrong_types = [
        {"model": MODEL, "prompt": 5},
        {"model": MODEL, "prompt": "x", "max_tokens": "ten"},
        {"model": MODEL, "prompt": "x", "temperature": "hot"},
        {"model": MODEL, "prompt": "x", "n": -1},
        {"model": MODEL, "prompt": "x", "stop": 7},
        {"model": MODEL, "prompt": [[1, "a"]]},
        {"model": MODEL, "prompt": "x", "logprobs": 99},
        {"model": MODEL, "prompt": "x", "top_p": 5},
        {"model": MODEL, "prompt": "x", "stream": "yes"},
        {"model": MODEL, "messages": "hi"},
        {"model": 12, "prompt": "x"},
        [],
        "just a string",
    ]
    broken_json = [b"{", b"{\"model\":", b"nul", b"{\"prompt\": \"x\",}", b"\x00\x01\x02", b"[" * 10000]
    bad_utf8 = [b'{"model":"' + MODEL.encode() + b'","prompt":"\xff\xfe\xc3"}', b'{"prompt":"\xed\xa0\x80"}']
    raw = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/models HTTP/1.1\r\nX: " + b"a" * 200000 + b"\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        b"DELETE /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n",
        request("POST", "/v1/completions", b"{}", content_length=1 << 30),
        request("POST", "/v1/completions", b"{" + b" " * (2 << 20) + b"}"),
    ]
    out = []
    for body in wrong_types:
        out.append(("wrong type", request("POST", "/v1/completions", json.dumps(body).encode()), "send"))
        out.append(("wrong type", request("POST", "/v1/chat/completions", json.dumps(body).encode()), "send"))
    for body in broken_json + bad_utf8:
        out.append(("broken json / utf-8", request("POST", "/v1/completions", body), "send"))
    for data in raw:
        out.append(("broken http", data, "send"))
    out.append(("half-closed", completion(model=MODEL, prompt="x", max_tokens=2)[:40], "half-close"))
    out.append(("half-closed", request("POST", "/v1/completions", b'{"model":', content_length=100), "half-close"))
    out.append(("trickle", completion(model=MODEL, prompt="x", max_tokens=2), "trickle"))
    return out


async def read_answer(reader):
    """The status of a whole HTTP response, None for a close without one. Raises
    ValueError for a response that is not well-formed or has no OpenAI error body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[:2]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length)
    status = int(status)
    if status >= 400 and "error" not in json.loads(body):
        raise ValueError(f"error {status} without an error body: {body[:200]!r}")
    return status


async def one_case(name, data, how, tally):
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError as e:
        tally.setdefault("connect refused", 0)
        tally["connect refused"] += 1
        return
    try:
        if how == "trickle":
            for i in range(0, len(data), 7):
                writer.write(data[i:i + 7])
                await writer.drain()
                await asyncio.sleep(0.2)
        else:
            writer.write(data)
            await writer.drain()
            if how == "half-close":
                writer.write_eof()
        try:
            status = await asyncio.wait_for(read_answer(reader), WAIT)
            outcome = f"{status}"
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            outcome = "closed"
        if outcome.startswith("2") and how != "trickle":
            raise AssertionError(f"{name}: a malformed request was answered {outcome}: {data[:120]!r}")
        tally[outcome] = tally.get(outcome, 0) + 1
    except (ConnectionResetError, BrokenPipeError):
        tally["closed"] = tally.get("closed", 0) + 1
    finally:
        writer.close()


async def flood():
    all_cases = cases()
    random.seed(7)
    picked = [random.choice(all_cases) for _ in range(MALFORMED)]
    tally = {}
    limit = asyncio.Semaphore(64)

    async def guarded(case):
        async with limit:
            await one_case(*case, tally)

    await asyncio.gather(*(guarded(c) for c in picked))
    return tally


async def stream_one(i, done):
    reader, writer = await asyncio.open_connection(HOST, PORT)
    body = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16, "stream": True,
                       "temperature": 0.8, "seed": i}).encode()
    writer.write(request("POST", "/v1/completions", body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    data = b""
    while b"data: [DONE]" not in data:
        chunk = await reader.read(65536)
        if not chunk:
            raise AssertionError(f"stream {i} closed before [DONE]")
        data += chunk
    writer.close()
    assert b'"error"' not in data, data[:300]
    done.append(i)


async def streams():
    done = []
    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(stream_one(i, done) for i in range(STREAMS))), WAIT * 4)
    return len(done), time.monotonic() - start


async def healthy():
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await read_answer(reader)
    writer.close()
    return status


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    baseline = rss_mib(PID)
    start = time.monotonic()
    tally = asyncio.run(flood())
    flood_s = time.monotonic() - start
    assert asyncio.run(healthy()) == 200
    after_flood = rss_mib(PID)
    n_streams, streams_s = asyncio.run(streams())
    after_streams = rss_mib(PID)
    assert asyncio.run(healthy()) == 200
    print(json.dumps({
        "malformed_requests": MALFORMED, "answers": tally, "flood_seconds": round(flood_s, 1),
        "coordinator_rss_mib": {"baseline": round(baseline, 1), "after_flood": round(after_flood, 1),
                                "after_streams": round(after_streams, 1)},
        "concurrent_streams": n_streams, "streams_seconds": round(streams_s, 1)}, indent=1))
    assert sum(tally.values()) == MALFORMED, tally
    assert n_streams == STREAMS
    assert after_flood - baseline <= MEMORY_BOUND_MIB, (baseline, after_flood)
    return 0


if __name__ == "__main__":
    sys.exit(main())
