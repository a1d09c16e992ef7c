"""In-process micro-benchmarks of the hot paths, in seconds: `python -m bench.micro`.

Each prints the best of a few repeats, per operation (a delivery, a message, an event), so a
change to the hub or the decoder can be measured without a multi-process run. The numbers are
relative (this machine, this Python); compare them before and after a change, on the same
machine, at about the same time.
"""
