"""``python -m shop``: fills a cart."""

import sys

from shop.cart import Cart, total


def checkout(names):
    cart = Cart()
    for name in names:
        cart.add(name)
    return total(cart)


if __name__ == "__main__":
    print(f"items={checkout(sys.argv[1:])}")
