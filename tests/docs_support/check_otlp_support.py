"""Check: the block's span reached the OTLP receiver the setup started in place of a collector."""

names = [s.name for s in DOC_GRPC.wait_for(1)]  # noqa: F821
assert names == ["support"], names
