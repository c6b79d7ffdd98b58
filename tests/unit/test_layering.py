"""The packages import downwards only (docs: CONVENTIONS.md, "Layout and the direction of imports").

``offchain`` is the bottom; ``workload`` sits on it and is what ``agent`` and ``image`` share, so
neither imports the other; ``localstack`` (swtpm, QEMU) sits on it too, for the agent's development,
the tests, the demo and the benchmarks; ``onchain`` sits on ``offchain`` and never imports ``agent``
(nor ``image``); ``deploy`` (the clouds, ``cvm-cli upload``) talks to an agent only over HTTP and
reads an image build only from its files; ``demos`` is the top and runs the agent only as a process. Every import statement
counts, function-local and ``TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("offchain", "workload", "localstack", "agent", "onchain", "image", "deploy", "demos")

#: For each package, the project packages it must not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "offchain": frozenset({"workload", "localstack", "agent", "onchain", "image", "deploy", "demos"}),
    "workload": frozenset({"localstack", "agent", "onchain", "image", "deploy", "demos"}),
    "localstack": frozenset({"workload", "agent", "onchain", "image", "deploy", "demos"}),
    "agent": frozenset({"onchain", "image", "deploy", "demos"}),
    "onchain": frozenset({"agent", "image", "deploy", "demos"}),
    "image": frozenset({"agent", "onchain", "deploy", "demos"}),
    "deploy": frozenset({"agent", "image", "demos"}),
    "demos": frozenset({"agent"}),
}

def _module_name(root: Path, path: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(root, path)
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
    return found


def layering_violations(root: Path) -> list[tuple[str, int]]:
    """``("file imports module", line)`` for every import that breaks :data:`FORBIDDEN`."""
    out = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(root, path):
                if module.split(".")[0] in forbidden:
                    out.append((f"{path.relative_to(root).as_posix()} imports {module}", line))
    return out


def test_the_packages_import_downwards_only() -> None:
    assert [p for p in PACKAGES if not (ROOT / p).is_dir()] == []
    assert [f"{what} (line {line})" for what, line in layering_violations(ROOT)] == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"onchain/admin_cli.py": "from agent.archive import measure_archive\n"},
         [("onchain/admin_cli.py imports agent.archive", 1)]),
        ({"offchain/x.py": "def f():\n    import onchain.client\n"}, [("offchain/x.py imports onchain.client", 2)]),
        ({"workload/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent import config\n"},
         [("workload/x.py imports agent", 3)]),
        ({"agent/sub/x.py": "from ...onchain import rpc\n"}, [("agent/sub/x.py imports onchain", 1)]),
        ({"image/x.py": "import agent.workload as w\n"}, [("image/x.py imports agent.workload", 1)]),
        ({"agent/x.py": "from workload.compose import check_compose\nfrom . import tpm\nimport offchain.abi\n",
          "onchain/x.py": "from workload.archive import measure_archive\n",
          "image/x.py": "from workload.compose import check_workload_dir\n"}, []),
    ],
    ids=["onchain-imports-agent", "offchain-imports-onchain", "workload-imports-agent-for-types",
         "agent-imports-onchain-relatively", "image-imports-agent", "downward-imports-pass"],
)
def test_an_upward_import_is_found(tmp_path: Path, files: dict[str, str], expected: list[tuple[str, int]]) -> None:
    assert layering_violations(_tree(tmp_path, files)) == expected
