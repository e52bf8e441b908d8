"""``/docs``: the OpenAPI document rendered as one self-contained HTML page.

No script or stylesheet is fetched from anywhere: operators run wagerwire on machines without
internet access, so the page is built on the server from ``app.openapi()``.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_docs"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1b1f24}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
.op{border:1px solid #d0d7de;border-radius:6px;margin:1em 0;padding:.6em 1em}
.m{font-weight:700;text-transform:uppercase;display:inline-block;min-width:4.5em}
.get{color:#0969da}.post{color:#1a7f37}.delete{color:#cf222e}.put{color:#9a6700}
code{background:#f6f8fa;padding:0 .3em;border-radius:4px}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #d0d7de;padding:.2em .5em;text-align:left}
"""


def _schema_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_text(s) for s in schema["anyOf"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_schema_text(schema.get('items'))}"
    return kind


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
        f"<td>{escape(_schema_text(p.get('schema')))}</td>"
        f"<td>{'yes' if p.get('required') else ''}</td>"
        f"<td>{escape(p.get('description', '') or '')}</td></tr>"
        for p in op.get("parameters", [])
    )
    params = (f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th>"
              f"<th>description</th></tr>{rows}</table>") if rows else ""
    body = ""
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        body = f"<p>JSON body: <code>{escape(_schema_text(content.get('schema')))}</code></p>"
    responses = ", ".join(
        f"<code>{escape(code)}</code> {escape(r.get('description', ''))}"
        for code, r in op.get("responses", {}).items()
    )
    return (
        f'<div class="op"><span class="m {method}">{method}</span> <code>{escape(path)}</code>'
        f" — {escape(op.get('summary', ''))}{params}{body}<p>Responses: {responses}</p></div>"
    )


def _schemas(components: dict[str, Any]) -> str:
    out = []
    for name, schema in sorted(components.get("schemas", {}).items()):
        props = schema.get("properties", {})
        rows = "".join(
            f"<tr><td><code>{escape(p)}</code></td><td>{escape(_schema_text(s))}</td>"
            f"<td>{escape(s.get('description', '') or '')}</td></tr>"
            for p, s in props.items()
        )
        out.append(f"<h3 id='{escape(name)}'>{escape(name)}</h3><table>{rows}</table>")
    return "".join(out)


def render_docs(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    ops = [
        _operation(path, method, op)
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(info.get('title', 'API'))} docs</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(info.get('title', ''))} {escape(info.get('version', ''))}</h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        f"<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> "
        f"(OpenAPI {escape(spec.get('openapi', ''))}).</p>"
        f"<h2>Routes</h2>{''.join(ops)}<h2>Schemas</h2>{_schemas(spec.get('components', {}))}"
        "</body></html>"
    )
