"""Stage 3, executing one notebook: a kernel the student's code runs in, and nothing more.

- :mod:`.worker`: grade one submission in its own temporary nbgrader course;
- :mod:`.tampering`: what the submission changed in locked cells, put back;
- :mod:`.pipeline`: nbgrader's autograde pipeline with the kit's steps swapped in;
- :mod:`.executor`: run cells one by one, survive crashes and hangs, take verdicts from the judge;
- :mod:`.records`: the submission, its per-test results and the gradebook rows a worker returns;
- :mod:`.redact`: hidden-test regions and grading frames out of everything students see (reasons,
  feedback pages);
- :mod:`.sandbox`: the kernel's view of the file system (no solutions, references, other students);
- :mod:`.isolation`: memory watchdog, process trees, network isolation;
- :mod:`.nbgrader_run`: nbgrader's command-line apps with the kit's environment.
"""
