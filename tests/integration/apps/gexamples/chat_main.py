"""FastAPI front of the streaming_chat shape: the asyncio dirty client,
stream_async() relayed as server-sent events, and collected whole."""

import json

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from gunicorn.dirty.client import get_dirty_client_async

app = FastAPI(title="Streaming chat")
CHAT = "gexamples.chat_app:ChatApp"


class ChatRequest(BaseModel):
    prompt: str
    thinking: bool = False


class ChatResponse(BaseModel):
    response: str


@app.post("/chat")
async def chat(request: ChatRequest):
    client = await get_dirty_client_async()
    action = "generate_with_thinking" if request.thinking else "generate"

    async def stream():
        async for token in client.stream_async(CHAT, action, request.prompt):
            yield f"data: {json.dumps({'token': token})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      "Connection": "keep-alive",
                                      "X-Accel-Buffering": "no"})


@app.post("/chat/sync", response_model=ChatResponse)
async def chat_sync(request: ChatRequest):
    client = await get_dirty_client_async()
    action = "generate_with_thinking" if request.thinking else "generate"
    tokens = []
    async for token in client.stream_async(CHAT, action, request.prompt):
        tokens.append(token)
    return ChatResponse(response="".join(tokens))


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/", response_class=HTMLResponse)
async def index():
    return "<!DOCTYPE html><title>chat</title><p>POST /chat</p>"
