"""Frozen configuration dataclasses, and the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirsearch.errors import InvalidParameterError


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000  # every file is decoded and resampled to this rate, mono
    max_duration_s: float = 3 * 3600.0  # longer files are refused before they are decoded whole
    silence_dbfs: float = -60.0  # a file whose RMS stays below this is "silent"


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16_000  # must equal AudioConfig.sample_rate
    n_fft: int = 512  # 32 ms frames at 16 kHz
    hop_length: int = 250  # 15.6 ms hop: 64 frames a second, so 16-frame columns are 0.25 s
    n_mels: int = 64  # mel bands between f_min and f_max
    f_min: float = 30.0  # Hz; below this is rumble
    f_max: float = 8_000.0  # Hz; Nyquist at 16 kHz
    top_db: float = 80.0  # dynamic range kept by the dB conversion
    mel_scale: str = "htk"  # torchaudio's mel_scale: "htk", or "slaney" (librosa's default)
    norm: str | None = None  # torchaudio's norm: None (peak 1), or "slaney" (equal area)
    pad_mode: str = "reflect"  # how the first and last frames are padded ("constant": librosa)

    @property
    def frames_per_s(self) -> float:
        return self.sample_rate / self.hop_length

    def band_corners_hz(self) -> np.ndarray:
        """(n_mels + 2,) float64 corner frequencies of the mel triangles, equally spaced on the
        HTK or the Slaney mel scale (as torchaudio): band i rises from corner i, peaks at corner
        i + 1, falls to corner i + 2."""
        if self.mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale {self.mel_scale!r}: 'htk' or 'slaney'")
        to_mel, to_hz = _MEL_SCALES[self.mel_scale]
        return to_hz(np.linspace(to_mel(self.f_min), to_mel(self.f_max), self.n_mels + 2))


def _slaney_mel(hz):
    """Linear below 1 kHz (3 mels per 200 Hz), logarithmic above (librosa's and Slaney's)."""
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz < 1000.0, 3 * hz / 200, 15 + np.log(np.maximum(hz, 1e-9) / 1000) / _LOGSTEP)


def _slaney_hz(mel):
    return np.where(mel < 15, 200 * mel / 3, 1000 * np.exp(_LOGSTEP * (mel - 15)))


_LOGSTEP = np.log(6.4) / 27.0  # the Slaney scale's log step: 6.4 times the frequency in 27 mels
_MEL_SCALES = {
    "htk": (
        lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0),
        lambda m: 700.0 * (10 ** (m / 2595.0) - 1),
    ),
    "slaney": (_slaney_mel, _slaney_hz),
}


@dataclass(frozen=True)
class EmbeddingConfig:
    window_s: float = 3.0  # the network sees windows of this length
    hop_s: float = 1.5  # catalog tracks are embedded every hop_s seconds
    query_hop_s: float = 0.5  # queries are embedded more densely, so any offset lines up
    batch_size: int = 256  # windows per forward pass
    # the network's layers in bfloat16 where the CPU computes it natively (AVX-512 BF16, AMX):
    # half the time, vectors within cosine 0.9999 of float32; elsewhere float32 (embeddings.py)
    bfloat16: bool = True


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "cnn"  # a key of checkpoints.ARCHITECTURES
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9, Nesterov)
    lr: float = 3e-3  # peak learning rate (cosine decay after a short warm-up)
    weight_decay: float = 1e-3  # decoupled for AdamW, L2 for SGD
    dropout: float = 0.3  # before the genre head
    epochs: int = 24  # upper bound; early stopping usually ends sooner
    steps_per_epoch: int = 40  # an epoch is this many batches of random crops
    batch_size: int = 32  # labelled windows per step (and as many unlabelled ones)
    window_s: float = 3.0  # the window an embedding describes
    context_s: float = 0.5  # extra audio each side, as a window inside a track has
    seed: int = 0
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2  # Beta(α, α) mixing of spectrograms for the genre term; 0 disables
    patience: int = 6  # epochs without a better validation loss before stopping
    val_fraction: float = 0.15  # share of groups held out for validation
    contrastive_weight: float = 1.0  # weight of the invariance term
    temperature: float = 0.1  # NT-Xent temperature
    threads: int = 2  # torch CPU threads
    model_args: dict = field(default_factory=dict)  # extra architecture arguments (e.g. channels)


INDEX_KINDS = ("auto", "flat", "sq8", "hnsw", "ivfpq")
MAX_PAGE = 10**9  # the highest page number and page size a track listing takes (SQL is 64-bit)
MAX_PER_PAGE = 500  # the most a page of the JSON API's listings (tracks, duplicate groups) holds
MAX_SIMILAR = 100  # similar tracks a classification lists at most


@dataclass(frozen=True)
class IndexConfig:
    # More window vectors than this (~2,000 three-minute tracks): an approximate index. With
    # the catalog padded to 1.2 M windows, IVF-PQ kept exact search's near-duplicate recall on
    # every altered clip and answered a 10 s `match` in 30 ms against 298 ms (HNSW: the same
    # recall, 36 ms, in 4.5x the bytes): bench/scale_recall.py in the latest `make bench`
    exact_max_vectors: int = 250_000
    # "auto" (window vectors "sq8" up to exact_max_vectors, then "ivfpq"), "flat" (exact
    # float32), "sq8" (exact search over 8-bit vectors: a quarter of the bytes, same
    # near-duplicate recall; bench/print_formats.py), "hnsw" or "ivfpq"
    kind: str = "auto"
    hnsw_m: int = 32  # HNSW graph degree
    hnsw_ef_search: int = 128  # HNSW search breadth
    # most IVF cells: 4 √n for n vectors, retrained as n quadruples, up to this (reached at ~1 M
    # windows; a shard of hundreds of millions wants tens of thousands: hours to train on 2 cores)
    ivf_nlist: int = 4096
    ivf_nprobe: int = 32  # cells visited per query
    pq_m: int = 32  # PQ sub-quantisers (bytes per vector)
    ivf_refine_k_factor: int = 8  # IVF-PQ fetches k times this and re-ranks with 8-bit vectors
    exact_filter_max_vectors: int = 200_000  # filters allowing fewer are searched exactly
    # a filter allowing more windows than exact_filter_max_vectors is applied to the hits of an
    # unfiltered search for as many more as it leaves out (twice k × windows / allowed), where
    # those are at most this many: listed to FAISS, a genre's window ids had to be hashed on
    # every query and IVF-PQ widened in proportion (at 100,000 tracks a `search` filtered to
    # 45 % of the windows 5.6 s, to 2.4 % 2.3 s; so 0.23 and 0.32 s). 0: always listed
    post_filter_max_k: int = 16_384
    # Query processes map the index files rather than read them (the vectors, most of the bytes,
    # shared by every process through the page cache; bench/scale.py). Off where another machine
    # may prune a generation under a reader: the files on a network file system.
    mapped: bool = True


@dataclass(frozen=True)
class SearchConfig:
    k: int = 10  # results returned by default
    max_k: int = 1000  # larger k is refused
    neighbours_per_window: int = 64  # window hits fetched per query window
    rescore_candidates: int = 100  # tracks (at least k) re-scored exactly against their windows
    alignment_weight: float = 0.5  # share of the time-aligned score; the rest is mean-of-max
    # share of the "sounds alike" vectors' cosine; the rest: windows (bench/retrieval.json with
    # the shipped student: 0.8 → precision@5 of same soundtrack 0.443, 0.9 → 0.460, 1.0 → 0.447
    # and one version pair fewer in each other's top 5; windows alone 0.29). Aligned windows
    # still win where higher: excerpts first
    style_weight: float = 0.9
    max_query_windows: int = 240  # longer queries are subsampled evenly to this many windows
    # a part of a longer upload lines up with a track on its own where a run of this many
    # consecutive query windows (a 10 s clip's) does at excerpt_min or more, as a copy does
    # (search.align): catalog excerpts' runs 0.95-0.99, also as 64 kbit/s MP3; other music's best
    # 0.85 on ../shared/audio (pink noise on a noisy passage; whole tracks, versions aside, 0.84)
    excerpt_windows: int = 15
    excerpt_min: float = 0.9
    min_query_s: float = 3.0  # shorter clips are refused
    # longer clips are refused, before they are decoded whole where they declare their length: a
    # 150 KB FLAC of one square wave declares 3 hours, 2 GB and 16 s of a server's worker to read
    max_query_s: float = 30 * 60.0


@dataclass(frozen=True)
class DuplicateConfig:
    neighbours: int = 20  # nearest catalog windows fetched per query window
    min_similarity: float = 0.5  # window pairs less alike than this cast no vote
    # the windows' vote (lines.py): to ±12 %, as a copy resampled by up to two semitones plays
    # (to ±6 % alone, a whole version 8-10 % away had been listed at 1.06 or not at all). A line
    # more than far_speed from 1 is checked beside the track's best within, and only where it
    # spans far_min_s of the query: over a shorter stretch a line within still holds a copy for
    # the prints to refit, and a far one had won an excerpt's vote by a window (at 0.88, 1.3 s
    # off) and lined up two synthetic grooves of the demo catalog (agreement 0.38, score 0.996)
    speeds: tuple[float, ...] = tuple(round(0.88 + 0.01 * i, 2) for i in range(25))
    far_speed: float = 0.06
    far_min_s: float = 60.0
    tolerance_s: float = 0.25  # slack around a line beyond half a catalog hop, in track seconds
    min_windows: int = 3  # fewer agreeing query windows is never a duplicate
    # a query is also embedded as if shifted back by each of these (semitones): a pitch or speed
    # change moves the spectrum, which the network sees; the best alignment over them counts
    pitch_hypotheses_st: tuple[float, ...] = (-1.0, 0.0, 1.0)
    # ... read only when the query as it plays (no shift) leaves a doubt (duplicates.
    # read_as_needed): no track confirmed by a score at the threshold with the prints agreeing
    # by settle_agreement, or another track half lined up, scoring from settle_doubt to the
    # threshold (on the `make eval-dupes` clips a settled reading's other tracks score ≤ 0.053)
    settle_agreement: float = 0.5
    settle_doubt: float = 0.1
    # a query none of those readings confirms a track in (as settle_agreement says) is also
    # read past their reach (readings.read_far): at each of these semitones (each reading
    # reaches about one either side, so these find copies moved 2-4 semitones in key at their
    # own tempo, a key changed to dodge a check) ...
    key_readings_st: tuple[float, ...] = (-3.0, 3.0)
    # ... and brought back from each of these speeds (resampled, tempo and pitch together), read
    # as it then plays and at the pitch it played at: a sped-up ("nightcore") or slowed copy
    # past the ±12 % the pitch hypotheses reach, or one stretched in time alone. One reading
    # holds a copy within ~7 % of its speed, so these four reach 0.70-1.45 (10 s clips,
    # bench/speed_range.py). () for both reads none (MIRSEARCH_SPEED_READINGS=0), sparing an
    # upload of other music their cost
    speed_readings: tuple[float, ...] = (0.73, 0.84, 1.19, 1.36)
    # ... whose matches score this many logits less: the four speed readings put a wrong track
    # at 0.686, under the threshold by a hair (other readings: at most 0.058, on the `make
    # eval-dupes` clips), and the key readings, unpenalised, a whole Warzone 2100 track at 0.918
    # against another of its soundtrack (48 s lined up, prints agreeing by 0.29): this keeps
    # them well below it
    far_reading_logits: float = 3.6
    # ... and whose lines are checked on the prints only where their windows are this alike (mean
    # cosine) or more: of 314 seeded copies found in a far reading (speed 0.75-1.3, tempo 0.8 and
    # 1.25, key ±3, 5 and 10 s) the least alike line that found one was 0.74, where three in four
    # lines of other music are under 0.66 (bench/speed_range.py: the cost to other music)
    far_min_similarity: float = 0.66
    # a query no reading confirms a track in is read once more for music under other sound
    # (readings.read_under_talk): its repeating part's windows, each line free to shift this
    # far on the prints (what repeats smears the windows' line by a second or more) ...
    under_talk_max_lag_s: float = 4.0
    # ... whose matches score this many logits less, as the far readings' do: at 2.0, `make
    # eval-dupes` put the whole Warzone 2100 menu (other music) at 0.649 against another track
    # of its soundtrack (37 s lined up at ±4 s, prints agreeing by 0.25), under the threshold
    # by a hair; at this, 0.27, below what the other readings give other music (0.392)
    under_talk_logits: float = 3.6
    # a track confirmed in the upload is taken out of it (residual.py) and the rest read once
    # more for another catalog track: two catalog tracks mixed, both listed
    # (MIRSEARCH_SECOND_TRACK=0: none taken out) ...
    second_track: bool = True
    # ... where another sound owns at least this share of the upload's print cells over some 3 s
    # of the match (residual.busiest). A clean copy is spared the cost: 11 of 60 clean 10 and
    # 20 s clips of ../shared/audio own this much, where the prints' agreement under 0.9 (the
    # call before, with 2 % of the cells) had sent 31; and two catalog tracks mixed are both
    # listed as often (bench/background.py's 180 mixes: 160, 161 before; 240 other seeded
    # mixes: 210, 206 before: 12 dB under, another track leaves the first's agreement at 0.9 or
    # more as often as a clean copy does) ...
    rest_min_owned: float = 0.005
    # ... as is one whose rest holds less than this share of its energy where it is taken out first
    rest_min_share: float = 0.02
    verify_tracks: int = 8  # tracks of most window evidence checked on the prints, a minute
    verify_chunk_s: float = 3.0  # the prints are compared in chunks of this length ...
    verify_chunk_hop_s: float = 1.0  # ... starting this far apart (a 5 s stretch: 3 chunks) ...
    verify_max_lag_s: float = 1.0  # ... each free to shift this far from the line (its offset
    # is estimated from windows a catalog hop apart, and vocoder tempo changes drift)
    verify_max_chunks: int = 10  # a longer stretch is checked on this many chunks spread over it
    # each chunk's best correlation less this share of its median over the lags: alike pads and
    # drones correlate at every lag, a copy at its own
    verify_background: float = 0.25
    # score = sigmoid(w_sim · mean similarity + w_win · ln(windows)
    #                 + agreement · (w_agree + w_agree_win · ln(windows)) + bias), windows being
    # the agreeing query windows: the prints' agreement counts for more the longer the stretch
    # it holds over (a few seconds of two pieces can correlate by chance, ten seconds of a noisy
    # copy at a lower correlation do not). Chosen on the `make eval-dupes` queries replayed
    # offline (bench/dupes_replay.py) for the best recall above the highest score of other
    # music, on condition that windows alike in every way with prints at chance agreement stay
    # 3.5 logits below that score:
    # 99.25 % (w_sim 32, w_agree 5, w_agree_win 8 reach 99.3 % but put such windows at 0.5);
    # w_win 0.31 or a background share of 0.5 change recall by less than 0.1 point. With the
    # prints' soft floor (correlation.FLOOR_DB) the same weights reach 99.39 %; the bias puts the
    # calibrated threshold near 0.7.
    weight_similarity: float = 28.0
    weight_log_windows: float = 0.0
    weight_agreement: float = 10.0
    weight_agreement_log_windows: float = 10.0
    bias: float = -33.0
    window_s: float = 3.0  # length of a window (for the matched duration)
    default_threshold: float = 0.6  # used when no calibration exists for the model


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback unless asked otherwise
    port: int = 8000
    max_upload_bytes: int = 50 * 1024 * 1024  # larger uploads get 413
    workers: int = 0  # `mirsearch serve` processes, each with the model and index (0: one per core)
    threads: int = 8  # requests each worker process answers at once
    timeout_s: int = 300  # a worker silent this long (a request holding it) is restarted
    # an upload of this much audio or more (as its file declares, or its packets where it
    # declares none) is answered in one of a worker process's `long_uploads` slots, waiting up to
    # long_wait_s for one (then a 503 with Retry-After); shorter uploads never wait. A 29 min
    # upload holds a thread 6-22 s and ~1 GB: six at once had taken 16-19 s each and 3.1 GB,
    # with nothing to bound a worker's memory
    long_upload_s: float = 5 * 60.0
    long_uploads: int = 1
    long_wait_s: float = 60.0


def default_home() -> Path:
    return Path("var")


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)  # catalog.db and index/ live here
    database_url: str | None = None  # None: SQLite at home/catalog.db
    model_path: Path | None = None  # None: the checkpoint shipped in mirsearch/assets
    audio: AudioConfig = field(default_factory=AudioConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Settings from MIRSEARCH_* variables; keyword overrides win. A variable set to a value
        it does not take is an InvalidParameterError saying what it takes."""
        env = os.environ if environ is None else environ
        values: dict = {}
        if env.get("MIRSEARCH_HOME"):
            values["home"] = Path(env["MIRSEARCH_HOME"])
        if env.get("MIRSEARCH_DATABASE_URL"):
            values["database_url"] = env["MIRSEARCH_DATABASE_URL"]
        if env.get("MIRSEARCH_MODEL"):
            values["model_path"] = Path(env["MIRSEARCH_MODEL"])
        index: dict = {}
        if env.get("MIRSEARCH_INDEX_KIND"):
            kind = index["kind"] = env["MIRSEARCH_INDEX_KIND"]
            if kind not in INDEX_KINDS:
                raise InvalidParameterError(
                    f"MIRSEARCH_INDEX_KIND is {kind!r}; use one of {', '.join(INDEX_KINDS)}"
                )
        mapped = _switch(
            env, "MIRSEARCH_INDEX_MAPPED", on="map the index files", off="read them whole"
        )
        if mapped is not None:
            index["mapped"] = mapped
        if index:
            values["index"] = IndexConfig(**index)
        speed_readings = _switch(
            env,
            "MIRSEARCH_SPEED_READINGS",
            on="bring uploads back from the speeds of sped-up and slowed copies",
            off="read them as they play",
        )
        second_track = _switch(
            env,
            "MIRSEARCH_SECOND_TRACK",
            on="take a track confirmed in an upload out of it and read the rest for another",
            off="list the tracks the upload's own readings confirm",
        )
        duplicates = {}
        if speed_readings is False:
            duplicates |= {"speed_readings": (), "key_readings_st": ()}
        if second_track is False:
            duplicates |= {"second_track": False}
        if duplicates:
            values["duplicates"] = DuplicateConfig(**duplicates)
        if env.get("MIRSEARCH_MAX_UPLOAD_MB"):
            megabytes = env["MIRSEARCH_MAX_UPLOAD_MB"]
            if not (megabytes.isascii() and megabytes.isdigit() and 0 < int(megabytes) <= 100_000):
                raise InvalidParameterError(
                    f"MIRSEARCH_MAX_UPLOAD_MB is {megabytes!r}; use a whole number of megabytes "
                    "from 1 to 100000"
                )
            values["server"] = ServerConfig(max_upload_bytes=int(megabytes) * 1024 * 1024)
        values.update(overrides)
        return cls(**values)


def _switch(env: Mapping[str, str], name: str, *, on: str, off: str) -> bool | None:
    """The variable `name` set to 1 (True) or 0 (False), None where unset; any other value is a
    ValueError saying what 1 (`on`) and 0 (`off`) mean."""
    value = env.get(name)
    if not value:
        return None
    if value not in ("0", "1"):
        raise InvalidParameterError(f"{name} is {value!r}; use 1 ({on}) or 0 ({off})")
    return value == "1"
