"""A sibling module."""


def helper_b(x):
    return x + 1
