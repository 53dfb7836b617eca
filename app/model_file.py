"""Reading and validating GGUF model files without loading them.

llama.cpp answers almost every malformed file with "Failed to load model from file", and a parser
bug in native code takes the whole app down. So every file is checked here first, in Python, with a
specific reason when it is refused. Only the header is read (metadata and tensor table, through
``mmap``), never the weights, so a listing costs milliseconds; ``HeaderCache`` keeps results keyed
by path, size and modification time.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import mmap
import os
import re
import stat
import struct
from dataclasses import asdict, dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

from app.fileio import atomic_write_text

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS
# Keys whose values a listing never needs; their arrays are walked past, not decoded.
_SKIPPED_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.scores")
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


class GGUFValueType(IntEnum):
    """Metadata value types, fixed by the GGUF specification (the same as ``gguf``'s, tested).

    The ``gguf`` package is imported only where its growing tables of tensor and file types are
    needed: with numpy it takes ~0.4 s to import, which the window's start must not wait for.
    """

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


@cache
def _gguf_tables() -> tuple[Any, Any, Any]:
    """gguf's tensor type sizes, tensor types and file types (imported on first use)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    return GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType


_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class InvalidModelFile(Exception):
    """The file is not a usable GGUF model; ``str(e)`` says why in plain words."""


@dataclass(frozen=True)
class ModelFileInfo:
    path: str
    size_bytes: int
    architecture: str
    name: str
    parameters: int
    quantization: str
    context_length: int
    chat_template: str | None
    license: str | None
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    shard_count: int = 1

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shard_info(path: Path) -> tuple[str, int, int] | None:
    """``(stem, index, count)`` for split files named ``name-00001-of-00003.gguf``."""
    m = _SHARD_RE.match(path.name)
    if not m:
        return None
    return m["stem"], int(m["index"]), int(m["count"])


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InvalidModelFile(
                f"The file ends inside its header ({what} at byte {self.pos} needs {n} bytes, "
                f"file is {self.size} bytes). It is truncated or corrupt."
            )

    def scalar(self, st: struct.Struct, what: str) -> Any:
        self.need(st.size, what)
        (v,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def u32(self, what: str) -> int:
        v: int = self.scalar(_U32, what)
        return v

    def u64(self, what: str) -> int:
        v: int = self.scalar(_U64, what)
        return v

    def string(self, what: str) -> str:
        n = self.u64(what)
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidModelFile(f"{what} is not valid UTF-8; the file is corrupt.") from None

    def skip_string(self, what: str) -> None:
        n = self.u64(what)
        self.need(n, what)
        self.pos += n


def _skip_strings(c: _Cursor, count: int, key: str) -> None:
    # The hot loop of a listing (a vocabulary is 50k-250k strings): nothing but unpack_from.
    pos, size, buf, unpack = c.pos, c.size, c.buf, _U64.unpack_from
    for _ in range(count):
        if pos + 8 > size:
            break
        pos += 8 + unpack(buf, pos)[0]
    else:
        if pos <= size:
            c.pos = pos
            return
    raise InvalidModelFile(
        f"The file ends inside the metadata {key!r}. It is truncated or corrupt."
    )


def _read_value(c: _Cursor, vtype: int, key: str, keep: bool) -> Any:
    if vtype == GGUFValueType.STRING:
        if keep:
            return c.string(f"the value of {key!r}")
        c.skip_string(f"the value of {key!r}")
        return None
    if vtype == GGUFValueType.ARRAY:
        item_type = c.u32(f"the array type of {key!r}")
        count = c.u64(f"the array length of {key!r}")
        if item_type == GGUFValueType.STRING:
            # Each string takes at least its 8-byte length prefix.
            if count * 8 > c.size - c.pos:
                raise InvalidModelFile(
                    f"The file ends inside the metadata {key!r} ({count} strings). "
                    "It is truncated or corrupt."
                )
            if keep and key not in _SKIPPED_ARRAYS and count <= 4096:
                return [c.string(f"an item of {key!r}") for _ in range(count)]
            _skip_strings(c, count, key)
            return None
        if item_type == GGUFValueType.ARRAY:
            return [_read_value(c, item_type, key, False) for _ in range(count)] and None
        st = _SCALARS.get(item_type)
        if st is None:
            raise InvalidModelFile(f"Metadata {key!r} has an unknown array type {item_type}.")
        c.need(count * st.size, f"the array {key!r}")
        if keep and count <= 64:
            values = [st.unpack_from(c.buf, c.pos + i * st.size)[0] for i in range(count)]
        else:
            values = None
        c.pos += count * st.size
        return values
    st = _SCALARS.get(vtype)
    if st is None:
        raise InvalidModelFile(f"Metadata {key!r} has an unknown value type {vtype}.")
    return c.scalar(st, f"the value of {key!r}")


def _quant_name(file_type: Any, tensor_types: dict[int, int]) -> str:
    if isinstance(file_type, int):
        try:
            name: str = _gguf_tables()[2](file_type).name
            return name.removeprefix("MOSTLY_").replace("ALL_", "")
        except ValueError:
            pass
    # No (or an unknown) general.file_type: name it after the type holding most weights.
    if tensor_types:
        common = max(tensor_types.items(), key=lambda kv: kv[1])[0]
        try:
            return str(_gguf_tables()[1](common).name)
        except ValueError:
            pass
    return "unknown"


def read_model_file(path: Path) -> ModelFileInfo:
    """Read and validate a GGUF file's header. Raises ``InvalidModelFile`` with the reason."""
    try:
        # Nothing but a regular file is opened: opening a FIFO named *.gguf blocks forever.
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):
            raise InvalidModelFile("That is not a regular file (a pipe, a device or a socket).")
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                raise InvalidModelFile(
                    f"The file is only {size} bytes; a GGUF model is at least megabytes."
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(mm, size, path)
    except IsADirectoryError:
        raise InvalidModelFile("That is a folder, not a model file.") from None
    except FileNotFoundError:
        raise InvalidModelFile("The file does not exist.") from None
    except PermissionError:
        raise InvalidModelFile("The file cannot be read (permission denied).") from None
    except OSError as e:
        raise _unreadable(e) from None


def _unreadable(e: OSError) -> InvalidModelFile:
    if e.errno == errno.ELOOP:
        return InvalidModelFile("The path is a loop of symbolic links.")
    return InvalidModelFile(f"The file cannot be read: {e.strerror or e}.")


def _parse(buf: mmap.mmap, size: int, path: Path) -> ModelFileInfo:
    c = _Cursor(buf, size)
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        if magic[::-1] in (b"ggml", b"ggmf", b"ggjt", b"ggla"):
            raise InvalidModelFile(
                "This is an old GGML-format model; llama.cpp reads only GGUF. "
                "Download a GGUF version of it."
            )
        raise InvalidModelFile("Not a GGUF model file (it does not start with 'GGUF').")
    c.pos = 4
    version = c.u32("the version")
    if version not in (2, 3):
        raise InvalidModelFile(
            f"Unsupported GGUF version {version} (Hearth reads versions 2 and 3)."
        )
    tensor_count = c.u64("the tensor count")
    kv_count = c.u64("the metadata count")
    # A tensor entry takes at least 8+4+8+4+8 bytes, a metadata entry at least 8+4+1.
    if tensor_count * 32 > size or kv_count * 13 > size:
        raise InvalidModelFile(
            f"The header claims {tensor_count} tensors and {kv_count} metadata entries, more than "
            "the file could hold. The file is corrupt."
        )

    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = c.string("a metadata key")
        vtype = c.u32(f"the type of {key!r}")
        meta[key] = _read_value(c, vtype, key, keep=True)

    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelFile(f"Invalid alignment {alignment!r} in the header.")

    parameters = 0
    tensor_types: dict[int, int] = {}
    data_needed = 0
    quant_sizes, tensor_types_enum, _ = _gguf_tables()
    for i in range(tensor_count):
        name = c.string(f"the name of tensor {i}")
        n_dims = c.u32(f"the dimensions of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise InvalidModelFile(f"Tensor {name!r} has {n_dims} dimensions; the file is corrupt.")
        dims = [c.u64(f"the shape of {name!r}") for _ in range(n_dims)]
        ttype = c.u32(f"the type of {name!r}")
        offset = c.u64(f"the offset of {name!r}")
        try:
            block, type_size = quant_sizes[tensor_types_enum(ttype)]
        except (ValueError, KeyError):
            raise InvalidModelFile(
                f"Tensor {name!r} has type {ttype}, which this version of Hearth does not know. "
                "The file is corrupt or needs a newer llama.cpp."
            ) from None
        n = 1
        for d in dims:
            n *= d
        if n == 0 or n > size * 64 or dims[0] % block:
            raise InvalidModelFile(f"Tensor {name!r} has an impossible shape {dims}.")
        if offset % alignment:
            raise InvalidModelFile(f"Tensor {name!r} is misaligned; the file is corrupt.")
        parameters += n
        tensor_types[ttype] = tensor_types.get(ttype, 0) + n
        data_needed = max(data_needed, offset + n // block * type_size)

    data_start = (c.pos + alignment - 1) // alignment * alignment
    if data_start + data_needed > size:
        raise InvalidModelFile(
            f"The file is truncated: its tensors need {data_start + data_needed:,} bytes but it "
            f"has {size:,}. The download or copy was probably interrupted; get the file again."
        )

    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile("The file names no model architecture (general.architecture).")

    def arch_int(key: str) -> int:
        v = meta.get(f"{arch}.{key}")
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    _check_hyperparameters(meta, arch)
    head_count = arch_int("attention.head_count")
    template = meta.get("tokenizer.chat_template")
    model_name = meta.get("general.name")
    license_ = meta.get("general.license")
    shard_count = meta.get("split.count", 1)
    return ModelFileInfo(
        path=str(path),
        size_bytes=size,
        architecture=arch,
        name=model_name if isinstance(model_name, str) and model_name else path.stem,
        parameters=parameters,
        quantization=_quant_name(meta.get("general.file_type"), tensor_types),
        context_length=arch_int("context_length"),
        chat_template=template if isinstance(template, str) and template.strip() else None,
        license=license_ if isinstance(license_, str) and license_ else None,
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        shard_count=shard_count if isinstance(shard_count, int) and shard_count > 0 else 1,
    )


# What llama.cpp asserts on while loading (src/llama-hparams.h, llama-model.cpp): a header
# outside these aborts the process that loads it instead of failing the load.
MAX_LAYERS = 512
MAX_EXPERTS = 1024


def _check_hyperparameters(meta: dict[str, Any], arch: str) -> None:
    def bad(what: str) -> InvalidModelFile:
        return InvalidModelFile(
            f"The file's header says {what}, which llama.cpp cannot load. The file is corrupt "
            "or was made wrong; get it again, or another quantization of the model."
        )

    def number(key: str) -> Any:
        v = meta.get(f"{arch}.{key}")
        return None if isinstance(v, bool) else v

    blocks = number("block_count")
    if isinstance(blocks, int) and not 1 <= blocks <= MAX_LAYERS:
        raise bad(f"{blocks:,} layers (llama.cpp takes 1 to {MAX_LAYERS})")
    experts = number("expert_count")
    if isinstance(experts, int):
        if not 0 <= experts <= MAX_EXPERTS:
            raise bad(f"{experts:,} experts (llama.cpp takes up to {MAX_EXPERTS:,})")
        used = number("expert_used_count")
        if isinstance(used, int) and not 0 <= used <= experts:
            raise bad(f"{used:,} experts used of {experts:,}")
    for key in ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon"):
        eps = number(key)
        if isinstance(eps, float) and not (math.isfinite(eps) and eps > 0):
            raise bad(f"a normalization epsilon of {eps} ({key})")


def read_header_prefix(data: bytes) -> dict[str, Any]:
    """The metadata found in the first bytes of a GGUF file (a Range request's worth).

    Reads key/value pairs until the data runs out; what was read is returned, so the
    architecture's sizes (which come before the vocabulary) are there even when the rest is not.
    """
    if data[:4] != GGUF_MAGIC:
        raise InvalidModelFile("Not a GGUF model file (it does not start with 'GGUF').")
    c = _Cursor(data, len(data))
    c.pos = 4
    meta: dict[str, Any] = {}
    try:
        c.u32("the version")
        c.u64("the tensor count")
        kv_count = c.u64("the metadata count")
        for _ in range(kv_count):
            key = c.string("a metadata key")
            vtype = c.u32(f"the type of {key!r}")
            meta[key] = _read_value(c, vtype, key, keep=not key.startswith("tokenizer."))
    except InvalidModelFile:
        pass  # the prefix ended; keep what was read
    return meta


class HeaderCache:
    """Header results keyed by path, size and mtime, persisted as JSON in the cache folder."""

    VERSION = 1

    def __init__(self, file: Path | None) -> None:
        self._file = file
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if file is not None:
            try:
                raw = json.loads(file.read_text(encoding="utf-8"))
                if raw.get("version") == self.VERSION and isinstance(raw.get("entries"), dict):
                    self._entries = raw["entries"]
            except (OSError, ValueError, AttributeError):
                pass

    def read(self, path: Path) -> ModelFileInfo:
        """Like ``read_model_file``, answered from the cache when the file has not changed."""
        try:
            st = path.stat()
        except FileNotFoundError:
            raise InvalidModelFile("The file does not exist.") from None
        except OSError as e:
            raise _unreadable(e) from None
        key = str(path)
        hit = self._entries.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            if "error" in hit:
                raise InvalidModelFile(hit["error"])
            try:
                return ModelFileInfo(**hit["info"])
            except TypeError:
                pass  # written by an older field set; read the file again
        entry: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        try:
            info = read_model_file(path)
        except InvalidModelFile as e:
            entry["error"] = str(e)
            self._entries[key] = entry
            self._dirty = True
            raise
        entry["info"] = info.to_json()
        self._entries[key] = entry
        self._dirty = True
        return info

    def save(self) -> None:
        if self._file is None or not self._dirty:
            return
        live = {k: v for k, v in self._entries.items() if Path(k).exists()}
        try:
            atomic_write_text(self._file, json.dumps({"version": self.VERSION, "entries": live}))
            self._dirty = False
        except OSError as e:
            log.warning("could not save the model header cache: %s", e)
