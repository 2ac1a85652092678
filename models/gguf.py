"""Convert a GGUF file, once, into a cached safetensors checkpoint that spans can load layer by layer.

transformers can read GGUF (dequantizing to float), but only whole-model; peers need to read just their
layers. So the first use of a GGUF file writes a float32 safetensors checkpoint plus its tokenizer under
``~/.cache/molink/models/<stem>-<hash>``; later uses (and other processes) reuse it. The write goes to a
temp dir renamed into place, under an flock, so two processes never convert at once or see half a result.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

from swarm.errors import ModelNotFoundError

log = logging.getLogger("molink.models")

DEFAULT_CACHE = Path("~/.cache/molink/models")
_DONE = "config.json"  # present in a finished conversion (the rename makes it all-or-nothing)


def converted_dir(gguf_path: Path, cache_dir: Path | None = None) -> Path:
    """Where the conversion of ``gguf_path`` lives: keyed by name, size and mtime (cheap on 40 GB files)."""
    stat = gguf_path.stat()
    digest = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE).expanduser()
    return root / f"{gguf_path.stem}-{digest}"


def _convert_into(gguf_path: Path, out: Path) -> None:
    """Dequantize the GGUF to float32 and save model + tokenizer into ``out``."""
    import torch  # deferred: importing models.gguf stays cheap
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    # dequantize=True: a plain dense model. Without it transformers keeps a GGUF quantizer on the model
    # and save_pretrained refuses ("quantized with gguf and is not serializable").
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True),
        trust_remote_code=False,
    )
    if hasattr(model.config, "quantization_config"):  # a saved one would make later loads expect GGUF
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False).save_pretrained(out)


def convert_gguf(gguf_path: Path, *, cache_dir: Path | None = None) -> Path:
    """The directory of the converted checkpoint for ``gguf_path``, converting it first if needed."""
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"GGUF file {gguf_path} does not exist")
    target = converted_dir(gguf_path, cache_dir)
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is converting %s; waiting for it", gguf_path.name)
            fcntl.flock(lock, fcntl.LOCK_EX)  # then the result is found below
        if (target / _DONE).is_file():
            return target
        size_gb = gguf_path.stat().st_size / 2**30
        log.info("converting %s (%.2f GB) to a float32 checkpoint in %s, once: later starts reuse it",
                 gguf_path.name, size_gb, target)
        began = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _convert_into(gguf_path, tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("converted %s in %.0f s", gguf_path.name, time.monotonic() - began)
    return target
