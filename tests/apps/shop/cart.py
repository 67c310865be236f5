"""A submodule imported by shop.__main__."""


class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)


def total(cart):
    return len(cart.items)
