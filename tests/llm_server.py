"""Serve SmolLM2 over llama.cpp's OpenAI-compatible HTTP API until killed (a test helper)."""

import sys
import time

from ragline.adapters.generators.local import serve_http

if __name__ == "__main__":
    server = serve_http(int(sys.argv[1]), threads=1, context_tokens=2048, parallel=int(sys.argv[2]))
    print(f"listening on {server.listening_address}", flush=True)
    while True:
        time.sleep(3600)
