"""Grading the written questions by question: ``python -m autograder manual``.

A written question is a markdown answer cell of a source notebook (nbgrader ``solution: true,
grade: true, points``). Its source holds the model answer, then a ``**Rubric**`` heading and the
point-earning items; nbgrader's release replaces the whole cell with ``YOUR ANSWER HERE``, so neither
reaches a student. The flow, one concept per module:

- :mod:`.questions`: the questions of an assignment, read from the graded course's source notebook
  (prompt, model answer, rubric items, points);
- :mod:`.answers`: every student's answer to one question, blank answers marked, identical answers grouped;
- :mod:`.render`: a student's markdown as inert HTML (everything escaped; no link, image or script that runs);
- :mod:`.page`: one self-contained HTML page per question (no network), with a score and a comment per
  group of identical answers and a button that exports the scores as CSV;
- :mod:`.scores`: that CSV read back, validated, and written into the gradebook as nbgrader manual grades.
"""
