"""The parts of the OpenAPI description (openapi.py) its paths share: the component schemas
and the error response they refer to, and the parameters, upload body and error statuses they
repeat."""

from __future__ import annotations

from mirsearch.config import MAX_PER_PAGE, SearchConfig


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    str(status): {"$ref": "#/components/responses/Error"}
    for status in (400, 404, 405, 413, 415, 422, 503)
}


def upload_body(*, shortest_s: float = SearchConfig.min_query_s, **fields: dict) -> dict:
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

COMPONENTS = {
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
    "responses": {"Error": json_response(ref("Error"), "A readable error")},
}
