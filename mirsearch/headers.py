"""What an audio file's own bytes say, read without FFmpeg: whether it was cut short (a WAV's
data chunk or an Ogg file's last page past its end, an MP4 without its index), whether it states
the duration FFmpeg gives it (so that decoding less means a cut), and how many Ogg streams it
chains one after another.

containers.py and audio.py ask these before and after decoding.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

OGG_PAGE_HEADER = 27  # bytes of an Ogg page before its lacing values (one per segment)
# what the first packet of a Vorbis, Opus, FLAC, Speex or Theora stream in Ogg begins with
OGG_FIRST_PACKETS = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ", b"\x80theora")
MP4_BOXES_READ = 64  # top-level boxes of an MP4 looked at for its index (moov)
MP3_HEADER_BYTES = 54  # of an MP3's first frame, to the end of a Xing/Info or VBRI frame count
# The data sizes a WAV written to a pipe leaves, unable to go back and write the real one: 0,
# FFmpeg's 0xFFFFFFFF, sox's 0x7FFFF000 and arecord's 0x7FFFFFFF (those two had been refused as
# "truncated: its audio lacks 2,147,159,552 bytes", whole recordings recorded as failed)
OPEN_SIZES = (0, 0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF)
WAV_CHUNKS_READ = 64  # chunks of a WAV looked at for its data chunk (fmt, LIST, bext, JUNK...)
OGG_TAIL_BYTES = 70_000  # the end of an Ogg file read for its last page (at most 65,307 bytes)


def missing_bytes(path: Path, container_format: str) -> int:
    """How many bytes a WAV or Ogg file says it holds past its end (a copy or download cut
    short); 0 for other containers, whose cut is found by decoding (`audio.load`)."""
    if container_format == "wav":
        return _wav_missing_bytes(path)
    if container_format == "ogg":
        return _ogg_missing_bytes(path)
    return 0


def states_duration(path: Path, container_format: str) -> bool:
    """Whether `path` states the duration FFmpeg gives it, so that decoding less means a cut.
    ADTS AAC states none, nor does an MP3 without a header counting its frames: FFmpeg
    estimates it from the first frames' bit rate (a 60 s VBR MP3 opening on a tone: 144.5 s),
    which a cut shrinks too. Such files had been refused as truncated."""
    if container_format == "aac":
        return False
    return container_format != "mp3" or _mp3_frames_counted(path)


def mp4_without_index(path: Path) -> bool:
    """Whether `path` begins as an MP4 (or MOV, M4A) does, its top-level boxes holding no
    `moov`: the index most writers put last, so a file cut short has the sound without it."""
    boxes = []
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        at = 0
        while at + 8 <= size_of_file and len(boxes) < MP4_BOXES_READ:
            f.seek(at)
            header = f.read(16)
            size, kind = struct.unpack_from(">I4s", header)
            if size == 1:  # a 64-bit size follows the type (none where the file ends first)
                size = struct.unpack_from(">Q", header, 8)[0] if len(header) == 16 else 0
            boxes.append(kind)
            if size < 8:  # 0: the box runs to the end of the file
                break
            at += size
    return bool(boxes) and boxes[0] == b"ftyp" and b"moov" not in boxes


def ogg_streams_in_turn(path: Path) -> int:
    """How many Ogg streams `path` holds one after another: more than one in a chained file (an
    internet-radio dump, `cat a.ogg b.ogg`), of which FFmpeg reads the first only.

    A stream begins on a page flagged "beginning of stream" whose packet is a codec's first
    header; streams side by side (audio and video) begin together, so they count once. A page
    is found by its capture pattern, which the audio data can hold by chance: a beginning is
    taken only where a codec's header follows it.
    """
    streams, after_data = 0, True
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        at = data.find(b"OggS")
        while at >= 0 and at + OGG_PAGE_HEADER <= len(data):
            packet = at + OGG_PAGE_HEADER + data[at + 26]  # after the header and lacing values
            if data[at + 5] & 0x02 and data[packet : packet + 8].startswith(OGG_FIRST_PACKETS):
                streams += after_data
                after_data = False
            elif data[at + 4] == 0 and not data[at + 5] & 0x02:  # data, not a beginning of a
                after_data = True  # codec not listed (Skeleton) among the streams side by side
            at = data.find(b"OggS", at + OGG_PAGE_HEADER)
    return streams


def _mp3_frames_counted(path: Path) -> bool:
    """Whether an MP3 file's first frame, after its ID3v2 tags, is a Xing/Info or VBRI header
    counting its frames, from which FFmpeg takes the duration. As FFmpeg, a Xing/Info count is
    left out where the file runs on over 1/16 past the size the header gives (`cat a.mp3 b.mp3`
    keeps a.mp3's header)."""
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        at = 0
        while (tag := f.read(10))[:3] == b"ID3" and len(tag) == 10:
            size = 0
            for byte in tag[6:10]:  # syncsafe: 7 bits a byte
                size = size << 7 | byte & 0x7F
            at += 10 + size + (10 if tag[5] & 0x10 else 0)  # 0x10: a footer follows
            f.seek(at)
        f.seek(at)
        frame = f.read(MP3_HEADER_BYTES)
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE6 != 0xE2:  # not Layer III
        return False
    if frame[36:40] == b"VBRI":  # 32 bytes after the frame header, whatever the mode
        return frame[40:42] == b"\x00\x01" and int.from_bytes(frame[50:54], "big") > 0
    mpeg1, mono = frame[1] & 0x18 == 0x18, frame[3] >> 6 == 3
    xing = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))  # after side info
    flags = int.from_bytes(frame[xing + 4 : xing + 8], "big")
    if frame[xing : xing + 4] not in (b"Xing", b"Info") or not flags & 1:  # 1: frames counted
        return False
    frames = int.from_bytes(frame[xing + 8 : xing + 12], "big")
    header_size = int.from_bytes(frame[xing + 12 : xing + 16], "big") if flags & 2 else 0
    beyond = size_of_file - at - 4 - header_size  # as FFmpeg measures, from the frame's data
    return frames > 0 and not (header_size and beyond > header_size >> 4)


def _ogg_missing_bytes(path: Path) -> int:
    """For an Ogg file (Vorbis, Opus, FLAC), how many bytes of its last page are not in it (at
    least; a cut within the page's header or lacing says less than the whole).

    Ogg declares no length, but a page is cut short only when the file is. (A stream recorded
    live may end without its end-of-stream page, at a page boundary: that is not refused.)
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - OGG_TAIL_BYTES))
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or tail[at + 4 : at + 5] != b"\x00":  # no page in reach, or not a page header
        return 0
    header = tail[at : at + OGG_PAGE_HEADER]
    if len(header) < OGG_PAGE_HEADER:
        return OGG_PAGE_HEADER - len(header)
    segments = header[-1]
    lacing = tail[at + OGG_PAGE_HEADER : at + OGG_PAGE_HEADER + segments]
    if len(lacing) < segments:
        return segments - len(lacing)
    return max(0, at + OGG_PAGE_HEADER + segments + sum(lacing) - len(tail))


def _wav_missing_bytes(path: Path) -> int:
    """For a RIFF/WAVE file, how many bytes of the declared data chunk are not in the file.

    The data chunk is found as FFmpeg finds it, by walking the chunks from the first: each a
    4-byte id, a little-endian size, and the payload padded to an even length. The first b"data"
    anywhere in the first 4 KB had been taken for it: a comment or a Broadcast-WAV description
    saying "data" made a whole file "truncated: its audio lacks 1,935,323,093 bytes", and a data
    chunk past 4 KB (behind a large JUNK or bext chunk) was not checked.
    """
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        at = 12
        for _ in range(WAV_CHUNKS_READ):
            f.seek(at)
            header = f.read(8)
            if len(header) < 8:  # the file ends before a data chunk
                return 0
            kind, size = struct.unpack("<4sI", header)
            if kind == b"data":
                if size in OPEN_SIZES:  # a WAV streamed to a pipe: no size written
                    return 0
                return max(0, at + 8 + size - size_of_file)
            at += 8 + size + size % 2
    return 0
