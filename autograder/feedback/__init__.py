"""Stage 5, feedback: what students see of their graded notebook, hidden tests removed.

- :mod:`.pages`: per-student HTML feedback through nbgrader's converter;
- :mod:`.redact`: strip hidden-test regions and grading frames from sources and tracebacks.
"""
