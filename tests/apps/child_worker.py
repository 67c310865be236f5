"""A plain child program: it never mentions the kit."""

import sys

import helpers


def work(word):
    return helpers.shout(word)


if __name__ == "__main__":
    print(work(sys.argv[1]))
