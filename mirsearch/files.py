"""Finding the audio files under folders: by extension, or by content for other names; files
the catalog can name."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from mirsearch.errors import AudioError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(  # what the catalog walker and the dataset readers try: audio
    # files, and video containers, whose sound is read (copyright checks of uploads are videos)
    [
        ".wav",
        ".wave",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".mp4",
        ".aac",
        ".wma",
        ".aif",
        ".aiff",
        ".ape",
        ".wv",
        ".mka",
        ".webm",
        ".au",
        ".ac3",
        ".eac3",
        ".w64",
        ".caf",
        ".mp2",
        ".amr",
        ".mov",
        ".mkv",
        ".m4v",
        ".avi",
        ".ts",
        ".m2ts",
        ".mts",
        ".flv",
        ".3gp",
        ".3g2",
        ".mpg",
        ".mpeg",
        ".vob",
        ".wmv",
        ".asf",
    ]
)
MAGIC = (  # (offset, bytes) of the containers we sniff for
    (0, b"RIFF"),
    (0, b"fLaC"),
    (0, b"OggS"),
    (0, b"ID3"),
    (4, b"ftyp"),
    (0, b"FORM"),
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"MAC "),
    (0, b"wvpk"),
    (0, b"\x30\x26\xb2\x75"),
    (0, b".snd"),
    (0, b"riff"),  # Sony Wave64
    (0, b"caff"),  # Apple Core Audio
    (0, b"#!AMR"),
    (0, b"FLV"),  # Flash Video
    (0, b"\x00\x00\x01\xba"),  # an MPEG program stream's pack header (.mpg, .vob)
)
# An MPEG transport stream (.ts) is packets of this many bytes, each beginning with TS_SYNC: one
# byte, so it is taken where three packets in a row begin with it, not where one does.
TS_PACKET = 188
TS_SYNC = 0x47


def looks_like_audio(path: Path) -> bool:
    """True when the first bytes look like a media container (MAGIC, an MPEG transport
    stream's packets) or an MPEG audio frame.

    The walker uses it for files without an audio extension; files with one are always tried,
    so a text file named .mp3 is recorded as failed rather than silently skipped.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2 * TS_PACKET + 1)
    except OSError:
        return False
    if any(head[offset : offset + len(magic)] == magic for offset, magic in MAGIC):
        return True
    if head[: 2 * TS_PACKET + 1 : TS_PACKET] == bytes([TS_SYNC] * 3):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


def discover(paths: Iterable[Path], *, unstorable: bool = False) -> list[Path]:
    """Every audio file under `paths`: by extension, or by content for files with other names.
    A name the catalog cannot store (not UTF-8) is left out with a warning, or with
    `unstorable` kept, for a query to answer with its error line."""
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            dangling = os.path.lexists(root)  # a link to nothing, or to itself
            what = "a link that leads to no file" if dangling else "no such file or folder"
            raise AudioError(f"{root}: {what}")
        if not (root.is_file() or root.is_dir()):
            raise AudioError(f"{root}: neither a file nor a folder (a pipe, a device...)")
        candidates = [root] if root.is_file() else _walk(root)
        for path in candidates:
            try:
                if not path.is_file():  # a dangling link, a FIFO: no audio
                    continue
            except OSError as exc:  # in a folder that can be listed, not entered: this file
                _unreadable(exc)  # is left out, not the run (it had stopped, nothing indexed)
                continue
            if not (unstorable or storable(path)):
                log.warning(
                    "%s left out: its name is not UTF-8; rename it to index it", shown(path)
                )
                continue
            if path.suffix.lower() in AUDIO_EXTENSIONS or looks_like_audio(path):
                found.add(path.resolve())
    return sorted(found)


def shown(path: Path) -> str:
    """`path` as a message can show it: a byte of a name that is not UTF-8 written as `\\xff`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def storable(path: Path) -> bool:
    """Whether `path` is text the catalog can store and FFmpeg can open: not a name that is not
    UTF-8 (bytes Python keeps as surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(root: Path) -> Iterator[Path]:
    """Every entry under `root` that is not a folder (links to folders are not followed), its
    dot-files and dot-folders left out. The folders wait on a list rather than in recursive
    calls, as os.walk's do before Python 3.12: a tree ~1,000 folders deep stopped the run."""
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=_name)
        except OSError as exc:
            _unreadable(exc)
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                yield Path(entry.path)
        folders.extend(Path(e.path) for e in reversed(entries) if e.is_dir(follow_symlinks=False))


def _name(entry: os.DirEntry) -> str:
    return entry.name


def _unreadable(exc: OSError) -> None:
    """A folder the walk cannot list (no permission): said, not left out silently."""
    log.warning("%s left out: %s", exc.filename, exc.strerror or exc)
