"""Talk to a swarm through the official ``openai`` SDK, as any OpenAI-compatible tool does.

Start the endpoint first (it joins the swarm as a client):

    python -m swarm.api --model ./my-checkpoint --initial-peers ADDR --listen 127.0.0.1:8000 --served-name my-model

then:

    python examples/openai_chat.py --base-url http://127.0.0.1:8000/v1 --model my-model --prompt "Hello!"
"""

import argparse

from openai import OpenAI


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="the name the endpoint serves (its --served-name)")
    p.add_argument("--prompt", default="What is the capital of France?")
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="unused")  # the endpoint asks for no key
    stream = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": args.prompt}],
                                            max_tokens=args.max_tokens, temperature=0, stream=True)
    for chunk in stream:  # server-sent events: the answer as it is generated
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()


if __name__ == "__main__":
    main()
