"""What the server may read: files by name from `--media`, the bundled examples and this server's
uploads, and nothing else.

A name is a relative path (`astronaut.jpg`, `people/ada.png`); it is looked up in each root in
turn (the media folder first) and must stay inside that root once symlinks are resolved. An
absolute path, a `..` step, a name that leaves its root through a link, or a type that is not a
picture or audio is refused before any file is opened. Uploads are size-capped, decoded once to
prove they are what they claim (a picture within a pixel budget, audio within a length budget),
and kept under content-derived names in a temporary folder removed when the server stops.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath

from ..errors import FlowactError
from ..media.audio import load_audio
from ..media.image import read_image

BUNDLED = Path(__file__).resolve().parent / "examples"  # shipped with the package (docs/serve.md)
PICTURE_TYPES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_TYPES = (".wav", ".flac", ".ogg", ".mp3")
KINDS = {"picture": PICTURE_TYPES, "audio": AUDIO_TYPES}
MAX_BYTES = {"picture": 10 * 2**20, "audio": 20 * 2**20}
MAX_PIXELS = 40_000_000  # a decompression bomb is refused from its header, before decoding
MAX_AUDIO_SECONDS = 300.0
MAX_UPLOADS = 64  # the oldest upload is removed beyond this (a long-running server's disk stays bounded)


class Refused(FlowactError):
    """A request the server will not serve (a name outside the roots, a bad upload, a full server);
    `status` is the HTTP answer (4xx, 503)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _check_name(name, kind: str) -> PurePosixPath:
    """The name as a relative path with no step outside its folder, of a type `kind` accepts."""
    if kind not in KINDS:
        raise ValueError(f"unknown media kind {kind!r}")
    if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name or "\\" in name:
        raise Refused(f"{kind} name must be a file name (got {str(name)[:80]!r})")
    rel = PurePosixPath(name)
    if rel.is_absolute() or name.startswith("~") or any(part in ("..", "") for part in rel.parts):
        raise Refused(f"{name}: only names inside the media folder or the examples are allowed", 403)
    if rel.suffix.lower() not in KINDS[kind]:
        raise Refused(f"{name}: not a {kind} type (use {', '.join(KINDS[kind])})", 415)
    return rel


class MediaLibrary:
    """The roots the server reads from, in lookup order: `media` (the user's folder, optional), the
    bundled examples, then this server's uploads."""

    def __init__(self, media: Path | None = None, bundled: Path = BUNDLED, uploads: Path | None = None):
        if media is not None:
            media = Path(media).expanduser()
            if not media.is_dir():
                raise FlowactError("--media must be an existing folder", path=media)
        self._own_uploads = uploads is None
        self.uploads = Path(tempfile.mkdtemp(prefix="flowact-serve-")) if uploads is None else Path(uploads)
        self.roots = [r.resolve() for r in (media, bundled, self.uploads) if r is not None]
        self._lock = threading.Lock()
        self._shown: dict[str, str] = {}  # upload name -> the file name its user gave

    def display(self, name: str) -> str:
        """How to name a file to its user: an upload by the name it was uploaded with."""
        return self._shown.get(name, name)

    def resolve(self, name, kind: str) -> Path:
        """The file `name` stands for (a picture or audio), or Refused; no file is opened here."""
        rel = _check_name(name, kind)
        for root in self.roots:
            path = (root / rel).resolve()  # follows links: a link out of the root resolves outside it
            if not path.is_relative_to(root):
                raise Refused(f"{name}: only names inside the media folder or the examples are allowed", 403)
            if path.is_file():
                return path
        raise Refused(f"{name}: no such {kind} in the media folder or the examples", 404)

    def listing(self) -> dict[str, list[str]]:
        """Pictures and audio by name (the media folder's top level and the examples; not uploads)."""
        out: dict[str, list[str]] = {"pictures": [], "audio": []}
        for root in self.roots:
            if root == self.uploads.resolve():
                continue
            for path in sorted(root.iterdir()):
                if not path.is_file() or not path.resolve().is_relative_to(root):
                    continue
                for kind, key in (("picture", "pictures"), ("audio", "audio")):
                    if path.suffix.lower() in KINDS[kind] and path.name not in out[key]:
                        out[key].append(path.name)
        return out

    def save_upload(self, data: bytes, filename: str, kind: str) -> dict:
        """Validate an uploaded picture or audio file and keep it; returns its name and what it is.
        Raises Refused with the user's file name in the message."""
        if kind not in KINDS:
            raise Refused(f"unknown upload kind {kind!r} (use picture or audio)")
        shown = PurePosixPath(str(filename or "upload").replace("\\", "/")).name[:120] or "upload"
        suffix = PurePosixPath(shown).suffix.lower()
        if suffix not in KINDS[kind]:
            raise Refused(f"{shown}: not a {kind} type (use {', '.join(KINDS[kind])})", 415)
        if not data:
            raise Refused(f"{shown}: the file is empty")
        if len(data) > MAX_BYTES[kind]:
            raise Refused(f"{shown}: larger than {MAX_BYTES[kind] // 2**20} MB", 413)
        name = f"upload-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
        final = self.uploads / name
        with tempfile.NamedTemporaryFile(dir=self.uploads, suffix=suffix, delete=False) as f:
            f.write(data)
            tmp = Path(f.name)
        try:
            facts = _validate(tmp, kind, shown)
            with self._lock:
                tmp.replace(final)
                self._shown[name] = shown
                self._evict()
        finally:
            tmp.unlink(missing_ok=True)
        return {"name": name, "kind": kind, **facts}

    def _evict(self) -> None:
        kept = sorted(self.uploads.glob("upload-*"), key=lambda p: p.stat().st_mtime)
        for old in kept[: max(0, len(kept) - MAX_UPLOADS)]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        if self._own_uploads:
            shutil.rmtree(self.uploads, ignore_errors=True)


def _validate(path: Path, kind: str, shown: str) -> dict:
    """Decode the file once; errors name the user's file, not the temporary one."""
    try:
        if kind == "picture":
            from PIL import Image

            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Image.DecompressionBombError as exc:
                raise Refused(f"more than {MAX_PIXELS // 10**6} megapixels", 413) from exc
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad header
                raise Refused("not a readable image (unknown or corrupt format)") from exc
            if w * h > MAX_PIXELS:
                raise Refused(f"{w}x{h} is more than {MAX_PIXELS // 10**6} megapixels", 413)
            image = read_image(path)
            return {"width": int(image.shape[1]), "height": int(image.shape[0])}
        audio = load_audio(path, 16_000, allow_silent=True)
        seconds = len(audio.samples) / audio.rate
        if seconds > MAX_AUDIO_SECONDS:
            raise Refused(f"{seconds:.0f} s of audio is longer than {MAX_AUDIO_SECONDS:.0f} s", 413)
        return {"seconds": round(seconds, 3)}
    except Refused as exc:
        raise Refused(f"{shown}: {exc}", exc.status) from exc
    except FlowactError as exc:
        raise Refused(str(exc).replace(str(path), shown)) from exc
