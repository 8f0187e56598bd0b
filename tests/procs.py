"""Process helpers for the tests that kill jobs: only ever the test's own processes."""
from pathlib import Path


def descendants(root: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of every live descendant of process ``root``, read from /proc: the process tree below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": comm may hold spaces
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
            except OSError:
                continue
            out.append((pid, argv))
            todo.append(pid)
    return out
