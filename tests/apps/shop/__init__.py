"""A package run with ``-m shop``; its modules are matched by ``shop.*:*``."""
