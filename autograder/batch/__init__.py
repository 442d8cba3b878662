"""Stage 2, batch grading: many submissions in, one nbgrader course of results out.

- :mod:`.submissions`: find submissions in a folder or zip (LMS or nbgrader layout);
- :mod:`.scheduler`: one forked process per submission, in parallel, with a hard deadline;
- :mod:`.grading`: the ``grade`` command: template course, scheduling, resume, CSVs;
- :mod:`.shards`: ``--shard I/N`` (a stable hash of the student id; Slurm and Kubernetes indices);
- :mod:`.merge`: the ``merge`` command: shards' courses into one;
- :mod:`.results`: per-test rows, the merged gradebook, ``grades.csv`` and ``tests.csv``;
- :mod:`.samples` and :mod:`.demo`: sample submissions and the ``demo`` command.
"""
