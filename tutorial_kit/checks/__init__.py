"""Each lesson's exercise checks: ``lessonNN.exK(...)`` judges exercise K of lesson NN.

A lesson's imports cell binds its module as ``checks``
(``from tutorial_kit.checks import lesson04 as checks``), and each check cell is one
call, ``checks.ex1(ex1, ...)`` or ``await checks.ex1(ex1, ...)``. A check prints one
verdict line through ``tutorial_kit.exercises.check`` and never raises.
"""
