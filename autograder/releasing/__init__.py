"""Stage 1, releasing: from the TA's source notebooks to what students and graders receive.

- :mod:`.metadata_check`: refuse a source notebook whose nbgrader metadata would grade wrongly;
- :mod:`.course`: temporary nbgrader courses and ``generate_assignment``;
- :mod:`.bundle`: the student zip, verified to hold no solution, hidden test or reference;
- :mod:`.gradescope`: the Gradescope autograder zip and its ``run_autograder`` entry point.
"""
