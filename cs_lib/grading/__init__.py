"""The kernel's side of grading: what a student's kernel runs for the grader, nothing a student calls.

- :mod:`cs_lib.grading.judge_client` the hidden test's ``judge``: call the function when the grader asks
- :mod:`cs_lib.grading.wire`         the pickle-free plain-data format the kernel answers the grader in
- :mod:`cs_lib.grading.models`       small models the grader sends to the kernel (nothing secret)

Importing this package imports none of them (and no torch): each is imported by its own name.
"""
