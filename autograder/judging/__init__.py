"""Stage 4, judging: every verdict is decided here, in the grading process, never in the kernel.

- :mod:`.spec`: one declaration per graded function (cases, fresh inputs, tolerances, wrong answers);
- :mod:`.judge`: serves a test cell's session: sends calls to the kernel, takes plain data back, decides;
- :mod:`.toolkit`: comparing, diagnosing and the messages students see;
- :mod:`.solutions`: the reference solutions, read from the source notebooks;
- :mod:`.references`: stored reference cases and their regeneration.
"""
