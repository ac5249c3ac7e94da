"""Token-by-token server-sent events from a dirty app's generator.

    GET /                      -> a tiny page that shows the stream
    GET /generate?prompt=hi    -> text/event-stream, one event per token

The "model" (TokenApp) lives in a dirty worker; its generator yields each
event as bytes, and the WSGI app returns client.stream(...) itself as the
response body: cunicorn sends it chunked, each event as soon as the dirty
worker produced it.  A browser that goes away stops the generator.

Run it with:
  build/cunicorn -c examples/gunicorn_conf.py --chdir examples \\
      --dirty-app sse_app:TokenApp sse_app:application
  curl -N 'localhost:8000/generate?prompt=tell+me+a+story'
"""
import json
import time
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client

PAGE = b"""<!doctype html><meta charset="utf-8"><title>cunicorn SSE</title>
<pre id="out"></pre><script>
const es = new EventSource("/generate?prompt=" + encodeURIComponent("tell me a story"));
es.onmessage = (e) => { document.getElementById("out").textContent += JSON.parse(e.data).token; };
es.addEventListener("end", () => es.close());
</script>
"""


class TokenApp(DirtyApp):
    """Stands in for a language model: loads once, streams tokens."""

    def init(self):
        self.words = ("once upon a time a small unicorn learned to write C "
                      "and every request came back faster than before").split()

    def generate(self, prompt, n=16, delay=0.05):
        """Yield n server-sent events (bytes), one token each, then an
        "end" event."""
        seed = sum(prompt.encode()) if prompt else 0
        for i in range(n):
            time.sleep(delay)                    # the model "thinking"
            token = self.words[(seed + i) % len(self.words)] + " "
            yield b"data: " + json.dumps({"i": i, "token": token}).encode() + b"\n\n"
        yield b"event: end\ndata: {}\n\n"


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/generate":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        prompt = q.get("prompt", [""])[0]
        n = min(int(q.get("n", ["16"])[0]), 1000)
        delay = float(q.get("delay", ["0.05"])[0])
        start_response("200 OK", [("Content-Type", "text/event-stream"),
                                  ("Cache-Control", "no-cache")])
        return get_dirty_client().stream("sse_app:TokenApp", "generate",
                                         prompt, n=n, delay=delay)
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(PAGE)))])
    return [PAGE]
