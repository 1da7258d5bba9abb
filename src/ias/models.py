"""Where a model argument points: a zoo name, a known GGUF model, a local folder, or a hub id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ias.errors import UserError

ZOO_DIR = Path(__file__).parent / "zoo" / "models"


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists()) if ZOO_DIR.exists() else []


def resolve_model(name_or_path: str) -> str:
    """A path for `from_pretrained`: zoo models by name, local folders as they are.

    A known GGUF model (`smollm2-135m-instruct`) is converted once to a cached folder.

    Anything else that looks like a hub id (`org/name`) is passed through for users with
    hub access (load it under `hub_errors`); a missing local path is an error naming the
    known zoo models.
    """
    if (ZOO_DIR / name_or_path / "config.json").exists():
        require_whole_weights(ZOO_DIR / name_or_path, "reinstall ias (a zoo model's files are damaged)")
        return str(ZOO_DIR / name_or_path)
    from ias.gguf import GGUF_MODELS, converted_folder

    if name_or_path in GGUF_MODELS:
        folder = converted_folder(name_or_path)
        require_whole_weights(folder, "remove that folder so that it is converted again")
        return str(folder)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UserError(f"model folder '{name_or_path}' has no config.json")
        require_whole_weights(path, "copy or download the model folder again")
        return str(path)
    if name_or_path.count("/") == 1 and not _looks_local(name_or_path):
        return name_or_path
    known = ", ".join(zoo_names()) or "none shipped"
    raise UserError(
        f"unknown model '{name_or_path}': not a zoo model ({known}), a known GGUF model "
        f"({', '.join(GGUF_MODELS)}) nor a local folder"
    )


def _looks_local(name: str) -> bool:
    """A mistyped local path (`runs/mymodel` with `runs/` here) is not a hub id: sent to the
    hub it costs a minute of retries offline before a confusing error."""
    return name.startswith((".", "/", "~")) or Path(name.split("/")[0]).expanduser().is_dir()


@contextmanager
def hub_errors(name: str) -> Iterator[None]:
    """Loading `resolve_model(name)`: the OSError of a hub id that is offline, missing or gated
    becomes a one-line UserError naming the model, not a traceback."""
    try:
        yield
    except OSError as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        if Path(name).expanduser().is_dir():  # a local folder: its files, not the network, are at fault
            raise UserError(
                f"cannot load the model folder '{name}' ({reason}); repair or copy the folder again"
            ) from None
        raise UserError(
            f"cannot load model '{name}' ({reason}); check the name and your network, "
            "or pass a zoo model or a local folder"
        ) from None


#: Longest safetensors header read (a garbled length field must not make us read gigabytes).
_MAX_HEADER_BYTES = 100 << 20


def require_whole_weights(folder: str | Path, fix: str) -> None:
    """Every `*.safetensors` file in `folder` is whole; a truncated or garbled one is a
    one-line error naming it and `fix` (the loaders' own errors are tracebacks that name
    no file)."""
    for file in sorted(Path(folder).glob("*.safetensors")):
        why = safetensors_damage(file)
        if why is not None:
            raise UserError(f"{file} is damaged ({why}); {fix}")


def safetensors_damage(file: Path) -> str | None:
    """Why `file` is not a whole safetensors file, or None. Reads only its header: an 8-byte
    length, a JSON table of tensors with their byte ranges, then exactly that many bytes."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length > min(size - 8, _MAX_HEADER_BYTES):
                return "its header is cut off or garbled"
            header = json.loads(f.read(length))
    except OSError as err:
        return err.strerror or type(err).__name__
    except ValueError:  # bad JSON or bad UTF-8
        return "its header is not valid JSON"
    try:
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return "its header is garbled"
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{size} bytes where its header describes {expected}: truncated or padded"
    return None
