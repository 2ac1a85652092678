"""The ``molink`` command: ``molink peer|bootstrap|status|demo|api|linkem ARGS...`` runs ``python -m swarm.peer ARGS...``
and so on (``python -m swarm`` is the same dispatcher).

Each subcommand's module is imported only when it runs, so ``molink --help`` and ``molink --version`` start
fast; ``molink COMMAND --help`` explains that command's flags.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module whose main(argv) runs it, one line for the help)
COMMANDS: dict[str, tuple[str, str]] = {
    "peer": ("swarm.peer", "serve a span of a model's layers to a swarm"),
    "bootstrap": ("swarm.bootstrap", "run a DHT node that peers and clients join a swarm through"),
    "status": ("swarm.status", "list a model's live peers, their spans, and the layers nobody serves"),
    "demo": ("swarm.demo", "start a local swarm on the embedded SmolLM2-135M and ask it a question"),
    "api": ("swarm.api", "serve an OpenAI-compatible HTTP endpoint (chat, completions, models) over a swarm"),
    "linkem": ("swarm.linkem", "relay TCP connections through an emulated link (delay, rate cap, jitter)"),
}


def usage(prog: str) -> str:
    return f"usage: {prog} [--help] [--version] {{{','.join(COMMANDS)}}} ..."


def help_text(prog: str) -> str:
    width = max(map(len, COMMANDS))
    lines = [
        usage(prog), "",
        "Serve large language models on a swarm of peers, each holding a span of the model's layers.", "",
        "commands:",
        *(f"  {name:<{width}}  {line} (python -m {module})" for name, (module, line) in COMMANDS.items()),
        "", "options:",
        "  -h, --help  show this help and exit",
        "  --version   print molink's version and exit", "",
        f"'{prog} COMMAND --help' explains a command's flags.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "molink") -> int:
    """Run ``prog COMMAND ARGS...``: the exit code of COMMAND's main(ARGS), 0 for --help/--version, 2 for a
    missing or unknown command (argparse's code for usage errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(help_text(prog))
        return 0
    if args and args[0] == "--version":
        from swarm import __version__

        print(f"molink {__version__}")
        return 0
    if not args or args[0] not in COMMANDS:
        why = "a command is required" if not args else f"unknown command {args[0]!r}"
        print(f"{usage(prog)}\n{prog}: error: {why} (choose from {', '.join(COMMANDS)}; "
              f"'{prog} --help' describes them)", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return module.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
