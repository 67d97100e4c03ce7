"""The OpenAPI 3.1 description of the JSON API (served at /api/openapi.json)."""

from __future__ import annotations

from mirsearch.api import CLASSIFY_MIN_S, match_min_s
from mirsearch.config import (
    MAX_PER_PAGE,
    MAX_SIMILAR,
    DuplicateConfig,
    EmbeddingConfig,
    SearchConfig,
)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    str(status): {"$ref": "#/components/responses/Error"}
    for status in (400, 404, 405, 413, 415, 422, 503)
}


def _upload(*, shortest_s: float = SearchConfig.min_query_s, **fields: dict) -> dict:
    """A multipart request body: the audio file (at least `shortest_s` seconds) and the form
    `fields` the route reads."""
    file = {
        "type": "string",
        "format": "binary",
        "description": f"Audio in any format FFmpeg reads, {shortest_s:g} s or longer",
    }
    schema = {"type": "object", "required": ["file"], "properties": {"file": file, **fields}}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


K_SCHEMA = {"type": "integer", "minimum": 1, "maximum": SearchConfig.max_k}
K = {"name": "k", "in": "query", "schema": K_SCHEMA}
GENRE_SCHEMA = {"type": "array", "items": {"type": "string"}}
GENRE = {
    "name": "genre",
    "in": "query",
    "schema": GENRE_SCHEMA,
    "style": "form",
    "explode": True,
}
TRACK_ID = {
    "name": "track_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
GENRES_AND_TAGS = {  # the properties of what `classify` tells of a clip
    "genre": {"type": "string"},
    "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
    "tags": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["tag", "score", "kind"],
            "properties": {
                "tag": {"type": "string"},
                "score": {"type": "number"},
                "kind": {"type": "string"},
            },
        },
    },
}
NULLABLE_STRING = {"type": ["string", "null"]}
PAGE = {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}
PER_PAGE = {
    "name": "per_page",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
}

SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "mirsearch",
        "version": "0.1.0",
        "description": "Content-based music search, genre classification and "
        "near-duplicate detection over a catalog.",
    },
    "paths": {
        "/api/search": {
            "post": {
                "summary": "Catalog tracks that sound most like the uploaded clip",
                "requestBody": _upload(k=K_SCHEMA, genre=GENRE_SCHEMA),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["query", "results"],
                            "properties": {
                                "query": {"type": "string"},
                                "results": {"type": "array", "items": _ref("Result")},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/match": {
            "post": {
                "summary": "Catalog tracks the upload contains (near-duplicates)",
                "requestBody": _upload(
                    shortest_s=match_min_s(EmbeddingConfig(), DuplicateConfig())
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["query", "matches"],
                            "properties": {
                                "query": {"type": "string"},
                                "matches": {"type": "array", "items": _ref("Match")},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/classify": {
            "post": {
                "summary": "Genre probabilities and tags of the upload, and similar catalog tracks "
                "(not those holding its very bytes)",
                "requestBody": _upload(
                    shortest_s=CLASSIFY_MIN_S,
                    similar={"type": "integer", "minimum": 0, "maximum": MAX_SIMILAR},
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["query", "genre", "probabilities", "tags", "similar"],
                            "properties": {
                                "query": {"type": "string"},
                                **GENRES_AND_TAGS,
                                "similar": {"type": "array", "items": _ref("Result")},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/examine": {
            "post": {
                "summary": "search, match and classify of one upload, decoded and analysed once "
                "(the site's question for a new clip): their fields side by side",
                "requestBody": _upload(k=K_SCHEMA, genre=GENRE_SCHEMA),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": [
                                "query",
                                "results",
                                "matches",
                                "genre",
                                "probabilities",
                                "tags",
                            ],
                            "properties": {
                                "query": {"type": "string"},
                                "results": {"type": "array", "items": _ref("Result")},
                                "matches": {"type": "array", "items": _ref("Match")},
                                **GENRES_AND_TAGS,
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/tracks": {
            "get": {
                "summary": "The catalog, searchable by title/artist/path and genre, in pages",
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "description": "Words each held by the title, artist or path, case "
                        "aside; a word of 1 or 2 characters only whole (beside no letter or "
                        "digit). The tracks whose title and artist hold them come first",
                        "schema": {"type": "string"},
                    },
                    {"name": "genre", "in": "query", "schema": {"type": "string"}},
                    PAGE,
                    PER_PAGE,
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["tracks", "total", "page", "per_page"],
                            "properties": {
                                "tracks": {"type": "array", "items": _ref("Track")},
                                "total": {"type": "integer"},
                                "page": {"type": "integer"},
                                "per_page": {"type": "integer"},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/tracks/{track_id}": {
            "get": {
                "summary": "One catalog track with its metadata and descriptors",
                "parameters": [TRACK_ID],
                "responses": {"200": _json(_ref("Track")), **ERRORS},
            }
        },
        "/api/tracks/{track_id}/similar": {
            "get": {
                "summary": "More like this",
                "parameters": [TRACK_ID, K, GENRE],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["track_id", "results"],
                            "properties": {
                                "track_id": {"type": "integer"},
                                "results": {"type": "array", "items": _ref("Result")},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/tracks/{track_id}/audio": {
            "get": {
                "summary": "The track's audio file (HTTP Range supported)",
                "parameters": [TRACK_ID],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "206": {"description": "Part of the file (Range request)"},
                    "412": {"$ref": "#/components/responses/Error"},  # If-Match, -Unmodified-Since
                    "416": {"$ref": "#/components/responses/Error"},
                    **ERRORS,
                },
            }
        },
        "/api/genres": {
            "get": {
                "summary": "Genres in the catalog with track counts",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["genres"],
                            "properties": {
                                "genres": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["genre", "count"],
                                        "properties": {
                                            "genre": {"type": "string"},
                                            "count": {"type": "integer"},
                                        },
                                    },
                                }
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/duplicates": {
            "get": {
                "summary": "Every near-duplicate group in the catalog, with evidence; with "
                "page or per_page, one page of them",
                "parameters": [PAGE, PER_PAGE],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["groups", "total"],
                            "properties": {
                                "total": {"type": "integer"},
                                "page": {"type": "integer"},
                                "per_page": {"type": "integer"},
                                "groups": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["tracks", "evidence"],
                                        "properties": {
                                            "tracks": {
                                                "type": "array",
                                                "items": {"type": "object"},
                                            },
                                            "evidence": {
                                                "type": "array",
                                                "items": {"type": "object"},
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/health": {
            "get": {
                "summary": "Liveness; 'degraded' and the problem when queries cannot be answered",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {
                                "status": {"type": "string", "enum": ["ok", "degraded"]},
                                "problem": {"type": "string"},
                                "tracks": {"type": "integer"},
                                "index_generation": {"type": "integer"},
                                "model_hash": NULLABLE_STRING,
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
    },
    "components": {
        "schemas": {
            "Result": {
                "type": "object",
                "required": [
                    "track_id",
                    "path",
                    "title",
                    "artist",
                    "genre",
                    "tag_genre",
                    "score",
                    "offset_s",
                    "query_offset_s",
                    "track_offset_s",
                ],
                "properties": {
                    "track_id": {"type": "integer"},
                    "path": {"type": "string"},
                    "title": NULLABLE_STRING,
                    "artist": NULLABLE_STRING,
                    "genre": NULLABLE_STRING,
                    "tag_genre": NULLABLE_STRING,
                    "score": {"type": "number"},
                    "offset_s": {
                        "type": "number",
                        "description": "The track time where the upload's time 0 lines up (0 "
                        "where that falls before the track's start)",
                    },
                    "query_offset_s": {
                        "type": "number",
                        "description": "Where in the upload the part lined up with the track "
                        "begins (0 for a clip of it; in a longer upload, to a window or so)",
                    },
                    "track_offset_s": {
                        "type": "number",
                        "description": "Where in the track that part begins: where to play it from",
                    },
                },
            },
            "Match": {
                "type": "object",
                "required": [
                    "track_id",
                    "path",
                    "title",
                    "score",
                    "query_offset_s",
                    "track_offset_s",
                    "duration_s",
                    "speed",
                ],
                "properties": {
                    "track_id": {"type": "integer"},
                    "path": {"type": "string"},
                    "title": NULLABLE_STRING,
                    "score": {"type": "number"},
                    "query_offset_s": {"type": "number"},
                    "track_offset_s": {"type": "number"},
                    "duration_s": {"type": "number"},
                    "speed": {"type": "number"},
                },
            },
            "Track": {
                "type": "object",
                "required": ["track_id", "path", "status"],
                "properties": {
                    "track_id": {"type": "integer"},
                    "path": {"type": "string"},
                    "status": {"type": "string"},
                    "title": NULLABLE_STRING,
                    "artist": NULLABLE_STRING,
                    "genre": NULLABLE_STRING,
                    "duration_s": {"type": ["number", "null"]},
                    "tempo_bpm": {"type": ["number", "null"]},
                    "key": NULLABLE_STRING,
                },
                "additionalProperties": True,
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
        },
        "responses": {"Error": _json(_ref("Error"), "A readable error")},
    },
}
