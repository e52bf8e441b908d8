"""The composition root: everything that builds and runs one wagerwire node.

============  ==============================================================================
module        job
============  ==============================================================================
server.py     ``Server`` (hub + gate + HTTP front door + streams + sources), ``run``, banner
features.py   ``default_features``: the one list of optional parts, in wiring order
dialects.py   the seed dialects (Data Stream, TrackerSino, Stake) as one feature
backends.py   store and broker from their URLs; ``--workers`` checks; the readiness hook
workers.py    ``serve``: one process, or a supervisor forking N workers on one port
============  ==============================================================================

Nothing outside this package (and the CLI) imports it; features are plain
:class:`~wagerwire.api.feature.Feature` values.
"""

__all__: list[str] = []
