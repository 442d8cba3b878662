"""Stage 5, feedback: what students see of their graded notebook, hidden tests removed.

- :mod:`.pages`: per-student HTML feedback through nbgrader's converter, hidden tests and grading frames
  removed with :mod:`autograder.execution.redact`.
"""
