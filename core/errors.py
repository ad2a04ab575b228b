"""Errors a user can act on. Each message names the file, line or key, and the fix."""


class ProjectError(Exception):
    """Base class: the message is meant to be shown to the user as is."""


class ConfigError(ProjectError):
    """config.json is unreadable or has invalid values; `problems` lists every one."""

    def __init__(self, path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s):\n{lines}")


class DataError(ProjectError):
    """A training file cannot be trained; `problems` holds (line, reason) pairs (line 0: whole file)."""

    def __init__(self, path, problems: list[tuple[int, str]], expected: str = "", *, refused: str = "not trained"):
        self.path = str(path)
        self.problems = problems
        self.expected = expected
        shown = "\n".join(f"  line {n}: {r}" if n else f"  {r}" for n, r in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{self.path}: {refused}, nothing from it was used:\n{shown}{more}")

    def report(self) -> dict:
        return {
            "file": self.path,
            "reason": self.problems[0][1] if self.problems else "",
            "problems": [{"line": n, "reason": r} for n, r in self.problems],
            "expected_shape": self.expected,
        }


class ModelError(ProjectError):
    """The model named in config cannot be found or loaded."""


class LockError(ProjectError):
    """Another daemon already works on this root."""
