"""A dirty app of the embedding_service shape: no __call__ of its own (the
base class dispatches), a "model" loaded in init() whose encode() returns
an array-like with .tolist(), released in close()."""

import hashlib

from gunicorn.dirty.app import DirtyApp


class _Vectors:
    def __init__(self, rows):
        self.rows = rows

    def tolist(self):
        return [list(r) for r in self.rows]


class _FakeEncoder:
    """Stands in for a sentence-transformers model: 4 floats per text,
    derived from its hash, so the same text always gets the same vector."""

    dim = 4

    def encode(self, texts):
        rows = []
        for t in texts:
            h = hashlib.sha256(t.encode()).digest()
            rows.append([round(b / 255.0, 4) for b in h[:self.dim]])
        return _Vectors(rows)


class EmbeddingApp(DirtyApp):
    def init(self):
        self.model = _FakeEncoder()

    def embed(self, texts):
        embeddings = self.model.encode(texts)
        return embeddings.tolist()

    def close(self):
        del self.model
