"""The tests read nothing outside the repository: a clone anywhere passes them.

Test files name no absolute folder of one machine (`/work/...`, a home folder, `../shared`), and
every `Path(__file__).parents[n]` they climb stays inside the repository.
"""
import ast
import re
from pathlib import Path

from tests.paths import REPO

# A literal naming a machine's folder rather than a file in the repository.
OUTSIDE = re.compile(r"^(/(work|home|root|tmp|mnt|opt|srv|data|shared|Users|var)(/|$)|~[/\\]|[A-Za-z]:[\\/]Users)"
                     r"|/work/|\.\.[/\\]shared")


def outside_paths(path: Path, root: Path = REPO) -> list[str]:
    """Each string literal in the file that names a folder outside the repository, and each
    `parents[n]` of `__file__` that climbs above `root`, as "line N: ..."."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and OUTSIDE.search(node.value):
            found.append(f"line {node.lineno}: {node.value!r}")
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "parents" and "__file__" in ast.unparse(node.value)
              and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
            parents = path.resolve().parents
            climbed = parents[node.slice.value] if node.slice.value < len(parents) else Path("/")
            if not climbed.is_relative_to(root):
                found.append(f"line {node.lineno}: {ast.unparse(node)} is {climbed}, outside the repository")
    return sorted(found, key=lambda hit: int(hit.split()[1].rstrip(":")))


def test_no_test_names_a_path_outside_the_repository():
    scanned = [path for path in sorted((REPO / "tests").rglob("*.py")) if path != Path(__file__).resolve()]
    assert len(scanned) > 50  # this file is left out: it spells the patterns it looks for
    bad = {str(path.relative_to(REPO)): hits for path in scanned if (hits := outside_paths(path))}
    assert not bad, "tests must read only files inside the repository:\n" + "\n".join(
        f"  {name}: {'; '.join(hits)}" for name, hits in bad.items())


def test_the_scan_finds_outside_paths(tmp_path):
    probe = tmp_path / "tests" / "probe.py"
    probe.parent.mkdir()
    probe.write_text('from pathlib import Path\n'
                     'A = Path("/work/shared/fixtures")\n'
                     'B = Path(__file__).resolve().parents[1] / "../shared/x.json"\n'
                     'C = Path(__file__).resolve().parents[4]\n'
                     'D = ["/etc/passwd", "/generate", "C:\\\\Windows\\\\win.ini", "../escape"]\n',  # probes, not reads
                     encoding="utf-8")
    hits = outside_paths(probe, root=tmp_path)
    assert [hit.split(":")[0] for hit in hits] == ["line 2", "line 3", "line 4"], hits
    assert "outside the repository" in hits[-1]
