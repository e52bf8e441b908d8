"""The SDK installs without the server's dependencies (the `server` extra, README "Installing")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERVER_ONLY = ("fastapi", "starlette", "pydantic", "redis", "asyncpg", "httptools", "uvloop")

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {SERVER_ONLY!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30)


def test_sdk_imports_without_server_dependencies() -> None:
    proc = _run("""
        import wagerwire, wagerwire.client
        from wagerwire.client import Client
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {names!r})
        print("loaded", loaded)
    """.replace("{names!r}", repr(SERVER_ONLY)))
    assert proc.returncode == 0, proc.stderr
    assert "loaded []" in proc.stdout


def test_serve_without_server_extra_says_what_to_install() -> None:
    proc = _run("""
        from wagerwire.cli import main
        main(["serve", "--port", "0"])
    """)
    assert proc.returncode == 1
    assert "pip install 'wagerwire[server]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_webtransport_without_aioquic_says_what_to_install() -> None:
    proc = _run("""
        import asyncio, sys
        class NoQuic(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "aioquic":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, NoQuic())
        from wagerwire.client import Client

        async def main():
            async with Client("http://127.0.0.1:9", transport="wt") as client:
                client.subscribe(["game:crash"])

        try:
            asyncio.run(main())
        except ImportError as exc:
            print("refused:", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'wagerwire[webtransport]'" in proc.stdout
