"""Seed the fuzz corpus with every line of the shared vectors files and a few server answers."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ANSWERS = [
    b'{"command":"VEND","id":"3f9c0a1b2c4d","slot":2}',
    b'{"command":null,"poll_again_ms":0}',
    b'{"reconcile":["A1B2C3D4E5F6","0123456789ab"],"status":"registered"}',
    b'{"status":"pending_approval","retry_ms":2000}',
    b'{"detail":"revoked","error":"revoked"}',
]


def main() -> None:
    """corpus_dir vectors.tsv...: one file per seed, named by its hash."""
    corpus = Path(sys.argv[1])
    seeds = list(ANSWERS)
    for vectors in sys.argv[2:]:
        for row in Path(vectors).read_bytes().splitlines():
            if row and not row.startswith(b"#"):
                seeds.extend(col for col in row.split(b"\t")[1:2])
    for seed in seeds:
        (corpus / hashlib.sha256(seed).hexdigest()[:16]).write_bytes(seed)


if __name__ == "__main__":
    main()
