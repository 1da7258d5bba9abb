"""The vLLM policy backend: vLLM's offline engine, one seeded request per sample.

Seeds: sample j of prompt i is its own request with `n=1` and
`seed = derive_seed(seeds[i], j)`, so it depends only on (seeds[i], j), whatever else is
in the call, as the protocol asks. (One request with `n` would draw its samples from one
generator, so sample j would change with `n`.) The requests of one prompt share its
prompt's KV blocks through prefix caching, which is on by default: step-level search and
Monte-Carlo rollouts re-send the same prefixes many times.

vLLM draws its own random numbers, so its texts differ from the hf backend's for the same
seeds (same distribution, different streams); within vLLM a seeded request gives the same
text again, up to floating-point differences between batch shapes, which can flip a
near-tie token.

Log-probabilities are vLLM's `raw_logprobs` (the model's distribution before temperature
and top-p), the same contract as the hf backend's.

vLLM's CPU attention kernels only take head sizes that are multiples of 32 (32, 64, 80,
96...). A Llama model with a smaller head, like the zoo's (16), is loaded on CPU from an
exactly equivalent copy whose heads are padded with zeros (`pad_head_dim`): same logits,
more memory per head. Chunked prefill is off on CPU: vLLM 0.32's CPU worker crashes when a
seeded request's prompt is split over two steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ias.errors import MissingExtraError, UserError
from ias.models import hub_errors, resolve_model
from ias.policy.base import SamplingParams, check_prompts, derive_seed, register_policy, sample_offsets
from ias.prompting import encode_prompts
from ias.types import Sample

CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM's CPU_ATTN kernels
CPU_DEFAULT_KV_CACHE_GB = 1.0


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise MissingExtraError("the vllm backend", "vllm") from e
    return vllm


@register_policy("vllm")
class VLLMPolicy:
    """A causal LM served by vLLM's offline `LLM` engine.

    Options: `tensor_parallel_size`, `dtype` ("auto" keeps the checkpoint's),
    `max_model_len`, `gpu_memory_utilization` (on CPU: the share of RAM vLLM reserves),
    `kv_cache_gb` (an explicit KV-cache size; on CPU it defaults to 1 GiB unless
    `gpu_memory_utilization` or VLLM_CPU_KVCACHE_SPACE is set, since vLLM's own default
    reserves 92% of the machine's memory), `enable_prefix_caching` (default on), `seed`
    (the engine's, for anything unseeded), `progress`, and any other `vllm.EngineArgs`
    field (e.g. `enforce_eager=True`), passed through.
    """

    #: The offline engine cannot stop a sample on its confidence (`exit_below`): callers finish
    #: such samples and trim them (`ias.methods.sources.LiveSource`).
    stops_on_confidence = False

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        kv_cache_gb: float | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        progress: bool = False,
        **engine_options: Any,
    ):
        vllm = _import_vllm()
        from vllm.engine.arg_utils import EngineArgs
        from vllm.platforms import current_platform

        known = {f.name for f in dataclasses.fields(EngineArgs)}
        unknown = sorted(set(engine_options) - known)
        if unknown:
            raise UserError(f"unknown vllm backend option '{unknown[0]}'; see vllm's EngineArgs for the names")
        if tensor_parallel_size < 1:
            raise UserError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        on_cpu = current_platform.is_cpu()
        path = self._engine_path(model, on_cpu)
        if dtype == "auto":  # vLLM's own "auto" would run a float32 checkpoint in 16 bits
            dtype = _checkpoint_dtype(Path(path)) if Path(path).is_dir() else "auto"
        args = _engine_args(
            known,
            on_cpu,
            {
                "tensor_parallel_size": tensor_parallel_size,
                "dtype": dtype,
                "enable_prefix_caching": enable_prefix_caching,
                "seed": seed,
                **({"max_model_len": max_model_len} if max_model_len is not None else {}),
                **({"gpu_memory_utilization": gpu_memory_utilization} if gpu_memory_utilization is not None else {}),
                **engine_options,
            },
            kv_cache_gb,
        )
        self.name = model
        self.progress = progress
        self._vllm = vllm
        with hub_errors(model):
            self.llm = vllm.LLM(model=path, **args)
        self.tokenizer = self.llm.get_tokenizer()
        model_config = getattr(self.llm, "model_config", None) or self.llm.llm_engine.model_config
        self.max_model_len = int(model_config.max_model_len)
        shipped = self.llm.get_default_sampling_params()  # the model's generation_config
        self.defaults = SamplingParams(
            temperature=1.0 if shipped.temperature is None else float(shipped.temperature),
            top_p=1.0 if shipped.top_p is None else float(shipped.top_p),
            max_tokens=min(256, self.max_model_len),
        )

    def _engine_path(self, model: str, on_cpu: bool) -> str:
        """The model's folder, or on CPU a copy with its heads padded to a size vLLM's CPU
        attention supports (kept in a temporary folder as long as the policy lives)."""
        path = resolve_model(model)
        self._padded_dir: tempfile.TemporaryDirectory | None = None
        if on_cpu and Path(path).is_dir():
            head_dim = _head_dim(Path(path))
            if head_dim is not None and head_dim not in CPU_HEAD_SIZES:
                self._padded_dir = tempfile.TemporaryDirectory(prefix="ias-vllm-")
                target = min((s for s in CPU_HEAD_SIZES if s % head_dim == 0), default=0)
                path = str(pad_head_dim(Path(path), Path(self._padded_dir.name), target))
        return path

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts)

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        seeds: Sequence[int],
        first: Sequence[int] | None = None,
    ) -> list[list[Sample]]:
        encoded = self.encode(prompts)
        check_prompts(encoded, seeds, self.max_model_len)
        offsets = sample_offsets(first, prompts)
        if params.exit_below is not None:
            raise UserError(
                "the early exit (exit_below) stops samples in the hf backend only: "
                "vLLM's offline engine cannot stop a sample on its confidence"
            )
        requests, settings = [], []
        for i, ids in enumerate(encoded):
            for j in range(n):
                requests.append({"prompt_token_ids": ids})
                settings.append(
                    self._vllm.SamplingParams(
                        n=1,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        max_tokens=min(params.max_tokens, self.max_model_len - len(ids)),
                        stop=list(params.stop) or None,
                        seed=derive_seed(int(seeds[i]), offsets[i] + j),
                        logprobs=0 if params.logprobs else None,
                    )
                )
        outputs = self.llm.generate(requests, settings, use_tqdm=self.progress) if requests else []
        out = [[_to_sample(o, len(encoded[i])) for o in outputs[i * n : (i + 1) * n]] for i in range(len(prompts))]
        return out

    def close(self) -> None:
        """Stops the engine's worker processes (they also stop when this process exits)."""
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        if self._padded_dir is not None:
            self._padded_dir.cleanup()
            self._padded_dir = None


def _to_sample(output, prompt_tokens: int) -> Sample:
    """One request's completion as a Sample, with the hf backend's finish reasons."""
    done = output.outputs[0]
    if done.finish_reason == "length":
        finish, stop = "length", None
    elif done.finish_reason == "stop" and isinstance(done.stop_reason, str):
        finish, stop = "stop", done.stop_reason
    elif done.finish_reason == "stop":
        finish, stop = "eos", None  # the EOS token, or a stop token id from generation_config
    else:
        raise RuntimeError(f"vLLM request ended with '{done.finish_reason}'")
    token_ids = list(done.token_ids)
    logprobs = None
    if done.logprobs is not None:
        logprobs = [float(done.logprobs[k][token].logprob) for k, token in enumerate(token_ids)]
    return Sample(
        text=done.text,
        prompt_tokens=prompt_tokens,
        generated_tokens=len(token_ids),
        finish_reason=finish,
        logprobs=logprobs,
        stop=stop,
    )


def _checkpoint_dtype(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "auto")


def _head_dim(folder: Path) -> int | None:
    config = json.loads((folder / "config.json").read_text())
    if "num_attention_heads" not in config or "hidden_size" not in config:
        return None
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def pad_head_dim(src: Path, dst: Path, head_dim: int) -> Path:
    """An exactly equivalent copy of a Llama model whose attention heads are `head_dim` wide.

    Rotary (neox-style) pairs dimension i with i + d/2 at frequency theta^(-2i/d). With
    r = D/d a whole number, putting old dimension i at r*i (and i + d/2 at D/2 + r*i) keeps
    every pair's frequency; the new dimensions are zero, so they add nothing to q.k (nor to
    the output through o_proj), and q is scaled by sqrt(r) to keep the softmax scale.
    """
    from safetensors.torch import load_file, save_file

    config = json.loads((src / "config.json").read_text())
    old = _head_dim(src)
    if config.get("model_type") != "llama" or old is None or head_dim <= old or head_dim % old:
        raise UserError(
            f"vLLM's CPU kernels need attention heads of {', '.join(map(str, CPU_HEAD_SIZES))}; "
            f"model '{src}' (head size {old}) cannot be padded to {head_dim}: run it on a GPU or with the hf backend"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default" or config.get("partial_rotary_factor", 1.0) != 1.0:
        raise UserError(f"model '{src}': only plain rotary embeddings can be padded for vLLM on CPU")
    weight_files = sorted(src.glob("*.safetensors"))
    if len(weight_files) != 1:
        raise UserError(f"model '{src}': padding for vLLM on CPU needs one .safetensors file")
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    half, r = old // 2, head_dim // old
    place = [r * i for i in range(half)] + [head_dim // 2 + r * i for i in range(half)]
    tensors = load_file(str(weight_files[0]))
    for name in list(tensors):
        w = tensors[name]
        if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            n_heads = heads if "q_proj" in name else kv_heads
            rows = w.reshape(n_heads, old, -1)
            wide = rows.new_zeros(n_heads, head_dim, rows.shape[-1])
            wide[:, place] = rows * (math.sqrt(head_dim / old) if "q_proj" in name else 1.0)
            tensors[name] = wide.reshape(n_heads * head_dim, -1).contiguous()
        elif name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
            n_heads = heads if "q_proj" in name else kv_heads
            rows = w.reshape(n_heads, old)
            wide = rows.new_zeros(n_heads, head_dim)
            wide[:, place] = rows * (math.sqrt(head_dim / old) if "q_proj" in name else 1.0)
            tensors[name] = wide.reshape(-1).contiguous()
        elif name.endswith("o_proj.weight"):
            cols = w.reshape(w.shape[0], heads, old)
            wide = cols.new_zeros(w.shape[0], heads, head_dim)
            wide[:, :, place] = cols
            tensors[name] = wide.reshape(w.shape[0], heads * head_dim).contiguous()
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy2(f, dst / f.name)
    save_file(tensors, str(dst / weight_files[0].name), metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps({**config, "head_dim": head_dim}, indent=2))
    return dst


def _engine_args(known: set[str], on_cpu: bool, given: dict[str, Any], kv_cache_gb: float | None) -> dict[str, Any]:
    """`vllm.LLM`'s arguments: the given ones, pinned raw log-probabilities, and on CPU no
    chunked prefill and a bounded KV cache (`known`: the installed vLLM's EngineArgs fields)."""
    # On CPU a seeded request whose prompt is split over two steps crashes the worker
    # ("CPU Generator does not use offset": it rewinds the generator, as on CUDA).
    args: dict[str, Any] = {**({"enable_chunked_prefill": False} if on_cpu else {}), **given}
    if "logprobs_mode" in known:  # vLLM >= 0.10; raw is its default there, pinned for the contract
        args.setdefault("logprobs_mode", "raw_logprobs")
    if (
        kv_cache_gb is None
        and on_cpu
        and "gpu_memory_utilization" not in args
        and "kv_cache_memory_bytes" in known
        and "kv_cache_memory_bytes" not in args
        and not os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    ):
        kv_cache_gb = CPU_DEFAULT_KV_CACHE_GB
    if kv_cache_gb is not None:
        if "kv_cache_memory_bytes" not in known:
            raise UserError(
                "kv_cache_gb needs a newer vllm (kv_cache_memory_bytes); set VLLM_CPU_KVCACHE_SPACE "
                "or gpu_memory_utilization instead"
            )
        args["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
    return args
