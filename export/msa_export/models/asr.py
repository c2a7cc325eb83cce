"""Speech-recognition models on the export side: random-weight Whisper models built offline (tests,
benchmarks) and the copy of a CTranslate2 Whisper model into a pack (``msa-export --asr``).

No Whisper weights can be downloaded on a machine without the hub, so tests and benchmarks build
a ``transformers`` Whisper model of the wanted size from its config with seeded random weights, a
word-level tokenizer that puts Whisper's special tokens at their multilingual ids, and convert the
pair with CTranslate2's own converter (``ctranslate2.converters.TransformersConverter``). The
result is a model folder faster-whisper loads like any converted checkpoint: it decodes (random
words, with word timestamps) at the real model's cost, but recognises nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from msa_runtime.asr.recognizer import LANGUAGES, check_model_folder, model_files
from msa_runtime.errors import AsrError, MissingExtraError
from msa_runtime.pack import FileRecord, sha256_file

#: d_model, layers (encoder = decoder), attention heads of OpenAI's Whisper sizes, plus ``micro``
#: (tests: 2 layers of width 64, converted in about a second).
WHISPER_SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),
    "tiny": (384, 4, 6),
    "base": (512, 6, 8),
    "small": (768, 12, 12),
    "medium": (1024, 24, 16),
}
VOCAB_SIZE = 51865  # multilingual Whisper (v1/v2): 50257 text tokens, then the special tokens
EOT = 50257
SPECIALS_AFTER_LANGUAGES = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
#: Words the random models can emit (ids 0..len-1); the rest of the 50,257 text ids are fillers.
WORDS = (
    "the and to of a in that is it you was he for on are with as i his they be at one have "
    "this from or had by not word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been "
    "now find good great happy sad love hate fine bad awful wonderful boring movie film "
    "really very much liked loved terrible best worst"
).split()


def whisper_vocabulary() -> list[str]:
    """The 51,865 token strings, indexed by id: byte-level words (``Ġword``), punctuation, the
    empty token (50256), then
    ``<|endoftext|>`` (50257), ``<|startoftranscript|>`` (50258), the 99 language tokens, the
    task and control tokens and the 1,501 timestamp tokens ``<|0.00|>`` .. ``<|30.00|>``."""
    text = [f"\u0120{w}" for w in WORDS] + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    text += ["\u0120" + p for p in ("-", "'", "(", '"', "[", "<<", ">>", "--")]
    text += [f"\u0120w{i}" for i in range(EOT - 1 - len(text))]
    # id 50256 is the empty token of Whisper's multilingual vocabulary; CTranslate2 4.8 tells a
    # multilingual model (language tokens in the prompt) by its presence
    text.append("")
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in LANGUAGES[:99]] + list(SPECIALS_AFTER_LANGUAGES)
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(VOCAB_SIZE - EOT - len(specials))]
    vocab = text + specials + stamps
    if len(vocab) != VOCAB_SIZE or len(set(vocab)) != VOCAB_SIZE:
        raise RuntimeError("Whisper vocabulary construction is inconsistent")
    return vocab


def whisper_tokenizer() -> Any:
    """A ``tokenizers`` word-level tokenizer over :func:`whisper_vocabulary` (byte-level spaces,
    so decoded words carry their leading space as Whisper's BPE tokens do)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = whisper_vocabulary()
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="\u0120w0"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in vocab[EOT:]])
    return tok


def _torch_modules() -> tuple[Any, Any, Any]:
    try:
        import ctranslate2.converters as ct2conv
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError(
            f"building Whisper models needs torch, transformers and ctranslate2 "
            f"({exc.name} is missing): pip install 'msa-edge[export,asr]'"
        ) from exc
    return torch, transformers, ct2conv


def _random_model(transformers: Any, torch: Any, size: str, seed: int, lang_ids: dict[str, int]) -> Any:
    """A ``transformers`` Whisper model of ``size`` with seeded random weights and the
    generation settings of a multilingual Whisper checkpoint."""
    width, layers, heads = WHISPER_SIZES[size]
    notimestamps = whisper_vocabulary().index("<|notimestamps|>")
    config = transformers.WhisperConfig(
        vocab_size=VOCAB_SIZE,
        num_mel_bins=80,
        d_model=width,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * width,
        decoder_ffn_dim=4 * width,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=EOT + 1,
        begin_suppress_tokens=[220, EOT],
        suppress_tokens=[],
    )
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.lang_to_id = lang_ids
    gen.task_to_id = {"translate": notimestamps - 5, "transcribe": notimestamps - 4}
    gen.no_timestamps_token_id = notimestamps
    gen.alignment_heads = [[layers - 1, h] for h in range(heads)]
    gen.suppress_tokens, gen.begin_suppress_tokens = [], [220, EOT]
    return model


def _save_hf(transformers: Any, model: Any, lang_ids: dict[str, int], hf: Path) -> None:
    """Save ``model`` with its tokenizer and feature-extractor config as a hub-style folder."""
    model.save_pretrained(hf)
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=whisper_tokenizer(),
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="\u0120w0",
        additional_special_tokens=list(lang_ids),
    )
    tok.save_pretrained(hf)
    (hf / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_size": 80,
                "sampling_rate": 16000,
                "hop_length": 160,
                "chunk_length": 30,
                "n_fft": 400,
            }
        )
    )


def build_random_whisper(
    out: str | Path,
    size: str = "micro",
    *,
    seed: int = 0,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Write a CTranslate2 Whisper model folder with seeded random weights of Whisper ``size``
    (``micro``, ``tiny``, ``base``, ``small``, ``medium``) at ``out``; returns ``out``.

    ``quantization`` is CTranslate2's weight type on disk (``int8``, ``float16``; default
    float32). The folder holds ``model.bin``, ``config.json`` (with ``lang_ids`` and
    ``alignment_heads``), ``vocabulary.json``, ``tokenizer.json`` and
    ``preprocessor_config.json``.
    """
    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown Whisper size {size!r}; valid: {', '.join(WHISPER_SIZES)}")
    torch, transformers, ct2conv = _torch_modules()
    target = Path(out)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists")
    lang_ids = {f"<|{c}|>": EOT + 2 + i for i, c in enumerate(LANGUAGES[:99])}
    model = _random_model(transformers, torch, size, seed, lang_ids)
    with tempfile.TemporaryDirectory(prefix="msa-whisper-") as tmp:
        hf = Path(tmp) / "hf"
        _save_hf(transformers, model, lang_ids, hf)
        converter = ct2conv.TransformersConverter(
            str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]
        )
        staged = Path(tmp) / "ct2"
        converter.convert(str(staged), quantization=quantization, force=True)
        # transformers 5 drops generation_config.lang_to_id when it reloads the model, so the
        # converter finds no language ids: write them as the converter would have.
        ct2_config = json.loads((staged / "config.json").read_text(encoding="utf-8"))
        ct2_config["lang_ids"] = sorted(lang_ids.values())
        (staged / "config.json").write_text(json.dumps(ct2_config, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(target))
    return target


def copy_asr_model(
    folder: Path, pack_tmp: Path, source: str, name: str = "asr"
) -> tuple[dict[str, Any], dict[str, FileRecord]]:
    """Copy the CTranslate2 Whisper model ``folder`` into ``pack_tmp/name``.

    Returns the manifest's ``asr`` entry and the ``files`` rows (sha256, bytes) of the copied
    files, keyed by their path inside the pack. The folder is checked first (the files
    faster-whisper needs, a config that parses) so a broken model never lands in a pack.
    """
    check_model_folder(folder)
    dest = pack_tmp / name
    dest.mkdir(parents=True, exist_ok=False)
    rows: dict[str, FileRecord] = {}
    for file in model_files(folder):
        shutil.copy2(file, dest / file.name)
        rel = f"{name}/{file.name}"
        rows[rel] = FileRecord(sha256=sha256_file(dest / file.name), bytes=file.stat().st_size)
    if not rows:
        raise AsrError(f"{folder} holds no model files: give a CTranslate2 Whisper folder")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    entry = {
        "folder": name,
        "source": source,
        "files": sorted(rows),
        "multilingual": len(config.get("lang_ids") or []) > 1,
    }
    return entry, rows
