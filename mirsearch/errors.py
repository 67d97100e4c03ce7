"""The project's exceptions: one root, a few subclasses, each message written for a person."""


class MirsearchError(Exception):
    """Root of every error mirsearch raises on purpose."""

    code = "error"


class AudioError(MirsearchError):
    """A file could not be turned into usable audio (corrupt, empty, silent, too long...)."""

    code = "bad_audio"


class NotAudioError(AudioError):
    """The file holds no audio stream FFmpeg can read (a text file named .mp3, an image...)."""

    code = "not_audio"


class EmptyAudioError(AudioError):
    """The file is zero bytes long or decodes to no samples."""

    code = "empty_audio"


class SilentAudioError(AudioError):
    """The audio decodes but carries no signal to analyse."""

    code = "silent_audio"


class TooLongError(AudioError):
    """The audio is longer than the configured maximum duration (`duration_s`: how long, where
    the file declares it)."""

    code = "too_long"

    def __init__(self, message: str, *, duration_s: float | None = None):
        super().__init__(message)
        self.duration_s = duration_s


class TooShortError(AudioError):
    """The audio is shorter than the operation needs (a query under the minimum clip length)."""

    code = "too_short"


class ModelError(MirsearchError):
    """A checkpoint is missing, malformed, or does not match the code or the index."""

    code = "model_mismatch"


class CatalogError(MirsearchError):
    """The catalog database cannot be used: not a database, unreachable, refused."""

    code = "catalog_unavailable"


class IndexMismatchError(MirsearchError):
    """The vector index on disk does not match the model, the feature config or the database."""

    code = "index_mismatch"


class NotFoundError(MirsearchError):
    """A track id, genre or file that was asked for does not exist."""

    code = "not_found"


class InvalidParameterError(MirsearchError):
    """A parameter is out of range or malformed."""

    code = "invalid_parameter"
