"""A module the sample app imports after the run has started."""


def shout(word):
    return word.upper()


def unused():
    return None
