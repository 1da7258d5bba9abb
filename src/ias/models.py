"""Where a model argument points: a zoo name, a known GGUF model, a local folder, or a hub id."""

from __future__ import annotations

from pathlib import Path

from ias.errors import UserError

ZOO_DIR = Path(__file__).parent / "zoo" / "models"


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists()) if ZOO_DIR.exists() else []


def resolve_model(name_or_path: str) -> str:
    """A path for `from_pretrained`: zoo models by name, local folders as they are.

    A known GGUF model (`smollm2-135m-instruct`) is converted once to a cached folder.

    Anything else that looks like a hub id (`org/name`) is passed through for users with
    hub access; a missing local path is an error naming the known zoo models.
    """
    if (ZOO_DIR / name_or_path / "config.json").exists():
        return str(ZOO_DIR / name_or_path)
    from ias.gguf import GGUF_MODELS, converted_folder

    if name_or_path in GGUF_MODELS:
        return str(converted_folder(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UserError(f"model folder '{name_or_path}' has no config.json")
        return str(path)
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if looks_like_hub_id:
        return name_or_path
    known = ", ".join(zoo_names()) or "none shipped"
    raise UserError(
        f"unknown model '{name_or_path}': not a zoo model ({known}), a known GGUF model "
        f"({', '.join(GGUF_MODELS)}) nor a local folder"
    )
