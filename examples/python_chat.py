"""Chat with a model served by a swarm, from Python, printing the answer as it is generated.

    python examples/python_chat.py --model ./my-checkpoint --initial-peers ADDR --prompt "Why is the sky blue?"

ADDR is what ``python -m swarm.bootstrap`` printed (or any peer's address). The client holds the embeddings and
the LM head; every transformer layer runs on the peers.
"""

import argparse

from transformers import AutoTokenizer, TextStreamer

from swarm import AutoDistributedModelForCausalLM


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the checkpoint the swarm serves (its tokenizer is read from it)")
    p.add_argument("--initial-peers", nargs="+", required=True)
    p.add_argument("--prompt", default="What is the capital of France?")
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()

    model = AutoDistributedModelForCausalLM.from_pretrained(args.model, initial_peers=args.initial_peers)
    tokenizer = AutoTokenizer.from_pretrained(model.checkpoint.path)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True,
                                        return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)  # prints as tokens arrive
    with model:
        model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, streamer=streamer)
        print(f"(route: {model.last_route.describe()})")


if __name__ == "__main__":
    main()
