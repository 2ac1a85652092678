"""A streaming web chat over a swarm: one page, the answer appearing word by word as the swarm generates it.

    python examples/web_chat.py --model ./my-checkpoint --initial-peers ADDR --listen 127.0.0.1:8001

then open http://127.0.0.1:8001/ in a browser (0.0.0.0:8001 to reach it from a phone on the LAN). The page
posts the conversation to /chat, which streams the answer back as plain text while ``generate()`` runs with a
TextIteratorStreamer. One generation at a time: the Python client is shared, and a lock keeps turns apart.
"""

import argparse
import threading

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel
from transformers import AutoTokenizer, TextIteratorStreamer

from swarm import AutoDistributedModelForCausalLM
from swarm.http import serve_app

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>swarm chat</title>
<style>body{font:16px system-ui,sans-serif;max-width:720px;margin:auto;padding:12px}
#log div{margin:8px 0;white-space:pre-wrap}.user{color:#3b6fd8}form{display:flex;gap:8px}
input{flex:1;font:inherit;padding:8px}</style></head><body><h3>Chat with the swarm</h3><div id="log"></div>
<form id="f"><input id="q" autocomplete="off" placeholder="Ask something"><button>Send</button></form>
<script>
const messages = [], log = document.getElementById("log");
document.getElementById("f").onsubmit = async e => {
  e.preventDefault();
  const q = document.getElementById("q"); if (!q.value) return;
  messages.push({role: "user", content: q.value});
  log.insertAdjacentHTML("beforeend", "<div class=user></div><div></div>");
  log.children[log.children.length - 2].textContent = q.value; q.value = "";
  const out = log.lastElementChild, reply = await fetch("chat", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({messages})});
  const reader = reply.body.getReader(), text = new TextDecoder();
  for (;;) { const {done, value} = await reader.read(); if (done) break; out.textContent += text.decode(value); }
  messages.push({role: "assistant", content: out.textContent});
};
</script></body></html>"""


class Chat(BaseModel):
    messages: list[dict[str, str]]
    max_new_tokens: int = 128


def build_app(model, tokenizer) -> FastAPI:
    app, turn = FastAPI(), threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.post("/chat")
    def chat(body: Chat) -> StreamingResponse:
        ids = tokenizer.apply_chat_template(body.messages, add_generation_prompt=True, return_tensors="pt")
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with turn:
                model.generate(ids, max_new_tokens=body.max_new_tokens, do_sample=False, streamer=streamer)

        threading.Thread(target=run, daemon=True).start()
        return StreamingResponse(streamer, media_type="text/plain; charset=utf-8")  # each piece as it comes

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the checkpoint the swarm serves (its tokenizer is read from it)")
    p.add_argument("--initial-peers", nargs="+", required=True)
    p.add_argument("--listen", default="127.0.0.1:8001", metavar="HOST:PORT")
    args = p.parse_args()

    model = AutoDistributedModelForCausalLM.from_pretrained(args.model, initial_peers=args.initial_peers)
    tokenizer = AutoTokenizer.from_pretrained(model.checkpoint.path)
    host, port = args.listen.rsplit(":", 1)
    with model:  # the line is printed once the port listens
        serve_app(build_app(model, tokenizer), host, int(port), "web chat ready: {url}/")


if __name__ == "__main__":
    main()
