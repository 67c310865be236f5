"""Forks a child that imports a module the parent never does, and ends through sys.exit."""

import os
import sys


def main():
    pid = os.fork()
    if pid == 0:
        import helpers  # only in the child

        helpers.shout("from the fork")
        sys.exit(0)  # the child's own exit runs its atexit handlers
    os.waitpid(pid, 0)
    print("forked child done")


if __name__ == "__main__":
    main()
