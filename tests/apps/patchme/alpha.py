"""Functions and a class defined here, and names imported from elsewhere."""

from math import sqrt  # noqa: F401 - imported, never wrapped by alpha:*

from tinyllm_instrument import observe

from .beta import helper_b  # noqa: F401 - imported, never wrapped by alpha:*


def double(x):
    return 2 * x


def outer(x):
    return double(x) + helper_b(x)


@observe(node="already")
def already(x):
    return x


class Greeter:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Greeter({self.name!r})"

    def greet(self):
        return f"hi {self.name} {double(1)}"

    @staticmethod
    def shout(word):
        return word.upper()

    @classmethod
    def make(cls):
        return cls("made")

    @property
    def size(self):
        return len(self.name)

    def __call__(self):
        return self.greet()
