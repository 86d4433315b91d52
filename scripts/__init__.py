"""Tools of `make run`, the tests and the benchmarks: the stack runner, a local redis-server."""
