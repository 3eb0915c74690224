#!/usr/bin/env python3
"""A scripted OpenAI-style server for the transport test of `flover bench --api openai`.

A fake for the client's HTTP/SSE side only (the real servers are measured by
scripts/bench-side-by-side.sh): GET /v1/models lists "fake-model" (vocabulary 512);
POST /v1/completions with "stream": true answers one chunk per token, max_tokens of them,
as Server-Sent Events in chunked transfer encoding, cut at awkward places (an event split
across transfer chunks, CRLF line endings, a comment line, a data field split over two
lines), then a usage chunk and [DONE]. Every request body and the most requests seen in
flight at once are appended to --log as JSON lines. With --mode error, each stream sends
one token and then an error event; with --mode cut, one token and [DONE] without a
finish reason.

Prints the port it listens on (127.0.0.1, chosen by the system) on stdout, then serves
until killed.
"""
import argparse
import http.server
import json
import sys
import threading
import time

lock = threading.Lock()
state = {"in_flight": 0, "max_in_flight": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        if self.path != "/v1/models":
            return self.send_json(404, {"error": {"message": "no such path", "type": "invalid_request_error"}})
        self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "meta": {"n_vocab": 512}}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/completions" or not body.get("stream"):
            return self.send_json(400, {"error": {"message": "this fake streams /v1/completions only"}})
        with lock:
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            with open(args.log, "a") as log:
                log.write(json.dumps({"body": body, "max_in_flight": state["max_in_flight"]}) + "\n")
        self.stream(body)

    def leave(self):
        """Called before the last event: once the client has it, the request is over."""
        with lock:
            state["in_flight"] -= 1

    def stream(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        n = body["max_tokens"] if args.mode == "ok" else 1
        prompt = body["prompt"]
        for i in range(n):
            time.sleep(0.005)
            chunk = {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                     "choices": [{"index": 0, "text": " w%d" % i, "finish_reason": "length" if i == n - 1 and args.mode == "ok" else None}]}
            event = ("data: " + json.dumps(chunk) + "\n\n").encode()
            if i % 3 == 0:    # split inside the event, across two transfer chunks
                self.chunk(event[:7])
                self.chunk(event[7:])
            elif i % 3 == 1:  # CRLF line endings, preceded by a keep-alive comment
                self.chunk(b": keep-alive\r\n\r\n" + event.replace(b"\n", b"\r\n"))
            else:
                self.chunk(event)
        self.leave()
        if args.mode == "error":
            self.chunk(b'data: {"error": {"message": "boom: the fake failed", "type": "server_error"}}\n\n')
        elif args.mode == "cut":  # as llama-cpp-python ends a stream when another request waits
            self.chunk(b"data: [DONE]\n\n")
        else:
            usage = {"id": "cmpl-1", "object": "text_completion", "choices": [],
                     "usage": {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}}
            # The usage chunk's JSON as two data lines (joined by a newline: still JSON).
            text = json.dumps(usage)
            cut = text.index('"usage"')
            self.chunk(("data: " + text[:cut] + "\ndata: " + text[cut:] + "\n\n").encode())
            self.chunk(b"data: [DONE]\n\n")
        self.chunk(b"")


parser = argparse.ArgumentParser()
parser.add_argument("--log", required=True)
parser.add_argument("--mode", choices=["ok", "error", "cut"], default="ok")
args = parser.parse_args()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
