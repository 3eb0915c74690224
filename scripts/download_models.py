#!/usr/bin/env python3
"""Downloads models Flover serves from their public source (the Hugging Face hub), checked.

    scripts/download-models.sh [--dest DIR] [--revision REV] [NAME ...]
    scripts/download-models.sh --list

NAME is one of the catalogue below (default: stories260k, the test model). Each model
goes into DIR/<folder>/ (DIR defaults to ./models). Every file is checked before it gets
its final name:
  - stories260k: against the sha256 sums written here;
  - hub models: against the checksums the hub lists for that revision of the repository
    (/api/models/<repo>/tree/<rev>): the LFS sha256 of weight files, the git blob sha1 of
    small files. Pin --revision to a commit to get the same bytes every time.
Files already present with the right checksum are kept; a wrong one is fetched again.
A download goes to <file>.part first and resumes from it when interrupted; progress is
printed. The hub address comes from $HF_ENDPOINT (default https://huggingface.co), so a
mirror works; $HF_TOKEN, when set, is sent as a bearer token (gated models).
Standard library only: runs with the python3 the project installs.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHUNK = 1 << 20

# name -> (repository, folder under DIR, files, fixed sha256 sums or None, subfolder in repo)
CATALOGUE = {
    "stories260k": {
        "repo": "karpathy/tinyllamas",
        "subdir": "stories260K",
        "folder": "stories260K",
        "files": ["stories260K.bin", "tok512.bin"],
        "sha256": {
            "stories260K.bin": "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
            "tok512.bin": "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
        },
        "about": "llama2.c stories260K (260K parameters) and its tokenizer: the test model",
    },
    "tinyllama-1.1b-chat": {
        "repo": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "folder": "TinyLlama-1.1B-Chat-v1.0",
        "files": ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json"],
        "about": "TinyLlama 1.1B chat, Hugging Face folder (bf16 safetensors, SentencePiece-BPE tokenizer.json)",
    },
    "qwen2-0.5b-instruct": {
        "repo": "Qwen/Qwen2-0.5B-Instruct",
        "folder": "Qwen2-0.5B-Instruct",
        "files": ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                  "tokenizer_config.json"],
        "about": "Qwen2 0.5B instruct, Hugging Face folder (bf16 safetensors, byte-level BPE, ChatML)",
    },
    "tinyllama-1.1b-chat-q8_0": {
        "repo": "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
        "folder": "TinyLlama-1.1B-Chat-v1.0-GGUF",
        "files": ["tinyllama-1.1b-chat-v1.0.Q8_0.gguf"],
        "about": "TinyLlama 1.1B chat as a Q8_0 GGUF file",
    },
    "qwen2-0.5b-instruct-q8_0": {
        "repo": "Qwen/Qwen2-0.5B-Instruct-GGUF",
        "folder": "Qwen2-0.5B-Instruct-GGUF",
        "files": ["qwen2-0_5b-instruct-q8_0.gguf"],
        "about": "Qwen2 0.5B instruct as a Q8_0 GGUF file (byte-level BPE vocabulary)",
    },
}


class DownloadError(Exception):
    pass


def log(msg):
    print(f"download-models: {msg}", flush=True)


def request(url, headers=None):
    headers = dict(headers or {})
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


def open_url(url, headers=None):
    last = None
    for attempt in range(3):
        try:
            return urllib.request.urlopen(request(url, headers), timeout=60)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise DownloadError(f"{url}: HTTP {e.code} (a gated model? set HF_TOKEN)") from e
            if e.code in (404, 416) or e.code < 500:
                raise
            last = e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            last = e
        time.sleep(1 + 2 * attempt)
    raise DownloadError(f"{url}: {last} (no network? behind a proxy? set https_proxy)")


def hub_checksums(endpoint, repo, revision, subdir):
    """path -> ("sha256", hex) for LFS files, ("git-sha1", hex) for the others."""
    path = f"/{subdir}" if subdir else ""
    url = f"{endpoint}/api/models/{repo}/tree/{urllib.parse.quote(revision, safe='')}{path}"
    try:
        with open_url(url) as r:
            entries = json.loads(r.read(64 << 20))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code}: cannot list {repo} at revision {revision}") from e
    except json.JSONDecodeError as e:
        raise DownloadError(f"{url}: not a JSON listing ({e})") from e
    sums = {}
    if not isinstance(entries, list):
        raise DownloadError(f"{url}: not a JSON list of files")
    for e in entries:
        if not isinstance(e, dict) or e.get("type") != "file" or not isinstance(e.get("path"), str):
            continue
        name = e["path"].rsplit("/", 1)[-1]
        lfs = e.get("lfs")
        if isinstance(lfs, dict) and isinstance(lfs.get("oid"), str):
            sums[name] = ("sha256", lfs["oid"].removeprefix("sha256:"))
        elif isinstance(e.get("oid"), str):
            sums[name] = ("git-sha1", e["oid"])
    return sums


def checksum_of(path, kind):
    size = os.path.getsize(path)
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch(url, part):
    """Downloads url into `part`, resuming what is there; prints progress."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        r = open_url(url, headers)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is complete
            return
        raise DownloadError(f"{url}: HTTP {e.code}") from e
    with r:
        if have and r.status != 206:  # the server ignored the range: start over
            have = 0
        total = r.headers.get("Content-Length")
        total = int(total) + have if total and total.isdigit() else None
        done, shown = have, time.monotonic()
        with open(part, "ab" if have else "wb") as out:
            while chunk := r.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - shown >= 2:
                    shown = time.monotonic()
                    pct = f" ({100 * done / total:.0f}%)" if total else ""
                    log(f"  {os.path.basename(part)[:-5]}: {done / 1e6:.1f} MB{pct}")


def download_model(name, dest, endpoint, revision):
    entry = CATALOGUE[name]
    folder = os.path.join(dest, entry["folder"])
    os.makedirs(folder, exist_ok=True)
    subdir = entry.get("subdir", "")
    if "sha256" in entry:
        sums = {f: ("sha256", s) for f, s in entry["sha256"].items()}
    else:
        sums = hub_checksums(endpoint, entry["repo"], revision, subdir)
    for file in entry["files"]:
        if file not in sums:
            raise DownloadError(f"{entry['repo']} at revision {revision} has no file {file} (or no checksum for it)")
        kind, want = sums[file]
        path = os.path.join(folder, file)
        if os.path.exists(path):
            if checksum_of(path, kind) == want:
                log(f"{path} present, {kind} ok")
                continue
            log(f"{path} has a wrong {kind}; downloading it again")
        repo_path = f"{subdir}/{file}" if subdir else file
        url = f"{endpoint}/{entry['repo']}/resolve/{urllib.parse.quote(revision, safe='')}/{repo_path}"
        part = path + ".part"
        log(f"{url} -> {path}")
        fetch(url, part)
        have = checksum_of(part, kind)
        if have != want:
            os.remove(part)
            raise DownloadError(f"{url} has {kind} {have}, expected {want}; not installing it")
        os.replace(part, path)
    log(f"{name}: {folder}")
    return folder


def main(argv):
    p = argparse.ArgumentParser(prog="download-models.sh", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="models to fetch (default: stories260k)")
    p.add_argument("--dest", default="./models", help="folder to put the models in (default ./models)")
    p.add_argument("--revision", default="main", help="repository revision (branch, tag or commit)")
    p.add_argument("--list", action="store_true", help="list the models this script knows")
    args = p.parse_args(argv)
    if args.list:
        for name, e in CATALOGUE.items():
            print(f"{name:28} {e['repo']:42} {e['about']}")
        return 0
    names = args.names or ["stories260k"]
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        print(f"download-models: unknown model {', '.join(unknown)}; known: {', '.join(CATALOGUE)}", file=sys.stderr)
        return 2
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        for name in names:
            download_model(name, args.dest, endpoint, args.revision)
    except (DownloadError, OSError) as e:
        print(f"download-models: {e}", file=sys.stderr)
        return 1
    log(f"done; models in {os.path.abspath(args.dest)} (export FLOVER_MODELS_DIR=that folder for the tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
