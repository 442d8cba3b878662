"""Temporary nbgrader course directories, and the student release built in them.

Grading and release building never write into the repository's sources: each run copies
the nbgrader configuration and the source notebooks into a course directory of its own.

- :func:`make_course_dir`: a course with the config and the named sources;
- :func:`generate_release`: ``nbgrader generate_assignment`` in a subprocess (the plain
  nbgrader way, as an instructor would type it);
- :func:`generate_assignment`: the same converter in this process (no interpreter start-up;
  what ``grade`` and ``demo`` use), after :func:`autograder.releasing.metadata_check.check_source`.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

from autograder import COURSE_DIR, SOURCE_DIR
from autograder.execution.nbgrader_run import NbgraderError, run_nbgrader, use_kit_path


def make_course_dir(root: Path, assignments: list[str]) -> Path:
    """Create ``root`` as an nbgrader course with the config and the named sources."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(COURSE_DIR / "nbgrader_config.py", root / "nbgrader_config.py")
    for name in assignments:
        dest = root / "source" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(SOURCE_DIR / name, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return root


def generate_release(course: Path, assignment: str) -> Path:
    """Run ``nbgrader generate_assignment`` (subprocess); return the release folder of ``assignment``."""
    run_nbgrader(["generate_assignment", assignment, "--force"], course)
    return course / "release" / assignment


def load_course_config(course: Path):  # -> traitlets.config.Config
    """The course's ``nbgrader_config.py``, with the course root set to ``course``."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    cfg.CourseDirectory.root = str(course.resolve())
    return cfg


def alembic_head() -> str:
    """The newest revision of nbgrader's gradebook schema, read from its migration files.

    nbgrader finds it by running the ``alembic`` command each time it creates a gradebook,
    which costs seconds of interpreter start-up; the migration scripts say the same thing.
    """
    import nbgrader

    versions = Path(nbgrader.__file__).parent / "alembic" / "versions"
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text()
        rev = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.MULTILINE)
        down = re.search(r"^down_revision\s*=\s*['\"](\w+)['\"]", text, re.MULTILINE)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.add(down.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"cannot tell nbgrader's schema head from {versions}: {sorted(heads)}")
    return heads.pop()


def use_fast_alembic_head() -> None:
    """Make nbgrader read its schema head with :func:`alembic_head` (falls back to its own way)."""
    import nbgrader.api

    if getattr(nbgrader.api.get_alembic_version, "_kit", False):
        return
    original = nbgrader.api.get_alembic_version

    def get_alembic_version() -> str:
        try:
            return alembic_head()
        except (OSError, RuntimeError):
            return original()

    get_alembic_version._kit = True  # type: ignore[attr-defined]
    nbgrader.api.get_alembic_version = get_alembic_version


def generate_assignment(course: Path, assignment: str) -> Path:
    """``nbgrader generate_assignment --force`` in this process; return the release folder.

    The source notebook's nbgrader metadata is checked first, so a broken notebook fails
    with a list of its problems rather than with nbgrader's traceback.

    Raises:
        autograder.releasing.metadata_check.MetadataError: the source's metadata is broken.
        NbgraderError: nbgrader failed; the message holds the end of its log.
    """
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    from autograder.releasing.metadata_check import check_source

    check_source(course / "source" / assignment / f"{assignment}.ipynb")
    use_kit_path()
    use_fast_alembic_head()
    cfg = load_course_config(course)
    with captured_log() as log:
        coursedir = CourseDirectory(config=cfg)
        coursedir.assignment_id = assignment
        app = GenerateAssignment(coursedir=coursedir, config=cfg)
        app.force = True
        try:
            app.start()
        except Exception as exc:  # noqa: BLE001 - nbgrader raises plain exceptions
            tail = "\n".join(log.getvalue().strip().splitlines()[-25:])
            raise NbgraderError(f"generate_assignment {assignment} failed in {course}: {exc}\n{tail}") from exc
    return course / "release" / assignment


class captured_log:  # noqa: N801 - used as a context manager
    """Send the ``traitlets`` logger (nbgrader's converters log there) to a string buffer."""

    def __enter__(self) -> io.StringIO:
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.logger = logging.getLogger("traitlets")
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
