"""nbgrader configuration of the course, read when nbgrader runs in this folder.

The grading CLI (`python -m autograder`) and the tests run nbgrader with this folder as
the working directory, so the course root is this folder wherever the repo lives.
"""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by nbgrader/traitlets

c.CourseDirectory.course_id = "dlcv"
c.CourseDirectory.root = str(Path(__file__).resolve().parent)
# Sources live in source/<assignment>/<assignment>.ipynb; one notebook per assignment.
c.CourseDirectory.notebook_id = "*"

# Execution limits while autograding and validating.
c.Execute.timeout = 300  # seconds per cell
c.Execute.raise_on_iopub_timeout = True
# Long outputs are truncated in the graded notebook.
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

# nbgrader scores any stderr output in a test cell as a failure. The notebooks emit no
# warnings, but a library warning (a DeprecationWarning from a new release, say) must
# never zero a test: stderr chunks that are only Python warnings are dropped.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"^(\S.*:\d+: \w*Warning: .*(\n {2}.*)*\n?)+$"

# What students see in place of removed solutions.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A deleted test cell is put back from the source and run, instead of silently not run.
c.OverwriteCells.add_missing_cells = True
