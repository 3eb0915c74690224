#!/usr/bin/env python3
"""scripts/download-models.sh against a local stand-in for the Hugging Face hub.

The stand-in (an http.server on 127.0.0.1) serves a repository listing with the
checksums the hub gives (LFS sha256 for weights, git blob sha1 for small files) and
the files themselves, with Range requests. The script under test runs as users run it,
as a subprocess, with HF_ENDPOINT pointing at the stand-in. Nothing leaves loopback.
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "download-models.sh")

REPO = "Qwen/Qwen2-0.5B-Instruct"
FILES = {
    "config.json": b'{"architectures": ["Qwen2ForCausalLM"]}\n',
    "generation_config.json": b'{"eos_token_id": [151645, 151643]}\n',
    "model.safetensors": os.urandom(3 << 20),  # large enough to be fetched in several chunks
    "tokenizer.json": b'{"model": {"type": "BPE"}}\n',
    "tokenizer_config.json": b'{"chat_template": "..."}\n',
}
LFS = {"model.safetensors"}


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub(http.server.ThreadingHTTPServer):
    """Serves FILES for REPO; `corrupt` names files served with wrong bytes, `cut` files
    whose first response stops halfway (a dropped connection)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.corrupt = set()
        self.cut = set()
        self.body_requests = []
        self.range_requests = []


class HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        hub = self.server
        tree = f"/api/models/{REPO}/tree/main"
        prefix = f"/{REPO}/resolve/main/"
        if self.path == tree:
            listing = []
            for name, data in FILES.items():
                e = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
                if name in LFS:
                    e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
                listing.append(e)
            return self.reply(200, json.dumps(listing).encode())
        if self.path.startswith(prefix) and self.path[len(prefix):] in FILES:
            name = self.path[len(prefix):]
            data = FILES[name]
            if name in hub.corrupt:
                data = b"x" + data[1:]
            hub.body_requests.append(name)
            start = 0
            rng = self.headers.get("Range")
            if rng:
                hub.range_requests.append((name, rng))
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    return self.reply(416, b"")
            body = data[start:]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if name in hub.cut:
                hub.cut.discard(name)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.close()
                return
            self.wfile.write(body)
            return
        self.reply(404, b"not found")

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DownloadModelsTest(unittest.TestCase):
    def setUp(self):
        self.hub = Hub()
        threading.Thread(target=self.hub.serve_forever, daemon=True).start()
        self.dir = tempfile.TemporaryDirectory()
        self.dest = self.dir.name
        self.folder = os.path.join(self.dest, "Qwen2-0.5B-Instruct")

    def tearDown(self):
        self.hub.shutdown()
        self.hub.server_close()
        self.dir.cleanup()

    def run_script(self, *args):
        env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{self.hub.server_address[1]}")
        env.pop("HF_TOKEN", None)
        for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(proxy, None)
        return subprocess.run(["bash", SCRIPT, "--dest", self.dest, *args], env=env, capture_output=True,
                              text=True, timeout=300)

    def installed(self):
        out = {}
        for name in FILES:
            path = os.path.join(self.folder, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out[name] = f.read()
        return out

    def test_fetches_every_file_and_checks_it(self):
        r = self.run_script("qwen2-0.5b-instruct")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.installed(), FILES)
        self.assertEqual(sorted(self.hub.body_requests), sorted(FILES))
        self.assertFalse([f for f in os.listdir(self.folder) if f.endswith(".part")])

    def test_a_second_run_keeps_good_files_and_replaces_a_damaged_one(self):
        self.assertEqual(self.run_script("qwen2-0.5b-instruct").returncode, 0)
        with open(os.path.join(self.folder, "config.json"), "wb") as f:
            f.write(b"{}")
        self.hub.body_requests.clear()
        r = self.run_script("qwen2-0.5b-instruct")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.body_requests, ["config.json"])
        self.assertEqual(self.installed(), FILES)
        self.assertIn("present", r.stdout)

    def test_wrong_bytes_are_refused_and_not_installed(self):
        self.hub.corrupt = {"model.safetensors"}
        r = self.run_script("qwen2-0.5b-instruct")
        self.assertEqual(r.returncode, 1)
        self.assertIn("model.safetensors has sha256", r.stderr)
        self.assertIn("not installing it", r.stderr)
        self.assertNotIn("model.safetensors", self.installed())
        self.assertFalse(os.path.exists(os.path.join(self.folder, "model.safetensors.part")))

    def test_a_small_file_with_wrong_bytes_fails_its_git_checksum(self):
        self.hub.corrupt = {"tokenizer.json"}
        r = self.run_script("qwen2-0.5b-instruct")
        self.assertEqual(r.returncode, 1)
        self.assertIn("tokenizer.json has git-sha1", r.stderr)

    def test_an_interrupted_download_resumes_from_its_part_file(self):
        self.hub.cut = {"model.safetensors"}
        first = self.run_script("qwen2-0.5b-instruct")
        # The cut connection either fails the first run (the .part stays) or the
        # short body fails the checksum; a second run must finish the file either way.
        if first.returncode != 0:
            second = self.run_script("qwen2-0.5b-instruct")
            self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(self.installed(), FILES)

    def test_a_partial_file_left_by_an_earlier_run_is_resumed_with_a_range(self):
        os.makedirs(self.folder)
        data = FILES["model.safetensors"]
        with open(os.path.join(self.folder, "model.safetensors.part"), "wb") as f:
            f.write(data[: len(data) // 3])
        r = self.run_script("qwen2-0.5b-instruct")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(("model.safetensors", f"bytes={len(data) // 3}-"), self.hub.range_requests)
        self.assertEqual(self.installed(), FILES)

    def test_unknown_names_and_missing_repositories_are_clear_errors(self):
        r = self.run_script("no-such-model")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown model no-such-model", r.stderr)
        r = self.run_script("tinyllama-1.1b-chat")  # not on the stand-in: its listing is a 404
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot list TinyLlama/TinyLlama-1.1B-Chat-v1.0", r.stderr)

    def test_list_names_every_model(self):
        r = self.run_script("--list")
        self.assertEqual(r.returncode, 0)
        for name in ("stories260k", "tinyllama-1.1b-chat", "qwen2-0.5b-instruct", "qwen2-0.5b-instruct-q8_0"):
            self.assertIn(name, r.stdout)


if __name__ == "__main__":
    unittest.main()
