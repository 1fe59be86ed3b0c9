"""The benchmark lab: a matrix declared as data, a runner, results, statistics, the report.

Data flows one way: ``matrix`` (cells) -> ``runner`` (``measure.Sample`` per load) ->
``results`` (versioned JSON/CSV) -> ``stats`` -> ``charts`` / ``report`` (HTML).
"""
