"""FastAPI front of the embedding_service shape: pydantic models, and the
*sync* dirty client called from an async endpoint (as that example does)."""

from fastapi import FastAPI
from pydantic import BaseModel

from gunicorn.dirty.client import get_dirty_client

app = FastAPI()


class EmbedRequest(BaseModel):
    texts: list[str]


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]


@app.post("/embed", response_model=EmbedResponse)
async def embed(request: EmbedRequest):
    client = get_dirty_client()
    result = client.execute("gexamples.embedding_app:EmbeddingApp", "embed", request.texts)
    return EmbedResponse(embeddings=result)


@app.get("/health")
async def health():
    return {"status": "ok"}
