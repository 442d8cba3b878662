"""The hidden tests' specs, one module per assignment: ``SPECS``, one
:class:`~autograder.judging.spec.GradedFunction` per graded function.

The judge (:mod:`autograder.judging.judge`) loads them with :func:`autograder.judging.spec.load_specs` and
runs them in the grading process; a source notebook's hidden block only hands the function over::

    ### BEGIN HIDDEN TESTS
    from cs_lib.grading.judge_client import judge

    judge("example", softmax)
    ### END HIDDEN TESTS
"""
