"""A child whose stdout is its answer, as JSON; a library it uses logs a warning on the way."""

import json
import logging


def compute():
    logging.getLogger("somelib").warning("a library warning")
    return 42


if __name__ == "__main__":
    print(json.dumps({"answer": compute()}))
