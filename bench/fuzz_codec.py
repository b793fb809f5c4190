"""Coverage-guided fuzzing of the wire codec with atheris (libFuzzer) for a set time.

Run: python bench/fuzz_codec.py --seconds 60
libFuzzer prints the number of executions at the end ("Done N runs in S second(s)"); a
finding (an exception other than the codec's own ProtocolError from parse_line, or any
exception at all from the framer, the v1 classifier or the board model) stops the run with
the traceback and writes the input to a crash-* file.
Needs `pip install atheris` (Linux/macOS); the tests run the same properties with hypothesis.
"""

from __future__ import annotations

import argparse
import sys

import atheris

with atheris.instrument_imports():
    from vending.protocol import BoardLogic, LineFramer, ProtocolError, parse_line, parse_v1_line


def one_input(data: bytes) -> None:
    """Everything that reads bytes from a board or a person, fed the same input."""
    try:
        parse_line(data)
    except ProtocolError:
        pass
    framer = LineFramer()
    half = len(data) // 2
    items = framer.feed(data[:half]) + framer.feed(data[half:])
    parse_v1_line(data)
    board = BoardLogic("ESP32_FUZZ", "2.0.0", 5, "0BADC0DE")
    board.boot(0.0)
    for index, item in enumerate(items):
        board.receive(item, float(index))
        board.tick(float(index) + 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    args, rest = parser.parse_known_args()
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=600", *rest],
                  one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
