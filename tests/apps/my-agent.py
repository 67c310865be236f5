"""A program whose file name is not an identifier: its module name is its stem, ``my-agent``."""

import multiprocessing
import sys


def think(word):
    return word.upper()


def spawned(word):
    think(word)


def main():
    print(think("hello"))
    if "--spawn" in sys.argv:
        proc = multiprocessing.get_context("spawn").Process(target=spawned, args=("spawned",))
        proc.start()
        proc.join(60)
        print(f"spawn exit code {proc.exitcode}")


if __name__ == "__main__":
    main()
