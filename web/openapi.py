"""The OpenAPI 3.1 description of the JSON API (served at /api/openapi.json): its routes, built
from the parts in openapi_components.py."""

from __future__ import annotations

from mirsearch.api import CLASSIFY_MIN_S, match_min_s
from mirsearch.config import MAX_SIMILAR, DuplicateConfig, EmbeddingConfig
from web.openapi_components import (
    COMPONENTS,
    ERRORS,
    GENRE,
    GENRE_SCHEMA,
    GENRES_AND_TAGS,
    K_SCHEMA,
    NULLABLE_STRING,
    PAGE,
    PER_PAGE,
    TRACK_ID,
    K,
    json_response,
    ref,
    upload_body,
)

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
                "requestBody": upload_body(k=K_SCHEMA, genre=GENRE_SCHEMA),
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["query", "results"],
                            "properties": {
                                "query": {"type": "string"},
                                "results": {"type": "array", "items": ref("Result")},
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
                "requestBody": upload_body(
                    shortest_s=match_min_s(EmbeddingConfig(), DuplicateConfig())
                ),
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["query", "matches"],
                            "properties": {
                                "query": {"type": "string"},
                                "matches": {"type": "array", "items": ref("Match")},
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
                "requestBody": upload_body(
                    shortest_s=CLASSIFY_MIN_S,
                    similar={"type": "integer", "minimum": 0, "maximum": MAX_SIMILAR},
                ),
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["query", "genre", "probabilities", "tags", "similar"],
                            "properties": {
                                "query": {"type": "string"},
                                **GENRES_AND_TAGS,
                                "similar": {"type": "array", "items": ref("Result")},
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
                "requestBody": upload_body(k=K_SCHEMA, genre=GENRE_SCHEMA),
                "responses": {
                    "200": json_response(
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
                                "results": {"type": "array", "items": ref("Result")},
                                "matches": {"type": "array", "items": ref("Match")},
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
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["tracks", "total", "page", "per_page"],
                            "properties": {
                                "tracks": {"type": "array", "items": ref("Track")},
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
                "responses": {"200": json_response(ref("Track")), **ERRORS},
            }
        },
        "/api/tracks/{track_id}/similar": {
            "get": {
                "summary": "More like this",
                "parameters": [TRACK_ID, K, GENRE],
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["track_id", "results"],
                            "properties": {
                                "track_id": {"type": "integer"},
                                "results": {"type": "array", "items": ref("Result")},
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
                    "200": json_response(
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
                    "200": json_response(
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
                    "200": json_response(
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
            "get": {
                "summary": "This document",
                "responses": {"200": json_response({"type": "object"})},
            }
        },
    },
    "components": COMPONENTS,
}
